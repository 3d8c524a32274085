"""Replaying a stored thread: its runs' span trees and the state after each step.

Spans come from the span store, state from LangGraph's checkpoints in the same
database; they meet on the LangGraph step number (node spans carry
``graphops.langgraph_step``, checkpoints ``metadata["step"]``). ``graphops replay``
prints it; :func:`replay` returns it as typed records; :meth:`Replay.html` writes a
self-contained waterfall page.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from graphops.checkpoint.span_store import RunRow, SpanRow, SqlSpanStore
from graphops.errors import InvalidInputError, RunError
from graphops.observe import semconv as sc
from graphops.observe.tree import SpanNode, TreeSpan, build_tree, render_tree

__all__ = ["Replay", "ReplayRun", "StepState", "areplay", "replay"]


@dataclass(frozen=True)
class StepState:
    """The state after one LangGraph step: which nodes ran, what they changed."""

    step: int
    nodes: tuple[str, ...]
    changes: dict[str, Any]
    checkpoint_id: str


@dataclass(frozen=True)
class ReplayRun:
    """One run of the thread: its root's facts (None if it never finished) and spans."""

    trace_id: str
    run: RunRow | None
    spans: list[SpanRow]

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
        if self.steps:
            lines += ["", "state after each step:"]
            for step in self.steps:
                changed = ", ".join(f"{k}={_short(v)}" for k, v in step.changes.items()) or "-"
                lines.append(
                    f"  step {step.step:>3}  {'+'.join(step.nodes) or '(input)':<28}{changed}"
                )
        return "\n".join(lines)

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


async def _steps(url: str, thread_id: str, spans: list[SpanRow]) -> list[StepState]:
    from graphops.checkpoint.savers import open_checkpointer

    by_step: dict[int, list[str]] = {}
    for span in spans:
        step = span.attributes.get(sc.STEP)
        if isinstance(step, int) and sc.NODE in span.attributes:
            by_step.setdefault(step, []).append(span.name)
    found = []
    async with open_checkpointer(url) as saver:
        try:
            async for item in saver.alist({"configurable": {"thread_id": thread_id}}):
                found.append(item)
        except Exception as exc:  # a row LangGraph cannot deserialise
            raise RunError(
                f"a checkpoint of thread {thread_id} is unreadable ({type(exc).__name__}: {exc})"
            ) from None
    steps: list[StepState] = []
    previous: dict[str, Any] = {}
    for item in sorted(found, key=lambda t: t.metadata.get("step", -1)):
        values = {  # the state, without LangGraph's own channels (branch:to:…, __start__)
            k: v
            for k, v in (item.checkpoint.get("channel_values") or {}).items()
            if ":" not in k and not k.startswith("__")
        }
        step = int(item.metadata.get("step", -1))
        changes = {k: v for k, v in values.items() if previous.get(k) != v}
        steps.append(StepState(step, tuple(by_step.get(step, ())), changes, item.checkpoint["id"]))
        previous = values
    return steps


async def areplay(thread_id: str, url: str, *, with_state: bool = True) -> Replay:
    """Everything stored about ``thread_id`` in graphops' database at ``url``."""
    store = SqlSpanStore(url)
    traces = await anyio.to_thread.run_sync(store.traces, thread_id)
    if not traces:
        raise InvalidInputError(f"no stored run for thread {thread_id!r}: see 'graphops runs'")
    runs = []
    for trace_id in traces:
        spans = await anyio.to_thread.run_sync(store.spans, trace_id)
        run = await anyio.to_thread.run_sync(store.run, trace_id)
        runs.append(ReplayRun(trace_id, run, spans))
    all_spans = [s for run in runs for s in run.spans]
    steps = await _steps(url, thread_id, all_spans) if with_state else []
    return Replay(thread_id, runs, steps)


def replay(thread_id: str, url: str | None = None, *, with_state: bool = True) -> Replay:
    """Sync :func:`areplay`; ``url`` defaults to graphops' database from the settings."""
    if url is None:
        from graphops.settings import load_settings

        url = load_settings().database
    return anyio.run(lambda: areplay(thread_id, url, with_state=with_state))
