"""Another process holding SQLite's write lock (case 4 of issue 9), with a real second process.

A lock held briefly costs no span: the exporter retries the batch. A lock held for
longer ends each command with one ``graphops: error:`` line naming the file, within
a bounded time, instead of a traceback (``ask``) or a 150 s hang (``prompts label``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.checkpoint import SqlSpanExporter, SqlSpanStore
from graphops.db import BUSY_TIMEOUT_S, upgrade
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from graphops.settings import Settings
from tests.integration.support import ROOT, run_graphops

# opens the file, takes the write lock with a write, says so, sleeps, then commits
HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[3] == "exclusive":  # a rollback-journal writer: readers wait too
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute("BEGIN EXCLUSIVE")
else:
    connection.execute("BEGIN IMMEDIATE")
connection.execute("CREATE TABLE IF NOT EXISTS holder (x)")
connection.execute("INSERT INTO holder VALUES (1)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


@contextmanager
def locked(path: Path, seconds: float, mode: str = "immediate") -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``path``'s write lock for ``seconds`` (from when this yields)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


class Word(TypedDict, total=False):
    text: str


def echo_graph() -> StateGraph[Word]:
    graph = StateGraph(Word)
    graph.add_node("echo", lambda state: {"text": state["text"]})
    graph.add_edge(START, "echo")
    graph.add_edge("echo", END)
    return graph


def test_a_lock_held_briefly_loses_no_span(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "graphops.sqlite"
    url = f"sqlite:///{path}"
    upgrade(url)
    store = SqlSpanStore(url)
    telemetry = Telemetry(exporters=[SqlSpanExporter(store)], metrics=Metrics(CollectorRegistry()))
    app = build_observed_graph(echo_graph(), ops=Ops.all_steps(telemetry=telemetry), name="echo")
    # longer than one busy timeout (the first write gives up), shorter than the retries
    with caplog.at_level(logging.WARNING, "graphops.span_store"), locked(path, BUSY_TIMEOUT_S + 3):
        for i in range(5):
            app.invoke({"text": f"t{i}"}, {"configurable": {"thread_id": f"lock-{i}"}})
        telemetry.shutdown()  # waits for the exporter, which retries until the lock is gone
    assert [r.thread_id for r in store.runs()] == [f"lock-{i}" for i in reversed(range(5))]
    for i in range(5):
        (trace,) = store.traces(f"lock-{i}")
        assert {"guard", "echo", "settle"} <= {s.name for s in store.spans(trace)}
    assert not [r for r in caplog.records if "lost" in r.getMessage()]


def cli(data: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "GRAPHOPS_DATA_DIR": str(data),
        "GRAPHOPS_PROMPTS_DIR": str(ROOT / "prompts"),
        **env,
    }
    return run_graphops(*argv, env=environment, cwd=ROOT, timeout=90)


def one_error_line(done: subprocess.CompletedProcess[str], path: Path) -> None:
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("graphops: error:")]
    assert errors == [
        f"graphops: error: the database {path} is locked by another process: try again when "
        "it has finished, or stop it"
    ], done.stderr
    assert "Traceback" not in done.stderr


def test_a_lock_held_for_longer_is_one_line_from_prompts_label_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "graphops.sqlite"
    assert cli(tmp_path, "prompts", "sync").returncode == 0
    with locked(path, 600):
        one_error_line(cli(tmp_path, "prompts", "label", "answer", "1", "staging"), path)
        listed = cli(tmp_path, "runs")  # WAL: a reader never waits for the writer
        assert listed.returncode == 0, listed.stderr
    assert cli(tmp_path, "prompts", "label", "answer", "1", "staging").returncode == 0
    with locked(path, 600, "exclusive"):  # a writer that shuts readers out
        one_error_line(cli(tmp_path, "runs"), path)
        one_error_line(cli(tmp_path, "prompts", "list"), path)


def test_a_lock_held_for_longer_is_one_line_from_ask(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    path = tmp_path / "g.sqlite"
    env = {
        "GRAPHOPS_DATABASE_URL": f"sqlite:///{path}",
        "GRAPHOPS_CORPUS": ",".join(local_settings.corpus),
        "GRAPHOPS_N_THREADS": "2",
    }
    assert cli(local_settings.data_dir, "db", "upgrade", **env).returncode == 0
    with locked(path, 600):
        asked = cli(local_settings.data_dir, "ask", "--thread", "t", "How do I ingest?", **env)
    one_error_line(asked, path)
