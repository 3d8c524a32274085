"""Retention: deleting old runs, their spans and checkpoints together (``graphops runs prune``).

Pruning is planned first (:func:`plan_prune`: which runs, threads and how many
spans), so the command can show the plan and ask before :func:`prune` carries it
out. The rules:

- a run goes when it started before the cut-off and matches every filter given
  (``user``, ``thread``); unfinished runs (killed mid-way) count from their first span;
- a thread loses its checkpoints (its conversation state) only when *every* run
  of it goes. A thread with a newer run, or, with ``user``, with another user's
  run (a shared thread), keeps its checkpoints and loses only the selected runs'
  spans: graphops never deletes state another user's or a newer run depends on.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphops.checkpoint.savers import open_checkpointer
from graphops.checkpoint.span_store import RunRow, SqlSpanStore

__all__ = ["PrunePlan", "plan_prune", "prune"]


@dataclass(frozen=True)
class PrunePlan:
    """What a prune will delete."""

    runs: tuple[RunRow, ...]  # the runs whose spans go, newest first
    threads: tuple[str, ...]  # threads all of whose runs go: their checkpoints go too
    kept: tuple[str, ...]  # threads that lose runs but keep their checkpoints
    spans: int  # spans deleted in all

    @property
    def empty(self) -> bool:
        """Nothing matches."""
        return not self.runs


def plan_prune(
    url: str, before_ns: int, *, user: str | None = None, thread: str | None = None
) -> PrunePlan:
    """The runs that started before ``before_ns`` (of ``user``, on ``thread``), and what goes."""
    store = SqlSpanStore(url)
    runs = store.runs(before_ns=before_ns, user=user, thread=thread, unfinished=True, limit=None)
    chosen = {run.trace_id for run in runs}
    touched = sorted({run.thread_id for run in runs if run.thread_id is not None})
    whole = [t for t in touched if _every_run_in(store, t, chosen)]
    traces = chosen.union(*(store.traces(t) for t in whole))
    return PrunePlan(
        runs=tuple(runs),
        threads=tuple(whole),
        kept=tuple(t for t in touched if t not in whole),
        spans=store.count_spans(sorted(traces)),
    )


def _every_run_in(store: SqlSpanStore, thread: str, chosen: set[str]) -> bool:
    return all(
        run.trace_id in chosen for run in store.runs(thread=thread, unfinished=True, limit=None)
    )


async def prune(
    url: str,
    before_ns: int,
    *,
    user: str | None = None,
    thread: str | None = None,
    plan: PrunePlan | None = None,
) -> tuple[int, int]:
    """Carry out ``plan`` (planned now when not given); returns (threads, spans) deleted.

    A thread of the plan that gained a run since it was planned keeps its
    checkpoints. Checkpoints go before spans: were the process killed in between,
    the runs are still there for the next prune to find.
    """
    plan = plan or plan_prune(url, before_ns, user=user, thread=thread)
    store = SqlSpanStore(url)
    chosen = {run.trace_id for run in plan.runs}
    whole = [t for t in plan.threads if _every_run_in(store, t, chosen)]
    traces = chosen.union(*(store.traces(t) for t in whole))
    if whole:
        async with open_checkpointer(url) as saver:
            for gone in whole:
                await saver.adelete_checkpoints(gone)
    return len(whole), store.delete_traces(sorted(traces))
