"""The flag store contract, on the memory store and the SQL store on SQLite and Postgres.

:class:`TestFlagStoreContract` runs on :class:`MemoryFlagStore`, on
:class:`SqlFlagStore` over a SQLite file and over a private Postgres database of
its own (:func:`tests.integration.support.private_database`: skipped when Postgres
does not answer, failed instead when ``CI`` is set). The tests after it are the
SQL store's own: what SQL cannot keep, failures of the database, writers racing
from several processes, and migration 0004 going down and up again.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, inspect, select, text

from graphops.db import current, downgrade, engine_for, prepare_url, upgrade
from graphops.db.schema import flag_variants, flags, prompt_audit
from graphops.errors import ConflictError, InvalidInputError, RunError, StorageError
from graphops.flags.model import Flag, Rule
from graphops.flags.store import FlagStore
from graphops.flags.store_memory import MemoryFlagStore
from graphops.flags.store_sql import SqlFlagStore
from graphops.prompts import PromptRegistry
from tests.integration.support import ROOT, private_database

POSTGRES = pytest.param("postgres", marks=pytest.mark.integration)
VALUES: dict[str, Any] = {
    "zeta": "prompt:answer@3",  # the variants' order is not alphabetical: it must be kept
    "alpha": {"model": "openai:gpt-4o", "temperature": 0.25, "stop": ["\n", "'; --"]},
    "mid": {"nested": {"deeper": [1, 2.5, None, True, {"k": "Grüße ✓"}]}, "empty": {}},
    "num": -17,
    "big": 2**53 + 1,
    "tiny": 1e-300,
    "flt": 1.0,
    "nul": "a\x00b \ud800 ' \" \\",  # JSON escapes NULs and lone surrogates: stored as sent
}


def flag(name: str = "prompt.answer", **fields: Any) -> Flag:
    """A flag with every kind of JSON value, two weights, two rules; any field may be given."""
    defaults: dict[str, Any] = {
        "variants": VALUES,
        "weights": {"zeta": 90, "mid": 10},  # the others have no weight at all
        "default": "zeta",
        "rules": (
            Rule("tenant", ("acme", "x'; DROP TABLE graphops_flags; --"), "alpha"),
            Rule("plan", ("pro",), "mid", op="equals", percent=12.5),
        ),
        "sticky_by": ("tenant", "user"),
        "description": "which answer prompt runs; 'quoted', \"double\", ünïcode",
    }
    return Flag(name, **{**defaults, **fields})


@contextmanager
def _sqlite(tmp_path: Path) -> Iterator[str]:
    """A SQLite file at graphops' newest schema, made on first use as graphops' factory does."""
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    try:
        yield prepare_url(url)
    finally:
        engine_for(url).dispose()


@contextmanager
def _postgres(prefix: str = "graphops_flags") -> Iterator[str]:
    """A private Postgres database at graphops' newest schema, dropped afterwards."""
    with private_database(prefix) as (_, name):
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        yield url


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The database under the store (None: the memory store)."""
    if request.param == "memory":
        yield None
        return
    with _sqlite(tmp_path) if request.param == "sqlite" else _postgres() as found:
        yield found


@pytest.fixture
def store(url: str | None) -> FlagStore:
    return MemoryFlagStore() if url is None else SqlFlagStore(url)


@pytest.fixture(params=["sqlite", POSTGRES])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at graphops' newest schema: a SQLite file, then a private Postgres."""
    with _sqlite(tmp_path) if request.param == "sqlite" else _postgres() as found:
        yield found


BAD_NAMES = [
    "x'; DROP TABLE graphops_flags; --",
    "a\x00b",
    "A",
    "",
    "a" * 65,
    "prompt answer",
    "-leading",
    "naïve",
    None,
    7,
]


class TestFlagStoreContract:
    """What every :class:`~graphops.flags.store.FlagStore` does."""

    def test_is_a_flag_store(self, store: FlagStore) -> None:
        assert isinstance(store, FlagStore)

    def test_get_returns_what_put_stored(self, store: FlagStore) -> None:
        assert store.get("prompt.answer") is None
        stored = store.put(flag(), actor="ana")
        assert stored == replace(flag(), version=1)
        found = store.get("prompt.answer")
        assert found == stored
        assert found is not None
        assert list(found.variants) == list(VALUES)  # in the order given
        assert found.split == ("zeta", "mid")
        assert dict(found.weights) == {"zeta": 90, "mid": 10}  # no weight is not weight 0
        assert found.rules == flag().rules
        assert found.sticky_by == ("tenant", "user")
        assert found.description == flag().description
        assert store.get("prompt.other") is None

    def test_json_values_come_back_as_they_went_in(self, store: FlagStore) -> None:
        store.put(flag(), actor="ana")
        found = store.get("prompt.answer")
        assert found is not None
        assert dict(found.variants) == VALUES
        for name, value in VALUES.items():
            assert type(found.variants[name]) is type(value), name
        assert found.variants["big"] == 2**53 + 1  # not through a double
        assert math.isclose(found.variants["tiny"], 1e-300)

    def test_rules_keep_their_order_values_and_percent(self, store: FlagStore) -> None:
        rules = tuple(
            Rule("tenant", (f"t{n}", "a'b"), "alpha", percent=n * 7.5) for n in range(1, 12)
        )
        store.put(flag(rules=rules), actor="ana")
        found = store.get("prompt.answer")
        assert found is not None and found.rules == rules
        store.put(flag(rules=()), actor="ana")  # a replaced flag keeps none of its old rules
        found = store.get("prompt.answer")
        assert found is not None and found.rules == ()

    def test_a_replaced_flag_keeps_none_of_its_old_variants(self, store: FlagStore) -> None:
        store.put(flag(), actor="ana")
        smaller = Flag("prompt.answer", {"b": 2, "a": 1}, {"a": 50, "b": 50}, "b")
        assert store.put(smaller, actor="bob") == replace(smaller, version=2)
        assert store.get("prompt.answer") == replace(smaller, version=2)
        found = store.get("prompt.answer")
        assert found is not None and list(found.variants) == ["b", "a"]

    def test_killed_and_revived(self, store: FlagStore) -> None:
        store.put(flag(), actor="ana")
        killed = store.put(replace(flag(), killed=True), actor="oncall", action="kill")
        assert killed.killed and killed.version == 2
        assert store.get("prompt.answer") == killed
        revived = store.put(flag(), actor="oncall", action="revive", expected=2)
        assert not revived.killed and store.get("prompt.answer") == revived

    def test_every_put_bumps_the_version(self, store: FlagStore) -> None:
        assert [store.put(flag(), actor="ana").version for _ in range(3)] == [1, 2, 3]
        assert store.put(flag("prompt.other"), actor="ana").version == 1  # per flag
        assert store.put(flag(), actor="ana", expected=3).version == 4
        found = store.get("prompt.answer")
        assert found is not None and found.version == 4
        # the version a flag carries in is ignored: the store's counts
        assert store.put(replace(flag(), version=40), actor="ana").version == 5

    def test_an_expected_version_that_moved_is_a_conflict_and_changes_nothing(
        self, store: FlagStore
    ) -> None:
        with pytest.raises(ConflictError, match="at version 0, not 1"):
            store.put(flag(), actor="ana", expected=1)
        assert store.get("prompt.answer") is None and store.history() == []
        first = store.put(flag(), actor="ana", expected=0)
        changed = replace(flag(), killed=True, description="changed")
        for stale in (0, 2, 7):
            with pytest.raises(ConflictError, match=f"at version 1, not {stale}"):
                store.put(changed, actor="bob", expected=stale, detail={"why": "stale"})
        assert store.get("prompt.answer") == first
        assert store.all() == {"prompt.answer": first}
        assert [c.version for c in store.history()] == [1]
        assert store.put(changed, actor="bob", expected=1).version == 2

    def test_history_is_complete_and_newest_first(self, store: FlagStore) -> None:
        puts = [
            ("prompt.answer", "ana", "set", {}),
            ("model.chat", "bob", "set", {"ticket": "OPS-1"}),
            ("prompt.answer", "controller", "rollout-advance", {"from": 5, "to": 25}),
            ("prompt.answer", "oncall", "kill", {"reason": "errors up", "nested": {"n": [1]}}),
            ("model.chat", "ana", "set", {}),
        ]
        before = time.time_ns()
        for name, actor, action, detail in puts:
            store.put(flag(name), actor=actor, action=action, detail=detail)
        changes = store.history()
        assert [(c.flag, c.actor, c.action, c.detail) for c in changes] == [
            (name, actor, action, {"flag": flag(name).as_json(), **detail})
            for name, actor, action, detail in reversed(puts)
        ]
        assert [c.version for c in changes] == [2, 3, 2, 1, 1]
        assert before <= changes[-1].at_ns <= changes[0].at_ns <= time.time_ns()
        mine = store.history("prompt.answer")
        assert [(c.action, c.version) for c in mine] == [
            ("kill", 3),
            ("rollout-advance", 2),
            ("set", 1),
        ]
        assert [c.action for c in store.history("prompt.answer", limit=2)] == [
            "kill",
            "rollout-advance",
        ]
        assert store.history(limit=1) == changes[:1]
        assert store.history(limit=0) == []
        assert store.history("prompt.never") == []

    def test_all_reads_every_flag(self, store: FlagStore) -> None:
        assert store.all() == {}
        names = ["prompt.answer", "model.chat", "retrieval.k"]
        stored = {name: store.put(flag(name), actor="ana") for name in names}
        stored["model.chat"] = store.put(replace(flag("model.chat"), killed=True), actor="ana")
        assert store.all() == stored
        assert {name: store.get(name) for name in names} == stored

    @pytest.mark.parametrize("bad", BAD_NAMES)
    def test_a_name_that_is_not_a_name_is_refused_and_nothing_is_touched(
        self, store: FlagStore, url: str | None, bad: Any
    ) -> None:
        kept = store.put(flag(), actor="ana")
        with pytest.raises(InvalidInputError, match="is not a flag name"):
            store.get(bad)
        if bad is not None:  # history(None) is every flag's
            with pytest.raises(InvalidInputError, match="is not a flag name"):
                store.history(bad)
        with pytest.raises(InvalidInputError, match="is not a flag name"):
            flag(bad)
        assert store.all() == {"prompt.answer": kept}
        assert len(store.history()) == 1
        if url is not None:
            tables = set(inspect(engine_for(url)).get_table_names())
            assert {"graphops_flags", "graphops_flag_variants", "graphops_flag_rules"} <= tables

    def test_concurrent_puts_are_each_a_version(self, store: FlagStore) -> None:
        start = threading.Barrier(8)
        versions: list[int] = []

        def put(n: int) -> None:
            start.wait()
            for _ in range(3):
                versions.append(store.put(flag(), actor=f"t{n}").version)

        threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(versions) == list(range(1, 25))
        assert [c.version for c in store.history(limit=100)] == list(range(24, 0, -1))

    def test_of_writers_expecting_one_version_one_wins(self, store: FlagStore) -> None:
        store.put(flag(), actor="ana")
        start = threading.Barrier(6)
        outcomes: list[str] = []

        def put(n: int) -> None:
            start.wait()
            try:
                store.put(flag(), actor=f"t{n}", expected=1)
                outcomes.append(f"t{n}")
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=put, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [o for o in outcomes if o != "conflict"]
        assert len(winners) == 1 and outcomes.count("conflict") == 5
        assert [(c.actor, c.version) for c in store.history()] == [(winners[0], 2), ("ana", 1)]


# ------------------------------------------------------------ the SQL store's own


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"action": "a" * 17}, "is not a flag action"),
        ({"action": ""}, "is not a flag action"),
        ({"action": "Kill"}, "is not a flag action"),
        ({"action": "kill'; DROP TABLE graphops_prompt_audit; --"}, "is not a flag action"),
        ({"action": None}, "is not a flag action"),
        ({"actor": "an\x00a"}, "actor cannot contain a NUL"),
        ({"actor": "\ud800"}, "actor is not valid Unicode"),
        ({"actor": None}, "actor is text"),
        ({"expected": -1}, "expected is the version"),
        ({"expected": True}, "expected is the version"),
        ({"detail": {"when": object()}}, "detail is not JSON"),
        ({"detail": {"ratio": math.nan}}, "detail is not JSON"),
    ],
)
def test_what_sql_cannot_keep_is_refused_before_anything_is_written(
    sql_url: str, fields: dict[str, Any], match: str
) -> None:
    store = SqlFlagStore(sql_url)
    with pytest.raises(InvalidInputError, match=match):
        store.put(flag(), **{"actor": "ana", **fields})
    with pytest.raises(InvalidInputError, match="description cannot contain a NUL"):
        store.put(flag(description="a\x00b"), actor="ana")
    forged = flag()
    object.__setattr__(forged, "name", "x'; DROP TABLE graphops_flags; --")  # past the model
    with pytest.raises(InvalidInputError, match="is not a flag name"):
        store.put(forged, actor="ana")
    with pytest.raises(InvalidInputError, match="history limit"):
        store.history(limit=-1)
    assert store.all() == {} and store.history() == []
    assert store.put(flag(), actor="ana", action="a" * 16).version == 1  # as long as it may be


def test_flag_changes_are_their_own_kind_in_the_shared_audit_log(sql_url: str) -> None:
    store = SqlFlagStore(sql_url)
    registry = PromptRegistry(sql_url)
    prompt = "---\ndescription: test\nvariables: [question]\n---\n[user]\nAnswer {question}.\n"
    registry.publish("answer", prompt, author="ana")
    store.put(flag("answer"), actor="bob")  # a flag and a prompt of the same name
    store.put(flag("answer"), actor="bob", action="kill")
    registry.publish("answer", prompt + "Briefly.\n", author="ana")
    registry.set_label("answer", "production", 1, actor="ana")
    registry.set_label("answer", "production", 2, actor="ana")
    assert [e.action for e in registry.audit()] == ["label", "label", "publish", "publish"]
    assert [e.action for e in registry.audit("answer")] == ["label", "label", "publish", "publish"]
    assert registry.rollback("answer", actor="ana") == 1  # its stack holds only its rows
    assert [(c.action, c.version) for c in store.history("answer")] == [("kill", 2), ("set", 1)]
    query = select(
        prompt_audit.c.kind, prompt_audit.c.label, prompt_audit.c.version, prompt_audit.c.previous
    ).order_by(prompt_audit.c.id)
    with engine_for(sql_url).connect() as connection:
        rows = [tuple(row) for row in connection.execute(query)]
    assert rows == [
        ("prompt", None, 1, None),
        ("flag", None, 1, None),
        ("flag", None, 2, 1),
        ("prompt", None, 2, None),
        ("prompt", "production", 1, None),
        ("prompt", "production", 2, 1),
        ("prompt", "production", 1, 2),
    ]


def test_an_unreachable_postgres_is_a_run_error_without_its_password() -> None:
    """As graphops names it everywhere (docs/errors.md): a RunError, not a StorageError."""
    store = SqlFlagStore("postgresql://nobody:s3cret@127.0.0.1:1/none")
    calls = [
        lambda: store.get("prompt.answer"),
        store.all,
        lambda: store.put(flag(), actor="ana"),
        store.history,
    ]
    for call in calls:
        with pytest.raises(
            RunError, match=r"cannot reach the database at postgresql://nobody:\*\*\*@"
        ) as raised:
            call()
        assert type(raised.value) is RunError
        assert "s3cret" not in str(raised.value)
        assert "SELECT" not in str(raised.value) and "INSERT" not in str(raised.value)


def test_a_damaged_sqlite_file_is_a_storage_error_and_stays_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "graphops.sqlite"
    path.write_bytes(b"this is not a database, " * 400)
    store = SqlFlagStore(f"sqlite:///{path}")
    for call in (lambda: store.get("prompt.answer"), store.all, store.history):
        with pytest.raises(StorageError, match="damaged or not an SQLite database"):
            call()
    with pytest.raises(StorageError, match="damaged or not an SQLite database"):
        store.put(flag(), actor="ana")
    assert path.read_bytes() == b"this is not a database, " * 400


def test_a_database_without_the_flag_tables_is_a_storage_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    store = SqlFlagStore(url)
    with pytest.raises(StorageError, match=r"flag store in the database at sqlite:///.*no such"):
        store.all()
    with pytest.raises(StorageError, match="no such table"):
        store.put(flag(), actor="ana")
    engine_for(url).dispose()


def test_rows_no_graphops_wrote_are_a_storage_error(sql_url: str) -> None:
    store = SqlFlagStore(sql_url)
    store.put(flag(), actor="ana")
    with engine_for(sql_url).begin() as connection:
        connection.execute(flag_variants.update().values(weight=None))  # weights sum to 0
    with pytest.raises(StorageError, match=r"'prompt\.answer' in the database .* cannot be read"):
        store.all()


RACES = 5
RACER = f"""
import pathlib, sys, time
from graphops.errors import ConflictError
from graphops.flags.model import Flag
from graphops.flags.store_sql import SqlFlagStore

url, folder, n = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
store = SqlFlagStore(url)
store.get("warm-up")  # connected and imported before the first start
print("ready", flush=True)
for race in range({RACES}):
    while not (folder / f"go-{{race}}").exists():
        time.sleep(0.0005)
    try:
        flag = Flag(f"race-{{race}}", {{"a": n}}, {{"a": 100}}, "a")
        store.put(flag, actor="p" + n, expected=0)
        print("won", flush=True)
    except ConflictError:
        print("conflict", flush=True)
"""


def test_of_processes_creating_one_flag_exactly_one_wins(sql_url: str, tmp_path: Path) -> None:
    """Four processes create the same new flag at the same moment, five times over."""
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, sql_url, str(tmp_path), str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        outcomes: list[list[str]] = [[] for _ in range(RACES)]
        for racer in racers:
            assert racer.stdout is not None
            if racer.stdout.readline() != "ready\n":
                pytest.fail(f"a racer did not start: {racer.communicate(timeout=60)[1]}")
        for race in range(RACES):
            (tmp_path / f"go-{race}").touch()
            for racer in racers:
                assert racer.stdout is not None
                outcomes[race].append(racer.stdout.readline().strip())
        for racer in racers:
            assert racer.wait(timeout=60) == 0, racer.communicate()[1]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    store = SqlFlagStore(sql_url)
    for race, said in enumerate(outcomes):
        assert sorted(said) == ["conflict", "conflict", "conflict", "won"], said
        winner = str(said.index("won"))
        found = store.get(f"race-{race}")
        assert found is not None and found.version == 1 and dict(found.variants) == {"a": winner}
        assert [(c.actor, c.version) for c in store.history(f"race-{race}")] == [(f"p{winner}", 1)]


@pytest.mark.integration
@pytest.mark.parametrize(("expected", "version"), [(0, None), (None, 2)])
def test_a_put_that_loses_the_insert_race_on_postgres(
    expected: int | None, version: int | None
) -> None:
    """The other writer's row appears after this put's read: its insert hits the primary key."""
    with _postgres("graphops_flags_race") as url:
        store = SqlFlagStore(url)
        engine = engine_for(url)
        outcome: list[object] = []

        def put() -> None:
            try:
                outcome.append(store.put(flag(), actor="late", expected=expected))
            except Exception as exc:  # the assertions below say what it was
                outcome.append(exc)

        with engine.connect() as other:
            other.begin()
            row = {"default_variant": "zeta", "sticky_by": '["user"]', "killed": False}
            row.update(description="", version=1, updated_ns=1, updated_by="early")
            other.execute(insert(flags).values(name="prompt.answer", **row))
            other.execute(
                insert(flag_variants).values(
                    flag="prompt.answer", name="zeta", position=0, value_json='"z"', weight=100
                )
            )
            late = threading.Thread(target=put)
            late.start()
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            deadline = time.monotonic() + 30
            # autocommit: a transaction would read pg_stat_activity once and keep that snapshot
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
                while not watcher.execute(waiting).scalar_one():  # blocked on our row
                    assert late.is_alive(), f"the put ended before its insert: {outcome}"
                    assert time.monotonic() < deadline, "the put never reached the insert"
                    time.sleep(0.01)
            other.commit()
        late.join(timeout=30)
        (result,) = outcome
        found = store.get("prompt.answer")
        assert found is not None
        if version is None:
            assert isinstance(result, ConflictError), result
            assert "created by another writer at the same time, not at version 0" in str(result)
            assert found.version == 1 and dict(found.variants) == {"zeta": "z"}
            assert store.history() == []  # nothing of the loser's
        else:
            assert result == replace(flag(), version=2) == found, result
            assert [(c.actor, c.version) for c in store.history()] == [("late", 2)]


@pytest.mark.parametrize("backend", ["sqlite", POSTGRES])
def test_migration_0004_goes_down_and_up_again(backend: str, tmp_path: Path) -> None:
    database = _sqlite(tmp_path) if backend == "sqlite" else _postgres("graphops_flags_migrate")
    with database as url:
        assert current(url) == "0005"
        downgrade(url)  # the rollouts (0005) first: this test is about 0004
        assert current(url) == "0004"
        registry = PromptRegistry(url)
        prompt = "---\ndescription: test\nvariables: [question]\n---\n[user]\n{question}\n"
        registry.publish("answer", prompt, author="ana")
        SqlFlagStore(url).put(flag(), actor="bob")
        downgrade(url)  # one step: the flags go, the prompt registry and its log stay
        assert current(url) == "0003"
        engine = engine_for(url)
        tables = set(inspect(engine).get_table_names())
        assert not {"graphops_flags", "graphops_flag_variants", "graphops_flag_rules"} & tables
        assert "kind" not in {c["name"] for c in inspect(engine).get_columns(prompt_audit.name)}
        with engine.connect() as connection:
            left = connection.execute(text("SELECT action, name FROM graphops_prompt_audit"))
            assert [tuple(row) for row in left] == [("publish", "answer")]  # no flag row left
        upgrade(url)
        assert current(url) == "0005"
        store = SqlFlagStore(url)
        assert store.all() == {} and store.history() == []
        assert [(e.action, e.version) for e in registry.audit()] == [("publish", 1)]
        assert store.put(flag(), actor="bob").version == 1
        downgrade(url, "base")
        assert current(url) is None
        upgrade(url)
        assert current(url) == "0005" and SqlFlagStore(url).all() == {}
