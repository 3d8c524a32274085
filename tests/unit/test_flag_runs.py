"""Flags in runs: resolved once as a run starts, on its spans, and picking prompt versions."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.db import upgrade
from graphops.errors import StorageError, UserError
from graphops.flags.evaluate import evaluate
from graphops.flags.model import Flag
from graphops.flags.resolver import Flags
from graphops.flags.store_memory import MemoryFlagStore
from graphops.models import ScriptedChatModel
from graphops.observe import Telemetry
from graphops.observe.metrics import Metrics
from graphops.policies import CachePolicy, Ops
from graphops.prompts import PromptLibrary, PromptRegistry, RegistryPrompts, aprompt
from graphops.runtime import run_scope

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


class State(TypedDict, total=False):
    question: str
    answer: str
    version: str


@pytest.fixture
def source(tmp_path: Path) -> RegistryPrompts:
    """The reference prompts as v1 (production), and ``answer`` v2 published unlabelled."""
    prompts = Path(shutil.copytree(ROOT / "prompts", tmp_path / "prompts"))
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    upgrade(url)
    registry = PromptRegistry(url)
    library = PromptLibrary(prompts)
    registry.sync(library, author="ci", label="production")
    path = prompts / "answer.md"
    path.write_text(path.read_text().replace("You answer", "You carefully answer"))
    registry.sync(library, author="ci")
    return RegistryPrompts(library, registry)


def _telemetry() -> tuple[Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Telemetry(
        exporters=[SimpleSpanProcessor(exporter)], metrics=Metrics(CollectorRegistry())
    ), exporter


def _graph(source: RegistryPrompts, flags: Flags, telemetry: Telemetry, **ops: Any) -> Any:
    model = ScriptedChatModel(respond=lambda messages: "ok")

    async def answer(state: State, config: RunnableConfig) -> State:
        template = await aprompt(source, "answer", config)
        scope = run_scope(config)
        assert scope is not None and set(scope.variants) <= {"answer"}
        await model.ainvoke("hello", config)
        return {"answer": "ok", "version": str((template.metadata or {}).get("graphops_prompt"))}

    return build_observed_graph(
        {"answer": answer},
        state_schema=State,
        ops=Ops(telemetry=telemetry, flags=flags, **ops),
        name="flagged",
    )


def _split() -> Flag:
    return Flag("answer", {"v1": 1, "v2": 2}, {"v1": 50, "v2": 50}, "v1")


async def test_each_user_gets_the_prompt_version_their_variant_names_on_every_span(
    source: RegistryPrompts,
) -> None:
    store = MemoryFlagStore()
    store.put(_split(), actor="test")
    telemetry, exporter = _telemetry()
    app = _graph(source, Flags(store, metrics=Metrics(CollectorRegistry())), telemetry)
    seen = set()
    for user in [f"user-{i}" for i in range(12)]:
        out = await app.ainvoke({"question": "q"}, {"metadata": {"user": user}})
        expected = evaluate(store.get("answer"), {"user": user})  # type: ignore[arg-type]
        assert out["version"] == f"answer@{expected.value}", user
        seen.add(expected.variant)
    assert seen == {"v1", "v2"}  # both variants served
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 12
    for root in roots:
        [label] = root.attributes["graphops.variant"]  # type: ignore[index]
        assert label in ("answer=v1", "answer=v2")
        mine = [s for s in spans if s.context.trace_id == root.context.trace_id]
        assert {s.name for s in mine} >= {"answer", "chat scripted"}, {s.name for s in mine}
        assert all(s.attributes["graphops.variant"] == (label,) for s in mine)  # every span
    per_variant = {
        v: telemetry.metrics.registry.get_sample_value(
            "graphops_variant_runs_total",
            {"graph": "flagged", "flag": "answer", "variant": v, "status": "ok"},
        )
        for v in ("v1", "v2")
    }
    assert sum(per_variant.values()) == 12 and all(per_variant.values())  # type: ignore[arg-type]


async def test_the_cache_keys_on_the_version_the_flag_gave(source: RegistryPrompts) -> None:
    """Two users on two variants never share a cached answer."""
    store = MemoryFlagStore()
    store.put(_split(), actor="test")
    flags = Flags(store, metrics=Metrics(CollectorRegistry()))
    cache = CachePolicy(prompts=source, prompt_names=("answer",))
    app = _graph(source, flags, None, cache=cache)  # type: ignore[arg-type]
    users = [f"user-{i}" for i in range(12)]
    by_variant: dict[str, list[str]] = {}
    for user in users:
        variant = evaluate(store.get("answer"), {"user": user}).variant  # type: ignore[arg-type]
        by_variant.setdefault(variant, []).append(user)
    one, two = by_variant["v1"][0], by_variant["v2"][0]
    await app.ainvoke({"question": "same question"}, {"metadata": {"user": one}})
    await cache.drain()
    hit = await app.ainvoke(
        {"question": "same question"}, {"metadata": {"user": by_variant["v1"][1]}}
    )
    assert hit["graphops"]["cache"]["hit"]
    other = await app.ainvoke({"question": "same question"}, {"metadata": {"user": two}})
    assert not other["graphops"]["cache"]["hit"] and other["version"] == "answer@2"


async def test_a_flag_store_that_never_answered_leaves_runs_on_the_label(
    source: RegistryPrompts, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(MemoryFlagStore):
        def all(self) -> dict[str, Flag]:
            raise StorageError("the flag database is not answering")

    app = _graph(source, Flags(Down(), metrics=Metrics(CollectorRegistry())), None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="graphops.runtime"):
        out = await app.ainvoke({"question": "q"}, {"metadata": {"user": "ana"}})
    assert out["version"] == "answer@1"  # production
    assert "no flag variants" in caplog.text


async def test_a_flag_value_that_is_no_version_is_ignored_with_a_warning(
    source: RegistryPrompts, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryFlagStore()
    store.put(Flag("answer", {"big": {"model": "x"}}, {"big": 100}, "big"), actor="test")
    app = _graph(source, Flags(store, metrics=Metrics(CollectorRegistry())), None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="graphops.prompts"):
        out = await app.ainvoke({"question": "q"}, {"metadata": {"user": "ana"}})
    assert out["version"] == "answer@1" and "no version or label" in caplog.text


def test_ops_flags_must_be_a_resolver() -> None:
    with pytest.raises(UserError, match=r"Ops\.flags takes"):
        build_observed_graph({"a": lambda s: s}, state_schema=State, ops=Ops(flags={"answer": 1}))  # type: ignore[arg-type]
