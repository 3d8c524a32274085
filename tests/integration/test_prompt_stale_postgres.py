"""Stale-if-error on the real Postgres: a database that stops answering mid-run.

The test makes its own database, then cuts it off the way an outage does: its
connections terminated and new ones refused (``ALLOW_CONNECTIONS false``). The
shared server and every other database on it are left alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from graphops.db import upgrade
from graphops.errors import RunError
from graphops.observe import Metrics
from graphops.prompts import PromptLibrary, PromptRegistry, RegistryPrompts
from tests.integration.support import ROOT, private_database


class Outage:
    """A private Postgres database this test may cut off and restore."""

    def __init__(self, admin: psycopg.Connection[tuple[object, ...]], name: str) -> None:
        self.admin = admin
        self.name = name
        self.url = f"postgresql://postgres@127.0.0.1:5432/{name}"

    def start(self) -> int:
        """Refuse new connections, then end the open ones; how many were ended."""
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        row = self.admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.name,),
        ).fetchone()
        assert row is not None
        return int(str(row[0]))

    def end(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def outage() -> Iterator[Outage]:
    with private_database("graphops_stale") as (admin, name):
        yield Outage(admin, name)


def test_a_database_that_stops_answering_serves_stale_then_fresh(
    outage: Outage, tmp_path: Path
) -> None:
    upgrade(outage.url)
    registry = PromptRegistry(outage.url)
    library = PromptLibrary(Path(shutil.copytree(ROOT / "prompts", tmp_path / "prompts")))
    registry.sync(library, author="ci", label="production")  # every prompt v1
    answer = library.directory / "answer.md"
    answer.write_text(
        answer.read_text(encoding="utf-8").replace("You answer", "You carefully answer"),
        encoding="utf-8",
    )
    registry.sync(library, author="ci")  # answer v2, unlabelled
    metrics = Metrics(CollectorRegistry())
    source = RegistryPrompts(library, registry, refresh_s=0, retry_s=0, metrics=metrics)
    fresh = source.resolve("answer")
    assert (fresh.ref, source.stale) == ("answer@1", False)

    assert outage.start() >= 1  # the pooled connection the lookups used
    served = source.resolve("answer")  # no exception: the last good version
    assert served == fresh and served.version == 1
    assert source.stale is True
    assert source.resolve("grade").ref.startswith("grade@file:")  # never resolved: the file
    with pytest.raises(RunError, match="not currently accepting connections"):
        source.resolve("answer", 2)  # a version it never fetched: no substitute
    assert (
        metrics.registry.get_sample_value("graphops_prompt_stale_total", {"prompt": "answer"}) == 1
    )

    outage.end()
    assert source.resolve("answer").ref == "answer@1"
    assert source.stale is False
    assert source.resolve("answer", 2).ref == "answer@2"
    assert source.resolve("grade").ref == "grade@1"  # fresh: the registry's number again
    assert (
        metrics.registry.get_sample_value("graphops_prompt_stale_total", {"prompt": "answer"}) == 1
    )
