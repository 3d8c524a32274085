"""Progress of long work (indexing, embedding) on stderr, for ``ask`` and ``ingest``."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["progress"]


def progress(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm bar on stderr (silent when stderr is not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="chunk", file=sys.stderr, disable=None, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close
