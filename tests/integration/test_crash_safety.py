"""kill -9 in the middle of a run: finished nodes keep their spans, and the run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from graphops.checkpoint import SqlSpanStore
from graphops.db import current
from graphops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


def test_kill_9_keeps_finished_spans_and_resume_continues(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    env = {
        **os.environ,
        "GRAPHOPS_DATA_DIR": str(local_settings.data_dir),  # the docs index built once
        "GRAPHOPS_DATABASE_URL": url,
        "GRAPHOPS_N_THREADS": "2",
    }
    subprocess.run([GRAPHOPS, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    store = SqlSpanStore(url)
    process = subprocess.Popen(
        [GRAPHOPS, "ask", "--thread", "crash-1", "How do I ingest a URL?"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        names: set[str] = set()
        while "retrieve" not in names:  # written when the node ends, while the run goes on
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no retrieve span ever reached the store"
            time.sleep(0.05)
            names = {s.name for t in store.traces("crash-1") for s in store.spans(t)}
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert current(url) == "0002"

    (trace_id,) = store.traces("crash-1")
    stored = {s.name for s in store.spans(trace_id)}
    assert {"guard", "cache_lookup", "generate_query_or_respond", "retrieve"} <= stored
    assert "generate_answer" not in stored
    assert not any(s.parent_span_id is None for s in store.spans(trace_id))  # the run never ended

    resumed = subprocess.run(
        [GRAPHOPS, "ask", "--thread", "crash-1", "--resume", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["answer"].strip()
    assert result["sources"]
    nodes = [n["node"] for n in result["nodes"]]
    assert nodes[0] == "grade_documents"  # picked up after the last checkpoint, not from the start
    assert "generate_query_or_respond" not in nodes
    assert nodes[-1] == "settle"
    assert len(store.traces("crash-1")) == 2
