"""Retention: deleting old runs, their spans and checkpoints together (``graphops runs prune``)."""

from __future__ import annotations

from graphops.checkpoint.savers import open_checkpointer
from graphops.checkpoint.span_store import SqlSpanStore

__all__ = ["prune"]


async def prune(url: str, before_ns: int) -> tuple[int, int]:
    """Delete runs that started before ``before_ns``: spans and checkpoints together.

    A thread whose newest run is older loses everything (its checkpoints with
    ``adelete_thread``); a thread still in use keeps its checkpoints, which hold its
    current state, and loses only its old runs' spans. Returns (threads, spans) deleted.
    """
    store = SqlSpanStore(url)
    newest: dict[str, int] = {}
    for run in store.runs(limit=2**62):
        if run.thread_id is not None:
            newest[run.thread_id] = max(newest.get(run.thread_id, 0), run.started_ns)
    stale = [thread for thread, started in newest.items() if started < before_ns]
    spans = 0
    async with open_checkpointer(url) as saver:
        for thread in stale:
            spans += saver.delete_spans(thread)
            await saver.adelete_checkpoints(thread)
    spans += store.prune(before_ns)
    return len(stale), spans
