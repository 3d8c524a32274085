"""``ask --thread T --resume`` after kill -9 keeps the interrupted run's user (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from graphops.checkpoint import SqlSpanStore
from graphops.observe import semconv as sc
from graphops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


def _kill_after_retrieve(env: dict[str, str], store: SqlSpanStore, thread: str) -> None:
    """Ask as ann on ``thread`` and kill -9 the process once the retrieve span is stored."""
    process = subprocess.Popen(
        [GRAPHOPS, "ask", "--user", "ann", "--thread", thread, "How do I ingest a URL?"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        names: set[str] = set()
        while "retrieve" not in names:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no retrieve span ever reached the store"
            time.sleep(0.05)
            names = {s.name for t in store.traces(thread) for s in store.spans(t)}
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("resume_as", "expected"), [((), "ann"), (("--user", "bob"), "bob")], ids=["kept", "given"]
)
def test_resume_keeps_the_interrupted_runs_user_unless_given(
    tmp_path: Path,
    local_settings: Settings,
    docs_index: Path,
    resume_as: tuple[str, ...],
    expected: str,
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
    thread = f"resume-{uuid.uuid4().hex[:8]}"
    _kill_after_retrieve(env, store, thread)

    resumed = subprocess.run(
        [GRAPHOPS, "ask", "--thread", thread, "--resume", *resume_as, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    _first, second = store.traces(thread)
    (root,) = [s for s in store.spans(second) if s.parent_span_id is None]
    assert root.attributes.get(sc.USER) == expected
    run = store.run(second)
    assert run is not None
    assert run.user == expected


OWN_GRAPH = """
import asyncio, sys
from typing import TypedDict
from graphops.builder import build_observed_graph
from graphops.checkpoint.savers import open_checkpointer
from graphops.observe import Telemetry
from graphops.ops import Ops

class State(TypedDict, total=False):
    question: str
    answer: str

def answer(state: State) -> State:
    return {"answer": "mine"}

async def main() -> None:
    async with open_checkpointer(sys.argv[1]) as saver:
        telemetry = Telemetry(exporters=[saver.span_processor()])
        graph = build_observed_graph(
            {"answer": answer}, state_schema=State, ops=Ops(telemetry=telemetry),
            checkpointer=saver, name="my_graph",
        )
        await graph.ainvoke({"question": "q"}, {"configurable": {"thread_id": "mine"}})
        telemetry.shutdown()

asyncio.run(main())
"""


@pytest.mark.parametrize("argv", [("Who are you?",), ("--resume",)], ids=["continue", "resume"])
def test_ask_refuses_a_thread_written_by_another_graph(
    tmp_path: Path, local_settings: Settings, docs_index: Path, argv: tuple[str, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    env = {
        **os.environ,
        "GRAPHOPS_DATA_DIR": str(local_settings.data_dir),
        "GRAPHOPS_DATABASE_URL": url,
        "GRAPHOPS_N_THREADS": "2",
    }
    subprocess.run([GRAPHOPS, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", OWN_GRAPH, url], env=env, cwd=ROOT, check=True)
    store = SqlSpanStore(url)
    (trace,) = store.traces("mine")

    done = subprocess.run(
        [GRAPHOPS, "ask", "--thread", "mine", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "graphops: error: thread mine was written by graph 'my_graph': graphops ask runs "
        "the reference graph (agentic_rag) only; continue the thread with its own graph "
        "in Python"
    ]
    assert store.traces("mine") == [trace]  # nothing ran on it
