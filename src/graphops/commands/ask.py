"""``graphops ask``: one question through the observed reference graph."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import anyio

from graphops.commands.progress import progress
from graphops.errors import InvalidInputError
from graphops.observe.tree import build_tree, render_tree
from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``ask`` to the ``graphops`` parser."""
    ask = commands.add_parser("ask", help="answer a question with the reference RAG graph")
    ask.add_argument(
        "question", nargs="?", help="the question, or - to read it from standard input"
    )
    ask.add_argument("--thread", help="continue this conversation thread")
    ask.add_argument(
        "--user",
        help="who is asking (recorded with the run; --resume keeps the interrupted run's)",
    )
    ask.add_argument(
        "--resume",
        action="store_true",
        help="continue --thread's interrupted run from its last checkpoint",
    )
    output = ask.add_mutually_exclusive_group()
    output.add_argument("--stream", action="store_true", help="print the answer as it comes")
    output.add_argument("--json", action="store_true", help="print one JSON object")
    ask.set_defaults(handler=_ask)


def _read_question(raw: str) -> str:
    if raw != "-":
        return raw
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the question on standard input is not UTF-8") from None


async def _run_ask(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from langchain_core.messages import AIMessageChunk
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from graphops.checkpoint.savers import open_checkpointer
    from graphops.commands.reference import observed_reference, reference_guard
    from graphs.agentic_rag import RagDeps

    guard = reference_guard(settings)

    if args.resume:
        if not args.thread or args.question is not None:
            raise InvalidInputError("--resume continues a thread: give --thread ID and no question")
        payload: dict[str, Any] | None = None
    else:
        if args.question is None:
            raise InvalidInputError("ask needs a question (or --thread ID --resume)")
        question = _read_question(args.question)
        problem = guard.input_problem(question)  # the guard's own check, before any model loads
        if problem is not None:
            raise InvalidInputError(problem)
        payload = {"question": question.strip()}
    url = settings.database  # RagDeps.from_settings checks its schema (creating the embedded one)
    update, close = progress("indexing " + ", ".join(settings.corpus) + " (first run)")
    try:
        deps = await anyio.to_thread.run_sync(RagDeps.from_settings, settings, update)
    finally:
        close()
    if args.thread:
        await anyio.to_thread.run_sync(_refuse_other_graphs, url, args.thread)
    thread = args.thread or uuid.uuid4().hex[:12]
    config: Any = {"configurable": {"thread_id": thread}, "metadata": {"user": args.user}}
    started = time.perf_counter()
    spans = InMemorySpanExporter()  # this run's spans, for the tree printed below
    async with open_checkpointer(url) as saver:
        telemetry, app_on = observed_reference(settings, saver, spans, guard)
        app = app_on(deps)
        if args.resume:
            interrupted = await app.aget_state(config)
            if not interrupted.next:
                raise InvalidInputError(f"thread {thread} has nothing to resume")
            if args.user is None:
                # the checkpoint keeps the run's metadata (its root span is not stored until
                # the run ends, so never for a killed one): the resumed run stays that user's
                config["metadata"]["user"] = (interrupted.metadata or {}).get("user")
        if args.stream:
            async for chunk, _meta in app.astream(payload, config, stream_mode="messages"):
                if isinstance(chunk, AIMessageChunk) and chunk.text:
                    print(chunk.text, end="", flush=True)
            print()
            state = dict((await app.aget_state(config)).values)
        else:
            state = dict(await app.ainvoke(payload, config))
        await guard.drain()  # the quota's settlement and the slot's release, before the loop ends
        telemetry.shutdown()
    _raise_if_refused(state)
    from graphops.steps.channel import ops_of

    finished = spans.get_finished_spans()
    roots = build_tree(finished)
    trace_id = f"{finished[0].context.trace_id:032x}" if finished else None
    index = {doc["id"]: doc for doc in state.get("documents") or []}
    return {
        "answer": state.get("answer", ""),
        "route": state.get("route"),
        "low_confidence": bool(state.get("low_confidence")),
        "degraded": ops_of(state).get("degraded"),
        "cached": _cached(ops_of(state).get("cache")),
        "sources": [
            {
                "id": s,
                "title": index.get(s, {}).get("title", ""),
                "section": index.get(s, {}).get("section", ""),
            }
            for s in state.get("sources") or []
        ],
        "nodes": [
            {"node": n.span.name, "seconds": round(n.seconds, 3), "tokens": n.tokens}
            for root in roots
            for n in root.children
        ],
        "seconds": round(time.perf_counter() - started, 3),
        "tokens": sum(root.tokens for root in roots),
        "cost_usd": sum(root.cost for root in roots),
        "thread_id": thread,
        "trace_id": trace_id,
        "trace": render_tree(roots),
    }


def _raise_if_refused(state: dict[str, Any]) -> None:
    """A run the guard refused is an error of the command (2: bad input; 1: a limit)."""
    from graphops.errors import RefusedError
    from graphops.steps.channel import ops_of

    guard = ops_of(state).get("guard") or {}
    if guard.get("outcome") != "refused":
        return
    if guard.get("reason") == "invalid_input":
        raise InvalidInputError(guard.get("message") or "the question was refused")
    raise RefusedError(guard)


def _refuse_other_graphs(url: str, thread: str) -> None:
    """Never run the reference graph on a thread another graph wrote: it would write its state."""
    from graphops.checkpoint import SqlSpanStore
    from graphops.commands.reference import REFERENCE_GRAPH
    from graphops.observe import semconv as sc

    store = SqlSpanStore(url)
    traces = store.traces(thread)
    if not traces:
        return  # a new thread (or one whose spans were pruned): nothing says otherwise
    names = {s.attributes.get(sc.AGENT_NAME) for s in store.spans(traces[-1])} - {None}
    other = sorted(str(n) for n in names if n != REFERENCE_GRAPH)
    if other:
        raise InvalidInputError(
            f"thread {thread} was written by graph {other[0]!r}: graphops ask runs the "
            f"reference graph ({REFERENCE_GRAPH}) only; continue the thread with its own "
            "graph in Python"
        )


def _cached(outcome: Any) -> dict[str, Any] | None:
    """The cache hit as ``--json`` shows it (None: the graph ran)."""
    if not isinstance(outcome, dict) or not outcome.get("hit"):
        return None
    return {k: outcome.get(k) for k in ("tier", "similarity", "age_s")}


def _print_ask(result: dict[str, Any], streamed: bool) -> None:
    if not streamed:
        print(result["answer"].strip())
    if result["sources"]:
        print("\nSources:")
        for i, source in enumerate(result["sources"], 1):
            where = " > ".join(p for p in (source["title"], source["section"]) if p)
            print(f"  [{i}] {source['id']}" + (f" ({where})" if where else ""))
    if result["low_confidence"]:
        print("  (no passage was judged relevant; answered from the closest ones)")
    cached = result.get("cached")
    if cached:
        print(
            f"  (answered from the cache: {cached['tier']} tier, similarity "
            f"{cached['similarity']:.2f}, {cached['age_s']:.0f} s old)"
        )
    degraded = result.get("degraded")
    if degraded:
        print(
            f"  (degraded: {degraded['level']} answer, because {degraded['node']} failed: "
            f"{degraded['reason']})"
        )
    print(f"\nTrace {result['trace_id']}:")
    print(result["trace"])
    print(f"\nthread {result['thread_id']} (continue with --thread {result['thread_id']})")


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    result = anyio.run(_run_ask, args, settings)
    if args.json:
        result.pop("trace")
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_ask(result, streamed=args.stream)
    return 0
