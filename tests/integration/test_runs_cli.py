"""``graphops runs`` and ``runs prune`` as a user runs them: real subprocesses, SQLite and Postgres.

Stored runs are made cheaply (a two-node graph of plain Python functions with the
span-storing checkpointer), then aged by moving their span times back.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from graphops.builder import build_observed_graph
from graphops.checkpoint import SqlSpanStore
from graphops.checkpoint.savers import open_checkpointer
from graphops.db import engine_for
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from tests.integration.support import graphops_on, notes_graph

pytestmark = pytest.mark.anyio

DAY = 86_400 * 10**9


async def record(url: str, thread: str, user: str, *, replay_of: str | None = None) -> str:
    """One finished run of the notes graph on ``thread``; returns its trace id."""
    before = set(SqlSpanStore(url).traces(thread))
    async with open_checkpointer(url) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        app = build_observed_graph(
            notes_graph(), ops=Ops.all_steps(telemetry=telemetry), checkpointer=saver, name="notes"
        )
        metadata = {"user": user, **({"replay_of": replay_of} if replay_of else {})}
        await app.ainvoke(
            {"text": f"words of {user}"},
            {"configurable": {"thread_id": thread}, "metadata": metadata},
        )
        telemetry.shutdown()
    (trace,) = set(SqlSpanStore(url).traces(thread)) - before
    return trace


def age(url: str, trace: str, days: int) -> None:
    """Pretend the run ``trace`` started ``days`` ago."""
    with engine_for(url).begin() as connection:
        connection.execute(
            text(
                "UPDATE graphops_spans SET start_ns = start_ns - :d, end_ns = end_ns - :d "
                "WHERE trace_id = :t"
            ),
            {"d": days * DAY, "t": trace},
        )


def span_count(url: str) -> int:
    with engine_for(url).connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM graphops_spans")).scalar_one())


def spans_of(url: str, trace: str) -> int:
    return len(SqlSpanStore(url).spans(trace))


async def checkpointed(url: str, threads: list[str]) -> list[str]:
    """Which of ``threads`` still have checkpoints."""
    kept = []
    async with open_checkpointer(url) as saver:
        for thread in threads:
            if [c async for c in saver.alist({"configurable": {"thread_id": thread}})]:
                kept.append(thread)
    return kept


THREADS = ["a1", "a2", "b1", "shared", "new1"]


async def test_prune_with_user_touches_only_that_users_runs(database: str, tmp_path: Path) -> None:
    old = {
        "a1": [await record(database, "a1", "u1"), await record(database, "a1", "u1")],
        "a2": [await record(database, "a2", "u1")],
        "b1": [await record(database, "b1", "u2")],
        "shared": [await record(database, "shared", "u1"), await record(database, "shared", "u2")],
    }
    for traces in old.values():
        for trace in traces:
            age(database, trace, 3)
    a2_new = await record(database, "a2", "u1")
    new1 = await record(database, "new1", "u1")
    total = span_count(database)
    doomed = [*old["a1"], old["a2"][0], old["shared"][0]]  # u1's runs older than a day
    doomed_spans = sum(spans_of(database, t) for t in doomed)

    refused = graphops_on(database, tmp_path, "runs", "prune", "--older-than", "1d", "--user", "u1")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("graphops: error: ") and "--yes" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert span_count(database) == total  # nothing deleted

    dry = graphops_on(
        database, tmp_path, "runs", "prune", "--older-than", "1d", "--user", "u1", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert f"4 run(s) of user u1 ({doomed_spans} span(s))" in dry.stdout
    assert "1 thread(s) with their checkpoints: a1" in dry.stdout
    assert "2 thread(s) keep their checkpoints" in dry.stdout and "a2, shared" in dry.stdout
    assert "dry run: nothing deleted" in dry.stdout
    assert span_count(database) == total
    assert await checkpointed(database, THREADS) == THREADS

    done = graphops_on(
        database, tmp_path, "runs", "prune", "--older-than", "1d", "--user", "u1", "--yes"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"deleted 1 thread(s) with their checkpoints, {doomed_spans} span(s)"
    )
    assert span_count(database) == total - doomed_spans
    store = SqlSpanStore(database)
    assert store.traces("a1") == []
    assert store.traces("a2") == [a2_new]
    assert store.traces("b1") == old["b1"]
    assert store.traces("shared") == [old["shared"][1]]  # u2's run stays
    assert store.traces("new1") == [new1]
    assert await checkpointed(database, THREADS) == ["a2", "b1", "shared", "new1"]

    # --thread: shared's last run (u2's) is old, so the whole thread goes now
    only = graphops_on(
        database, tmp_path, "runs", "prune", "--older-than", "1d", "--thread", "shared", "--yes"
    )
    assert only.returncode == 0, only.stderr
    assert only.stdout.splitlines()[-1].startswith("deleted 1 thread(s) with their checkpoints")
    assert store.traces("shared") == [] and store.traces("b1") == old["b1"]
    assert await checkpointed(database, THREADS) == ["a2", "b1", "new1"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("runs", "--older-than", "5d"), "--older-than is for 'graphops runs prune'"),
        (("runs", "--yes"), "--yes is for 'graphops runs prune'"),
        (("runs", "--dry-run"), "--dry-run is for 'graphops runs prune'"),
        (("runs", "prune", "--older-than", "1d", "--since", "2d"), "--since lists runs"),
        (("runs", "prune", "--older-than", "1d", "--limit", "3"), "--limit lists runs"),
        (("runs", "prune", "--older-than", "1d", "--status", "ok"), "--status lists runs"),
        (("runs", "--limit", "0"), "--limit: 0 is not a number of runs"),
        (("runs", "--limit", "-1"), "--limit: -1 is not a number of runs"),
        (("runs", "prune"), "runs prune needs --older-than"),
    ],
)
def test_flags_that_do_not_apply_are_refused(
    tmp_path: Path, argv: tuple[str, ...], fragment: str
) -> None:
    done = graphops_on(f"sqlite:///{tmp_path / 'g.sqlite'}", tmp_path, *argv)
    assert done.returncode == 2
    assert done.stderr.startswith("graphops: error: ") and done.stderr.count("\n") == 1
    assert fragment in done.stderr, done.stderr
    assert done.stdout == ""


async def test_runs_lists_unfinished_runs_and_marks_reruns(database: str, tmp_path: Path) -> None:
    first = await record(database, "done-1", "ann")
    rerun = await record(database, "done-1", "ann", replay_of=first)
    killed = await record(database, "killed-1", "bob")
    store = SqlSpanStore(database)
    # kill -9 mid-way leaves the node spans without the root (it never ended); the node
    # spans themselves name the run's user and graph
    with engine_for(database).begin() as connection:
        connection.execute(
            text("DELETE FROM graphops_spans WHERE trace_id = :t AND parent_span_id IS NULL"),
            {"t": killed},
        )
    assert store.spans(killed) and all(s.parent_span_id for s in store.spans(killed))
    other = await record(database, "other-1", "cy")

    listed = graphops_on(database, tmp_path, "runs")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "re-run of" in lines[0] and lines[0].endswith("prompts")
    assert [line.split()[2] for line in lines[1:]] == ["other-1", "killed-1", "done-1", "done-1"]
    killed_line = lines[2]
    assert " unfinished " in killed_line and " bob " in killed_line and " notes " in killed_line
    assert f"re-run of {first[:8]}" not in lines[4]
    assert f" {first[:8]} " in lines[3]  # the re-run names the run it replays
    assert " ok " in lines[3] and " ann " in lines[3]

    unfinished = graphops_on(database, tmp_path, "runs", "--status", "unfinished")
    assert [line.split()[2] for line in unfinished.stdout.splitlines()[1:]] == ["killed-1"]
    mine = graphops_on(database, tmp_path, "runs", "--user", "ann", "--limit", "1")
    assert [line.split()[2] for line in mine.stdout.splitlines()[1:]] == ["done-1"]
    assert f" {first[:8]} " in mine.stdout.splitlines()[1]
    by_thread = graphops_on(database, tmp_path, "runs", "--thread", "done-1")
    assert len(by_thread.stdout.splitlines()) == 3

    # an unfinished run is pruned like the others, by its first span's time
    age(database, killed, 3)
    pruned = graphops_on(database, tmp_path, "runs", "prune", "--older-than", "1d", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert "killed-1" in pruned.stdout
    assert store.traces("killed-1") == []
    assert store.traces("other-1") == [other] and store.traces("done-1") == [first, rerun]


def on_a_terminal(
    url: str, data: Path, answer: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    """``graphops`` with a pseudo-terminal as stdin, answering ``answer`` to its question."""
    leader, follower = os.openpty()
    try:
        os.write(leader, answer.encode() + b"\n")
        return graphops_on(url, data, *argv, stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)


async def test_on_a_terminal_prune_asks_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    graphops_on(url, tmp_path, "db", "upgrade")
    age(url, await record(url, "t-old", "ann"), 3)
    total = span_count(url)
    argv = ("runs", "prune", "--older-than", "1d")
    declined = on_a_terminal(url, tmp_path, "n", *argv)
    assert declined.returncode == 0, declined.stderr
    assert declined.stderr == "go ahead? [y/N] "
    assert "1 thread(s) with their checkpoints: t-old" in declined.stdout
    assert declined.stdout.endswith("cancelled: nothing deleted, nothing changed\n")
    assert span_count(url) == total and await checkpointed(url, ["t-old"]) == ["t-old"]
    accepted = on_a_terminal(url, tmp_path, "y", *argv)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.endswith(
        f"deleted 1 thread(s) with their checkpoints, {total} span(s)\n"
    )
    assert span_count(url) == 0 and await checkpointed(url, ["t-old"]) == []
