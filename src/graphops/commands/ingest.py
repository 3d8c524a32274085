"""``graphops ingest``: add folders, files or URLs to the index.

Then the answer cache loses exactly the entries citing a document the ingest
added, changed or removed. That purge may fail without failing the ingest:
every cache key holds the corpus version, so entries of the old corpus are
never served anyway; they only take room until they expire.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from graphops.commands.progress import progress
from graphops.settings import Settings

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``ingest`` to the ``graphops`` parser."""
    ingest = commands.add_parser("ingest", help="build or update the index from files or URLs")
    ingest.add_argument("targets", nargs="+", metavar="PATH|URL")
    ingest.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from graphops.corpus.ensure import ingest_with_settings
    from graphops.models import make_embeddings

    update, close = progress("embedding")
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
    changed = (*report.added, *report.updated, *report.removed)
    if changed:
        _purge_cache(changed, settings)
    return 0


def _purge_cache(docs: tuple[str, ...], settings: Settings) -> None:
    """Purge the cached answers citing ``docs``; a failure is a warning (see the module)."""
    from sqlalchemy.exc import SQLAlchemyError

    from graphops.cache.factory import answer_store
    from graphops.errors import GraphopsError

    try:
        gone = answer_store(settings).purge(docs=docs)
    except (GraphopsError, SQLAlchemyError) as exc:
        why = str(exc) if isinstance(exc, GraphopsError) else type(exc).__name__
        print(
            f"graphops: warning: the answer cache was not purged ({why}); its answers from "
            "the old corpus are not served, the corpus version is part of every key",
            file=sys.stderr,
        )
        return
    print(f"purged {len(gone)} cached answer(s) citing a changed document")
