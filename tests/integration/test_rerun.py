"""Re-running a stored thread: forks, state changes, recorded LLM outputs, the diff."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.checkpoint.replay import areplay
from graphops.checkpoint.rerun import (
    arerun,
    choose_fork,
    original_of,
    parse_prompt_pins,
    parse_updates,
)
from graphops.checkpoint.savers import open_checkpointer
from graphops.db import upgrade
from graphops.errors import InvalidInputError, RunError
from graphops.models import ScriptedChatModel
from graphops.models.recorded import RecordedChatModel
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from graphops.prompts import (
    PromptLibrary,
    PromptRegistry,
    PromptSource,
    RegistryPrompts,
)
from tests.integration.support import QA, echo, qa_nodes

pytestmark = pytest.mark.anyio


def qa_graph(chat: Any, prompts: PromptSource | None = None) -> StateGraph[QA]:
    """write → polish; with ``prompts``, polish formats its message with the prompt "polish"."""
    write, polish = qa_nodes(chat, prompts)
    graph = StateGraph(QA)
    graph.add_sequence([write, polish])
    graph.add_edge(START, "write")
    graph.add_edge("polish", END)
    return graph


async def run(
    url: str, thread: str, chat: Any, *, capture: bool = True, rerun: dict[str, Any] | None = None
) -> Any:
    async with open_checkpointer(url) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()],
            metrics=Metrics(CollectorRegistry()),
            capture_content=capture,
        )
        app = build_observed_graph(
            qa_graph(chat),
            ops=replace(Ops.all_steps(telemetry=telemetry), degrade=None),  # as reruns run
            checkpointer=saver,
            name="qa",
        )
        try:
            if rerun is None:
                return await app.ainvoke(
                    {"question": "why?"}, {"configurable": {"thread_id": thread}}
                )
            original = original_of((await areplay(thread, url, with_state=False)).runs)
            return await arerun(app, thread, original, **rerun)
        finally:
            telemetry.shutdown()


async def nodes_of_latest_run(url: str, thread: str) -> list[str]:
    latest = (await areplay(thread, url, with_state=False)).runs[-1]
    return [s.name for s in latest.spans if "graphops.node" in s.attributes]


async def test_a_recorded_rerun_repeats_the_run_without_the_model(database: str) -> None:
    first = await run(database, "qa-1", ScriptedChatModel(respond=echo))
    assert first["answer"] == "echo polish: echo why?"
    stored = (await areplay("qa-1", database, with_state=False)).runs[0]
    recorded = RecordedChatModel.from_spans(stored.spans)
    assert recorded.outputs == {"write": ["echo why?"], "polish": ["echo polish: echo why?"]}
    result = await run(database, "qa-1", recorded, rerun={})
    assert result.state["answer"] == first["answer"]
    assert result.original_state["answer"] == first["answer"]
    assert result.fork.next == ("__start__",)
    latest = (await areplay("qa-1", database, with_state=False)).runs[-1]
    assert latest.trace_id != stored.trace_id
    root = next(s for s in latest.spans if s.parent_span_id is None)
    assert root.attributes["graphops.replay_of"] == stored.trace_id
    providers = {
        s.attributes.get("gen_ai.provider.name") for s in latest.spans if s.name.startswith("chat")
    }
    assert providers == {"recorded"}
    diff = dataclasses.replace(result, nodes=await nodes_of_latest_run(database, "qa-1")).diff()
    assert diff.splitlines()[0] == "answer: same"
    assert "nodes: same as the original from the fork" in diff


async def test_a_rerun_from_a_node_with_changed_state(database: str) -> None:
    await run(database, "qa-2", ScriptedChatModel(respond=echo))
    result = await run(
        database,
        "qa-2",
        ScriptedChatModel(respond=echo),
        rerun={"start": "polish", "updates": parse_updates(["draft=changed"])},
    )
    assert result.fork.next == ("polish",)
    assert result.state["answer"] == "echo polish: changed"
    nodes = await nodes_of_latest_run(database, "qa-2")
    # a re-run starts past the head: the tail writes its record, then the scope closes
    assert nodes == ["polish", "graphops_tail", "cache_store", "settle"]
    diff = dataclasses.replace(result, nodes=nodes).diff(keys=("answer",))
    assert diff.startswith("answer: changed")
    assert '+"echo polish: changed"' in diff
    assert "nodes: same as the original from the fork" in diff


async def test_rerun_misuse_and_missing_recordings(database: str) -> None:
    await run(database, "qa-3", ScriptedChatModel(respond=echo), capture=False)
    stored = (await areplay("qa-3", database, with_state=False)).runs[0]
    with pytest.raises(RunError, match="GRAPHOPS_CAPTURE_CONTENT=true"):
        RecordedChatModel.from_spans(stored.spans)
    with pytest.raises(InvalidInputError, match="--from 'nowhere' is neither a node"):
        await run(database, "qa-3", ScriptedChatModel(respond=echo), rerun={"start": "nowhere"})
    with pytest.raises(InvalidInputError, match="--set takes key=value"):
        parse_updates(["novalue"])
    assert parse_updates(["n=3", "s=text", 'j={"a": 1}']) == {"n": 3, "s": "text", "j": {"a": 1}}
    short = RecordedChatModel(outputs={"write": ["only one"]})
    with pytest.raises(RunError, match="the recording has 0 LLM call"):
        await run(database, "qa-3", short, rerun={})


async def test_choose_fork_on_an_empty_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    upgrade(url)
    async with open_checkpointer(url) as saver:
        app = build_observed_graph(
            qa_graph(ScriptedChatModel()), ops=Ops(telemetry=None), checkpointer=saver
        )
        with pytest.raises(InvalidInputError, match="has no checkpoints"):
            await choose_fork(app, "empty", None)


async def test_a_second_rerun_forks_the_original_run_not_the_first_rerun(database: str) -> None:
    await run(database, "qa-4", ScriptedChatModel(respond=echo))
    await run(
        database,
        "qa-4",
        ScriptedChatModel(respond=echo),
        rerun={"start": "polish", "updates": {"draft": "changed"}},
    )
    stored = (await areplay("qa-4", database, with_state=False)).runs
    original = original_of(stored)
    assert original.trace_id == stored[0].trace_id
    result = await run(
        database, "qa-4", RecordedChatModel.from_spans(original.spans), rerun={"start": "polish"}
    )
    assert result.state["answer"] == "echo polish: echo why?"  # the original's, recorded
    assert result.state["draft"] == "echo why?"  # forked from the original, not the first re-run


def prompt_text(instruction: str) -> str:
    return f"---\ndescription: polish\nvariables: [draft]\n---\n[user]\n{instruction}: {{draft}}\n"


async def test_a_rerun_pins_a_prompt_version_from_the_registry(database: str) -> None:
    registry = PromptRegistry(database)
    registry.publish("polish", prompt_text("polish"), author="ana")
    registry.publish("polish", prompt_text("shorten"), author="ana")
    registry.set_label("polish", "production", 1, actor="ana")
    prompts = RegistryPrompts(PromptLibrary(Path("/nonexistent")), registry)
    graph = qa_graph(ScriptedChatModel(respond=echo), prompts)

    async with open_checkpointer(database) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        app = build_observed_graph(graph, ops=Ops(telemetry=telemetry), checkpointer=saver)
        try:
            config: Any = {"configurable": {"thread_id": "qa-p"}}
            first = await app.ainvoke({"question": "why?"}, config)
            assert first["answer"] == "echo polish: echo why?"
            telemetry.force_flush()
            original = original_of((await areplay("qa-p", database, with_state=False)).runs)
            assert original.run is not None and original.run.prompts == ("polish@1",)
            pins: dict[str, Any] = {"start": "polish", "prompt_source": prompts}
            with pytest.raises(InvalidInputError, match="has no version 5"):
                await arerun(app, "qa-p", original, prompts={"polish": 5}, **pins)
            with pytest.raises(InvalidInputError, match="needs prompt_source="):
                await arerun(app, "qa-p", original, start="polish", prompts={"polish": 2})
            result = await arerun(app, "qa-p", original, prompts={"polish": 2}, **pins)
        finally:
            telemetry.shutdown()
    assert result.state["answer"] == "echo shorten: echo why?"
    runs = (await areplay("qa-p", database, with_state=False)).runs
    assert [r.run.prompts for r in runs if r.run is not None] == [("polish@1",), ("polish@2",)]
    diff = dataclasses.replace(result, prompts=("polish@2",)).diff(keys=("answer",))
    assert "prompts: polish@1 → polish@2" in diff
    with pytest.raises(InvalidInputError, match="--prompt takes NAME=VERSION"):
        parse_prompt_pins(["polish"])
    assert parse_prompt_pins(["polish=2", "write=staging"]) == {"polish": 2, "write": "staging"}
