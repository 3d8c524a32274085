"""Concurrent first questions on a fresh data dir build the index once (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Each process waits for "go", then calls ensure_index with embeddings that record
# which process embedded and are slow enough for the processes to overlap.
SCRIPT = """
import os, sys, time
from pathlib import Path
from graphops.corpus.ensure import ensure_index
from graphops.models import HashEmbeddings
from graphops.settings import Settings

data, corpus, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

class Slow(HashEmbeddings):
    def embed_documents(self, texts):
        with log.open("a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(1.0)
        return super().embed_documents(texts)

(log.parent / f"ready-{os.getpid()}").touch()
while not (log.parent / "go").exists():
    time.sleep(0.01)
report = ensure_index(Settings(data_dir=data, corpus=(corpus,)), Slow())
print("built" if report is not None else "reused")
"""


def test_concurrent_first_indexing_builds_once(tmp_path: Path, corpus_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHOPS_")}
    log = tmp_path / "embedded-by"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tmp_path / "data"), str(corpus_dir), str(log)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["built", "reused", "reused"]
    assert len(set(log.read_text().split())) == 1  # one process embedded the corpus
