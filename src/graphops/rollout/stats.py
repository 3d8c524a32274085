"""Is the canary worse than the control? An always-valid test that may be asked at every step.

A canary rollout looks at its numbers after every step, and stops as soon as the
canary looks worse. A fixed-level test asked again and again is not at its level
any more: five looks at ``|z| >= 1.96`` raise a false alarm about 14% of the time
instead of 5%, and a look after every batch of runs far more often. So this
module implements the **mixture sequential probability ratio test** (mSPRT) of
Johari, Pekelis & Walsh, *Always Valid Inference* (2017), the test behind
Optimizely's stats engine, in its normal-approximation form for the difference
of two independent means. With ``d = Δ̂ - margin`` and ``V`` the variance of
``Δ̂`` (``var_canary/n_canary + var_control/n_control``, the variances
estimated), a normal prior ``N(0, τ²)`` on the true difference gives the
likelihood ratio::

    Λ = sqrt(V / (V + τ²)) · exp(τ² · d² / (2 · V · (V + τ²)))

Under "no difference" ``Λ`` is a nonnegative martingale of mean 1, so by Ville's
inequality it ever reaches ``1/alpha``, at any of arbitrarily many looks, with
probability at most ``alpha``. That is what lets the rollout look after every
step and stop at the first alarm. The always-valid p-value is the running
minimum of :attr:`Verdict.p_value` over the looks: keep
``p = min(p, verdict.p_value)``.

**One-sided.** Only a *regression* counts: a look rejects when ``Λ >= 1/alpha``
*and* ``d > 0`` in the harmful orientation. That event is a subset of the
two-sided "Λ ever reaches 1/alpha", so the false-alarm rate stays at most
``alpha`` (in practice well below it: an improving canary never raises the
alarm, and the bound holds for infinitely many looks). With a ``margin`` the null
is "the canary is at most ``margin`` worse": at a true difference of exactly
``margin`` this is the test above, and a smaller true difference shifts every
look's ``d`` down, so it only alarms less often.

**Approximate.** The guarantee is exact for normal observations of known
variance; here the variances are estimated at each look and the means are only
approximately normal, which is why no verdict is given before both arms have
``min_runs`` runs (30 by default) and rare-event rates get a variance floor
(:attr:`Sample.variance`). The simulated false-alarm rates in
``tests/unit/test_rollout_stats.py`` check the approximation where we use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from graphops.errors import InvalidInputError

__all__ = [
    "TAU_IN_CONTROL_SDS",
    "VARIANCE_FLOOR",
    "Sample",
    "Verdict",
    "latency_exceedance",
    "regression",
]

VARIANCE_FLOOR = 1e-12
"""The least variance of a sample that is not 0/1: it only keeps ``V`` above zero.

A score has no known scale, so a constant arm is taken at its word (it has no
noise) and the test leans on the other arm's variance; two constant arms that
differ do differ. Use ``margin`` to tolerate a difference too small to matter.
"""

TAU_IN_CONTROL_SDS = 0.5
"""The default mixing scale ``τ``: half the control's standard deviation.

``Λ`` grows fastest for a true difference near ``τ`` (for an observed difference
``δ`` the best ``τ²`` is ``δ² - V``). A small ``τ`` finds small effects soonest
but big ones later than it could; a large ``τ`` finds big effects in few runs
and small ones late. Half a standard deviation (a "medium" effect, Cohen's
d = 0.5) is scale-free, so it suits rates and scores alike: for an error rate of
5% it is about 0.11 (5% to 15% is found after a median of 175 runs per arm,
where ``τ = 0.02`` takes 300), for a score of standard deviation 0.2 it is 0.1.
It is taken from the control's variance at each look, a plug-in like ``V``
itself. For a rare error rate it is large next to the rate (1% gives about
0.05): pass ``tau`` (say, the rate itself) to find a doubling sooner.
"""


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be finite, not {number!r}")
    return number


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{name} must be a whole number, not {value!r}")
    if int(value) < 0:
        raise InvalidInputError(f"{name} must be at least 0, not {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Sample:
    """One arm's runs, kept as sums so a step's runs pool with ``+``.

    ``total`` and ``total_sq`` are the sum and the sum of squares of the per-run
    observations (1 or 0 for "the run failed"; a score; a duration). ``binary``
    says every observation is 0 or 1, a rate, which gets its own variance floor.
    Make one with :meth:`of` or :meth:`bernoulli`.
    """

    n: int
    total: float
    total_sq: float
    binary: bool = False

    def __post_init__(self) -> None:
        n = _count("n", self.n)
        total = _finite("total", self.total)
        total_sq = _finite("total_sq", self.total_sq)
        if self.binary:
            if total != int(total) or not 0 <= total <= n or total_sq != total:
                raise InvalidInputError(
                    f"a 0/1 sample needs 0 <= total = total_sq <= n hits, got n={n}, "
                    f"total={total}, total_sq={total_sq}"
                )
        elif total_sq < 0 or total * total > n * total_sq * (1 + 1e-9) + 1e-300:
            raise InvalidInputError(
                f"no {n} values have sum {total} and sum of squares {total_sq} "
                "(need total**2 <= n * total_sq): build the sample with Sample.of(values)"
            )

    @classmethod
    def of(cls, values: Iterable[float]) -> Sample:
        """The sample of ``values`` (finite numbers); ``binary`` if each is 0 or 1."""
        numbers_ = [_finite("a value", value) for value in values]
        return cls(
            len(numbers_),
            math.fsum(numbers_),
            math.fsum(value * value for value in numbers_),
            binary=all(value in (0.0, 1.0) for value in numbers_),
        )

    @classmethod
    def bernoulli(cls, n: int, hits: int) -> Sample:
        """``hits`` of ``n`` runs had the event (an error, a degraded answer, a slow run)."""
        n, hits = _count("n", n), _count("hits", hits)
        if hits > n:
            raise InvalidInputError(f"hits ({hits}) cannot exceed the runs n ({n})")
        return cls(n, float(hits), float(hits), binary=True)

    @property
    def mean(self) -> float:
        """The mean observation (the rate, for a 0/1 sample); 0.0 before the first run."""
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The unbiased variance of one observation, never below a floor.

        A 0/1 arm with no errors yet does not have zero variance: it has not seen
        the rare event yet. Taking it at its word would make ``V`` zero (a division
        by zero) or, with the other arm's variance alone, understate ``V`` by half
        under "no difference" and turn the canary's first error into an alarm. So
        a 0/1 sample's variance is at least ``p̃(1 - p̃)`` with
        ``p̃ = (hits + 0.5) / (n + 1)``, the Jeffreys posterior mean of the rate
        (half an event and half a non-event added), which is above ``p(1 - p)``
        for every ``p`` and fades as runs come. Other samples floor at
        :data:`VARIANCE_FLOOR`.
        """
        unbiased = 0.0
        if self.n >= 2:
            unbiased = max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))
        if self.binary:
            smoothed = (self.total + 0.5) / (self.n + 1)
            return max(unbiased, smoothed * (1 - smoothed))
        return max(unbiased, VARIANCE_FLOOR)

    def __add__(self, other: Sample) -> Sample:
        """The two samples' runs pooled (an empty side does not unset ``binary``)."""
        if not isinstance(other, Sample):
            return NotImplemented
        binary = (self.binary or not self.n) and (other.binary or not other.n)
        return Sample(
            self.n + other.n, self.total + other.total, self.total_sq + other.total_sq, binary
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One look's answer: is the canary worse, by how much, and how sure.

    ``estimate`` is ``Δ̂`` oriented so that positive is harmful (before ``margin``).
    ``likelihood_ratio`` is the mixture's ``Λ`` for ``Δ̂ - margin``, either sign
    (1.0 while an arm has no runs). ``p_value`` is this look's one-sided
    always-valid p-value: ``1/Λ``, capped at 1, and 1 when ``Δ̂ - margin`` is not
    harmful or the arms have not ``enough`` runs yet; the rollout's p-value is
    its running minimum, and ``regressed`` is ``p_value <= alpha``.
    """

    regressed: bool
    estimate: float
    likelihood_ratio: float
    p_value: float
    n_control: int
    n_canary: int
    enough: bool


def regression(
    control: Sample,
    canary: Sample,
    *,
    worse: Literal["higher", "lower"],
    alpha: float = 0.05,
    tau: float | Sequence[float] | None = None,
    min_runs: int = 30,
    margin: float = 0.0,
) -> Verdict:
    """Whether ``canary`` is worse than ``control`` at this look, at level ``alpha`` over all looks.

    ``worse="higher"`` for an error, degraded or slow-run rate, ``"lower"`` for a
    quality score. ``margin`` (in the metric's units, at least 0) is how much worse
    the canary may be before it counts: the test is on ``Δ̂ - margin``. ``tau``
    is the mixing scale (default :data:`TAU_IN_CONTROL_SDS` control standard
    deviations); several scales give the average of their likelihood ratios, which
    is again a test martingale of mean 1 under "no difference" (a mixture over a
    prior on ``τ`` that puts equal weight on each), so the level still holds, and
    the test is quick on small and large differences alike. Give every look the
    arms' runs so far; stop at the first ``regressed``.
    """
    for name, arm in (("control", control), ("canary", canary)):
        if not isinstance(arm, Sample):
            raise InvalidInputError(f"{name} must be a Sample, not {type(arm).__name__}")
    if worse not in ("higher", "lower"):
        raise InvalidInputError(f"worse must be 'higher' or 'lower', not {worse!r}")
    alpha = _finite("alpha", alpha)
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1 (say 0.05), not {alpha}")
    taus: tuple[float | None, ...] = (
        (tau,) if tau is None or isinstance(tau, int | float) else tuple(tau)
    )
    if not taus or any(t is not None and _finite("tau", t) <= 0 for t in taus):
        raise InvalidInputError(f"tau must be above 0 (or None for the default), not {tau}")
    if isinstance(min_runs, bool) or not isinstance(min_runs, numbers.Integral) or min_runs < 1:
        raise InvalidInputError(f"min_runs must be a whole number of at least 1, not {min_runs!r}")
    if _finite("margin", margin) < 0:
        raise InvalidInputError(f"margin must be at least 0 (in the metric's units), not {margin}")

    enough = min(control.n, canary.n) >= min_runs
    if not control.n or not canary.n:
        return Verdict(False, 0.0, 1.0, 1.0, control.n, canary.n, enough)
    sign = 1.0 if worse == "higher" else -1.0
    estimate = sign * (canary.mean - control.mean)
    gap = estimate - margin
    v = canary.variance / canary.n + control.variance / control.n
    logs = []
    for scale in taus:
        tau2 = float(scale) ** 2 if scale is not None else TAU_IN_CONTROL_SDS**2 * control.variance
        logs.append(-0.5 * math.log1p(tau2 / v) + tau2 * gap * gap / (2 * v * (v + tau2)))
    top = max(logs)  # log of the mean ratio, without overflow
    log_lr = top + math.log(sum(math.exp(x - top) for x in logs) / len(logs))
    likelihood_ratio = math.exp(log_lr) if log_lr < 700 else math.inf
    regressed = enough and gap > 0 and log_lr >= -math.log(alpha)
    p_value = min(1.0, math.exp(-log_lr)) if enough and gap > 0 else 1.0
    return Verdict(regressed, estimate, likelihood_ratio, p_value, control.n, canary.n, enough)


def latency_exceedance(
    control_durations: Sequence[float],
    canary_durations: Sequence[float],
    slack: float = 0.10,
    quantile: float = 0.95,
) -> tuple[Sample, Sample]:
    """Both arms as 0/1 samples of "slower than ``(1 + slack)`` times the control's ``quantile``".

    This turns "the canary's p95 is no worse than the control's plus 10%" into a
    rate test for :func:`regression` with ``worse="higher"``: under "the same
    latency distribution" both arms exceed the threshold at the same rate (about
    ``1 - quantile`` less what ``slack`` removes), and a slower canary exceeds it
    more often. That is stricter than "p95 within the slack": any slowdown that
    reaches past the threshold counts once there are runs enough to see it (a
    ``margin`` on the rate tolerates some). The threshold is drawn from the
    control's durations, so it moves a little as the control's runs come in;
    pass the control's durations of a settled period to hold it still.
    """
    slack, quantile = _finite("slack", slack), _finite("quantile", quantile)
    if slack < 0:
        raise InvalidInputError(f"slack must be at least 0 (0.10 is 10%), not {slack}")
    if not 0 < quantile < 1:
        raise InvalidInputError(f"quantile must be between 0 and 1 (0.95 is p95), not {quantile}")
    control, canary = (
        _durations(name, durations)
        for name, durations in (("control", control_durations), ("canary", canary_durations))
    )
    if not control.size:
        raise InvalidInputError("the control needs at least one duration to draw a threshold from")
    threshold = (1 + slack) * float(np.quantile(control, quantile))
    return (
        Sample.bernoulli(int(control.size), int((control > threshold).sum())),
        Sample.bernoulli(int(canary.size), int((canary > threshold).sum())),
    )


def _durations(name: str, durations: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    values = np.asarray(durations)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iuf"):
        raise InvalidInputError(f"{name} durations must be a flat sequence of numbers (seconds)")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise InvalidInputError(f"{name} durations must be finite")
    if (values < 0).any():
        raise InvalidInputError(f"{name} durations cannot be negative")
    return values
