"""Indexing progress where stderr is not a terminal: a plain line every few seconds."""

from __future__ import annotations

import io

from graphops.commands.progress import PLAIN_EVERY_S, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_when_not_a_terminal() -> None:
    out, clock = io.StringIO(), FakeClock()
    update, close = progress("indexing docs", stream=out, clock=clock)
    update(32, 480)  # at once: nothing yet
    clock.now += PLAIN_EVERY_S - 1
    update(64, 480)
    assert out.getvalue() == ""
    clock.now += 1
    update(120, 480)
    clock.now += 1
    update(152, 480)  # too soon after the last line
    clock.now += PLAIN_EVERY_S
    update(300, 480)
    update(480, 480)
    close()
    assert out.getvalue().splitlines() == [
        "indexing docs: 120/480 chunks",
        "indexing docs: 300/480 chunks",
        "indexing docs: 480/480 chunks",
    ]


def test_short_work_prints_nothing() -> None:
    out, clock = io.StringIO(), FakeClock()
    update, close = progress("embedding", stream=out, clock=clock)
    update(32, 40)
    update(40, 40)
    close()
    assert out.getvalue() == ""


def test_no_repeated_last_line() -> None:
    out, clock = io.StringIO(), FakeClock()
    update, close = progress("embedding", stream=out, clock=clock, every=5)
    clock.now += 5
    update(40, 40)
    close()
    assert out.getvalue() == "embedding: 40/40 chunks\n"


def test_a_terminal_gets_a_bar() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    update, close = progress("embedding", stream=out, clock=FakeClock())
    update(20, 40)
    close()
    assert "embedding" in out.getvalue()
    assert "chunks" not in out.getvalue()  # the bar, not the plain lines
