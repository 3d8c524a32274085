"""Progress of long work (indexing, embedding) on stderr, for ``ask`` and ``ingest``.

On a terminal it is a tqdm bar. Anywhere else (a CI log, ``2> file``, a container)
a bar would be either silent or a flood of carriage returns, so a plain line is
printed every :data:`PLAIN_EVERY_S` seconds instead, and nothing for work that
finishes sooner.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["PLAIN_EVERY_S", "progress"]

PLAIN_EVERY_S = 10.0
"""Seconds between two plain progress lines when stderr is not a terminal."""


def progress(
    label: str,
    *,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    every: float = PLAIN_EVERY_S,
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """``(update(done, total), close())`` reporting on ``stream`` (stderr by default)."""
    out = sys.stderr if stream is None else stream
    if out.isatty():
        return _bar(label, out)
    return _plain(label, out, clock, every)


def _bar(label: str, out: TextIO) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="chunk", file=out, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _plain(
    label: str, out: TextIO, clock: Callable[[], float], every: float
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    last_line = clock()
    shown: tuple[int, int] | None = None  # the last line printed
    latest: tuple[int, int] | None = None

    def line(done: int, total: int) -> None:
        nonlocal shown
        print(f"{label}: {done}/{total} chunks", file=out, flush=True)
        shown = (done, total)

    def update(done: int, total: int) -> None:
        nonlocal last_line, latest
        latest = (done, total)
        now = clock()
        if now - last_line >= every:
            line(done, total)
            last_line = now

    def close() -> None:
        # once it has said anything, say where it ended, so a log never stops at 120/480
        if shown is not None and latest is not None and latest != shown:
            line(*latest)

    return update, close
