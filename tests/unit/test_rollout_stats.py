"""The canary regression test: at most alpha false alarms over many looks, and it finds them.

The simulations use fixed seeds, so every number here is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from graphops.errors import InvalidInputError
from graphops.rollout.stats import (
    TAU_IN_CONTROL_SDS,
    VARIANCE_FLOOR,
    Sample,
    Verdict,
    latency_exceedance,
    regression,
)

ALPHA = 0.05


def tolerance(rollouts: int, rate: float = ALPHA) -> float:
    """Three binomial standard errors of a rate measured over ``rollouts``."""
    return 3 * math.sqrt(rate * (1 - rate) / rollouts)


def naive_alarm(control: Sample, canary: Sample, worse: str = "higher") -> bool:
    """What a dashboard does at every look: the canary worse and ``z >= 1.96``."""
    sign = 1.0 if worse == "higher" else -1.0
    v = control.variance / control.n + canary.variance / canary.n
    return min(control.n, canary.n) >= 30 and sign * (canary.mean - control.mean) >= 1.96 * v**0.5


def rate_rollouts(
    p_control: float, p_canary: float, rollouts: int, seed: int, step: int = 25, looks: int = 80
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Cumulative runs and errors per arm at each look: ``step`` more runs per arm per look."""
    rng = np.random.default_rng(seed)
    control = rng.binomial(step, p_control, size=(rollouts, looks)).cumsum(axis=1)
    canary = rng.binomial(step, p_canary, size=(rollouts, looks)).cumsum(axis=1)
    runs = np.broadcast_to(step * np.arange(1, looks + 1), (rollouts, looks))
    return runs, control, canary


def alarms(
    runs_control: np.ndarray[Any, Any],
    hits_control: np.ndarray[Any, Any],
    runs_canary: np.ndarray[Any, Any],
    hits_canary: np.ndarray[Any, Any],
    **options: Any,
) -> tuple[list[int | None], float]:
    """Per rollout the look of the first alarm (None: never), and the naive test's alarm rate."""
    first: list[int | None] = []
    naive = 0
    for r in range(hits_control.shape[0]):
        found: int | None = None
        naive_found = False
        for j in range(hits_control.shape[1]):
            control = Sample.bernoulli(int(runs_control[r, j]), int(hits_control[r, j]))
            canary = Sample.bernoulli(int(runs_canary[r, j]), int(hits_canary[r, j]))
            naive_found = naive_found or naive_alarm(control, canary)
            if found is None and regression(control, canary, worse="higher", **options).regressed:
                found = j
        first.append(found)
        naive += naive_found
    return first, naive / hits_control.shape[0]


def test_identical_rates_looked_at_80_times_raise_at_most_alpha_false_alarms() -> None:
    """2,000 rollouts of two 5% error rates, a look every 25 runs per arm up to 2,000.

    The mSPRT alarms in about 1% of them (bound: 5%); the naive z >= 1.96 at the
    same looks alarms in about 17%, which is why the rollout needs the sequential test.
    """
    rollouts = 2000
    runs, control, canary = rate_rollouts(0.05, 0.05, rollouts, seed=11)
    first, naive = alarms(runs, control, runs, canary)
    sequential = sum(f is not None for f in first) / rollouts
    assert sequential <= ALPHA + tolerance(rollouts), sequential
    assert naive >= 2 * ALPHA, naive  # about 0.17
    assert naive > sequential + 0.1


def step_rollouts(
    p: float, rollouts: int, seed: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Steps of 5/25/50/100% canary, 1,000 runs each, a look every 100 runs: unequal arms."""
    shares = np.repeat([0.05, 0.25, 0.50, 1.00], 10)  # 40 looks of 100 runs
    canary_runs = np.cumsum(np.rint(100 * shares)).astype(int)
    control_runs = np.cumsum(np.rint(100 * (1 - shares))).astype(int)
    rng = np.random.default_rng(seed)
    per_look_canary = np.diff(canary_runs, prepend=0)
    per_look_control = np.diff(control_runs, prepend=0)
    canary = rng.binomial(per_look_canary, p, size=(rollouts, shares.size)).cumsum(axis=1)
    control = rng.binomial(per_look_control, p, size=(rollouts, shares.size)).cumsum(axis=1)
    shape = (rollouts, shares.size)
    return (
        np.broadcast_to(control_runs, shape),
        control,
        np.broadcast_to(canary_runs, shape),
        canary,
    )


@pytest.mark.parametrize("p", [0.01, 0.05, 0.20])
def test_identical_rates_through_the_rollout_steps_raise_at_most_alpha(p: float) -> None:
    """1,000 rollouts through the 5/25/50/100% steps (arms of very unequal sizes), 40 looks."""
    rollouts = 1000
    first, naive = alarms(*step_rollouts(p, rollouts, seed=int(p * 1000)))
    sequential = sum(f is not None for f in first) / rollouts
    assert sequential <= ALPHA + tolerance(rollouts), sequential
    assert naive > sequential, naive


def test_identical_scores_looked_at_80_times_raise_at_most_alpha_false_alarms() -> None:
    """1,000 rollouts of two quality scores of mean 0.8 and sd 0.2, worse="lower"."""
    rollouts, step, looks = 1000, 25, 80
    rng = np.random.default_rng(12)
    arms = [rng.normal(0.8, 0.2, size=(rollouts, looks, step)) for _ in range(2)]
    sums = [(a.sum(axis=2).cumsum(axis=1), (a * a).sum(axis=2).cumsum(axis=1)) for a in arms]
    flagged = naive = 0
    for r in range(rollouts):
        seen = naive_seen = False
        for j in range(looks):
            n = step * (j + 1)
            control = Sample(n, float(sums[0][0][r, j]), float(sums[0][1][r, j]))
            canary = Sample(n, float(sums[1][0][r, j]), float(sums[1][1][r, j]))
            naive_seen = naive_seen or naive_alarm(control, canary, worse="lower")
            seen = seen or regression(control, canary, worse="lower").regressed
        flagged += seen
        naive += naive_seen
    assert flagged / rollouts <= ALPHA + tolerance(rollouts), flagged / rollouts
    assert naive / rollouts >= 2 * ALPHA, naive / rollouts


def test_a_tripled_error_rate_is_found_in_almost_every_rollout_and_early() -> None:
    """5% to 15%: found in at least 95% of 500 rollouts, by a median of a few hundred runs."""
    rollouts = 500
    runs, control, canary = rate_rollouts(0.05, 0.15, rollouts, seed=21)
    first, _ = alarms(runs, control, runs, canary)
    found = [f for f in first if f is not None]
    assert len(found) / rollouts >= 0.95
    assert max(found) < runs.shape[1] - 1  # each one before the last look
    assert float(np.median(runs[0, found])) <= 400  # 175 runs per arm at this seed


def test_a_quality_drop_is_found_in_almost_every_rollout_and_early() -> None:
    """A mean score of 0.8 falling to 0.6 (sd 0.2), worse="lower", looks every 25 runs."""
    rollouts, step, looks = 500, 25, 80
    rng = np.random.default_rng(22)
    looks_to_find: list[int] = []
    for _ in range(rollouts):
        control = canary = Sample(0, 0.0, 0.0)
        for j in range(looks):
            control = control + Sample.of(rng.normal(0.8, 0.2, step))
            canary = canary + Sample.of(rng.normal(0.6, 0.2, step))
            verdict = regression(control, canary, worse="lower")
            if verdict.regressed:
                assert verdict.estimate > 0  # oriented: positive is harmful
                looks_to_find.append(j)
                break
    assert len(looks_to_find) / rollouts >= 0.95
    assert max(looks_to_find) < looks - 1
    assert float(np.median(looks_to_find)) <= 3  # 50 runs per arm at this seed


def test_a_better_canary_is_never_flagged() -> None:
    runs, control, canary = rate_rollouts(0.15, 0.05, 200, seed=31)
    first, _ = alarms(runs, control, runs, canary)
    assert all(f is None for f in first)
    verdict = regression(
        Sample.bernoulli(10_000, 1500), Sample.bernoulli(10_000, 10), worse="higher"
    )
    assert not verdict.regressed
    assert verdict.estimate < 0
    assert verdict.p_value == 1.0
    assert verdict.likelihood_ratio > 1e6  # a clear difference, only not a harmful one
    better = regression(Sample.of([0.6] * 40), Sample.of([0.9] * 40), worse="lower")
    assert not better.regressed and better.estimate == pytest.approx(-0.3)


def test_the_orientation_follows_worse() -> None:
    control, canary = Sample.bernoulli(2000, 100), Sample.bernoulli(2000, 300)
    assert regression(control, canary, worse="higher").regressed
    as_score = regression(control, canary, worse="lower")
    assert not as_score.regressed
    assert as_score.estimate == pytest.approx(-0.1)


def test_min_runs_holds_off_a_verdict() -> None:
    control, canary = Sample.bernoulli(29, 0), Sample.bernoulli(29, 29)
    early = regression(control, canary, worse="higher")
    assert early == Verdict(
        False, 1.0, early.likelihood_ratio, 1.0, n_control=29, n_canary=29, enough=False
    )
    assert early.likelihood_ratio > 1 / ALPHA  # the evidence is shown, the verdict withheld
    ready = regression(
        control + Sample.bernoulli(1, 0), canary + Sample.bernoulli(1, 1), worse="higher"
    )
    assert ready.regressed and ready.enough and (ready.n_control, ready.n_canary) == (30, 30)
    lopsided = regression(Sample.bernoulli(5000, 0), Sample.bernoulli(29, 29), worse="higher")
    assert not lopsided.regressed and not lopsided.enough
    assert regression(
        Sample.bernoulli(5, 0), Sample.bernoulli(5, 5), worse="higher", min_runs=5
    ).regressed
    empty = regression(Sample.bernoulli(0, 0), Sample.bernoulli(100, 50), worse="higher")
    assert empty == Verdict(False, 0.0, 1.0, 1.0, 0, 100, False)


def test_the_margin_tolerates_a_small_regression_in_the_metrics_units() -> None:
    control, canary = Sample.bernoulli(20_000, 1000), Sample.bernoulli(20_000, 1600)  # 5% -> 8%
    assert regression(control, canary, worse="higher").regressed
    assert regression(control, canary, worse="higher", margin=0.01).regressed
    for margin in (0.03, 0.05):  # up to three points worse is tolerated
        tolerated = regression(control, canary, worse="higher", margin=margin)
        assert not tolerated.regressed
        assert tolerated.p_value == 1.0
        assert tolerated.estimate == pytest.approx(0.03)  # the estimate itself is not shifted
    scores = regression(Sample.of([0.8, 0.7] * 500), Sample.of([0.75, 0.65] * 500), worse="lower")
    assert scores.regressed
    assert not regression(
        Sample.of([0.8, 0.7] * 500), Sample.of([0.75, 0.65] * 500), worse="lower", margin=0.05
    ).regressed


def test_arms_without_any_error_do_not_divide_by_zero() -> None:
    quiet = regression(Sample.bernoulli(1000, 0), Sample.bernoulli(1000, 0), worse="higher")
    assert not quiet.regressed and quiet.estimate == 0.0
    assert 0 < quiet.likelihood_ratio < 1 and quiet.p_value == 1.0
    one_error = regression(Sample.bernoulli(1000, 0), Sample.bernoulli(1000, 1), worse="higher")
    assert not one_error.regressed  # one error is not evidence of a regression
    assert regression(
        Sample.bernoulli(1000, 0), Sample.bernoulli(1000, 30), worse="higher"
    ).regressed
    flat = regression(Sample.of([0.5] * 50), Sample.of([0.5] * 50), worse="lower")
    assert not flat.regressed and math.isfinite(flat.likelihood_ratio)
    # two constant (noise-free) scores that differ do differ
    assert regression(Sample.of([0.5] * 50), Sample.of([0.4] * 50), worse="lower").regressed
    overwhelming = regression(
        Sample.bernoulli(10**6, 0), Sample.bernoulli(10**6, 5 * 10**5), worse="higher"
    )
    assert overwhelming.regressed and overwhelming.likelihood_ratio == math.inf
    assert overwhelming.p_value == 0.0


def test_the_p_value_and_the_verdict_agree() -> None:
    rng = np.random.default_rng(41)
    for _ in range(300):
        n_control, n_canary = (int(x) for x in rng.integers(1, 400, size=2))
        control = Sample.bernoulli(n_control, int(rng.binomial(n_control, 0.1)))
        canary = Sample.bernoulli(n_canary, int(rng.binomial(n_canary, 0.2)))
        alpha = float(rng.uniform(0.01, 0.2))
        verdict = regression(control, canary, worse="higher", alpha=alpha)
        assert 0 <= verdict.p_value <= 1
        assert verdict.regressed == (verdict.enough and verdict.p_value <= alpha)
        if verdict.enough and verdict.estimate > 0:
            assert verdict.p_value == pytest.approx(min(1, 1 / verdict.likelihood_ratio))


def test_tau_sets_the_scale_of_the_effect_found_fastest() -> None:
    control, canary = Sample.bernoulli(400, 20), Sample.bernoulli(400, 44)  # 5% -> 11%
    default = regression(control, canary, worse="higher")
    explicit = regression(
        control, canary, worse="higher", tau=TAU_IN_CONTROL_SDS * control.variance**0.5
    )
    assert default == explicit
    ratios = {
        t: regression(control, canary, worse="higher", tau=t).likelihood_ratio
        for t in (0.005, 0.06, 2.0)
    }
    assert ratios[0.06] > ratios[0.005] and ratios[0.06] > ratios[2.0]  # best near the effect


def test_samples_sum_pool_and_floor_their_variance() -> None:
    values = [0.2, 0.9, 0.4, 0.4, 0.75]
    sample = Sample.of(values)
    assert sample.n == 5 and not sample.binary
    assert sample.mean == pytest.approx(np.mean(values))
    assert sample.variance == pytest.approx(np.var(values, ddof=1))
    pooled = Sample.of(values[:2]) + Sample.of(values[2:])
    assert pooled.n == 5 and pooled.total == pytest.approx(sample.total)
    assert pooled.variance == pytest.approx(sample.variance)
    rate = Sample.bernoulli(200, 30)
    assert rate.binary and rate.mean == 0.15
    jeffreys = (30.5 / 201) * (1 - 30.5 / 201)
    assert jeffreys > 0.15 * 0.85 * 200 / 199  # above the unbiased variance while p < 1/2
    assert rate.variance == pytest.approx(jeffreys)
    assert Sample.bernoulli(200, 100).variance == pytest.approx(0.25 * 200 / 199)
    assert Sample.of([1, 0, 0, 1, 0]) == Sample.bernoulli(5, 2)
    assert Sample.bernoulli(3, 1) + Sample.bernoulli(7, 2) == Sample.bernoulli(10, 3)
    assert (Sample.bernoulli(3, 1) + Sample.of([0.5])).binary is False
    assert (Sample(0, 0.0, 0.0) + Sample.bernoulli(4, 1)).binary is True
    # the Jeffreys floor: no errors in 1,000 runs is a variance of about 0.0005, not 0
    assert Sample.bernoulli(1000, 0).variance == pytest.approx((0.5 / 1001) * (1 - 0.5 / 1001))
    assert Sample.bernoulli(0, 0).variance == 0.25 and Sample.bernoulli(0, 0).mean == 0.0
    assert Sample.of([3.0] * 10).variance == VARIANCE_FLOOR
    assert Sample.of([3.0]).variance == VARIANCE_FLOOR
    with pytest.raises(TypeError):
        _ = sample + 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Sample(-1, 0.0, 0.0), "at least 0"),
        (lambda: Sample(True, 1.0, 1.0), "whole number"),
        (lambda: Sample(2, math.nan, 1.0), "finite"),
        (lambda: Sample(2, 4.0, 1.0), "total\\*\\*2 <= n \\* total_sq"),
        (lambda: Sample(2, 1.0, -1.0), "total\\*\\*2"),
        (lambda: Sample(0, 1.0, 1.0), "total\\*\\*2"),
        (lambda: Sample(3, 1.5, 1.5, binary=True), "0/1 sample"),
        (lambda: Sample(3, 4.0, 4.0, binary=True), "0/1 sample"),
        (lambda: Sample.bernoulli(3, 4), "cannot exceed"),
        (lambda: Sample.bernoulli(3, -1), "at least 0"),
        (lambda: Sample.bernoulli(3.0, 1), "whole number"),  # type: ignore[arg-type]
        (lambda: Sample.of([1.0, math.inf]), "finite"),
        (lambda: Sample.of(["1.0"]), "must be a number"),  # type: ignore[list-item]
    ],
)
def test_a_malformed_sample_is_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make()


ARMS = (Sample.bernoulli(100, 5), Sample.bernoulli(100, 9))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"worse": "more"}, "'higher' or 'lower'"),
        ({"worse": "higher", "alpha": 0.0}, "alpha must be between 0 and 1"),
        ({"worse": "higher", "alpha": 1.0}, "alpha must be between 0 and 1"),
        ({"worse": "higher", "alpha": math.nan}, "alpha must be finite"),
        ({"worse": "higher", "alpha": "0.05"}, "alpha must be a number"),
        ({"worse": "higher", "tau": 0.0}, "tau must be above 0"),
        ({"worse": "higher", "tau": -0.1}, "tau must be above 0"),
        ({"worse": "higher", "tau": math.inf}, "tau must be finite"),
        ({"worse": "higher", "min_runs": 0}, "min_runs must be a whole number of at least 1"),
        ({"worse": "higher", "min_runs": -3}, "min_runs must be a whole number of at least 1"),
        ({"worse": "higher", "min_runs": 2.5}, "min_runs must be a whole number of at least 1"),
        ({"worse": "higher", "margin": -0.01}, "margin must be at least 0"),
        ({"worse": "higher", "margin": math.nan}, "margin must be finite"),
    ],
)
def test_invalid_arguments_are_refused_with_the_fix(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        regression(*ARMS, **options)


def test_arms_that_are_not_samples_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="control must be a Sample, not tuple"):
        regression((100, 5), ARMS[1], worse="higher")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="canary must be a Sample"):
        regression(ARMS[0], 0.09, worse="higher")  # type: ignore[arg-type]


def lognormal(rng: np.random.Generator, n: int, scale: float = 1.0) -> list[float]:
    """Run durations in seconds: median 0.8 s, a long right tail."""
    return [float(x) for x in scale * rng.lognormal(math.log(0.8), 0.5, n)]


def test_identical_latencies_exceed_the_threshold_at_the_same_rate() -> None:
    rng = np.random.default_rng(51)
    control, canary = latency_exceedance(lognormal(rng, 20_000), lognormal(rng, 20_000))
    assert control.binary and canary.binary and control.n == canary.n == 20_000
    expected = 0.5 * math.erfc((math.log(1.1) + 1.6449 * 0.5) / 0.5 / math.sqrt(2))  # about 3.3%
    for arm in (control, canary):
        assert arm.mean == pytest.approx(expected, abs=4 * math.sqrt(expected / 20_000))
    assert not regression(control, canary, worse="higher").regressed


def test_identical_latencies_looked_at_20_times_rarely_alarm() -> None:
    """The threshold moves with the control's runs; the false alarms stay within alpha."""
    rollouts, step, looks = 300, 100, 20
    rng = np.random.default_rng(52)
    flagged = 0
    for _ in range(rollouts):
        control = lognormal(rng, step * looks)
        canary = lognormal(rng, step * looks)
        for j in range(1, looks + 1):
            arms = latency_exceedance(control[: step * j], canary[: step * j])
            if regression(*arms, worse="higher").regressed:
                flagged += 1
                break
    assert flagged / rollouts <= ALPHA + tolerance(rollouts), flagged / rollouts


def test_a_canary_30_percent_slower_is_flagged() -> None:
    rng = np.random.default_rng(53)
    found = []
    for _ in range(50):
        control, canary = lognormal(rng, 3000), lognormal(rng, 3000, scale=1.3)
        for j in range(1, 31):
            arms = latency_exceedance(control[: 100 * j], canary[: 100 * j])
            if regression(*arms, worse="higher").regressed:
                found.append(j)
                break
    assert len(found) >= 48  # about 3.3% of runs over the threshold becomes about 9.5%


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (([], [1.0]), "at least one duration"),
        (([1.0, -0.5], [1.0]), "control durations cannot be negative"),
        (([1.0], [math.nan]), "canary durations must be finite"),
        (([1.0], ["1.0"]), "canary durations must be a flat sequence of numbers"),
        (([1.0], [1.0], -0.1), "slack must be at least 0"),
        (([1.0], [1.0], 0.1, 1.0), "quantile must be between 0 and 1"),
    ],
)
def test_latency_exceedance_refuses_what_it_cannot_use(
    arguments: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        latency_exceedance(*arguments)
