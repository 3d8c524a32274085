"""Replaying a stored thread: its runs' span trees and the state after each step.

Spans come from the span store, state from LangGraph's checkpoints in the same
database. They meet by run, then by LangGraph step number: a checkpoint belongs to
the run whose time it was written in (after the previous run ended, before its own
end), and within that run node spans carry ``graphops.langgraph_step`` as
checkpoints carry ``metadata["step"]``. The step alone is not enough: a re-run forks
the thread and reuses the step numbers of the run it repeats. ``graphops replay``
prints it; :func:`replay` returns it as typed records; :meth:`Replay.html` writes a
self-contained waterfall page.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from graphops._compat.langgraph import is_state_channel
from graphops.checkpoint.span_store import RunRow, SpanRow, SqlSpanStore
from graphops.errors import InvalidInputError, RunError
from graphops.observe import semconv as sc
from graphops.observe.tree import SpanNode, TreeSpan, build_tree, render_tree
from graphops.steps.names import HEAD_NODE, HEAD_STEPS

__all__ = ["Replay", "ReplayRun", "StepState", "areplay", "replay", "written_ns"]


@dataclass(frozen=True)
class StepState:
    """The state after one LangGraph step: which nodes ran, what they changed."""

    step: int
    nodes: tuple[str, ...]
    changes: dict[str, Any]  # against the checkpoint this one follows (a fork's: the fork)
    checkpoint_id: str
    trace_id: str | None = None  # the run that wrote it
    source: str = "loop"  # LangGraph's: "input", "loop", or "update" (a state edit)

    @property
    def label(self) -> str:
        """The nodes that ran, or what wrote the checkpoint when no node did.

        graphops' head steps are spans of their own, but ran in one node of the
        step: the head, which is what the label names.
        """
        if self.nodes:
            if set(self.nodes) <= set(HEAD_STEPS):
                return HEAD_NODE
            return "+".join(self.nodes)
        return "(update)" if self.source == "update" else "(input)"


@dataclass(frozen=True)
class ReplayRun:
    """One run of the thread: its root's facts (None if it never finished) and spans."""

    trace_id: str
    run: RunRow | None
    spans: list[SpanRow]
    after_ns: int = 0  # its checkpoints were written after this (the previous run's end)
    until_ns: int | None = None  # … and up to this: its end (None: still open)

    @property
    def graph(self) -> str | None:
        """The name of the graph that ran it (``gen_ai.agent.name``), finished or not."""
        if self.run is not None:
            return self.run.graph
        for span in self.spans:  # node spans name their graph too
            name = span.attributes.get(sc.AGENT_NAME)
            if isinstance(name, str):
                return name
        return None

    def owns(self, written: int) -> bool:
        """Whether a checkpoint written at ``written`` (ns) belongs to this run."""
        until = self.until_ns
        if until is None and self.run is not None:  # built by hand: up to its end
            until = max(s.end_ns for s in self.spans)
        return written > self.after_ns and (until is None or written <= until)

    @property
    def status(self) -> str:
        """``ok``, ``error``, or ``unfinished`` for a run that was killed or is still going."""
        return self.run.status if self.run is not None else "unfinished"

    def tree(self) -> list[SpanNode]:
        """The run's span tree."""
        return build_tree(
            TreeSpan(
                s.span_id,
                s.parent_span_id,
                s.name,
                s.start_ns,
                s.end_ns,
                s.attributes,
                s.status == "error",
            )
            for s in self.spans
        )


@dataclass(frozen=True)
class Replay:
    """Everything stored about one thread."""

    thread_id: str
    runs: list[ReplayRun]
    steps: list[StepState] = field(default_factory=list)

    def render(self) -> str:
        """The text ``graphops replay`` prints."""
        lines = [f"thread {self.thread_id}: {len(self.runs)} run(s)"]
        for number, run in enumerate(self.runs, 1):
            started = time.strftime(
                "%Y-%m-%d %H:%M:%S", time.gmtime(min(s.start_ns for s in run.spans) / 1e9)
            )
            facts = [f"run {number}", f"trace {run.trace_id}", f"started {started} UTC", run.status]
            if run.run is not None:
                facts += [
                    f"{run.run.seconds:.2f} s",
                    f"{run.run.tokens} tokens",
                    f"${run.run.cost_usd:.6f}",
                ]
            lines += ["", " · ".join(facts), render_tree(run.tree())]
            lines += self._state_lines(run.trace_id)
        return "\n".join(lines)

    def _state_lines(self, trace_id: str) -> list[str]:
        steps = [s for s in self.steps if s.trace_id == trace_id]
        if not steps:
            return []
        lines = ["", "state after each step:"]
        for step in steps:
            changed = ", ".join(f"{k}={_short(v)}" for k, v in step.changes.items()) or "-"
            lines.append(f"  step {step.step:>3}  {step.label:<27} {changed}")
        return lines

    def html(self) -> str:
        """A self-contained timeline page (one waterfall per run)."""
        sections = []
        for number, run in enumerate(self.runs, 1):
            start = min(s.start_ns for s in run.spans)
            end = max(s.end_ns for s in run.spans)
            width = max(end - start, 1)
            rows = []
            for depth, node in _walk(run.tree()):
                left = 100 * (node.span.start_ns - start) / width
                span_width = max(100 * (node.span.end_ns - node.span.start_ns) / width, 0.2)
                tokens = f" · {node.tokens} tok" if node.tokens else ""
                css = "bar error" if node.span.error else "bar"
                rows.append(
                    f'<tr><td style="padding-left:{depth * 14}px">'
                    f"{html.escape(node.span.name)}</td>"
                    f'<td class="t">{node.seconds * 1000:.1f} ms{tokens}</td><td class="lane">'
                    f'<div class="{css}" style="left:{left:.3f}%;width:{span_width:.3f}%"></div>'
                    "</td></tr>"
                )
            sections.append(
                f"<h2>run {number} · {html.escape(run.status)} · trace {run.trace_id}</h2>"
                f"<table>{''.join(rows)}</table>"
            )
        return (
            "<!doctype html><meta charset=utf-8>"
            f"<title>graphops replay {html.escape(self.thread_id)}</title><style>"
            "body{font:13px system-ui,sans-serif;margin:24px}"
            "table{border-collapse:collapse;width:100%}"
            "td{padding:2px 6px;white-space:nowrap}td.t{text-align:right;color:#555}"
            "td.lane{position:relative;width:60%}.bar{position:absolute;top:4px;height:12px;"
            "background:#6b5bd2;border-radius:2px}.error{background:#d24b4b}</style>"
            f"<h1>thread {html.escape(self.thread_id)}</h1>{''.join(sections)}"
        )


def _walk(nodes: list[SpanNode], depth: int = 0) -> list[tuple[int, SpanNode]]:
    out: list[tuple[int, SpanNode]] = []
    for node in nodes:
        out.append((depth, node))
        out.extend(_walk(node.children, depth + 1))
    return out


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return "{" + ", ".join(list(value)[:4]) + ("…}" if len(value) > 4 else "}")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def written_ns(ts: str) -> int:
    """A checkpoint's ``ts`` (ISO, UTC) in the spans' unit: ns since the epoch."""
    return (datetime.fromisoformat(ts) - _EPOCH) // timedelta(microseconds=1) * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _owner(runs: list[ReplayRun], written: int) -> ReplayRun:
    return next((r for r in runs if r.owns(written)), runs[-1])


async def _steps(url: str, thread_id: str, runs: list[ReplayRun]) -> list[StepState]:
    from graphops.checkpoint.savers import open_checkpointer

    found = []
    async with open_checkpointer(url) as saver:
        try:
            async for item in saver.alist({"configurable": {"thread_id": thread_id}}):
                found.append(item)
        except Exception as exc:  # a row LangGraph cannot deserialise
            raise RunError(
                f"a checkpoint of thread {thread_id} is unreadable ({type(exc).__name__}: {exc})"
            ) from None
    values_of = {  # the state, without LangGraph's own channels (branch:to:…, __start__)
        item.checkpoint["id"]: {
            k: v
            for k, v in (item.checkpoint.get("channel_values") or {}).items()
            if is_state_channel(k)
        }
        for item in found
    }
    steps: list[StepState] = []
    for item in sorted(found, key=lambda t: t.checkpoint["ts"]):
        run = _owner(runs, written_ns(item.checkpoint["ts"]))
        step = int(item.metadata.get("step", -1))
        ran = [s for s in run.spans if sc.NODE in s.attributes]
        nodes = dict.fromkeys(  # a retried node ran twice in one step: name it once
            s.name for s in ran if s.attributes.get(sc.STEP) == step
        )
        parent = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        previous = values_of.get(parent, {}) if parent else {}
        values = values_of[item.checkpoint["id"]]
        changes = {k: v for k, v in values.items() if previous.get(k) != v}
        steps.append(
            StepState(
                step,
                tuple(nodes),
                changes,
                item.checkpoint["id"],
                run.trace_id,
                str(item.metadata.get("source", "loop")),
            )
        )
    return steps


async def areplay(thread_id: str, url: str, *, with_state: bool = True) -> Replay:
    """Everything stored about ``thread_id`` in graphops' database at ``url``."""
    store = SqlSpanStore(url)
    traces = await anyio.to_thread.run_sync(store.traces, thread_id)
    if not traces:
        raise InvalidInputError(f"no stored run for thread {thread_id!r}: see 'graphops runs'")
    found = []
    for trace_id in traces:
        spans = await anyio.to_thread.run_sync(store.spans, trace_id)
        run = await anyio.to_thread.run_sync(store.run, trace_id)
        found.append((trace_id, run, spans))
    runs: list[ReplayRun] = []
    after = 0
    for i, (trace_id, run, spans) in enumerate(found):
        if run is not None:  # finished: the root span ends after the last checkpoint
            until: int | None = max(s.end_ns for s in spans)
        elif i + 1 < len(found):  # unfinished: until the next run started
            until = min(s.start_ns for s in found[i + 1][2])
        else:
            until = None
        runs.append(ReplayRun(trace_id, run, spans, after, until))
        after = until or after
    steps = await _steps(url, thread_id, runs) if with_state else []
    return Replay(thread_id, runs, steps)


def replay(thread_id: str, url: str | None = None, *, with_state: bool = True) -> Replay:
    """Sync :func:`areplay`; ``url`` defaults to graphops' database from the settings."""
    if url is None:
        from graphops.settings import load_settings

        url = load_settings().database
    return anyio.run(lambda: areplay(thread_id, url, with_state=with_state))
