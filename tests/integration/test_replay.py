"""Replay and retention on the span-storing checkpointer, SQLite and Postgres."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import graphops
from graphops.builder import build_observed_graph
from graphops.checkpoint import SqlSpanStore
from graphops.checkpoint.replay import areplay
from graphops.checkpoint.retention import prune
from graphops.checkpoint.savers import open_checkpointer
from graphops.db import upgrade
from graphops.errors import InvalidInputError, RunError
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from tests.integration.support import notes_graph

pytestmark = pytest.mark.anyio


async def run_thread(url: str, thread: str, texts: list[str]) -> None:
    async with open_checkpointer(url) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        app = build_observed_graph(
            notes_graph(), ops=Ops.all_steps(telemetry=telemetry), checkpointer=saver, name="notes"
        )
        for text in texts:
            await app.ainvoke(
                {"text": text}, {"configurable": {"thread_id": thread}, "metadata": {"user": "ann"}}
            )
        telemetry.shutdown()


async def test_replay_shows_every_run_and_the_state_after_each_step(database: str) -> None:
    await run_thread(database, "notes-1", ["  Hello World ", "One two THREE"])
    stored = await areplay("notes-1", database)
    assert len(stored.runs) == 2
    assert all(run.status == "ok" and run.run is not None for run in stored.runs)
    first = stored.runs[0]
    names = [s.name for s in first.spans]
    assert names[0] == "invoke_agent notes"
    assert {"guard", "cache_lookup", "clean", "count", "cache_store", "settle"} <= set(names)
    assert first.run is not None and first.run.user == "ann"

    first_clean = next(s for s in stored.steps if s.nodes == ("clean",))
    first_count = next(s for s in stored.steps if s.nodes == ("count",))
    assert first_clean.changes == {"text": "hello world"}
    assert first_count.changes == {"words": 2}
    assert [s.changes.get("words") for s in stored.steps if s.nodes == ("count",)] == [2, 3]
    assert len({s.checkpoint_id for s in stored.steps}) == len(stored.steps)

    text = stored.render()
    assert text.startswith("thread notes-1: 2 run(s)")
    assert "├─ clean" in text and "└─ settle" in text
    assert "clean                       text='hello world'" in text
    page = stored.html()
    assert page.startswith("<!doctype html>") and page.count("<h2>run ") == 2
    assert ">count</td>" in page


async def test_the_python_api_and_bad_thread_ids(database: str) -> None:
    await run_thread(database, "notes-2", ["a b"])
    replayed = await graphops.checkpoint.replay.areplay("notes-2", database, with_state=False)
    assert replayed.steps == [] and len(replayed.runs) == 1
    with pytest.raises(InvalidInputError, match="no stored run for thread 'missing'"):
        await areplay("missing", database)


async def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    upgrade(url)
    await run_thread(url, "notes-3", ["x y"])
    with sqlite3.connect(tmp_path / "graphops.sqlite") as connection:
        connection.execute("UPDATE checkpoints SET type = 'nonsense', checkpoint = x'00ff'")
    with pytest.raises(RunError, match="a checkpoint of thread notes-3 is unreadable"):
        await areplay("notes-3", url)


async def test_prune_deletes_old_threads_with_their_checkpoints(database: str) -> None:
    await run_thread(database, "old-thread", ["a"])
    await run_thread(database, "new-thread", ["b"])
    store = SqlSpanStore(database)
    cutoff = min(r.started_ns for r in store.runs() if r.thread_id == "new-thread")
    threads, spans = await prune(database, cutoff)
    assert threads == 1 and spans > 0
    assert store.traces("old-thread") == []
    assert store.traces("new-thread")
    async with open_checkpointer(database) as saver:
        assert [c async for c in saver.alist({"configurable": {"thread_id": "old-thread"}})] == []
        assert [c async for c in saver.alist({"configurable": {"thread_id": "new-thread"}})]
    assert await prune(database, time.time_ns() - 10**12) == (0, 0)


async def test_deleting_a_thread_deletes_its_spans_too(database: str) -> None:
    await run_thread(database, "doomed", ["a b", "c"])
    await run_thread(database, "kept", ["d"])
    store = SqlSpanStore(database)
    assert len(store.traces("doomed")) == 2
    async with open_checkpointer(database) as saver:
        await saver.adelete_thread("doomed")
        assert [c async for c in saver.alist({"configurable": {"thread_id": "doomed"}})] == []
        assert [c async for c in saver.alist({"configurable": {"thread_id": "kept"}})]
    assert store.traces("doomed") == []
    assert store.traces("kept")
