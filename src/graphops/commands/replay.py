"""``graphops replay``: a stored thread shown (spans and state) or re-run from a checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

import anyio

from graphops.commands.reference import REFERENCE_GRAPH
from graphops.errors import InvalidInputError
from graphops.observe.tree import build_tree, render_tree
from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``replay`` to the ``graphops`` parser."""
    replayed = commands.add_parser("replay", help="show a stored thread: spans and state")
    replayed.add_argument("thread_id")
    replayed.add_argument("--html", metavar="FILE", help="also write a timeline page")
    replayed.add_argument(
        "--rerun", action="store_true", help="run the thread again from a checkpoint (a fork)"
    )
    replayed.add_argument(
        "--from",
        dest="from_",
        metavar="NODE|CHECKPOINT",
        help="with --rerun: fork before this node, or at this checkpoint id",
    )
    replayed.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="with --rerun: change state first"
    )
    replayed.add_argument(
        "--prompt",
        action="append",
        metavar="NAME=VERSION",
        help="with --rerun: use this prompt version (or label) from the registry",
    )
    replayed.add_argument(
        "--recorded",
        action="store_true",
        help="with --rerun: serve LLM calls from the original run's recorded outputs",
    )
    replayed.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from graphops.checkpoint.replay import replay
    from graphops.db import prepare

    prepare(settings)
    if args.rerun:
        return anyio.run(_run_rerun, args, settings)
    if args.recorded or args.from_ or args.set or args.prompt:
        raise InvalidInputError("--from, --set, --prompt and --recorded go with --rerun")
    stored = replay(args.thread_id, settings.database)
    print(stored.render())
    if args.html:
        try:
            Path(args.html).write_text(stored.html(), encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot write {args.html}: {exc.strerror or exc}") from None
        print(f"\ntimeline written to {args.html}")
    return 0


async def _run_rerun(args: argparse.Namespace, settings: Settings) -> int:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from graphops.checkpoint.replay import areplay
    from graphops.checkpoint.rerun import (
        arerun,
        choose_fork,
        original_of,
        parse_prompt_pins,
        parse_updates,
    )
    from graphops.checkpoint.savers import open_checkpointer
    from graphops.commands.reference import observed_reference
    from graphops.models.recorded import RecordedChatModel
    from graphops.observe.semconv import RUN_PROMPTS
    from graphs.agentic_rag import RagDeps

    url, thread = settings.database, args.thread_id
    updates = parse_updates(args.set or [])
    pins = parse_prompt_pins(args.prompt or [])
    if pins and args.recorded:
        raise InvalidInputError(
            "--recorded answers every LLM call with the original run's outputs, so another "
            "--prompt version could change nothing: use one or the other"
        )
    original = original_of((await areplay(thread, url, with_state=False)).runs)
    if original.graph != REFERENCE_GRAPH:
        raise InvalidInputError(_not_the_reference(thread, original.trace_id, original.graph))
    deps = await anyio.to_thread.run_sync(RagDeps.from_settings, settings)
    spans = InMemorySpanExporter()
    async with open_checkpointer(url) as saver:
        telemetry, app_on = observed_reference(settings, saver, spans, degrade=False)
        fork = await choose_fork(app_on(deps), thread, args.from_, within=original)
        if args.recorded:
            chat = RecordedChatModel.from_spans(original.spans, after_step=fork.step)
            deps = dataclasses.replace(deps, chat=chat)
        result = await arerun(
            app_on(deps),
            thread,
            original,
            start=args.from_,
            updates=updates,
            prompts=pins,
            prompt_source=deps.prompts,
        )
        telemetry.shutdown()
    finished = spans.get_finished_spans()
    roots = build_tree(finished)
    used = [s.attributes.get(RUN_PROMPTS) for s in finished if s.parent is None and s.attributes]
    result = dataclasses.replace(
        result,
        nodes=[n.span.name for r in roots for n in r.children],
        prompts=next((tuple(map(str, u)) for u in used if isinstance(u, Sequence)), ()),
    )
    how = " with recorded LLM outputs" if args.recorded else ""
    print(
        f"re-run of trace {original.trace_id} from checkpoint {fork.checkpoint_id} "
        f"(next: {', '.join(fork.next) or '-'}){how}"
    )
    print(render_tree(roots))
    print()
    print(result.diff())
    return 0


def _not_the_reference(thread: str, trace_id: str, graph: str | None) -> str:
    """Why the CLI will not re-run a thread another graph wrote, and how to re-run it."""
    wrote = f"graph {graph!r}" if graph else "a graph whose name its spans do not record"
    return (
        f"thread {thread!r} (run {trace_id}) was written by {wrote}, and 'graphops replay "
        f"--rerun' re-runs the reference graph ({REFERENCE_GRAPH}) only, which would write "
        "its own state into the thread. Re-run it in Python with your app: "
        "graphops.checkpoint.rerun.arerun(app, thread_id, original), app built with "
        f"build_observed_graph(..., name={(graph or 'NAME')!r}) on open_checkpointer(url)"
    )
