"""A canary rollout: a flag's canary variant taking over from its control, step by step.

A :class:`Rollout` is a small immutable record: which flag, which variant is the
control and which the canary, the canary's share at each step (5, 25, 50, 100 by
default), where it is now, and the rules a step must pass before the next one:
at least ``min_runs`` runs on each side during the step and
``interval_s`` seconds at the step, and no significant regression at level
``alpha`` (:mod:`graphops.rollout.checks`). The last share, 100, is the
promotion itself: at 100% there is no control left to compare the canary with. It is stored in
``graphops_rollouts``, one row per flag, and every decision about it goes to the
audit log with its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from graphops.errors import InvalidInputError
from graphops.flags.model import check_flag_name, check_variant_name

__all__ = ["DEFAULT_STEPS", "Rollout", "State", "parse_steps"]

DEFAULT_STEPS = (5, 25, 50, 100)
"""The canary's share at each step, in percent."""

State = Literal["running", "promoted", "rolled_back", "aborted"]


def parse_steps(text: str) -> tuple[int, ...]:
    """``"5,25,50,100"`` as ``(5, 25, 50, 100)``: increasing whole percents ending at 100."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--steps {text!r}: whole percents, e.g. 5,25,50,100") from None
    return _checked_steps(steps)


def _checked_steps(steps: tuple[int, ...]) -> tuple[int, ...]:
    if not steps or any(isinstance(s, bool) or not isinstance(s, int) for s in steps):
        raise InvalidInputError(f"steps are whole percents, not {steps!r}")
    if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise InvalidInputError(
            f"steps {', '.join(map(str, steps))}: increasing percents between 1 and 100"
        )
    if steps[-1] != 100 or len(steps) < 2:
        raise InvalidInputError(
            f"steps {', '.join(map(str, steps))}: at least one share below 100, then 100 "
            "(the canary takes over)"
        )
    return steps


@dataclass(frozen=True, slots=True)
class Rollout:
    """One flag's rollout (see the module docstring). Times are nanoseconds since the epoch."""

    flag: str
    control: str
    canary: str
    steps: tuple[int, ...] = DEFAULT_STEPS
    step: int = 0  # index into steps: the canary's share now is steps[step] (never the 100)
    state: State = "running"
    min_runs: int = 100
    interval_s: float = 0.0
    alpha: float = 0.05
    graph: str | None = None  # only this graph's runs count (None: every graph's)
    started_ns: int = 0
    step_started_ns: int = 0
    version: int = 0  # the store's; 0 for a rollout never stored

    def __post_init__(self) -> None:
        check_flag_name(self.flag)
        check_variant_name(self.control)
        check_variant_name(self.canary)
        if self.control == self.canary:
            raise InvalidInputError(f"the canary {self.canary!r} is the control already")
        object.__setattr__(self, "steps", _checked_steps(tuple(self.steps)))
        if not 0 <= self.step < len(self.steps) - 1:
            raise InvalidInputError(
                f"step {self.step} is not one of the {len(self.steps) - 1} steps below 100%"
            )
        if self.state not in ("running", "promoted", "rolled_back", "aborted"):
            raise InvalidInputError(f"a rollout's state is not {self.state!r}")
        if isinstance(self.min_runs, bool) or not isinstance(self.min_runs, int):
            raise InvalidInputError(f"--min-runs is a whole number, not {self.min_runs!r}")
        if self.min_runs < 10:
            raise InvalidInputError(
                f"--min-runs is {self.min_runs}: at least 10 runs a side before any verdict"
            )
        if not math.isfinite(self.interval_s) or self.interval_s < 0:
            raise InvalidInputError(f"--interval is seconds, at least 0, not {self.interval_s!r}")
        if not 0 < self.alpha < 0.5:
            raise InvalidInputError(f"--alpha is a level between 0 and 0.5, not {self.alpha!r}")

    @property
    def share(self) -> int:
        """The canary's weight now, in percent (0 once rolled back or aborted)."""
        if self.state in ("rolled_back", "aborted"):
            return 0
        return 100 if self.state == "promoted" else self.steps[self.step]
