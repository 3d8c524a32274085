"""``graphops ingest``: add folders, files or URLs to the index."""

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
    return 0
