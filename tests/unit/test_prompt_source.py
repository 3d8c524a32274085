"""Which prompt version a run uses, and how spans and ``graphops runs`` record it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from graphops.builder import build_observed_graph
from graphops.corpus import CorpusRetriever
from graphops.db import upgrade
from graphops.errors import InvalidInputError
from graphops.models import HashEmbeddings, ScriptedChatModel
from graphops.observe import Telemetry
from graphops.policies import Ops
from graphops.prompts import (
    PromptLibrary,
    PromptRegistry,
    PromptSource,
    RegistryPrompts,
    aprompt,
    prompt_overrides,
)
from graphs.agentic_rag import RagDeps, build_agentic_rag
from tests.conftest import rag_replies

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """A copy of the reference prompts, free to edit."""
    return Path(shutil.copytree(ROOT / "prompts", tmp_path / "prompts"))


@pytest.fixture
def registry(tmp_path: Path) -> PromptRegistry:
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    upgrade(url)
    return PromptRegistry(url)


def edit(prompts_dir: Path, name: str, old: str, new: str) -> None:
    path = prompts_dir / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def two_versions(prompts_dir: Path, registry: PromptRegistry) -> PromptLibrary:
    """Every file synced as v1 with production on it, then ``answer`` v2 published unlabelled."""
    library = PromptLibrary(prompts_dir)
    registry.sync(library, author="ci", label="production")
    edit(prompts_dir, "answer", "You answer", "You carefully answer")
    registry.sync(library, author="ci")
    return library


def test_both_sources_satisfy_the_protocol(prompts_dir: Path, registry: PromptRegistry) -> None:
    assert isinstance(PromptLibrary(prompts_dir), PromptSource)
    assert isinstance(RegistryPrompts(PromptLibrary(prompts_dir), registry), PromptSource)


def test_files_alone_are_versioned_by_content_hash(prompts_dir: Path) -> None:
    library = PromptLibrary(prompts_dir)
    prompt = library.resolve("answer")
    assert prompt.ref == f"answer@file:{prompt.content_hash}"
    assert library.resolve("answer", f"file:{prompt.content_hash}") == prompt
    with pytest.raises(InvalidInputError, match="keep only their current text"):
        library.resolve("answer", 2)


def test_an_unlabelled_file_is_published_on_first_use(
    prompts_dir: Path, registry: PromptRegistry
) -> None:
    source = RegistryPrompts(PromptLibrary(prompts_dir), registry, author="app")
    assert source.resolve("answer").ref == "answer@1"
    assert source.resolve("answer").ref == "answer@1"  # the same text is not published again
    edit(prompts_dir, "answer", "You answer", "You carefully answer")
    assert source.resolve("answer").ref == "answer@2"
    assert [(e.action, e.actor, e.version) for e in registry.audit("answer")] == [
        ("publish", "app", 2),
        ("publish", "app", 1),
    ]


def test_a_label_pins_the_version_whatever_the_file_says(
    prompts_dir: Path, registry: PromptRegistry
) -> None:
    library = two_versions(prompts_dir, registry)  # production stays on v1
    source = RegistryPrompts(library, registry, refresh_s=0)
    assert source.resolve("answer").ref == "answer@1"
    registry.set_label("answer", "production", 2, actor="ci")
    assert source.resolve("answer").ref == "answer@2"  # a moved label: no restart needed
    registry.rollback("answer", actor="ci")
    assert source.resolve("answer").ref == "answer@1"
    assert source.resolve("answer", 2).ref == "answer@2"  # an explicit version wins
    assert source.resolve("answer", "latest").ref == "answer@2"
    staging = RegistryPrompts(library, registry, label="staging")
    assert staging.resolve("answer").ref == "answer@2"  # no staging label: the file


def test_label_lookups_are_cached_for_refresh_s(
    prompts_dir: Path, registry: PromptRegistry
) -> None:
    library = two_versions(prompts_dir, registry)
    source = RegistryPrompts(library, registry, refresh_s=3600)
    assert source.resolve("answer").ref == "answer@1"
    registry.set_label("answer", "production", 2, actor="ci")
    assert source.resolve("answer").ref == "answer@1"  # still cached


def test_overrides_come_from_the_run_config() -> None:
    config: dict[str, Any] = {
        "configurable": {"graphops_prompts": {"answer": "3", "route": "beta"}}
    }
    assert prompt_overrides(config) == {"answer": 3, "route": "beta"}
    assert prompt_overrides({}) == {}
    assert prompt_overrides() == {}  # outside a run
    with pytest.raises(InvalidInputError, match="must map prompt names to versions"):
        prompt_overrides({"configurable": {"graphops_prompts": ["answer=3"]}})
    with pytest.raises(InvalidInputError, match="not a prompt name"):
        prompt_overrides({"configurable": {"graphops_prompts": {"An swer": 3}}})


async def test_aprompt_tags_the_template_with_its_version(
    prompts_dir: Path, registry: PromptRegistry
) -> None:
    source = RegistryPrompts(PromptLibrary(prompts_dir), registry)
    template = await aprompt(source, "answer")
    assert template.metadata == {"graphops_prompt": "answer@1"}
    pinned = await aprompt(source, "answer", {"configurable": {"graphops_prompts": {"answer": 1}}})
    assert pinned.metadata == {"graphops_prompt": "answer@1"}
    with pytest.raises(InvalidInputError, match="has no version 9"):
        await aprompt(source, "answer", {"configurable": {"graphops_prompts": {"answer": 9}}})


def observed(
    telemetry: Telemetry, index_dir: Path, prompts: PromptSource, chat: ScriptedChatModel
) -> Any:
    retriever = CorpusRetriever(index_dir=index_dir, embeddings=HashEmbeddings(), k=2)
    deps = RagDeps(chat=chat, retriever=retriever, prompts=prompts, top_k=2)
    return build_observed_graph(
        build_agentic_rag(deps), ops=Ops(telemetry=telemetry), name="agentic_rag"
    )


async def test_spans_record_the_prompt_versions_each_node_and_call_used(
    telemetry: Telemetry,
    exporter: Any,
    index_dir: Path,
    prompts_dir: Path,
    registry: PromptRegistry,
) -> None:
    library = two_versions(prompts_dir, registry)
    chat = ScriptedChatModel(respond=rag_replies)
    app = observed(telemetry, index_dir, RegistryPrompts(library, registry), chat)

    await app.ainvoke({"question": "What are the cache keys?"})
    spans = list(exporter.get_finished_spans())
    (root,) = [s for s in spans if s.parent is None]
    assert list(root.attributes["graphops.run.prompts"]) == ["route@1", "grade@1", "answer@1"]
    by_name = {s.name: s for s in spans}
    assert list(by_name["generate_answer"].attributes["graphops.prompts"]) == ["answer@1"]
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert {
        (s.attributes["graphops.prompt.name"], s.attributes["graphops.prompt.version"])
        for s in calls
    } == {
        ("route", "1"),
        ("grade", "1"),
        ("answer", "1"),
    }

    exporter.clear()
    pinned = {"configurable": {"graphops_prompts": {"answer": 2}}}
    await app.ainvoke({"question": "What are the cache keys?"}, pinned)
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert list(root.attributes["graphops.run.prompts"]) == ["route@1", "grade@1", "answer@2"]
    answer_calls = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes and s.attributes.get("graphops.prompt.name") == "answer"
    ]
    assert answer_calls and all(
        s.attributes["graphops.prompt.version"] == "2" for s in answer_calls
    )
    # the pinned version's text is what the model was sent
    assert "You carefully answer" in chat.calls[-1][0].text


def test_a_registry_that_stops_answering_is_a_clear_run_error(prompts_dir: Path) -> None:
    from graphops.errors import RunError

    unreachable = PromptRegistry("postgresql://postgres:secret@127.0.0.1:1/nowhere")
    source = RegistryPrompts(PromptLibrary(prompts_dir), unreachable)
    with pytest.raises(
        RunError, match=r"cannot reach the database at .*127\.0\.0\.1:1/nowhere"
    ) as e:
        source.resolve("answer")
    assert "secret" not in str(e.value)
