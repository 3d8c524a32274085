"""Replay and re-runs on a thread that already has re-runs (issue 9, cases 2 and 8).

A small graph with a conditional edge (``write`` → ``polish`` unless the question
ends with ``!``), so a state edit at the fork runs the branch writer and fires
callbacks, and so a later run can skip a node an earlier one reached.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.checkpoint.replay import areplay
from graphops.checkpoint.rerun import Fork, Rerun, arerun, original_of
from graphops.checkpoint.savers import open_checkpointer
from graphops.db import upgrade
from graphops.errors import InvalidInputError
from graphops.models import ScriptedChatModel
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from graphops.steps.names import CLOSE_STEPS
from tests.integration.support import QA, echo, qa_nodes

pytestmark = pytest.mark.anyio


def branching_graph() -> StateGraph[QA]:
    write, polish = qa_nodes(ScriptedChatModel(respond=echo))

    def after_write(state: QA) -> str:
        return END if state["question"].endswith("!") else "polish"

    graph = StateGraph(QA)
    graph.add_node("write", write)
    graph.add_node("polish", polish)
    graph.add_edge(START, "write")
    graph.add_conditional_edges("write", after_write, ["polish", END])
    graph.add_edge("polish", END)
    return graph


async def session(
    url: str,
    thread: str,
    *,
    asks: tuple[str, ...] = (),
    rerun: dict[str, Any] | None = None,
    name: str = "qa",
) -> Any:
    """Ask ``asks`` on ``thread``, then (optionally) re-run it, with graph ``name``."""
    async with open_checkpointer(url) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        app = build_observed_graph(
            branching_graph(), ops=Ops.all_steps(telemetry=telemetry), checkpointer=saver, name=name
        )
        try:
            for question in asks:
                await app.ainvoke({"question": question}, {"configurable": {"thread_id": thread}})
            if rerun is None:
                return None
            telemetry.force_flush()
            original = original_of((await areplay(thread, url, with_state=False)).runs)
            return await arerun(app, thread, original, **rerun)
        finally:
            telemetry.shutdown()


async def checkpoint_ids(url: str, thread: str) -> list[str]:
    async with open_checkpointer(url) as saver:
        config: Any = {"configurable": {"thread_id": thread}}
        return [c.checkpoint["id"] async for c in saver.alist(config)]


async def test_from_node_forks_the_run_it_compares_with(database: str) -> None:
    """The latest run skipped polish: --from polish must not fork the earlier run."""
    await session(database, "ra-1", asks=("why?", "thanks!"))
    before = await checkpoint_ids(database, "ra-1")
    with pytest.raises(InvalidInputError, match="did not reach 'polish'") as refused:
        await session(database, "ra-1", rerun={"start": "polish"})
    assert "write" in str(refused.value)  # the nodes it did run
    assert await checkpoint_ids(database, "ra-1") == before  # nothing forked
    earlier = next(s for s in (await areplay("ra-1", database)).steps if s.nodes == ("polish",))
    with pytest.raises(InvalidInputError, match="that checkpoint belongs to another run"):
        await session(database, "ra-1", rerun={"start": earlier.checkpoint_id})
    assert await checkpoint_ids(database, "ra-1") == before

    await session(database, "ra-2", asks=("thanks!", "why?"))
    result = await session(database, "ra-2", rerun={"start": "polish"})
    assert result.state["question"] == "why?"
    assert result.original_state["question"] == "why?"
    assert result.original_state["answer"] == result.state["answer"]


async def test_the_state_list_is_per_run_after_reruns(database: str) -> None:
    await session(database, "rs-1", asks=("why?",))
    await session(database, "rs-1", rerun={"start": "polish", "updates": {"draft": "changed"}})
    await session(database, "rs-1", rerun={"start": "polish", "updates": {"draft": "again"}})
    stored = await areplay("rs-1", database)
    assert len(stored.runs) == 3
    traces = [run.trace_id for run in stored.runs]
    assert {step.trace_id for step in stored.steps} == set(traces)
    assert len({(s.trace_id, s.step) for s in stored.steps}) == len(stored.steps)
    for run in stored.runs:
        mine = [s for s in stored.steps if s.trace_id == run.trace_id]
        spans = {
            (s.attributes["graphops.langgraph_step"], s.name)
            for s in run.spans
            if "graphops.node" in s.attributes and s.name not in CLOSE_STEPS
        }
        assert {(s.step, n) for s in mine for n in s.nodes} == spans  # each node, its run's step
        # the steps run at the scope's close come after the last step, in no checkpoint
        closing = {
            s.attributes["graphops.langgraph_step"] for s in run.spans if s.name in CLOSE_STEPS
        }
        assert closing == {max(s.step for s in mine) + 1}
    rerun_steps = [s for s in stored.steps if s.trace_id == traces[1]]
    assert [(s.nodes, s.changes.get("draft")) for s in rerun_steps][:2] == [
        ((), "changed"),  # the --set edit at the fork
        (("polish",), None),
    ]
    assert rerun_steps[1].changes["answer"] == "echo polish: changed"
    text = stored.render()
    assert "+" not in "".join(line.split()[2] for line in text.splitlines() if "  step " in line)
    assert text.count("state after each step:") == 3
    assert "(update)" in text


async def test_a_set_rerun_leaves_no_phantom_run(database: str, tmp_path: Path) -> None:
    await session(database, "rp-1", asks=("why?",))
    await session(database, "rp-1", rerun={"start": "polish", "updates": {"draft": "changed"}})
    stored = await areplay("rp-1", database, with_state=False)
    assert [run.status for run in stored.runs] == ["ok", "ok"]


async def test_a_killed_run_still_shows_as_unfinished(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    upgrade(url)
    await session(url, "rk-1", asks=("why?",), name="mine")
    with sqlite3.connect(tmp_path / "g.sqlite") as connection:  # as if killed before it ended
        connection.execute("DELETE FROM graphops_spans WHERE parent_span_id IS NULL")
    (run,) = (await areplay("rk-1", url, with_state=False)).runs
    assert run.status == "unfinished"
    assert run.graph == "mine"  # still known: every node span names its graph


async def test_set_refuses_a_key_the_state_does_not_have(database: str) -> None:
    await session(database, "rn-1", asks=("why?",))
    before = await checkpoint_ids(database, "rn-1")
    with pytest.raises(InvalidInputError, match="no key 'nokey'") as refused:
        await session(database, "rn-1", rerun={"start": "polish", "updates": {"nokey": 1}})
    assert "answer, draft, question" in str(refused.value)
    assert await checkpoint_ids(database, "rn-1") == before


async def test_arerun_refuses_another_graphs_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    upgrade(url)
    await session(url, "rg-1", asks=("why?",), name="mine")
    before = await checkpoint_ids(url, "rg-1")
    with pytest.raises(InvalidInputError, match="written by graph 'mine', not 'theirs'"):
        await session(url, "rg-1", rerun={}, name="theirs")
    with sqlite3.connect(tmp_path / "g.sqlite") as connection:  # a run that never finished
        connection.execute("DELETE FROM graphops_spans WHERE parent_span_id IS NULL")
    with pytest.raises(InvalidInputError, match="written by graph 'mine', not 'theirs'"):
        await session(url, "rg-1", rerun={}, name="theirs")
    assert await checkpoint_ids(url, "rg-1") == before
    result = await session(url, "rg-1", rerun={}, name="mine")
    assert result.state["answer"] == "echo polish: echo why?"


def rerun_with(original: tuple[str, ...], prompts: tuple[str, ...]) -> Rerun:
    state = {"answer": "a", "sources": []}
    fork = Fork({}, "c", 3, ("polish",))
    return Rerun(fork, "t", state, state, ["polish"], ["polish"], original, prompts)


def test_the_prompts_line_shows_only_real_changes() -> None:
    lines = rerun_with(("route@1", "answer@1"), ("answer@1",)).diff().splitlines()
    assert "prompts: same" in lines
    assert not any("→" in line for line in lines)
    changed = rerun_with(("route@1", "answer@1"), ("answer@2",)).diff().splitlines()
    assert "prompts: answer@1 → answer@2" in changed
    twice = rerun_with(("answer@1", "answer@2"), ("answer@2", "answer@1")).diff()
    assert "prompts: same" in twice
    new = rerun_with((), ("answer@1",)).diff()
    assert "prompts: - → answer@1" in new
    assert "prompts" not in rerun_with(("answer@1",), ()).diff()
    assert dataclasses.replace(rerun_with((), ()), nodes=[]).diff().count("prompts") == 0


async def test_set_at_a_fork_after_the_head_keeps_what_runs_next(database: str) -> None:
    """The head routes with Command(goto): an edit at its checkpoint must still run `write`."""
    await session(database, "rw-1", asks=("why?",))
    result = await session(
        database, "rw-1", rerun={"start": "write", "updates": {"question": "how?"}}
    )
    assert result.fork.next == ("write",)
    assert result.state["draft"] == "echo how?"
    assert result.state["answer"] == "echo polish: echo how?"
