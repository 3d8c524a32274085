"""Stale-if-error: a registry that stops answering serves the last good prompts, and says so.

The registry is a private SQLite file; "stops answering" is its folder moved away
(or the file overwritten) and the engine's pooled connections closed, so the next
connection really fails the way a lost disk or a damaged file does.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.db import engine_for, upgrade
from graphops.errors import InvalidInputError, RunError, StorageError
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from graphops.prompts import PromptLibrary, PromptRegistry, RegistryPrompts, aprompt

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Database:
    """A private SQLite registry that can be taken away and given back."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.folder = folder
        self.url = f"sqlite:///{folder / 'graphops.sqlite'}"
        upgrade(self.url)
        self.registry = PromptRegistry(self.url)

    def down(self) -> None:
        """The folder moved away and every pooled connection closed: nothing can open it."""
        self.folder.rename(self.folder.with_name("moved-away"))
        engine_for(self.url).dispose()

    def up(self) -> None:
        self.folder.with_name("moved-away").rename(self.folder)

    def damage(self) -> None:
        engine_for(self.url).dispose()
        with (self.folder / "graphops.sqlite").open("r+b") as f:
            f.write(b"not a database at all" * 8)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "db")
    yield database
    engine_for(database.url).dispose()


@pytest.fixture
def library(tmp_path: Path) -> PromptLibrary:
    return PromptLibrary(Path(shutil.copytree(ROOT / "prompts", tmp_path / "prompts")))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def stale_count(metrics: Metrics, prompt: str) -> float:
    value = metrics.registry.get_sample_value("graphops_prompt_stale_total", {"prompt": prompt})
    return value or 0.0


def edit(library: PromptLibrary, name: str, old: str, new: str) -> None:
    path = library.directory / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def source_for(
    library: PromptLibrary, db: Database, metrics: Metrics, clock: Clock, **kw: Any
) -> RegistryPrompts:
    return RegistryPrompts(
        library, db.registry, refresh_s=0, retry_s=5, metrics=metrics, clock=clock, **kw
    )


def test_the_last_good_version_is_served_when_the_registry_stops_answering(
    library: PromptLibrary, db: Database, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    db.registry.sync(library, author="ci", label="production")  # every prompt v1, labelled
    edit(library, "answer", "You answer", "You carefully answer")
    db.registry.sync(library, author="ci")  # answer v2, unlabelled
    source = source_for(library, db, metrics, Clock())
    fresh = source.resolve("answer")
    latest = source.resolve("answer", "latest")
    assert (fresh.ref, latest.ref, source.stale) == ("answer@1", "answer@2", False)

    db.down()
    caplog.set_level(logging.INFO, logger="graphops.prompts")
    served = source.resolve("answer")
    assert served == fresh  # the registry's v1, not the edited file
    assert served.version == 1 and "You carefully answer" not in served.text
    assert source.stale is True
    assert stale_count(metrics, "answer") == 1
    assert source.resolve("answer", "latest") == latest  # an explicit label: its last good copy
    assert source.resolve("answer").ref == "answer@1"
    assert stale_count(metrics, "answer") == 3  # once per stale resolution

    # one warning for the outage, however many lookups it serves stale
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "graphops.prompts"
    assert "cannot use the database" in warnings[0].getMessage()


def test_a_never_resolved_label_lookup_gets_the_file_and_an_explicit_ref_still_raises(
    library: PromptLibrary, db: Database, metrics: Metrics
) -> None:
    db.registry.sync(library, author="ci", label="production")
    edit(library, "answer", "You answer", "You carefully answer")
    db.registry.sync(library, author="ci")  # answer v2 exists in the registry
    source = source_for(library, db, metrics, Clock())
    assert source.resolve("answer").ref == "answer@1"
    assert source.resolve("answer", 1).ref == "answer@1"

    db.down()
    route = source.resolve("route")  # never resolved: the file this deployment ships
    assert route == library.get("route")
    assert route.version is None and route.ref == f"route@file:{route.content_hash}"
    assert stale_count(metrics, "route") == 1
    # a re-run pinned to a version or label it never fetched must not get another one
    with pytest.raises(StorageError, match="cannot use the database"):
        source.resolve("answer", 2)
    with pytest.raises(StorageError, match="cannot use the database"):
        source.resolve("route", "production")
    assert stale_count(metrics, "answer") == 0
    # a version fetched before is immutable: served from memory, not stale
    assert source.resolve("answer", 1).ref == "answer@1"
    assert stale_count(metrics, "answer") == 0


def test_while_down_the_registry_is_asked_at_most_once_per_retry_s(
    library: PromptLibrary,
    db: Database,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db.registry.sync(library, author="ci", label="production")
    clock = Clock()
    source = source_for(library, db, metrics, clock)
    asked: list[str] = []
    label_of = db.registry.label_of

    def counting(name: str, label: str) -> int | None:
        asked.append(name)
        return label_of(name, label)

    monkeypatch.setattr(db.registry, "label_of", counting)
    assert source.resolve("answer").ref == "answer@1"
    assert len(asked) == 1

    db.down()
    caplog.set_level(logging.INFO, logger="graphops.prompts")
    for _ in range(5):
        assert source.resolve("answer").ref == "answer@1"
    assert len(asked) == 2  # the failing lookup; then stale without asking
    clock.now += 4.9
    assert source.resolve("answer").ref == "answer@1"
    assert len(asked) == 2
    clock.now += 0.2  # retry_s passed: one more try, which fails
    assert source.resolve("answer").ref == "answer@1"
    assert source.resolve("answer").ref == "answer@1"
    assert len(asked) == 3 and source.stale

    db.up()
    assert source.resolve("answer").ref == "answer@1"
    assert source.stale  # back, but not asked again before retry_s
    assert len(asked) == 3
    clock.now += 5
    stale_before = stale_count(metrics, "answer")
    assert source.resolve("answer").ref == "answer@1"
    assert len(asked) == 4
    assert source.stale is False  # the first answer ends the outage
    assert stale_count(metrics, "answer") == stale_before
    assert source.resolve("answer").ref == "answer@1"
    assert len(asked) == 5  # fresh again: every lookup asks (refresh_s=0)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == [logging.WARNING, logging.INFO]
    assert "answers again" in levels[1][1]

    db.down()  # a second outage warns again
    assert source.resolve("answer").ref == "answer@1"
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 2


def test_recovery_serves_the_new_label_target(
    library: PromptLibrary, db: Database, metrics: Metrics
) -> None:
    db.registry.sync(library, author="ci", label="production")
    edit(library, "answer", "You answer", "You carefully answer")
    db.registry.sync(library, author="ci")
    clock = Clock()
    source = source_for(library, db, metrics, clock)
    assert source.resolve("answer").ref == "answer@1"
    db.down()
    assert source.resolve("answer").ref == "answer@1"
    assert source.stale
    db.up()
    db.registry.set_label("answer", "production", 2, actor="ci")  # moved during the outage
    clock.now += 5
    fresh = source.resolve("answer")
    assert fresh.ref == "answer@2" and "You carefully answer" in fresh.text
    assert source.stale is False


def test_a_damaged_database_is_an_outage_too(
    library: PromptLibrary, db: Database, metrics: Metrics
) -> None:
    db.registry.sync(library, author="ci", label="production")
    source = source_for(library, db, metrics, Clock())
    assert source.resolve("answer").ref == "answer@1"
    db.damage()
    assert source.resolve("answer").ref == "answer@1"
    assert source.stale and stale_count(metrics, "answer") == 1
    with pytest.raises(StorageError, match="damaged or not an SQLite database"):
        source.resolve("answer", "latest")


def test_a_missing_prompt_or_version_is_not_an_outage(
    library: PromptLibrary, db: Database, metrics: Metrics
) -> None:
    db.registry.sync(library, author="ci", label="production")
    source = source_for(library, db, metrics, Clock())
    assert source.resolve("answer").ref == "answer@1"
    with pytest.raises(InvalidInputError, match="has no version 9"):
        source.resolve("answer", 9)
    with pytest.raises(InvalidInputError, match="has no label 'staging'"):
        source.resolve("answer", "staging")
    assert source.stale is False
    assert stale_count(metrics, "answer") == 0


def test_a_registry_that_never_answered_still_raises(
    library: PromptLibrary, metrics: Metrics
) -> None:
    nowhere = PromptRegistry("postgresql://postgres@127.0.0.1:1/nowhere")
    source = RegistryPrompts(library, nowhere, metrics=metrics, clock=Clock())
    for _ in range(2):  # the second within retry_s: the same error, without asking again
        with pytest.raises(RunError, match=r"cannot reach the database at .*127\.0\.0\.1:1"):
            source.resolve("answer")
    assert source.stale is False
    assert stale_count(metrics, "answer") == 0


def test_the_default_metrics_are_made_only_when_needed(
    library: PromptLibrary, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphops.observe import metrics as metrics_module

    private = Metrics(CollectorRegistry())
    made: list[Metrics] = []

    def default() -> Metrics:
        made.append(private)
        return private

    monkeypatch.setattr(metrics_module, "default_metrics", default)
    db.registry.sync(library, author="ci", label="production")
    source = RegistryPrompts(library, db.registry, refresh_s=0)
    assert source.resolve("answer").ref == "answer@1"
    assert made == []
    db.down()
    assert source.resolve("answer").ref == "answer@1"
    assert source.resolve("answer").ref == "answer@1"
    assert made == [private]
    assert stale_count(private, "answer") == 2


class State(TypedDict, total=False):
    question: str
    prompt: str
    text: str


async def test_a_node_gets_the_stale_prompt_and_its_span_says_so(
    library: PromptLibrary, db: Database, metrics: Metrics, exporter: Any, telemetry: Telemetry
) -> None:
    db.registry.sync(library, author="ci", label="production")
    source = source_for(library, db, metrics, Clock())

    async def answer(state: State) -> State:
        template = await aprompt(source, "answer")  # resolved in a worker thread
        messages = await template.ainvoke({"context": "[1] cache keys", "question": "keys?"})
        return {"prompt": str(template.metadata), "text": messages.to_string()}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    app = build_observed_graph(graph, ops=Ops(telemetry=telemetry), name="stale_prompts")

    await app.ainvoke({"question": "keys?"})
    (node,) = [s for s in exporter.get_finished_spans() if s.name == "answer"]
    assert "graphops.prompt.stale" not in (node.attributes or {})
    assert [e.name for e in node.events if e.name == "graphops.prompt.stale"] == []

    db.down()
    exporter.clear()
    result = await app.ainvoke({"question": "keys?"})
    assert result["prompt"] == "{'graphops_prompt': 'answer@1'}"
    assert "You answer questions about graphops" in result["text"]
    (node,) = [s for s in exporter.get_finished_spans() if s.name == "answer"]
    assert node.attributes is not None
    assert node.attributes["graphops.prompt.stale"] is True
    assert list(node.attributes["graphops.prompts"]) == ["answer@1"]  # the true version
    (event,) = [e for e in node.events if e.name == "graphops.prompt.stale"]
    assert dict(event.attributes or {}) == {
        "graphops.prompt.name": "answer",
        "graphops.prompt.version": "1",
        "error.type": "StorageError",
    }
    assert stale_count(metrics, "answer") == 1
    # the run's own metrics are the telemetry's; the stale counter is the source's
    assert stale_count(telemetry.metrics, "answer") == 0
