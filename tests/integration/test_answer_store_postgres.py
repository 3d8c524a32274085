"""The answer store contract on the real Postgres, and a Postgres that does not answer.

Each test gets a database of its own (:func:`tests.integration.support.private_database`),
migrated by ``graphops db upgrade``'s own code.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphops.cache.factory import answer_store
from graphops.cache.store import AnswerStore
from graphops.cache.store_sql import SqlAnswerStore
from graphops.db import upgrade
from graphops.errors import ConfigurationError, RunError
from graphops.settings import Settings
from tests.integration.support import private_database
from tests.unit.test_answer_store import (
    NOW,
    TestAnswerStoreContract,
    entry,
    test_a_bounded_store_evicts_the_oldest_stored_first,
)

pytestmark = pytest.mark.integration

__all__ = ["TestAnswerStoreContract", "test_a_bounded_store_evicts_the_oldest_stored_first"]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A private database at graphops' newest schema."""
    with private_database("graphops_cache") as (_, name):
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        yield url


@pytest.fixture
def store(postgres: str) -> AnswerStore:
    return SqlAnswerStore(postgres)


@pytest.fixture
def bounded(postgres: str) -> AnswerStore:
    return SqlAnswerStore(postgres, max_entries=3)


def test_concurrent_puts_of_one_key_leave_one_entry_and_its_own_documents(
    store: AnswerStore,
) -> None:
    start = threading.Barrier(8)

    def put(n: int) -> None:
        start.wait()
        for _ in range(5):
            store.put(entry("k1", values={"answer": str(n)}, docs=(f"docs/{n}.md",)))

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = store.get("k1", NOW)
    assert found is not None
    assert found.docs == (f"docs/{found.values['answer']}.md",)
    assert store.stats(NOW).docs == 1  # no document of a replaced version left behind
    assert store.purge(docs=list(found.docs)) == ["k1"]


def test_the_factory_refuses_a_postgres_without_the_cache_tables(tmp_path: Path) -> None:
    with private_database("graphops_cache_bare") as (_, name):
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        settings = Settings(data_dir=tmp_path, database_url=url)
        with pytest.raises(ConfigurationError, match="run 'graphops db upgrade'"):
            answer_store(settings)
        upgrade(url)
        answer_store(settings).put(entry("k1"))
        assert answer_store(settings).get("k1", NOW) == entry("k1")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def test_an_unreachable_postgres_is_a_run_error_naming_it_without_its_password() -> None:
    url = f"postgresql://cache:s3cret@127.0.0.1:{closed_port()}/graphops"
    store = SqlAnswerStore(url)
    calls = [
        lambda: store.get("k1", NOW),
        lambda: store.put(entry("k1")),
        lambda: store.purge(tenant="acme"),
        lambda: store.stats(NOW),
    ]
    for call in calls:
        with pytest.raises(
            RunError, match=r"cannot reach the database at postgresql://cache:\*\*\*@"
        ) as raised:
            call()
        assert "s3cret" not in str(raised.value)
        assert "SELECT" not in str(raised.value) and "INSERT" not in str(raised.value)
