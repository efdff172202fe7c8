"""Seeded simulations of the paired A/B decision over load epochs (issue 19, items 1-4, 6).

Every load epoch draws an offset ``u`` of its own (sd ``TAU``), shared by its pairs, and the
pairs' noise has lag-1 correlation 0.3 (neighbouring pairs share a block). The sequential
rule (looks after epochs 3, 4, 5 and 6, Pocock boundary, Holm's share for regressions) must
keep false alarms (a regression **or** an improvement at no change) and false passes (a
pass at a change equal to the margin) at most alpha. The allowance for the Monte Carlo error
is stated: the observed rate must stay below alpha plus three binomial standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from pytest_triton_perf.baseline.epochs import (
    EpochEstimate,
    Offset,
    block_epochs,
    combine,
    offset_variance,
    pooled_epoch,
)
from pytest_triton_perf.baseline.sequential import _decide
from pytest_triton_perf.verdicts import IMPROVEMENT, PASS, REGRESSION

ALPHA = 0.05
TAU = 0.02  # per-load offset, log scale (the spread A/A runs showed on 2 shared cores)
SIGMA = 0.06  # per-pair noise
RHO = 0.3
PAIRS = 8
LOOKS = (3, 4, 5, 6)
MARGIN = 0.05
TRIALS = 400


def allowance(p: float = ALPHA, n: int = TRIALS) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / n)


def ar1(rng: np.random.Generator, n: int) -> np.ndarray:
    e = rng.normal(0, SIGMA * math.sqrt(1 - RHO**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0, SIGMA)
    for i in range(1, n):
        x[i] = RHO * x[i - 1] + e[i]
    return x


def epoch_series(rng: np.random.Generator, delta: float, tau: float = TAU) -> list[np.ndarray]:
    return [delta + rng.normal(0, tau) + ar1(rng, PAIRS) for _ in range(LOOKS[-1])]


def sequential(
    series: list[np.ndarray],
    offset: Offset | None,
    *,
    one_sided: bool = False,
    holm: int = 4,
    alpha: float = ALPHA,
    pass_alpha: float | None = None,
) -> str | None:
    """The verdict the epoch design reaches over LOOKS (None: inconclusive)."""
    for k in LOOKS:
        comb = combine(block_epochs(series[:k]), offset)
        d = _decide(
            comb.mean,
            comb.se,
            k,
            sd=comb.se,
            bootstrap=None,
            higher_is_worse=True,
            looks=LOOKS,
            alpha=alpha,
            effect=MARGIN,
            target=MARGIN,
            big_enough=True,
            df=comb.df,
            reject_alpha=alpha / holm,
            one_sided=one_sided,
            look=k,
            min_units=2,
            pass_alpha=pass_alpha,
        )
        if d.verdict is not None:
            return d.verdict
    return None


def calibrated(rng: np.random.Generator) -> Offset:
    """What ``triton-perf calibrate`` stores: tau^2 from 12 A/A epochs."""
    est = block_epochs([rng.normal(0, TAU) + ar1(rng, PAIRS) for _ in range(12)])
    return Offset(offset_variance(est), 12)


@pytest.mark.parametrize("calibration", [True, False], ids=["calibrated", "epochs-only"])
def test_no_change_rarely_alarms_and_a_change_at_the_margin_rarely_passes(
    calibration: bool,
) -> None:
    rng = np.random.default_rng(19)
    alarms = false_passes = passes = 0
    for _ in range(TRIALS):
        offset = calibrated(rng) if calibration else None
        v0 = sequential(epoch_series(rng, 0.0), offset)
        alarms += v0 in (REGRESSION, IMPROVEMENT)
        passes += v0 == PASS
        false_passes += sequential(epoch_series(rng, math.log1p(MARGIN)), offset) == PASS
    assert alarms / TRIALS <= allowance(2 * ALPHA / 4)  # two sides, Holm's share each
    assert false_passes / TRIALS <= allowance()
    if calibration:  # and the calibrated design does decide: most A/A runs pass
        assert passes / TRIALS >= 0.5


def test_the_gates_two_levels_hold_each_bound_and_an_unchanged_model_passes_more() -> None:
    """The gate's defaults: regressions and improvements at alpha 0.01 (Holm's share), passes
    at 0.05 (a 90% interval inside the margin, the equivalence convention). False alarms stay
    at the first level and false passes at the second; an unchanged model passes more often
    than with passes at 0.01 too."""
    rng = np.random.default_rng(23)
    alarms = false_passes = passes = strict_passes = 0
    for _ in range(TRIALS):
        offset = calibrated(rng)
        same, at_margin = epoch_series(rng, 0.0), epoch_series(rng, math.log1p(MARGIN))
        v0 = sequential(same, offset, alpha=0.01, pass_alpha=0.05)
        alarms += v0 in (REGRESSION, IMPROVEMENT)
        passes += v0 == PASS
        strict_passes += sequential(same, offset, alpha=0.01) == PASS
        false_passes += sequential(at_margin, offset, alpha=0.01, pass_alpha=0.05) == PASS
    assert alarms / TRIALS <= allowance(2 * 0.01 / 4)
    assert false_passes / TRIALS <= allowance(0.05)
    assert passes > 1.2 * strict_passes, (passes, strict_passes)


def test_one_load_ignores_the_offset_and_alarms_too_often() -> None:
    """Why epochs: the old design's interval over the pairs of one load covers delta + u.
    With the same offset, one load of 48 pairs alarms far more often than alpha."""
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(TRIALS):
        x = rng.normal(0, TAU) + ar1(rng, PAIRS * LOOKS[-1])
        comb = combine(block_epochs([x]))
        lo = comb.mean - 1.645 * comb.se
        hi = comb.mean + 1.645 * comb.se
        alarms += lo > 0 or hi < 0
    assert alarms / TRIALS > 2 * allowance(2 * ALPHA)


def test_a_regression_of_twice_the_margin_is_caught() -> None:
    rng = np.random.default_rng(3)
    caught = sum(
        sequential(epoch_series(rng, math.log1p(2 * MARGIN)), calibrated(rng)) == REGRESSION
        for _ in range(200)
    )
    assert caught / 200 >= 0.8


def test_a_tail_is_one_sided_it_passes_below_the_margin_and_never_improves() -> None:
    rng = np.random.default_rng(5)
    verdicts = [
        sequential(epoch_series(rng, -0.1), calibrated(rng), one_sided=True) for _ in range(100)
    ]
    assert IMPROVEMENT not in verdicts
    assert verdicts.count(PASS) >= 90
    at_margin = [
        sequential(epoch_series(rng, math.log1p(MARGIN)), calibrated(rng), one_sided=True)
        for _ in range(TRIALS)
    ]
    assert at_margin.count(PASS) / TRIALS <= allowance()


def stalled_block(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Latencies of one block on shared cores: a fast body and 3% scheduling stalls."""
    body = rng.lognormal(math.log(4.0), 0.1, n)
    stall = rng.random(n) < 0.03
    body[stall] += rng.exponential(6.0, int(stall.sum()))
    return body * scale


def test_a_pooled_p99_rests_on_its_epochs_and_keeps_alpha_at_the_margin() -> None:
    """p99 non-inferiority at a 20% margin, each epoch's pooled p99 (3200 requests per arm,
    32 beyond the percentile) with a pair bootstrap: a true +20% rarely passes, no change
    rarely regresses and passes at least half the time (a stall mode makes p99 spread)."""
    rng = np.random.default_rng(11)
    margin = 0.20
    offset = Offset(TAU**2, 12)

    def verdict(delta: float) -> str | None:
        est: list[EpochEstimate] = []
        for e in range(4):
            u = math.exp(rng.normal(0, TAU))
            ref = [stalled_block(rng, 400, 1.0) for _ in range(PAIRS)]
            cand = [stalled_block(rng, 400, u * (1 + delta)) for _ in range(PAIRS)]
            got = pooled_epoch(ref, cand, 99.0, seed=e)
            assert got is not None
            est.append(got)
        comb = combine(est, offset)
        d = _decide(
            comb.mean, comb.se, 4, sd=comb.se, bootstrap=None, higher_is_worse=True,
            looks=(4,), alpha=ALPHA, effect=margin, target=margin, big_enough=True,
            df=comb.df, reject_alpha=ALPHA, one_sided=True, look=4, min_units=2,
        )  # fmt: skip
        return d.verdict

    n = 40
    at_margin = [verdict(margin) for _ in range(n)]
    same = [verdict(0.0) for _ in range(n)]
    assert at_margin.count(PASS) / n <= allowance(ALPHA, n)
    assert same.count(PASS) / n >= 0.5
    assert same.count(REGRESSION) / n <= allowance(ALPHA, n)


@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_an_epochs_variance_holds_at_a_fixed_look_with_short_correlated_epochs(
    rho: float,
) -> None:
    """The variance of an epoch's mean with A/B mode's epochs (3 epochs of 6 pairs, the
    calibrated offset): a plain two-sided t test at 5% at one look rejects no change at
    most 5% of the time. Before the lag-1 correlation's bias was corrected (Kendall 1954)
    and the sum of squares divided by its AR(1) expectation, this read 9% at rho 0.3."""
    rng = np.random.default_rng(23)
    trials, alarms = 1500, 0
    for _ in range(trials):
        series = _short_epochs(rng, rho, 0.0)
        comb = combine(block_epochs(series), Offset(0.01**2, 8))
        alarms += abs(comb.mean) > student_t.ppf(0.975, comb.df) * comb.se
    assert alarms / trials <= allowance(ALPHA, trials)


def _short_epochs(rng: np.random.Generator, rho: float, contaminate: float) -> list[np.ndarray]:
    """3 epochs of 6 AR(1) pairs; each pair hit with probability ``contaminate`` by a
    spike of sd 0.4 (a block the host stalled)."""
    series = []
    for _ in range(3):
        x = np.empty(6)
        x[0] = rng.normal()
        for i in range(1, 6):
            x[i] = rho * x[i - 1] + math.sqrt(1 - rho**2) * rng.normal()
        y = rng.normal(0, 0.01) + SIGMA * x
        if contaminate:
            y += (rng.random(6) < contaminate) * rng.normal(0, 0.4, 6)
        series.append(y)
    return series


def test_a_few_stalled_blocks_do_not_decide_the_interval() -> None:
    """Huber's estimate per epoch: with 10% of the pairs hit by a stall (a spike of sd 0.4
    on pairs of sd 0.06), a nominal 5% test still rejects no change at most 5% of the time,
    and the standard error is a quarter or more below the plain mean's (k = inf); without
    stalls it is the mean's."""
    trials = 1200
    for contaminate, gain in ((0.1, 0.75), (0.0, 1.02)):
        rng = np.random.default_rng(31)
        alarms, robust, plain = 0, [], []
        for _ in range(trials):
            series = _short_epochs(rng, RHO, contaminate)
            comb = combine(block_epochs(series), Offset(0.01**2, 8))
            alarms += abs(comb.mean) > student_t.ppf(0.975, comb.df) * comb.se
            robust.append(comb.se)
            plain.append(combine(block_epochs(series, k=math.inf), Offset(0.01**2, 8)).se)
        assert alarms / trials <= allowance(ALPHA, trials), contaminate
        assert float(np.median(robust)) <= gain * float(np.median(plain)), contaminate


def test_a_noisy_epoch_weighs_less_than_a_quiet_one() -> None:
    """Moderated variances: of two epochs with the same number of pairs, the one whose own
    pairs spread five times more gets the larger variance, so the random-effects mean
    leans toward the quiet epoch's estimate."""
    rng = np.random.default_rng(29)
    quiet = 0.01 * rng.standard_normal(6)
    noisy = 0.10 + 0.05 * rng.standard_normal(6)
    est = block_epochs([quiet, noisy])
    assert est[1].var > 3 * est[0].var
    comb = combine(est, Offset(0.0, 8))
    assert abs(comb.mean - float(np.mean(quiet))) < abs(comb.mean - float(np.mean(noisy)))


def test_futility_spares_the_budget_not_the_regressions() -> None:
    """The futility rule at A/B mode's noise on 2 cores (per-pair sd 12%, 4 pairs per epoch,
    looks after epochs 3-7, alpha 1%, Holm over 5 metrics): a +15% regression is caught
    almost as often as without the rule, and an A/A comparison that can reach neither
    answer is given up well before the last look."""
    from pytest_triton_perf.baseline.sequential import futility

    looks, sigma, alpha, holm = (3, 4, 5, 6, 7), 0.12, 0.01, 5
    effect, margin = math.log1p(0.05), math.log1p(0.05)

    def series(rng: np.random.Generator, delta: float) -> list[np.ndarray]:
        return [delta + rng.normal(0, TAU) + rng.normal(0, sigma, 4) for _ in range(looks[-1])]

    def verdict(runs: list[np.ndarray], offset: Offset, rule: bool) -> tuple[str | None, int]:
        for k in looks:
            comb = combine(block_epochs(runs[:k]), offset)
            d = _decide(
                comb.mean, comb.se, k, sd=comb.se, bootstrap=None, higher_is_worse=True,
                looks=looks, alpha=alpha, effect=effect, target=0.05, big_enough=True,
                df=comb.df, reject_alpha=alpha / holm, one_sided=False, look=k, min_units=2,
            )  # fmt: skip
            if d.verdict is not None:
                return d.verdict, k
            if rule and futility(
                math.log1p(d.change), d.se, d.df, d.c, units=k, looks=looks, alpha=alpha,
                holm=holm, effect=effect, margin=margin,
            ) is not None:  # fmt: skip
                return "given up", k
        return None, looks[-1]

    rng = np.random.default_rng(5)
    n = 200
    caught = {True: 0, False: 0}
    for _ in range(n):
        runs, offset = series(rng, math.log1p(0.15)), calibrated(rng)
        for rule in (True, False):
            caught[rule] += verdict(runs, offset, rule)[0] == REGRESSION
    assert caught[False] / n >= 0.9  # the design itself detects +15% here
    assert caught[True] >= caught[False] - 0.05 * n  # the rule costs at most 5 points
    aa = [verdict(series(rng, 0.0), calibrated(rng), True) for _ in range(100)]
    assert sum(v == "given up" for v, _ in aa) >= 80
    assert np.mean([k for _, k in aa]) <= 4.0  # of 7 epochs
    assert sum(v in (REGRESSION, IMPROVEMENT) for v, _ in aa) <= 3
