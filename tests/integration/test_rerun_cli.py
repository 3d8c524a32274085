"""``graphops replay --rerun`` as a user runs it, on threads it must not or cannot re-run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.checkpoint import SqlSpanStore
from graphops.checkpoint.savers import open_checkpointer
from graphops.db import upgrade
from graphops.observe import Metrics, Telemetry
from graphops.policies import Ops
from graphops.settings import Settings
from tests.integration.support import graphops_for, notes_graph


async def notes_run(url: str, thread: str) -> None:
    async with open_checkpointer(url) as saver:
        telemetry = Telemetry(
            exporters=[saver.span_processor()], metrics=Metrics(CollectorRegistry())
        )
        app = build_observed_graph(
            notes_graph(), ops=Ops.all_steps(telemetry=telemetry), checkpointer=saver, name="notes"
        )
        await app.ainvoke({"text": " A b "}, {"configurable": {"thread_id": thread}})
        telemetry.shutdown()


async def checkpoints(url: str, thread: str) -> list[Any]:
    async with open_checkpointer(url) as saver:
        config: Any = {"configurable": {"thread_id": thread}}
        return [(c.checkpoint["id"], c.checkpoint) async for c in saver.alist(config)]


@pytest.mark.anyio
async def test_rerun_refuses_a_thread_another_graph_wrote(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    upgrade(url)
    await notes_run(url, "mine-1")
    before, traces = await checkpoints(url, "mine-1"), SqlSpanStore(url).traces("mine-1")
    env = {"GRAPHOPS_DATABASE_URL": url}

    refused = graphops_for(local_settings, "replay", "mine-1", "--rerun", **env)
    assert refused.returncode == 2, refused.stdout
    assert refused.stderr.startswith("graphops: error: thread 'mine-1' (run ")
    assert "was written by graph 'notes'" in refused.stderr
    assert "re-runs the reference graph (agentic_rag) only" in refused.stderr
    assert "graphops.checkpoint.rerun.arerun(app, thread_id, original)" in refused.stderr
    assert "name='notes'" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert await checkpoints(url, "mine-1") == before
    assert SqlSpanStore(url).traces("mine-1") == traces

    with sqlite3.connect(tmp_path / "g.sqlite") as connection:  # as if killed before it ended
        connection.execute("DELETE FROM graphops_spans WHERE parent_span_id IS NULL")
    unfinished = graphops_for(
        local_settings, "replay", "mine-1", "--rerun", "--from", "count", **env
    )
    assert unfinished.returncode == 2, unfinished.stdout
    assert "was written by graph 'notes'" in unfinished.stderr
    assert await checkpoints(url, "mine-1") == before


def test_rerun_after_a_small_talk_run(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    """--set of an unknown key is refused; a --set re-run leaves one run and says prompts: same."""
    env = {
        "GRAPHOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'g.sqlite'}",
        "GRAPHOPS_CAPTURE_CONTENT": "true",
    }
    assert graphops_for(local_settings, "db", "upgrade", **env).returncode == 0
    asked = graphops_for(local_settings, "ask", "--json", "--thread", "st-1", "hello!", **env)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["route"] == "respond"

    nokey = graphops_for(local_settings, "replay", "st-1", "--rerun", "--set", "nokey=1", **env)
    assert nokey.returncode == 2, nokey.stdout
    assert "the state has no key 'nokey'" in nokey.stderr and "question" in nokey.stderr

    edited = graphops_for(
        local_settings,
        "replay",
        "st-1",
        "--rerun",
        "--recorded",
        "--from",
        "generate_query_or_respond",
        "--set",
        "sources=[]",
        **env,
    )
    assert edited.returncode == 0, edited.stderr
    assert "prompts: same" in edited.stdout.splitlines()
    assert "→" not in edited.stdout.split("prompts")[-1].split("\n")[0]

    shown = graphops_for(local_settings, "replay", "st-1", **env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("thread st-1: 2 run(s)")
    assert "unfinished" not in shown.stdout
    assert shown.stdout.count("state after each step:") == 2
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith("  step ")]
    assert not any("+" in row[2] for row in rows)
