"""The span store and its migrations, on SQLite and on a real Postgres."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from langgraph.graph import END, START, StateGraph
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import inspect
from typing_extensions import TypedDict

from graphops.builder import build_observed_graph
from graphops.checkpoint import SqlSpanExporter, SqlSpanStore
from graphops.checkpoint.span_export import span_row
from graphops.db import current, downgrade, engine_for, head, require_current, upgrade
from graphops.errors import ConfigurationError, RunError
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from tests.integration.support import run_graphops


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like the conftest's, but empty: these tests run the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    downgrade(url, "base")  # every test starts from an empty schema
    return url


class Counter(TypedDict, total=False):
    n: int


def counting_graph() -> StateGraph[Counter]:
    def add(state: Counter) -> Counter:
        if state.get("n", 0) < 0:
            raise ValueError("negative")
        return {"n": state.get("n", 0) + 1}

    graph = StateGraph(Counter)
    graph.add_node("add", add)
    graph.add_edge(START, "add")
    graph.add_edge("add", END)
    return graph


def test_migrations_go_up_and_down(database: str) -> None:
    assert current(database) is None
    with pytest.raises(
        ConfigurationError, match="schema none, this graphops needs 0005: run 'graphops db upgrade'"
    ):
        require_current(database)
    upgrade(database)
    assert current(database) == head() == "0005"
    require_current(database)
    downgrade(database)  # one step: the rollouts go, the flags stay
    assert current(database) == "0004"
    tables = set(inspect(engine_for(database)).get_table_names())
    assert "graphops_flags" in tables and "graphops_rollouts" not in tables
    downgrade(database)  # one step: the flags go, the answer cache stays
    assert current(database) == "0003"
    tables = set(inspect(engine_for(database)).get_table_names())
    assert "graphops_cache_entries" in tables and "graphops_flags" not in tables
    downgrade(database)  # one step: the answer cache goes, the prompt registry stays
    assert current(database) == "0002"
    tables = set(inspect(engine_for(database)).get_table_names())
    assert "graphops_prompt_versions" in tables and "graphops_cache_entries" not in tables
    with pytest.raises(ConfigurationError, match="has graphops schema 0002, this graphops needs"):
        require_current(database)
    downgrade(database)  # one step: the prompt registry goes, the span store stays
    assert current(database) == "0001"
    tables = set(inspect(engine_for(database)).get_table_names())
    assert "graphops_spans" in tables and "graphops_prompt_versions" not in tables
    with pytest.raises(ConfigurationError, match="has graphops schema 0001, this graphops needs"):
        require_current(database)
    downgrade(database)
    assert current(database) is None
    upgrade(database)
    assert current(database) == "0005"


def test_runs_are_stored_span_by_span(database: str) -> None:
    upgrade(database)
    store = SqlSpanStore(database)
    memory = InMemorySpanExporter()
    telemetry = Telemetry(
        exporters=[SimpleSpanProcessor(memory), SqlSpanExporter(store)],
        metrics=Metrics(CollectorRegistry()),
    )
    # every step but the ladder: the failing run is stored as failed, not degraded
    ops = replace(Ops.all_steps(telemetry=telemetry), degrade=None)
    app = build_observed_graph(counting_graph(), ops=ops, name="counter")
    app.invoke({"n": 0}, {"configurable": {"thread_id": "th-1"}, "metadata": {"user": "ann"}})
    with pytest.raises(ValueError):
        app.invoke({"n": -5}, {"configurable": {"thread_id": "th-2"}})
    telemetry.shutdown()

    runs = store.runs()
    assert [(r.thread_id, r.status, r.graph) for r in runs] == [
        ("th-2", "error", "counter"),
        ("th-1", "ok", "counter"),
    ]
    assert [r.thread_id for r in store.runs(user="ann")] == ["th-1"]
    assert [r.thread_id for r in store.runs(status="error")] == ["th-2"]
    (trace_id,) = store.traces("th-1")
    stored = store.spans(trace_id)
    expected = [s for s in memory.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    assert sorted(r.name for r in stored) == sorted(s.name for s in expected)
    assert {r.span_id for r in stored} == {f"{s.context.span_id:016x}" for s in expected}
    root = next(r for r in stored if r.parent_span_id is None)
    assert root.attributes["graphops.user"] == "ann"
    assert all(
        r.parent_span_id == root.span_id for r in stored if r.name in ("guard", "add", "settle")
    )
    node = next(r for r in stored if r.name == "add")
    assert node.thread_id == "th-1"  # node spans carry the thread, for runs that never finish
    assert node.seconds > 0
    # the head's last step records where it sent the run, as a conditional edge would
    route = next(r for r in stored if r.name == "cache_lookup").events[0]
    assert route["name"] == "graphops.route"
    assert route["attributes"]["graphops.route.to"] == ["add"]
    assert route["attributes"]["graphops.route.by"] == "graphops_head"


def test_writing_the_same_spans_twice_keeps_one_copy(database: str) -> None:
    upgrade(database)
    store = SqlSpanStore(database)
    memory = InMemorySpanExporter()
    telemetry = Telemetry(
        exporters=[SimpleSpanProcessor(memory)], metrics=Metrics(CollectorRegistry())
    )
    build_observed_graph(counting_graph(), ops=Ops(telemetry=telemetry)).invoke({"n": 1})
    rows = [span_row(s) for s in memory.get_finished_spans()]
    store.write(rows)
    store.write(rows)
    assert len(store.spans(rows[0]["trace_id"])) == len(rows)


def test_prune_deletes_old_runs_only(database: str) -> None:
    upgrade(database)
    store = SqlSpanStore(database)
    memory = InMemorySpanExporter()
    telemetry = Telemetry(
        exporters=[SimpleSpanProcessor(memory)], metrics=Metrics(CollectorRegistry())
    )
    app = build_observed_graph(counting_graph(), ops=Ops(telemetry=telemetry))
    app.invoke({"n": 1}, {"configurable": {"thread_id": "old"}})
    old = [span_row(s) for s in memory.get_finished_spans()]
    memory.clear()
    app.invoke({"n": 1}, {"configurable": {"thread_id": "new"}})
    new = [span_row(s) for s in memory.get_finished_spans()]
    day = 86_400 * 10**9
    for row in old:  # pretend the first run is 40 days old
        row["start_ns"] -= 40 * day
        row["end_ns"] -= 40 * day
    store.write(old + new)
    assert store.prune(time.time_ns() - 30 * day) == len(old)
    assert [r.thread_id for r in store.runs()] == ["new"]


def test_unreachable_postgres_and_bad_urls_are_clear_errors() -> None:
    with pytest.raises(RunError, match="cannot reach the database at postgresql"):
        current("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(ConfigurationError, match="is not a database URL"):
        current("definitely not a url")
    with pytest.raises(ConfigurationError, match="supports sqlite and postgresql"):
        current("mysql://root@127.0.0.1/test")


def test_cli_db_and_runs(tmp_path: Path, postgres_url: str) -> None:
    downgrade(postgres_url, "base")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        env = {"GRAPHOPS_DATA_DIR": str(tmp_path), "GRAPHOPS_DATABASE_URL": postgres_url}
        return run_graphops(*argv, env=env)

    refused = run("runs")
    assert refused.returncode == 2
    assert "run 'graphops db upgrade'" in refused.stderr
    assert run("db", "current").stdout.strip() == "schema none (this graphops: 0005)"
    assert run("db", "upgrade").stdout.strip() == "schema 0005 (this graphops: 0005)"
    listed = run("runs", "--since", "1d")
    assert listed.returncode == 0
    assert listed.stdout.startswith("started (UTC)")
    bad = run("runs", "--since", "yesterday")
    assert bad.returncode == 2 and "is not a duration" in bad.stderr
