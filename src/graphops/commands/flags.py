"""``graphops flags set|show|list|history|kill|revive``: the flag table from the command line.

``set NAME VARIANT=WEIGHT...`` makes a flag or changes one: ``graphops flags set
answer v3=5 v2=95`` sends 5% of users to variant ``v3`` and 95% to ``v2``. A
variant's value is what ``--value VARIANT=JSON`` gives, else what its name says:
``vN`` is the number N (for a flag named like a prompt, its version N), any
other name is itself as a string (a prompt label, say). A flag named like a
prompt in the registry is refused unless every variant names a version or label
the registry has. A changed flag keeps its
variants, values, rules and default unless told otherwise; variants not given a
weight get 0. Every change is written with its actor (``--actor``, default the OS
user) to the audit log, which ``history`` reads. ``--expect VERSION`` refuses the
change if the flag moved since you read it. ``kill`` serves every run the
default at once; ``revive`` undoes it.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from graphops.errors import InvalidInputError
from graphops.prompts.refs import default_actor

if TYPE_CHECKING:
    from graphops.flags.model import Flag, Rule
    from graphops.flags.store import FlagStore
    from graphops.settings import Settings

__all__ = ["add_parser", "parse_rule", "parse_weights"]

_VERSION_NAME = re.compile(r"^v([1-9][0-9]*)$")


def add_parser(commands: Any) -> None:
    """Add ``flags`` and its subcommands to the ``graphops`` parser."""
    flags = commands.add_parser("flags", help="the flag table: variants, weights, kill switch")
    actions = flags.add_subparsers(dest="action", required=True, parser_class=type(flags))

    put = actions.add_parser("set", help="make or change a flag: NAME VARIANT=WEIGHT ...")
    put.add_argument("name")
    put.add_argument("weights", nargs="+", metavar="VARIANT=WEIGHT", help="whole percents, sum 100")
    put.add_argument(
        "--value",
        dest="values",
        action="append",
        default=[],
        metavar="VARIANT=JSON",
        help='a variant\'s value (e.g. v3=3, big=\'{"model": "gemini-2.5-pro"}\')',
    )
    put.add_argument("--default", help="the variant of killed flags and runs with no user")
    put.add_argument(
        "--sticky-by", help="attributes assignment sticks to (default user,tenant,thread)"
    )
    put.add_argument(
        "--rule",
        dest="rules",
        action="append",
        metavar="ATTR=V1,V2:VARIANT[@PERCENT]",
        help="targeting, tried in order (replaces the flag's rules); e.g. tenant=acme:v3@25",
    )
    put.add_argument("--no-rules", action="store_true", help="drop the flag's rules")
    put.add_argument("--description", help="what the flag is for")
    put.add_argument("--expect", type=int, metavar="VERSION", help="refuse if the flag moved")
    put.add_argument("--actor", help="who makes the change (default: the OS user)")
    put.set_defaults(handler=_set)

    show = actions.add_parser("show", help="one flag: variants, weights, rules, version")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_show)

    listed = actions.add_parser("list", help="every flag, a line each")
    listed.add_argument("--json", action="store_true", help="print one JSON object")
    listed.set_defaults(handler=_list)

    history = actions.add_parser("history", help="the flags' changes, newest first")
    history.add_argument("name", nargs="?")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print one JSON object per line")
    history.set_defaults(handler=_history)

    for verb, text in (("kill", "serve every run the default now"), ("revive", "undo kill")):
        switch = actions.add_parser(verb, help=text)
        switch.add_argument("name")
        switch.add_argument("--reason", default="", help="why, for the audit log")
        switch.add_argument("--actor", help="who makes the change (default: the OS user)")
        switch.set_defaults(handler=_switch, killed=verb == "kill")


# ------------------------------------------------------------------ parsing
def parse_weights(items: list[str]) -> dict[str, int]:
    """``["v3=5", "v2=95"]`` as ``{"v3": 5, "v2": 95}``, in the order given."""
    weights: dict[str, int] = {}
    for item in items:
        variant, sep, weight = item.partition("=")
        if not sep or not weight.strip().isdigit():
            raise InvalidInputError(f"{item!r} is not VARIANT=WEIGHT (a whole percent, e.g. v3=5)")
        if variant in weights:
            raise InvalidInputError(f"variant {variant!r} is given twice")
        weights[variant] = int(weight)
    return weights


def _default_value(variant: str) -> Any:
    match = _VERSION_NAME.match(variant)
    return int(match.group(1)) if match else variant


def _values(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        variant, sep, text = item.partition("=")
        if not sep:
            raise InvalidInputError(f"{item!r} is not VARIANT=JSON (e.g. v3=3)")
        try:
            values[variant] = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"the value of {variant!r} is not JSON ({exc})") from None
    return values


def parse_rule(text: str) -> Rule:
    """``tenant=acme,globex:v3@25`` as a :class:`Rule` (``@PERCENT`` optional)."""
    from graphops.flags.model import Rule

    match = re.fullmatch(r"([^=]+)=([^:]+):([^@]+)(?:@(.+))?", text)
    if match is None:
        raise InvalidInputError(f"{text!r} is not ATTR=V1,V2:VARIANT[@PERCENT]")
    attribute, values, variant, percent = match.groups()
    try:
        share = float(percent) if percent is not None else 100.0
    except ValueError:
        raise InvalidInputError(f"{percent!r} in {text!r} is not a percent") from None
    listed = tuple(v.strip() for v in values.split(","))
    return Rule(
        attribute.strip(), listed, variant.strip(), op="equals" if len(listed) == 1 else "in",
        percent=share,
    )  # fmt: skip


def _store(settings: Settings) -> FlagStore:
    from graphops.flags.factory import flag_store

    return flag_store(settings)


# ------------------------------------------------------------------ handlers
def _set(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.flags.model import DEFAULT_STICKY_BY, Flag, check_flag_name

    name = check_flag_name(args.name)
    weights = parse_weights(args.weights)
    values = _values(args.values)
    if unknown := set(values) - set(weights):
        raise InvalidInputError(f"--value for {', '.join(sorted(unknown))}: give it a weight too")
    if args.rules and args.no_rules:
        raise InvalidInputError("--rule and --no-rules contradict each other: give one")
    store = _store(settings)
    current = store.get(name)
    variants = dict(current.variants) if current is not None else {}
    for variant in weights:
        if variant in values:
            variants[variant] = values[variant]
        elif variant not in variants:
            variants[variant] = _default_value(variant)
    default = args.default or (
        current.default if current is not None else max(weights, key=lambda v: weights[v])
    )
    rules: tuple[Rule, ...] = current.rules if current is not None else ()
    if args.rules:
        rules = tuple(parse_rule(r) for r in args.rules)
    elif args.no_rules:
        rules = ()
    sticky = current.sticky_by if current is not None else DEFAULT_STICKY_BY
    if args.sticky_by is not None:
        sticky = tuple(a.strip() for a in args.sticky_by.split(",") if a.strip())
    flag = Flag(
        name,
        variants,
        {v: weights.get(v, 0) for v in variants},
        default,
        rules=rules,
        sticky_by=sticky,
        killed=current.killed if current is not None else False,
        description=args.description if args.description is not None else (
            current.description if current is not None else ""
        ),
    )  # fmt: skip
    _check_prompt_variants(flag, settings)
    stored = store.put(
        flag, actor=args.actor or default_actor(), action="set", expected=args.expect
    )
    print(f"flag {name} is at version {stored.version}: {_split(stored)}")
    if stored.killed:
        print(f"  (killed: every run gets {stored.default!r} until `graphops flags revive {name}`)")
    return 0


def _check_prompt_variants(flag: Flag, settings: Settings) -> None:
    """A flag named like a registered prompt picks its versions: each must exist.

    Else runs would fail on the variant (a version the registry does not have)
    for exactly the users the canary was meant to measure.
    """
    from graphops.db import prepare
    from graphops.prompts.registry import PromptRegistry

    registry = PromptRegistry(prepare(settings))
    if flag.name not in registry.names():
        return
    for variant, value in flag.variants.items():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidInputError(
                f"flag {flag.name!r} picks prompt {flag.name!r}'s version: variant "
                f"{variant!r} is {json.dumps(value)}, not a version number or a label"
            )
        try:
            registry.get(flag.name, value)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"flag {flag.name!r} picks prompt {flag.name!r}'s version: variant {variant!r} "
                f"cannot be served: {exc}"
            ) from None


def _switch(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.flags.model import check_flag_name

    name = check_flag_name(args.name)
    store = _store(settings)
    current = store.get(name)
    if current is None:
        raise InvalidInputError(f"no flag {name!r}: `graphops flags list` shows them")
    if current.killed == args.killed:
        state = "killed" if args.killed else "live"
        print(f"flag {name} is already {state} (version {current.version}); nothing changed")
        return 0
    stored = store.put(
        replace(current, killed=args.killed),
        actor=args.actor or default_actor(),
        action="kill" if args.killed else "revive",
        expected=current.version,
        detail={"reason": args.reason},
    )
    if stored.killed:
        print(f"flag {name} killed (version {stored.version}): every run gets {stored.default!r}")
    else:
        print(f"flag {name} revived (version {stored.version}): {_split(stored)}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.flags.model import check_flag_name

    name = check_flag_name(args.name)
    flag = _store(settings).get(name)
    if flag is None:
        raise InvalidInputError(f"no flag {name!r}: `graphops flags list` shows them")
    if args.json:
        print(json.dumps({**flag.as_json(), "version": flag.version}))
        return 0
    state = "KILLED, every run gets the default" if flag.killed else "live"
    print(f"flag {flag.name} (version {flag.version}, {state})")
    if flag.description:
        print(f"  {flag.description}")
    print(f"  {'variant':<20}{'weight':>7}  value")
    for variant, value in flag.variants.items():
        mark = "  (default)" if variant == flag.default else ""
        print(f"  {variant:<20}{flag.weights.get(variant, 0):>6}%  {json.dumps(value)}{mark}")
    print(f"  sticky by: {', '.join(flag.sticky_by)}")
    for position, rule in enumerate(flag.rules, 1):
        share = "" if rule.percent >= 100 else f" ({rule.percent:g}% of them)"
        segment = ", ".join(rule.values)
        print(f"  rule {position}: {rule.attribute} in {segment} -> {rule.variant}{share}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    flags = _store(settings).all()
    if args.json:
        print(
            json.dumps({n: {**f.as_json(), "version": f.version} for n, f in sorted(flags.items())})
        )
        return 0
    if not flags:
        print("no flags: `graphops flags set NAME VARIANT=WEIGHT ...` makes one")
        return 0
    for name, flag in sorted(flags.items()):
        state = " KILLED" if flag.killed else ""
        print(f"{name:<32} version {flag.version:<4} {_split(flag)}{state}")
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from graphops.flags.model import check_flag_name

    if args.name is not None:
        check_flag_name(args.name)
    if args.limit < 1:
        raise InvalidInputError(f"--limit is at least 1, not {args.limit}")
    changes = _store(settings).history(args.name, limit=args.limit)
    for change in changes:
        if args.json:
            shown = {
                "at_ns": change.at_ns,
                "actor": change.actor,
                "action": change.action,
                "flag": change.flag,
                "version": change.version,
                "detail": dict(change.detail),
            }
            print(json.dumps(shown))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(change.at_ns / 1e9))
        flag = change.detail.get("flag") or {}
        weights = flag.get("weights") or {}
        split = " ".join(f"{v}={w}" for v, w in weights.items() if w)
        reason = change.detail.get("reason")
        why = f" ({reason})" if reason else ""
        head = f"{when}  {change.flag:<24} version {change.version:<4} {change.action:<8}"
        print(f"{head} {change.actor}: {split}{why}")
    if not changes:
        print("no flag changes yet")
    return 0


def _split(flag: Flag) -> str:
    shares = " ".join(f"{v}={flag.weights[v]}%" for v in flag.split)
    return f"{shares} (default {flag.default})"
