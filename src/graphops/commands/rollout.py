"""``graphops rollout start|status|step|run|promote|abort``: canary rollouts of a flag's variant.

``start FLAG --to VARIANT`` gives the canary the first step's share of runs
(``--to 3`` is variant ``v3``, prompt version 3, added to the flag if it lacks
it); ``step`` looks once at every running rollout (or one) and moves it on what
the span store says, the thing to put in cron; ``run`` keeps looking every
``--every`` seconds; ``status`` shows the numbers and what a look would decide
without writing anything; ``promote`` and ``abort`` are an operator's calls.
Every change is in the flag's history (``graphops flags history FLAG``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from typing import TYPE_CHECKING, Any

from graphops.errors import InvalidInputError
from graphops.prompts.refs import default_actor

if TYPE_CHECKING:
    from graphops.rollout.checks import Decision
    from graphops.rollout.controller import Controller
    from graphops.rollout.model import Rollout
    from graphops.settings import Settings

__all__ = ["add_parser", "parse_seconds"]


def add_parser(commands: Any) -> None:
    """Add ``rollout`` and its subcommands to the ``graphops`` parser."""
    rollout = commands.add_parser("rollout", help="canary rollouts of a flag's variant")
    actions = rollout.add_subparsers(dest="action", required=True, parser_class=type(rollout))

    start = actions.add_parser("start", help="send the first step's share of runs to a variant")
    start.add_argument("flag")
    start.add_argument("--to", required=True, metavar="VARIANT|VERSION")
    start.add_argument("--steps", default="5,25,50,100", help="the canary's shares (percent)")
    start.add_argument("--min-runs", type=int, default=100, help="runs a side before a step")
    start.add_argument("--interval", default="0s", help="the least time at a step (10m, 1h)")
    start.add_argument("--alpha", type=float, default=0.05, help="the false-alarm level")
    start.add_argument("--graph", help="count only this graph's runs")
    start.add_argument("--actor", help="who starts it (default: the OS user)")
    start.set_defaults(handler=_start)

    status = actions.add_parser("status", help="the numbers, and what a look would decide")
    status.add_argument("flag", nargs="?")
    status.add_argument("--json", action="store_true", help="print one JSON object per rollout")
    status.set_defaults(handler=_status)

    step = actions.add_parser("step", help="look once at every running rollout (or FLAG's)")
    step.add_argument("flag", nargs="?")
    step.set_defaults(handler=_step)

    loop = actions.add_parser("run", help="keep looking at every running rollout")
    loop.add_argument("--every", default="60s", help="how often (30s, 5m)")
    loop.set_defaults(handler=_run)

    for verb, text in (
        ("promote", "give the canary 100% now"),
        ("abort", "send every run back to the control now"),
    ):
        manual = actions.add_parser(verb, help=text)
        manual.add_argument("flag")
        manual.add_argument("--reason", default="", help="why, for the audit log")
        manual.add_argument("--actor", help="who does it (default: the OS user)")
        manual.set_defaults(handler=_manual, verb=verb)


def parse_seconds(text: str) -> float:
    """``90s``, ``10m``, ``1h`` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidInputError(f"{text!r} is not a duration: use e.g. 30s, 10m, 1h")
    return float(int(text[:-1]) * units[text[-1]])


def _controller(settings: Settings) -> Controller:
    from graphops.checkpoint.span_store import SqlSpanStore
    from graphops.db import prepare
    from graphops.flags.store_sql import SqlFlagStore
    from graphops.rollout.controller import Controller
    from graphops.rollout.store import SqlRollouts

    url = prepare(settings)
    return Controller(SqlFlagStore(url), SqlRollouts(url), SqlSpanStore(url))


def _start(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.rollout.model import parse_steps

    steps = parse_steps(args.steps)
    rollout = _controller(settings).start(
        args.flag,
        args.to,
        steps=steps,
        min_runs=args.min_runs,
        interval_s=parse_seconds(args.interval),
        alpha=args.alpha,
        graph=args.graph,
        actor=args.actor or default_actor(),
    )
    print(
        f"rollout of {rollout.flag}: {rollout.canary} at {rollout.share}% against "
        f"{rollout.control} (steps {', '.join(map(str, rollout.steps))}; at least "
        f"{rollout.min_runs} runs a side per step; alpha {rollout.alpha:g})"
    )
    return 0


def _shown(rollout: Rollout, decision: Decision | None) -> str:
    head = (
        f"{rollout.flag}: {rollout.canary} against {rollout.control}, {rollout.state}, "
        f"canary at {rollout.share}% (step {rollout.step + 1} of {len(rollout.steps)})"
    )
    if decision is None:
        return head
    lines = [
        head,
        f"  runs: control {decision.control.runs}, canary {decision.canary.runs}",
    ]
    for check in decision.checks:
        mark = "REGRESSED" if check.verdict.regressed else "ok"
        lines.append(
            f"  {check.name:<9} control {check.control:7.2%}  canary {check.canary:7.2%}  "
            f"p={check.verdict.p_value:.4f}  {mark}"
        )
    lines.append(f"  decision: {decision.action}: {decision.reason}")
    return "\n".join(lines)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    controller = _controller(settings)
    names = [args.flag] if args.flag else [r.flag for r, _ in controller.rollouts.all()]
    if not names:
        print("no rollouts: `graphops rollout start FLAG --to VARIANT` starts one")
        return 0
    for name in names:
        rollout, decision = controller.status(name)
        if args.json:
            print(json.dumps({
                "flag": rollout.flag, "control": rollout.control, "canary": rollout.canary,
                "state": rollout.state, "share": rollout.share, "steps": list(rollout.steps),
                "decision": decision.as_json() if decision is not None else None,
            }))  # fmt: skip
        else:
            print(_shown(rollout, decision))
    return 0


def _step(args: argparse.Namespace, settings: Settings) -> int:
    controller = _controller(settings)
    looked = [controller.look(args.flag)] if args.flag else controller.look_all()
    if not looked:
        print("no running rollouts")
    for rollout, decision in looked:
        print(_shown(rollout, decision))
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    every = parse_seconds(args.every)
    controller = _controller(settings)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"looking at every running rollout every {every:g} s (Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop between looks
        controller.run(every, stopping.is_set)
    return 0


def _manual(args: argparse.Namespace, settings: Settings) -> int:
    controller = _controller(settings)
    do = controller.promote if args.verb == "promote" else controller.abort
    rollout = do(args.flag, actor=args.actor or default_actor(), reason=args.reason)
    print(_shown(rollout, None))
    return 0
