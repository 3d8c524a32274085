"""One start-up rule for graphops' database: SQLite is created on first use, else refused.

Cases 3 and 6 of issue 9: ``open_checkpointer`` on a new SQLite file used to drop
every span and leave ``areplay`` to fail on ``no such table``; a schema written by a
newer graphops was sent to ``db upgrade``, which crashed inside alembic.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.checkpoint.replay import areplay
from graphops.checkpoint.savers import open_checkpointer
from graphops.db import current, downgrade, engine_for, head, prepare_url
from graphops.errors import ConfigurationError
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from tests.integration.support import run_graphops


class Word(TypedDict, total=False):
    text: str


def shout_graph() -> StateGraph[Word]:
    def shout(state: Word) -> Word:
        return {"text": state["text"].upper()}

    graph = StateGraph(Word)
    graph.add_node("shout", shout)
    graph.add_edge(START, "shout")
    graph.add_edge("shout", END)
    return graph


def cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_graphops(*argv, env={"GRAPHOPS_DATA_DIR": str(tmp_path / "data"), **env})


@pytest.mark.anyio
async def test_open_checkpointer_creates_a_new_sqlite_database_and_keeps_every_span(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'runs.sqlite'}"  # neither the folder nor the file
    async with open_checkpointer(url) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        app = build_observed_graph(
            shout_graph(), ops=Ops(telemetry=telemetry), checkpointer=saver, name="shout"
        )
        await app.ainvoke({"text": "hi"}, {"configurable": {"thread_id": "t-new"}})
        telemetry.shutdown()
    assert current(url) == head()
    stored = await areplay("t-new", url)
    (run,) = stored.runs
    assert {"invoke_agent shout", "shout"} <= {s.name for s in run.spans}
    assert run.run is not None and run.status == "ok"


@pytest.mark.anyio
async def test_open_checkpointer_refuses_a_fresh_postgres_database_with_the_command(
    postgres_url: str,
) -> None:
    downgrade(postgres_url, "base")
    with pytest.raises(ConfigurationError) as refused:
        async with open_checkpointer(postgres_url):
            pass
    message = str(refused.value)
    assert "has graphops schema none" in message
    assert "run 'graphops db upgrade'" in message
    assert "postgresql://postgres@127.0.0.1:5432/graphops_test_" in message
    assert current(postgres_url) is None  # refused: nothing was created


def test_a_password_in_a_refused_url_is_hidden(postgres_url: str) -> None:
    downgrade(postgres_url, "base")
    with_password = postgres_url.replace("postgres@", "postgres:hunter2@")
    with pytest.raises(ConfigurationError) as refused:
        prepare_url(with_password)
    assert "hunter2" not in str(refused.value) and "***" in str(refused.value)


def test_the_cli_creates_a_new_sqlite_url_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    listed = cli(tmp_path, "runs", GRAPHOPS_DATABASE_URL=url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("started (UTC)")
    assert current(url) == head()
    replayed = cli(tmp_path, "replay", "nobody", GRAPHOPS_DATABASE_URL=url)
    assert replayed.returncode == 2
    assert replayed.stderr.startswith("graphops: error: no stored run for thread 'nobody'")


def _stamp(url: str, revision: str) -> None:
    with engine_for(url).begin() as connection:
        connection.execute(
            text("UPDATE graphops_alembic_version SET version_num = :r"), {"r": revision}
        )


def test_a_schema_written_by_a_newer_graphops_is_refused_with_both_versions(
    database: str, tmp_path: Path
) -> None:
    _stamp(database, "0099")
    try:
        _refused_everywhere(database, tmp_path)
    finally:
        _stamp(database, head())


def _refused_everywhere(database: str, tmp_path: Path) -> None:
    newer = (
        "was written by a newer graphops (schema 0099; this graphops "
        f"{_version()} knows schemas up to {head()}): upgrade graphops"
    )
    with pytest.raises(ConfigurationError, match=r"was written by a newer graphops \(schema 0099"):
        prepare_url(database)
    for argv in (["runs"], ["db", "upgrade"], ["prompts", "list"], ["replay", "t"], ["ask", "q"]):
        done = cli(tmp_path, *argv, GRAPHOPS_DATABASE_URL=database)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith("graphops: error: the database at ")
        assert newer in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    # db downgrade too, before it reads the steps it would undo
    down = cli(tmp_path, "db", "downgrade", "--yes", GRAPHOPS_DATABASE_URL=database)
    assert down.returncode == 2 and down.stderr.startswith("graphops: error: the database at ")
    assert newer in down.stderr
    assert down.stderr.count("\n") == 1
    assert current(database) == "0099"  # nothing was migrated
    shown = cli(tmp_path, "db", "current", GRAPHOPS_DATABASE_URL=database)
    assert shown.returncode == 0 and shown.stdout == f"schema 0099 (this graphops: {head()})\n"


def test_an_unknown_target_revision_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    done = cli(tmp_path, "db", "upgrade", "0042", GRAPHOPS_DATABASE_URL=url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("graphops: error: no schema revision '0042'")
    assert done.stderr.count("\n") == 1


def _version() -> str:
    from importlib.metadata import version

    return version("graphops")
