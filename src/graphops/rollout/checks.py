"""What a rollout's step decides from the two arms' runs: advance, wait, roll back or promote.

Each arm (control and canary) is what the span store holds of its runs **since
the current step started** (:class:`Arm`): how many, how many failed, how many
answered degraded, and their wall times. Comparing the two over the same window
means both served the same traffic under the same load: a control pooled from
earlier, quieter hours would make any canary look slow. Three checks compare
them, each the always-valid one-sided test of
:func:`graphops.rollout.stats.regression`:

* **errors**: the share of runs that ended in an error;
* **degraded**: the share of runs answered on the degradation ladder;
* **latency**: the share of runs slower than the control's p95 plus 10%
  (:func:`~graphops.rollout.stats.latency_exceedance`): "p95 no worse than the
  control's + 10%" as a rate both arms can be tested on;
* **quality**: the mean feedback score of the arms' runs
  (:mod:`graphops.rollout.feedback`), once each arm has :data:`MIN_SCORES`.

The rollout's ``alpha`` is split evenly (Bonferroni) over the four checks of
every step that is compared (every step below 100%), so the chance of any false
rollback over the whole rollout stays at most ``alpha``; within a step, the test
is always valid, so looking after every batch of runs does not inflate it.

Any regression rolls the canary back at once. With none, a step advances once
both arms have ``min_runs`` runs in it and it has lasted ``interval_s``; passing
the last step below 100% promotes the canary (there is no control left to
compare it with at 100%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from graphops.rollout.model import Rollout
from graphops.rollout.stats import (
    TAU_IN_CONTROL_SDS,
    Sample,
    Verdict,
    latency_exceedance,
    regression,
)

__all__ = ["MIN_SCORES", "Arm", "Check", "Decision", "decide"]

Action = Literal["advance", "wait", "rollback", "promote"]
_LATENCY_SLACK = 0.10
_RATE_TAUS = (0.02, 0.05, 0.1, 0.2, 0.4)  # mixing scales of a rate test (see _rate_tau)
_SCORE_TAUS = (0.05, 0.1, 0.2)  # and of a mean score's, on its 0-1 scale
MIN_SCORES = 10
"""Scores each arm needs before their quality is compared (feedback is sparser than runs)."""


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's runs since the rollout started."""

    runs: int = 0
    errors: int = 0
    degraded: int = 0
    seconds: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()  # feedback given to these runs, 0 (bad) to 1 (good)


@dataclass(frozen=True, slots=True)
class Check:
    """One metric's comparison: the rates (or share slower) of each arm and the test's verdict."""

    name: str
    control: float
    canary: float
    verdict: Verdict

    def as_json(self) -> dict[str, Any]:
        """The numbers the audit log keeps."""
        return {
            "control": round(self.control, 6),
            "canary": round(self.canary, 6),
            "p_value": round(self.verdict.p_value, 6),
            "regressed": self.verdict.regressed,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What one look at a rollout decided, and on what numbers."""

    action: Action
    reason: str
    control: Arm
    canary: Arm
    checks: tuple[Check, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        """The decision as the audit log keeps it."""
        return {
            "action": self.action,
            "reason": self.reason,
            "runs": {"control": self.control.runs, "canary": self.canary.runs},
            "checks": {c.name: c.as_json() for c in self.checks},
        }


def _rate_tau(control: Sample) -> tuple[float, ...]:
    """The test's mixing scales for a rate: half the control's standard deviation, and more.

    The test is quickest on differences near its scale. Scaled by the control
    alone, a control with no errors yet (a rate near 0) makes the scale so small
    that a canary failing half its runs took hundreds of runs to flag (the demo
    in docs/rollout.md did). So the ratio is averaged over that scale and
    :data:`_RATE_TAUS`, 2 to 40 points of rate: a canary worse by a little or by
    a lot is caught about as quickly as one scale tuned to it would.
    """
    return (TAU_IN_CONTROL_SDS * math.sqrt(control.variance), *_RATE_TAUS)


def _rate(hits: int, runs: int) -> float:
    return hits / runs if runs else 0.0


def checks(rollout: Rollout, control: Arm, canary: Arm) -> tuple[Check, ...]:
    """The three comparisons, each at its share of ``alpha`` (see the module docstring)."""
    alpha = rollout.alpha / (4 * (len(rollout.steps) - 1 or 1))
    out = []
    counted = (
        ("errors", control.errors, canary.errors),
        ("degraded", control.degraded, canary.degraded),
    )
    for name, in_control, in_canary in counted:
        base = Sample.bernoulli(control.runs, in_control)
        verdict = regression(
            base,
            Sample.bernoulli(canary.runs, in_canary),
            worse="higher",
            alpha=alpha,
            min_runs=rollout.min_runs,
            tau=_rate_tau(base),
        )
        rates = _rate(in_control, control.runs), _rate(in_canary, canary.runs)
        out.append(Check(name, *rates, verdict))
    if control.seconds and canary.seconds:
        slow_control, slow_canary = latency_exceedance(
            control.seconds, canary.seconds, slack=_LATENCY_SLACK
        )
        verdict = regression(
            slow_control,
            slow_canary,
            worse="higher",
            alpha=alpha,
            min_runs=rollout.min_runs,
            tau=_rate_tau(slow_control),
        )
        out.append(Check("latency", slow_control.mean, slow_canary.mean, verdict))
    if len(control.scores) >= MIN_SCORES and len(canary.scores) >= MIN_SCORES:
        judged, judged_canary = Sample.of(control.scores), Sample.of(canary.scores)
        verdict = regression(
            judged,
            judged_canary,
            worse="lower",
            alpha=alpha,
            min_runs=MIN_SCORES,
            tau=(TAU_IN_CONTROL_SDS * math.sqrt(judged.variance), *_SCORE_TAUS),
        )
        out.append(Check("quality", judged.mean, judged_canary.mean, verdict))
    return tuple(out)


def decide(
    rollout: Rollout,
    control: Arm,
    canary: Arm,
    *,
    now_ns: int,
) -> Decision:
    """What the step does now, on the arms' runs in it (see the module docstring)."""
    found = checks(rollout, control, canary)
    regressed = [c for c in found if c.verdict.regressed]
    if regressed:
        worst = ", ".join(
            f"{c.name} {c.canary:.1%} against {c.control:.1%} (p={c.verdict.p_value:.4f})"
            for c in regressed
        )
        return Decision("rollback", f"the canary regressed: {worst}", control, canary, found)
    short = [
        f"{name} has {arm.runs} of {rollout.min_runs} runs at this step"
        for name, arm in (("control", control), ("canary", canary))
        if arm.runs < rollout.min_runs
    ]
    if short:
        return Decision("wait", "; ".join(short), control, canary, found)
    waited = (now_ns - rollout.step_started_ns) / 1e9
    if waited < rollout.interval_s:
        reason = f"the step has lasted {waited:.0f} of {rollout.interval_s:.0f} s"
        return Decision("wait", reason, control, canary, found)
    following = rollout.steps[rollout.step + 1]
    if following == 100:
        reason = f"no regression at {rollout.share}%: the canary takes 100% and is the default"
        return Decision("promote", reason, control, canary, found)
    reason = f"no regression at {rollout.share}%: {rollout.share}% -> {following}%"
    return Decision("advance", reason, control, canary, found)
