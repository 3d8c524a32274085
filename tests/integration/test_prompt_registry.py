"""The SQL prompt registry on SQLite and the real Postgres: versions, labels, rollback, audit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from graphops.db import engine_for
from graphops.db.schema import metadata
from graphops.errors import ConfigurationError, InvalidInputError
from graphops.prompts import PromptLibrary, PromptRegistry
from tests.integration.support import ROOT


def text(body: str = "Answer {question}.") -> str:
    return f"---\ndescription: test\nvariables: [question]\n---\n[user]\n{body}\n"


def test_the_migrations_make_exactly_the_tables_the_code_declares(database: str) -> None:
    with engine_for(database).connect() as connection:
        # graphops' tables only: LangGraph's checkpoint tables share the database
        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": lambda name, kind, _parent: (
                    kind != "table"
                    or (name.startswith("graphops_") and name != "graphops_alembic_version")
                )
            },
        )
        assert compare_metadata(context, metadata) == []


def test_versions_are_numbered_immutable_and_deduplicated(database: str) -> None:
    registry = PromptRegistry(database)
    first = registry.publish("answer", text(), author="ana", message="first")
    assert (first.version, first.author, first.message) == (1, "ana", "first")
    assert registry.publish("answer", text(), author="bob").version == 1  # same text: same version
    second = registry.publish("answer", text("Reply to {question}."), author="bob")
    assert second.version == 2
    assert registry.publish("answer", text(), author="cy").version == 1  # old text is still v1
    assert [v.version for v in registry.versions("answer")] == [1, 2]
    assert registry.get("answer").version == 2  # latest
    assert registry.get("answer", "latest").text == second.text
    assert registry.get("answer", 1).prompt().ref == "answer@1"
    assert registry.names() == ["answer"]
    assert [e.action for e in registry.audit("answer")] == ["publish", "publish"]


def test_a_broken_template_never_becomes_a_version(database: str) -> None:
    registry = PromptRegistry(database)
    with pytest.raises(ConfigurationError, match="declares variables"):
        registry.publish("answer", text("Answer {questoin}."), author="ana")
    assert registry.names() == []
    assert registry.audit() == []


def test_unknown_names_versions_and_labels_are_clear_errors(database: str) -> None:
    registry = PromptRegistry(database)
    with pytest.raises(InvalidInputError, match="no prompt 'answer' in the registry"):
        registry.get("answer")
    registry.publish("answer", text(), author="ana")
    with pytest.raises(InvalidInputError, match=r"has no version 7 \(latest: 1\)"):
        registry.get("answer", 7)
    with pytest.raises(InvalidInputError, match=r"has no label 'production' \(labels: none\)"):
        registry.get("answer", "production")
    with pytest.raises(InvalidInputError, match="versions start at 1"):
        registry.get("answer", 0)
    with pytest.raises(InvalidInputError, match="not a prompt name"):
        registry.get("../answer")
    with pytest.raises(InvalidInputError, match="neither a version number nor a label"):
        registry.get("answer", "Prod uction")
    with pytest.raises(InvalidInputError, match="has no version 3"):
        registry.set_label("answer", "production", 3, actor="ana")
    with pytest.raises(InvalidInputError, match="cannot be moved"):
        registry.set_label("answer", "latest", 1, actor="ana")
    assert registry.labels("answer") == {}


def test_labels_move_and_roll_back_through_the_audit_log(database: str) -> None:
    registry = PromptRegistry(database)
    for body in ("A {question}", "B {question}", "C {question}"):
        registry.publish("answer", text(body), author="ana")
    registry.set_label("answer", "production", 1, actor="ana")
    registry.set_label("answer", "production", 2, actor="bob")
    registry.set_label("answer", "production", 2, actor="bob")  # no move: not audited
    registry.set_label("answer", "production", 3, actor="cy")
    registry.set_label("answer", "staging", 3, actor="cy")
    assert registry.labels("answer") == {"production": 3, "staging": 3}
    assert registry.get("answer", "production").version == 3

    assert registry.rollback("answer", actor="dee") == 2
    assert registry.rollback("answer", actor="dee") == 1
    with pytest.raises(InvalidInputError, match="points at v1 and has no earlier version"):
        registry.rollback("answer", actor="dee")
    with pytest.raises(InvalidInputError, match="points at nothing"):
        registry.rollback("answer", "canary", actor="dee")
    assert registry.label_of("answer", "production") == 1
    assert registry.label_of("answer", "staging") == 3  # other labels are untouched

    moves = [
        (e.action, e.actor, e.label, e.version, e.previous)
        for e in registry.audit("answer")
        if e.action != "publish"
    ]
    assert moves == [
        ("rollback", "dee", "production", 1, 2),
        ("rollback", "dee", "production", 2, 3),
        ("label", "cy", "staging", 3, None),
        ("label", "cy", "production", 3, 2),
        ("label", "bob", "production", 2, 1),
        ("label", "ana", "production", 1, None),
    ]
    # a move after rollbacks is a new top of the stack: rolling back returns to v1
    registry.set_label("answer", "production", 3, actor="ed")
    assert registry.rollback("answer", actor="ed") == 1


def test_sync_publishes_the_files_once_and_can_label_them(database: str, tmp_path: Path) -> None:
    registry = PromptRegistry(database)
    library = PromptLibrary(ROOT / "prompts")
    first = registry.sync(library, author="ci", label="production")
    assert sorted(v.name for v, new in first if new) == library.names()
    assert all(registry.label_of(name, "production") == 1 for name in library.names())
    again = registry.sync(library, author="ci", label="production")
    assert not any(new for _, new in again)
    assert len(registry.audit(limit=1000)) == 2 * len(library.names())  # publish + label each

    broken = tmp_path / "prompts"
    broken.mkdir()
    (broken / "good.md").write_text(text(), encoding="utf-8")
    (broken / "bad.md").write_text("no front matter", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="front matter"):
        registry.sync(PromptLibrary(broken), author="ci")
    assert "good" not in registry.names()  # one broken file publishes nothing


def test_concurrent_publishers_get_distinct_numbers(database: str) -> None:
    registry = PromptRegistry(database)
    errors: list[BaseException] = []
    numbers: list[int] = []
    lock = threading.Lock()

    def publish(i: int) -> None:
        try:
            version = registry.publish("answer", text(f"Variant {i}: {{question}}"), author="t")
            with lock:
                numbers.append(version.version)
        except BaseException as exc:  # collected, so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, 9))


def test_concurrent_rollbacks_each_go_back_one_move(database: str) -> None:
    registry = PromptRegistry(database)
    for i in range(1, 6):
        registry.publish("answer", text(f"V{i} {{question}}"), author="ana")
        registry.set_label("answer", "production", i, actor="ana")
    errors: list[BaseException] = []
    targets: list[int] = []
    lock = threading.Lock()

    def rollback() -> None:
        try:
            target = registry.rollback("answer", actor="t")
            with lock:
                targets.append(target)
        except BaseException as exc:  # collected, so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=rollback) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(targets) == [2, 3, 4]  # 5 → 4 → 3 → 2, never twice from the same version
    assert registry.label_of("answer", "production") == 2
    rollbacks = [
        (e.previous, e.version) for e in registry.audit("answer") if e.action == "rollback"
    ]
    assert sorted(rollbacks) == [(3, 2), (4, 3), (5, 4)]
