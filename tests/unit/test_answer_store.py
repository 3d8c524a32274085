"""The answer store contract, on the in-memory store and the SQL store on a SQLite file.

:class:`TestAnswerStoreContract` takes its ``store`` from the module it runs in:
here the memory store and SQLite; ``tests/integration/test_answer_store_postgres.py``
runs the same class on Postgres.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphops.cache.store import AnswerStore, CacheEntry, Observation, StoreStats
from graphops.cache.store_memory import MemoryAnswerStore
from graphops.cache.store_sql import SqlAnswerStore
from graphops.db import engine_for, prepare_url
from graphops.errors import ConfigurationError, InvalidInputError, RunError, StorageError

NOW = 1_000_000.0


def entry(key: str, **fields: Any) -> CacheEntry:
    """An entry under ``key``; any field may be given."""
    defaults: dict[str, Any] = {
        "partition": "p1",
        "tenant": "acme",
        "question": f"question {key}?",
        "values": {"answer": f"answer {key}", "sources": [{"id": "docs/a.md#0"}]},
        "docs": ("docs/a.md",),
        "corpus": "c1",
        "created": NOW - 10,
        "expires": None,
        "tokens": 42,
    }
    return CacheEntry(key, **{**defaults, **fields})


def sql_store(tmp_path: Path, **options: Any) -> Iterator[SqlAnswerStore]:
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    store = SqlAnswerStore(prepare_url(url), **options)
    yield store
    engine_for(url).dispose()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnswerStore]:
    if request.param == "memory":
        yield MemoryAnswerStore()
    else:
        yield from sql_store(tmp_path)


@pytest.fixture(params=["memory", "sqlite"])
def bounded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnswerStore]:
    """A store that keeps at most three entries."""
    if request.param == "memory":
        yield MemoryAnswerStore(max_entries=3)
    else:
        yield from sql_store(tmp_path, max_entries=3)


class TestAnswerStoreContract:
    """What every :class:`~graphops.cache.store.AnswerStore` does."""

    def test_is_an_answer_store(self, store: AnswerStore) -> None:
        assert isinstance(store, AnswerStore)

    def test_get_returns_what_put_stored(self, store: AnswerStore) -> None:
        assert store.get("k1", NOW) is None
        stored = entry(
            "k1",
            tenant=None,
            values={"answer": "Grüße ✓", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}},
            docs=("docs/a.md", "https://example.com/b"),
            corpus=None,
            expires=NOW + 60,
            tokens=0,
        )
        store.put(stored)
        assert store.get("k1", NOW) == stored
        assert store.get("k2", NOW) is None

    def test_put_replaces_the_entry_its_documents_and_its_feedback(
        self, store: AnswerStore
    ) -> None:
        store.put(entry("k1", docs=("docs/old.md",)))
        store.observe("k1", Observation(0.9, True))
        store.put(entry("k1", values={"answer": "new"}, docs=("docs/new.md",)))
        found = store.get("k1", NOW)
        assert found is not None and found.values == {"answer": "new"}
        assert store.observations("k1") == []
        assert store.purge(docs=["docs/old.md"]) == []
        assert store.stats(NOW).docs == 1
        assert store.purge(docs=["docs/new.md"]) == ["k1"]

    def test_an_entry_expires_at_its_expiry(self, store: AnswerStore) -> None:
        store.put(entry("k1", expires=NOW + 10))
        store.put(entry("k2"))
        assert store.get("k1", NOW + 9.999) is not None
        assert store.get("k1", NOW + 10) is None
        assert store.get("k2", NOW + 1e9) is not None
        assert store.stats(NOW + 10) == StoreStats(1, 1, {"acme": 1}, 1)

    def test_purge_by_tenant(self, store: AnswerStore) -> None:
        store.put(entry("k1", tenant="acme"))
        store.put(entry("k2", tenant="globex"))
        store.put(entry("k3", tenant=None))
        assert store.purge(tenant="globex") == ["k2"]
        assert store.get("k2", NOW) is None
        assert {k for k in ("k1", "k3") if store.get(k, NOW)} == {"k1", "k3"}

    def test_purge_by_documents_takes_any_entry_citing_any_of_them(
        self, store: AnswerStore
    ) -> None:
        store.put(entry("k1", docs=("docs/a.md", "docs/b.md")))
        store.put(entry("k2", docs=("docs/b.md",)))
        store.put(entry("k3", docs=("docs/c.md",)))
        store.put(entry("k4", docs=()))
        assert sorted(store.purge(docs=["docs/b.md", "docs/nowhere.md"])) == ["k1", "k2"]
        assert store.purge(docs=[]) == []
        assert store.purge(docs=["docs/a.md"]) == []  # gone with k1: the index is clean
        assert store.stats(NOW).docs == 1
        assert sorted(store.purge()) == ["k3", "k4"]

    def test_purge_expired(self, store: AnswerStore) -> None:
        store.put(entry("k1", expires=NOW - 1))
        store.put(entry("k2", expires=NOW))
        store.put(entry("k3", expires=NOW + 1))
        store.put(entry("k4", expires=None))
        assert sorted(store.purge(expired_before=NOW)) == ["k1", "k2"]
        assert store.stats(NOW) == StoreStats(2, 0, {"acme": 2}, 1)

    def test_purge_filters_combine_with_and(self, store: AnswerStore) -> None:
        store.put(entry("k1", tenant="acme", docs=("docs/a.md",), expires=NOW - 1))
        store.put(entry("k2", tenant="acme", docs=("docs/a.md",)))
        store.put(entry("k3", tenant="globex", docs=("docs/a.md",), expires=NOW - 1))
        store.put(entry("k4", tenant="acme", docs=("docs/b.md",), expires=NOW - 1))
        assert store.purge(tenant="acme", docs=["docs/a.md"], expired_before=NOW) == ["k1"]
        assert store.purge(tenant="globex", docs=["docs/b.md"]) == []
        assert store.purge(docs=["docs/a.md"], expired_before=NOW) == ["k3"]
        assert store.purge(tenant="acme", expired_before=NOW) == ["k4"]
        assert store.purge(tenant="nobody") == []
        assert store.purge() == ["k2"]
        assert store.stats(NOW) == StoreStats(0, 0, {}, 0)

    def test_stats_count_live_and_expired_per_tenant(self, store: AnswerStore) -> None:
        assert store.stats(NOW) == StoreStats(0, 0, {}, 0)
        store.put(entry("k1", tenant="acme", docs=("docs/a.md", "docs/b.md")))
        store.put(entry("k2", tenant="acme", docs=("docs/b.md",), expires=NOW + 5))
        store.put(entry("k3", tenant=None, docs=("docs/c.md",)))
        store.put(entry("k4", tenant="globex", docs=("docs/d.md",), expires=NOW - 5))
        assert store.stats(NOW) == StoreStats(3, 1, {"acme": 2, "-": 1}, 3)
        assert store.stats(NOW + 5) == StoreStats(2, 2, {"acme": 1, "-": 1}, 3)
        assert store.stats(NOW, tenant="acme") == StoreStats(2, 0, {"acme": 2}, 2)
        assert store.stats(NOW, tenant="globex") == StoreStats(0, 1, {}, 0)
        assert store.stats(NOW, tenant="nobody") == StoreStats(0, 0, {}, 0)

    def test_observations_are_kept_in_order_and_go_with_their_entry(
        self, store: AnswerStore
    ) -> None:
        store.put(entry("k1"))
        store.put(entry("k2"))
        seen = [Observation(0.91, True), Observation(0.875, False), Observation(0.93, True)]
        for observation in seen:
            store.observe("k1", observation)
        store.observe("k2", Observation(0.5, False))
        store.observe("absent", Observation(0.99, True))  # no entry: nothing to learn
        assert store.observations("k1") == seen
        assert store.observations("absent") == []
        assert store.purge(tenant="acme", docs=["docs/a.md"]) in (["k1", "k2"], ["k2", "k1"])
        assert store.observations("k1") == []
        assert store.observations("k2") == []
        store.put(entry("k1"))  # a new entry under the old key starts without feedback
        assert store.observations("k1") == []

    def test_purge_of_many_documents(self, store: AnswerStore) -> None:
        for n in range(520):  # more than one statement's worth of keys and documents
            store.put(entry(f"k{n}", docs=(f"docs/{n}.md",)))
        purged = store.purge(docs=[f"docs/{n}.md" for n in range(1, 520)])
        assert sorted(purged) == sorted(f"k{n}" for n in range(1, 520))
        assert store.stats(NOW) == StoreStats(1, 0, {"acme": 1}, 1)

    def test_duplicate_documents_are_indexed_once(self, store: AnswerStore) -> None:
        store.put(entry("k1", docs=("docs/a.md", "docs/a.md")))
        assert store.get("k1", NOW) == entry("k1", docs=("docs/a.md", "docs/a.md"))
        assert store.stats(NOW).docs == 1
        assert store.purge(docs=["docs/a.md", "docs/a.md"]) == ["k1"]


def test_a_bounded_store_evicts_the_oldest_stored_first(bounded: AnswerStore) -> None:
    for key in ("k1", "k2", "k3"):
        bounded.put(entry(key, docs=(f"docs/{key}.md",)))
    bounded.observe("k1", Observation(0.9, True))
    bounded.put(entry("k1", docs=("docs/k1.md",)))  # replaced: now the newest
    bounded.put(entry("k4", docs=("docs/k4.md",)))  # k2 is the oldest now
    assert [k for k in ("k1", "k2", "k3", "k4") if bounded.get(k, NOW)] == ["k1", "k3", "k4"]
    assert bounded.purge(docs=["docs/k2.md"]) == []  # its index went with it
    bounded.put(entry("k5"))
    bounded.put(entry("k6"))
    assert [k for k in ("k1", "k3", "k4", "k5", "k6") if bounded.get(k, NOW)] == [
        "k4",
        "k5",
        "k6",
    ]
    assert bounded.stats(NOW).entries == 3


@pytest.mark.parametrize("bound", [0, -1, 1.5, True, "3"])
def test_a_bound_must_be_a_whole_number(bound: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryAnswerStore(max_entries=bound)
    with pytest.raises(ConfigurationError, match="max_entries"):
        SqlAnswerStore(f"sqlite:///{tmp_path / 'x.sqlite'}", max_entries=bound)


def test_values_that_are_not_json_are_refused(tmp_path: Path) -> None:
    for store in sql_store(tmp_path):
        with pytest.raises(InvalidInputError, match="not JSON"):
            store.put(entry("k1", values={"when": object()}))
        assert store.get("k1", NOW) is None


def test_a_damaged_sqlite_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "graphops.sqlite"
    path.write_bytes(b"this is not a database, " * 400)
    store = SqlAnswerStore(f"sqlite:///{path}")
    with pytest.raises(StorageError, match="damaged or not an SQLite database"):
        store.get("k1", NOW)
    with pytest.raises(StorageError, match="damaged or not an SQLite database"):
        store.put(entry("k1"))
    assert path.read_bytes() == b"this is not a database, " * 400


def test_a_database_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    store = SqlAnswerStore(f"sqlite:///{tmp_path / 'file' / 'graphops.sqlite'}")
    with pytest.raises(StorageError, match="cannot use the database"):
        store.stats(NOW)
    with pytest.raises(StorageError, match="cannot use the database"):
        store.purge(tenant="acme")


def test_a_database_without_the_cache_tables_is_a_run_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    store = SqlAnswerStore(url)
    with pytest.raises(RunError, match="no such table: graphops_cache_entries"):
        store.get("k1", NOW)
    with pytest.raises(RunError, match="the answer cache in the database at sqlite:///"):
        store.observe("k1", Observation(0.9, True))
    engine_for(url).dispose()
