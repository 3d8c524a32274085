"""The ``graphops`` command: ``ask``, ``ingest``, ``runs``, ``replay``, ``prompts``, ``db``.

Every failure graphops raises on purpose is printed as one line,
``graphops: error: …``, with exit code 2 for bad input or configuration
(:class:`UserError`) and 1 for a run-time failure (:class:`RunError`); only bugs
keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import anyio

from graphops.commands.prompts import add_parser as add_prompts_parser
from graphops.commands.runs import add_parser as add_runs_parsers
from graphops.errors import GraphopsError, InvalidInputError, UserError
from graphops.observe.logs import configure_logging
from graphops.observe.tree import build_tree, render_tree
from graphops.settings import Settings, load_settings

__all__ = ["main"]


def _progress(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm bar on stderr (silent when stderr is not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="chunk", file=sys.stderr, disable=None, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


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
    from graphops.commands.reference import observed_reference
    from graphops.validation import validate_question
    from graphs.agentic_rag import RagDeps

    if args.resume:
        if not args.thread or args.question is not None:
            raise InvalidInputError("--resume continues a thread: give --thread ID and no question")
        payload: dict[str, Any] | None = None
    else:
        if args.question is None:
            raise InvalidInputError("ask needs a question (or --thread ID --resume)")
        question = validate_question(_read_question(args.question), settings.max_question_chars)
        payload = {"question": question}
    url = settings.database  # RagDeps.from_settings checks its schema (creating the embedded one)
    update, close = _progress("indexing " + ", ".join(settings.corpus) + " (first run)")
    try:
        deps = await anyio.to_thread.run_sync(RagDeps.from_settings, settings, update)
    finally:
        close()
    thread = args.thread or uuid.uuid4().hex[:12]
    config: Any = {"configurable": {"thread_id": thread}, "metadata": {"user": args.user}}
    started = time.perf_counter()
    spans = InMemorySpanExporter()  # this run's spans, for the tree printed below
    async with open_checkpointer(url) as saver:
        telemetry, app_on = observed_reference(settings, saver, spans)
        app = app_on(deps)
        if args.resume and not (await app.aget_state(config)).next:
            raise InvalidInputError(f"thread {thread} has nothing to resume")
        if args.stream:
            async for chunk, _meta in app.astream(payload, config, stream_mode="messages"):
                if isinstance(chunk, AIMessageChunk) and chunk.text:
                    print(chunk.text, end="", flush=True)
            print()
            state = dict((await app.aget_state(config)).values)
        else:
            state = dict(await app.ainvoke(payload, config))
        telemetry.shutdown()
    finished = spans.get_finished_spans()
    roots = build_tree(finished)
    trace_id = f"{finished[0].context.trace_id:032x}" if finished else None
    index = {doc["id"]: doc for doc in state.get("documents") or []}
    return {
        "answer": state.get("answer", ""),
        "route": state.get("route"),
        "low_confidence": bool(state.get("low_confidence")),
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


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.corpus.ensure import ingest_with_settings
    from graphops.models import make_embeddings

    update, close = _progress("embedding")
    try:
        report = ingest_with_settings(args.targets, settings, make_embeddings(settings), update)
    finally:
        close()
    if report.rebuilt:
        dropped = (
            f"; dropped, re-ingest them: {', '.join(report.removed)}" if report.removed else ""
        )
        print(
            "graphops: warning: the old index was built another way (embedding model or "
            f"chunking) or was unreadable, so it was rebuilt{dropped}",
            file=sys.stderr,
        )
    print(
        f"added {len(report.added)}, updated {len(report.updated)}, removed {len(report.removed)}, "
        f"unchanged {report.unchanged} documents; {report.chunks} chunks ({report.embedded} "
        f"embedded) in {report.seconds:.1f} s; corpus version {report.corpus_version}"
    )
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from graphops import db

    url = settings.database
    if args.action == "upgrade":
        db.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        db.downgrade(url, args.revision or "-1")
    print(f"schema {db.current(url) or 'none'} (this graphops: {db.head()})")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors share one error path."""

    def error(self, message: str) -> Any:
        raise InvalidInputError(f"{message} (see 'graphops --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphops", description="LLMOps middleware for LangGraph graphs.")
    parser.add_argument("--version", action="version", version=f"graphops {version('graphops')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ask = commands.add_parser("ask", help="answer a question with the reference RAG graph")
    ask.add_argument(
        "question", nargs="?", help="the question, or - to read it from standard input"
    )
    ask.add_argument("--thread", help="continue this conversation thread")
    ask.add_argument("--user", help="who is asking (recorded with the run)")
    ask.add_argument(
        "--resume",
        action="store_true",
        help="continue --thread's interrupted run from its last checkpoint",
    )
    output = ask.add_mutually_exclusive_group()
    output.add_argument("--stream", action="store_true", help="print the answer as it comes")
    output.add_argument("--json", action="store_true", help="print one JSON object")
    ask.set_defaults(handler=_ask)

    database = commands.add_parser("db", help="graphops' database schema (migrations)")
    database.add_argument("action", choices=["upgrade", "current", "downgrade"])
    database.add_argument("revision", nargs="?", help="target revision (head, -1, 0001, base)")
    database.set_defaults(handler=_db)

    add_runs_parsers(commands)
    add_prompts_parser(commands)

    ingest = commands.add_parser("ingest", help="build or update the index from files or URLs")
    ingest.add_argument("targets", nargs="+", metavar="PATH|URL")
    ingest.set_defaults(handler=_ingest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        code: int = args.handler(args, settings)
        return code
    except GraphopsError as exc:
        print(f"graphops: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    except KeyboardInterrupt:
        print("graphops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
