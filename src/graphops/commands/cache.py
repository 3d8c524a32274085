"""``graphops cache stats|purge``: what the answer cache holds, and deleting entries.

Both work on the store :func:`graphops.cache.factory.answer_store` gives, in
graphops' database (``GRAPHOPS_DATABASE_URL``, else the SQLite file). ``purge``
deletes the entries matching every filter given (``--tenant``, ``--doc``,
``--expired``) and needs at least one of them, or ``--all``, so a mistyped
command never empties the cache. A purged answer is computed again on the next
question: nothing is lost that cannot be.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from graphops.errors import InvalidInputError

if TYPE_CHECKING:
    from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``cache`` and its subcommands to the ``graphops`` parser."""
    cache = commands.add_parser("cache", help="the answer cache: counts, purging entries")
    actions = cache.add_subparsers(dest="action", required=True, parser_class=type(cache))

    stats = actions.add_parser("stats", help="count live and expired entries, per tenant")
    stats.add_argument("--tenant", help="count one tenant's entries only")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=_stats)

    purge = actions.add_parser("purge", help="delete the entries matching every filter given")
    purge.add_argument("--tenant", help="entries of this tenant")
    purge.add_argument(
        "--doc",
        dest="docs",
        action="extend",
        nargs="+",
        metavar="DOC_ID",
        help="entries whose answers cite any of these documents (e.g. docs/limits.md)",
    )
    purge.add_argument("--expired", action="store_true", help="entries whose TTL has passed")
    purge.add_argument("--all", action="store_true", help="every entry (and no filter)")
    purge.set_defaults(handler=_purge)


def _tenant(args: argparse.Namespace) -> str | None:
    tenant: str | None = args.tenant
    if tenant is not None and not tenant.strip():
        raise InvalidInputError("--tenant needs a non-empty tenant id")
    return tenant


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.cache.factory import answer_store
    from graphops.db.engine import safe_url

    tenant = _tenant(args)
    found = answer_store(settings).stats(time.time(), tenant)
    if args.json:
        shown = {
            "entries": found.entries,
            "expired": found.expired,
            "tenants": dict(found.tenants),
            "docs": found.docs,
        }
        print(json.dumps(shown if tenant is None else {"tenant": tenant, **shown}))
        return 0
    whose = f" of tenant {tenant}" if tenant is not None else ""
    print(
        f"answer cache{whose} in {safe_url(settings.database)}: {found.entries} live "
        f"entries, {found.expired} expired; {found.docs} documents cited"
    )
    if found.tenants:
        print(f"  {'tenant':<32}{'entries':>8}")
        for name, count in sorted(found.tenants.items()):
            print(f"  {name:<32}{count:>8}")
    return 0


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.cache.factory import answer_store

    tenant = _tenant(args)
    docs: list[str] | None = args.docs
    if docs is not None and not all(doc.strip() for doc in docs):
        raise InvalidInputError("--doc needs non-empty document ids (e.g. docs/limits.md)")
    filtered = tenant is not None or docs is not None or args.expired
    if args.all and filtered:
        raise InvalidInputError(
            "--all purges every entry: give it alone, or drop it to purge what the filters match"
        )
    if not (args.all or filtered):
        raise InvalidInputError(
            "cache purge needs a filter (--tenant, --doc, --expired) or --all for every entry"
        )
    gone = answer_store(settings).purge(
        tenant=tenant, docs=docs, expired_before=time.time() if args.expired else None
    )
    print(f"purged {len(gone)} cached answer(s)")
    return 0
