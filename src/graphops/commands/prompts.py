"""``graphops prompts …``: the registry from the command line.

``sync`` publishes the prompt files, ``label`` and ``rollback`` move labels (the
deployment), ``list``, ``show``, ``diff`` and ``log`` read. Every change is in the
audit log with who made it (``--actor``, default: the OS user).
"""

from __future__ import annotations

import argparse
import difflib
import time
from typing import TYPE_CHECKING, Any

from graphops.errors import InvalidInputError
from graphops.prompts.refs import check_name, default_actor, parse_ref

if TYPE_CHECKING:  # the handlers import them: listing commands loads neither
    from graphops.prompts.registry import PromptRegistry
    from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``prompts`` and its subcommands to the ``graphops`` parser."""
    prompts = commands.add_parser("prompts", help="the prompt registry: versions, labels, audit")
    actions = prompts.add_subparsers(dest="action", required=True, parser_class=type(prompts))

    listed = actions.add_parser("list", help="every prompt, its versions and labels")
    listed.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one version's text (NAME, NAME@3, NAME@production)")
    show.add_argument("ref", metavar="NAME[@VERSION|@LABEL]")
    show.set_defaults(handler=_show)

    diff = actions.add_parser("diff", help="what changed between two versions")
    diff.add_argument("name")
    diff.add_argument("old", metavar="VERSION|LABEL")
    diff.add_argument("new", metavar="VERSION|LABEL", nargs="?", default="latest")
    diff.set_defaults(handler=_diff)

    sync = actions.add_parser("sync", help="publish the prompt files as new versions")
    sync.add_argument("--label", help="also point this label (e.g. production) at them")
    sync.add_argument("--actor", help="who makes the change (default: the OS user)")
    sync.set_defaults(handler=_sync)

    label = actions.add_parser("label", help="point a label at a version (a deployment)")
    label.add_argument("name")
    label.add_argument("version", type=int)
    label.add_argument("label")
    label.add_argument("--actor", help="who makes the change (default: the OS user)")
    label.set_defaults(handler=_label)

    rollback = actions.add_parser("rollback", help="move a label back to its previous version")
    rollback.add_argument("name")
    rollback.add_argument("--label", default="production")
    rollback.add_argument("--actor", help="who makes the change (default: the OS user)")
    rollback.set_defaults(handler=_rollback)

    log = actions.add_parser("log", help="the audit log, newest first")
    log.add_argument("name", nargs="?")
    log.add_argument("--limit", type=int, default=50)
    log.set_defaults(handler=_log)


def _registry(settings: Settings) -> PromptRegistry:
    from graphops.db import prepare
    from graphops.prompts.registry import PromptRegistry

    return PromptRegistry(prepare(settings))


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9))


def split_ref(text: str) -> tuple[str, int | str | None]:
    """``answer@3`` → ("answer", 3); ``answer@production`` → (…, "production"); ``answer``."""
    name, _, ref = text.partition("@")
    return check_name(name), parse_ref(ref) if ref else None


def _list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    names = registry.names()
    if not names:
        print("the registry is empty: 'graphops prompts sync' publishes the prompt files")
        return 0
    print(f"{'prompt':<24}{'latest':>7}  labels")
    for name in names:
        labels = registry.labels(name)
        shown = ", ".join(f"{label}=v{version}" for label, version in labels.items())
        print(f"{name:<24}{registry.get(name).version:>7}  {shown or '-'}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    name, ref = split_ref(args.ref)
    registry = _registry(settings)
    found = registry.get(name, ref)
    labels = [label for label, v in registry.labels(name).items() if v == found.version]
    print(
        f"# {name} v{found.version} by {found.author} at {_when(found.created_ns)} UTC"
        + (f" [{', '.join(labels)}]" if labels else "")
        + (f": {found.message}" if found.message else "")
    )
    print(found.text, end="" if found.text.endswith("\n") else "\n")
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    name = check_name(args.name)
    old = registry.get(name, parse_ref(args.old))
    new = registry.get(name, parse_ref(args.new))
    lines = difflib.unified_diff(
        old.text.splitlines(), new.text.splitlines(), f"{name}@{old.version}",
        f"{name}@{new.version}", lineterm="",
    )  # fmt: skip
    print("\n".join(lines) or f"{name}@{old.version} and @{new.version} are the same text")
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.prompts.files import PromptLibrary

    registry = _registry(settings)
    library = PromptLibrary(settings.prompts_dir)
    if not library.names():
        raise InvalidInputError(
            f"no prompt files (*.md) in {settings.prompts_dir}: set GRAPHOPS_PROMPTS_DIR"
        )
    synced = registry.sync(library, author=args.actor or default_actor(), label=args.label)
    for version, new in synced:
        state = "new" if new else "unchanged"
        moved = f", {args.label} → v{version.version}" if args.label else ""
        print(f"{version.name}: v{version.version} ({state}{moved})")
    return 0


def _label(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    before = registry.label_of(check_name(args.name), args.label)
    registry.set_label(args.name, args.label, args.version, actor=args.actor or default_actor())
    was = f" (was v{before})" if before is not None else ""
    print(f"{args.name}: {args.label} → v{args.version}{was}")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    before = registry.label_of(check_name(args.name), args.label)
    target = registry.rollback(args.name, args.label, actor=args.actor or default_actor())
    print(f"{args.name}: {args.label} rolled back v{before} → v{target}")
    return 0


def _log(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    entries = _registry(settings).audit(args.name, limit=args.limit)
    for entry in entries:
        if entry.action == "publish":
            what = f"published v{entry.version}" + (f" ({entry.detail})" if entry.detail else "")
        else:
            was = f" (was v{entry.previous})" if entry.previous is not None else ""
            verb = "rolled back" if entry.action == "rollback" else "moved"
            what = f"{verb} {entry.label} → v{entry.version}{was}"
        print(f"{_when(entry.at_ns)}  {entry.actor:<12} {entry.name:<20} {what}")
    if not entries:
        print("no changes recorded")
    return 0
