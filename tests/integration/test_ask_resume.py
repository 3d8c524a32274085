"""``ask --thread T --resume`` after kill -9 keeps the interrupted run's user (real processes)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from graphops.checkpoint import SqlSpanStore
from graphops.observe import semconv as sc
from graphops.settings import Settings
from tests.integration.support import ROOT, kill_after_retrieve, run_graphops, upgraded_sqlite


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
    url, env = upgraded_sqlite(tmp_path, local_settings)
    store = SqlSpanStore(url)
    thread = f"resume-{uuid.uuid4().hex[:8]}"
    kill_after_retrieve(env, store, thread, "--user", "ann")

    resumed = run_graphops(
        "ask", "--thread", thread, "--resume", *resume_as, "--json", env=env, cwd=ROOT, timeout=300
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
from graphops.policies import Ops

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
    url, env = upgraded_sqlite(tmp_path, local_settings)
    subprocess.run([sys.executable, "-c", OWN_GRAPH, url], env=env, cwd=ROOT, check=True)
    store = SqlSpanStore(url)
    (trace,) = store.traces("mine")

    done = run_graphops("ask", "--thread", "mine", *argv, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "graphops: error: thread mine was written by graph 'my_graph': graphops ask runs "
        "the reference graph (agentic_rag) only; continue the thread with its own graph "
        "in Python"
    ]
    assert store.traces("mine") == [trace]  # nothing ran on it
