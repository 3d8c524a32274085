"""The replayable-graph scripts in README.md and docs/builder.md run as written.

Each is the Python block under its heading, run as a real script in an empty folder:
on a fresh SQLite database (set up on first use) and on the real Postgres after
``graphops db upgrade``, as the docs say.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.support import ROOT, run_graphops

EXAMPLES = {
    "readme": (ROOT / "README.md", "## A short tour"),
    "builder": (ROOT / "docs" / "builder.md", "## Making your own graph's runs replayable"),
}


def _script(page: Path, heading: str) -> str:
    section = page.read_text(encoding="utf-8").split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"{page.name} {heading!r}: expected one python block"
    return blocks[0]


def _run(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHOPS_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check(done: subprocess.CompletedProcess[str], example: str) -> None:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "thread t1: 1 run(s)" in done.stdout
    assert "invoke_agent my_graph" in done.stdout
    assert "└─ " in done.stdout and "answer" in done.stdout
    if example == "readme":
        assert re.match(r"[0-9a-f]{32}\n", done.stdout)  # the trace id
    else:
        assert done.stdout.rstrip().endswith("You asked: Why?")


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_on_a_fresh_sqlite_database(tmp_path: Path, example: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = _run(_script(*EXAMPLES[example]), tmp_path, GRAPHOPS_DATA_DIR=str(data))
    _check(done, example)
    listed = run_graphops("replay", "t1", env={"GRAPHOPS_DATA_DIR": str(data)}, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "invoke_agent my_graph" in listed.stdout


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_on_postgres_after_db_upgrade(
    tmp_path: Path, postgres_url: str, example: str
) -> None:
    from graphops.db import downgrade

    downgrade(postgres_url, "base")  # a database nobody has set up yet
    env = {"GRAPHOPS_DATA_DIR": str(tmp_path), "GRAPHOPS_DATABASE_URL": postgres_url}
    upgraded = run_graphops("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    _check(_run(_script(*EXAMPLES[example]), tmp_path, **env), example)
