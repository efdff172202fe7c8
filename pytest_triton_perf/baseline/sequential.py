"""Paired, sequential A/B analysis of interleaved blocks. Pure: numpy and scipy.

A/B mode measures the reference (A) and the candidate (B) in blocks ordered A B B A A B B A:
neighbouring blocks share the machine's state (what else runs, where the scheduler put the
server, the clock), so the ratio of a candidate block to its neighbouring reference block
cancels that drift, where comparing each arm's pooled windows (Mann-Whitney) counts it as
noise. Each consecutive pair of blocks (A B, then B A, ...) gives one **log-ratio**
``log(candidate / reference)`` per metric; half the pairs have the candidate second, so an
order effect (a block running after the other arm) cancels too.

The effect is estimated and tested on the log-ratios. Within one load of the two arms:
their mean, with a paired Student-t interval (Student 1908). Across the load epochs A/B
mode measures in (both arms loaded anew for each): the random-effects mean of the epochs'
estimates, with the per-load offset's variance from a stored calibration or from the
epochs themselves (:mod:`pytest_triton_perf.baseline.epochs`). The noise that decides is
the spread of the log-ratios (and of the epochs), not each arm's spread.

**Stopping when the answer is known.** Pairs are added until each gated metric is decided:

- ``regression``: the interval lies above 0 and the estimate is at least the minimum effect;
- ``improvement``: the same on the better side;
- ``pass``: the interval lies inside (-target, +target), the smallest change that counts
  (an equivalence test, Schuirmann's two one-sided tests, 1987); for a tail decided
  one-sided (non-inferiority), its upper bound lies below the target;
- ``inconclusive``: the budget is spent first.

Looking at the data after every few pairs and stopping when it looks decided inflates the
error rates of a fixed-sample test. The intervals here are **repeated confidence intervals**
(Jennison and Turnbull, "Interim analyses: the repeated confidence interval approach",
JRSS B 51:305-361, 1989; *Group Sequential Methods*, 2000, ch. 9) with **Pocock's constant
boundary** (Pocock, "Group sequential methods in the design and analysis of clinical
trials", Biometrika 64:191-199, 1977): the looks are planned (:func:`look_schedule`) and one
critical value ``c`` holds at every look, chosen so that the standardised mean crosses
+-c at *any* look with probability 2*alpha under no change (:func:`pocock_constant`). The
intervals then cover the true effect at all looks at once with probability 1 - 2*alpha, so
whichever look the procedure stops at:

- false alarm (regression flagged, no true change): at most alpha;
- false pass (pass, true change at least the target): at most alpha.

The variance is estimated, so each look uses the t distribution with that look's degrees of
freedom at the nominal tail probability of ``c`` (Jennison and Turnbull 2000, section 3.8,
the "significance level approach"). Stopping early because another metric regressed, or
because the budget ran out, only removes looks, which keeps both bounds.

p99 is not decided block by block: a short block's tail rests on a few requests (and a
slow model's block has fewer than 100, where p99 is just the maximum). Each arm's p99 is
taken over its pooled blocks instead, with a pair bootstrap for its standard error
(:func:`decide_pooled`), so the tail estimate uses every request and keeps the pairing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pytest_triton_perf.verdicts import IMPROVEMENT, PASS, REGRESSION

#: A window's p99 rests on its slowest 1%: below this many requests it is just its maximum.
MIN_REQUESTS_FOR_P99 = 100
#: Power at which the minimum detectable effect is stated.
POWER = 0.8
#: Fewest pairs a look decides on: with fewer, the
#: t quantile at the sequential design's tail probability is too wide to decide anything.
MIN_UNITS = 4
#: First look, in pairs, and how the later looks are spaced (relative growth).
FIRST_LOOK_PAIRS = 6
LOOK_GROWTH = 0.3
#: Draws of the Monte Carlo behind :func:`pocock_constant` (fixed seed: deterministic).
BOUNDARY_DRAWS = 200_000
#: Resamples of the bootstrap interval reported beside the t interval.
BOOTSTRAP_RESAMPLES = 2000
#: Resamples of the pair bootstrap behind a pooled percentile's standard error.
POOLED_RESAMPLES = 300
#: Requests beyond a pooled percentile each arm needs before the percentile is decided
#: (p99: 1000 requests, p95: 200).
MIN_BEYOND = 10
#: Fewest units (pairs of the fixed design, or epochs) a pass rests on.
MIN_UNITS_TO_PASS = 2


def min_pooled_requests(q: float) -> int:
    """Requests each arm pools before percentile ``q`` is decided: :data:`MIN_BEYOND`
    beyond it."""
    return math.ceil(MIN_BEYOND / (1 - q / 100.0) - 1e-9)


#: p99's requirement (kept for the notes that name it).
MIN_POOLED_REQUESTS = min_pooled_requests(99.0)


def look_schedule(max_pairs: int, first: int = FIRST_LOOK_PAIRS) -> tuple[int, ...]:
    """Pair counts at which the analysis looks: from ``first`` on, each about 30% (and at
    least one ABBA quad, 2 pairs) after the previous, ending at ``max_pairs`` (rounded down
    to whole quads). Few looks keep Pocock's constant low (every look spends some of alpha);
    the early ones are close together so that clear answers come quickly. A single look
    (the fixed design) when ``max_pairs <= first``."""
    last = max(2, max_pairs - max_pairs % 2)
    if last <= first:
        return (last,)
    looks = []
    n = first
    while n < last:
        looks.append(n)
        n += max(2, round(n * LOOK_GROWTH / 2) * 2)
    if last - looks[-1] < 2 * max(2, round(looks[-1] * LOOK_GROWTH / 4)):
        looks.pop()  # a last step much shorter than the others buys little
    looks.append(last)
    return tuple(looks)


@functools.lru_cache(maxsize=256)
def pocock_constant(looks: tuple[int, ...], alpha: float) -> float:
    """Pocock's constant critical value for two-sided repeated tests at ``looks`` (sample
    sizes), overall two-sided level ``2 * alpha``: ``P(max_k |Z_k| >= c) = 2 * alpha`` for
    the standardised partial sums Z_k = S_{n_k} / sqrt(n_k) of independent N(0, 1) draws.

    By Monte Carlo over the looks' joint normal law (independent increments), seeded, so
    the same plan always gives the same boundary. One look gives z_{1 - alpha}.
    """
    from scipy.stats import norm

    if len(looks) == 1:
        return float(norm.ppf(1 - alpha))
    sizes = np.asarray(looks, dtype=np.float64)
    increments = np.diff(np.concatenate([[0.0], sizes]))
    rng = np.random.default_rng(20261130)
    steps = rng.standard_normal((BOUNDARY_DRAWS, len(looks))) * np.sqrt(increments)
    z = np.abs(np.cumsum(steps, axis=1)) / np.sqrt(sizes)
    return float(np.quantile(z.max(axis=1), 1 - 2 * alpha))


def nominal_t(c: float, df: float) -> float:
    """The t quantile with ``df`` degrees of freedom at the normal tail probability of ``c``."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    return float(student_t.isf(norm.sf(c), df))


@dataclass(frozen=True)
class PairedDecision:
    """One metric at one look of the sequential paired analysis."""

    verdict: str | None  # PASS, REGRESSION, IMPROVEMENT; None while undecided
    units: int  # pairs the look used
    change: float  # estimated relative change, candidate vs reference (0.05 = +5%)
    interval: tuple[float, float]  # repeated confidence interval of the change
    bootstrap: tuple[float, float] | None  # percentile bootstrap interval of the change
    p_value: float  # nominal one-sided paired-t p-value toward the estimate's side
    mde: float  # relative change the design would flag with power POWER at this look
    c: float  # the critical value used (t at this look's degrees of freedom)
    sd: float  # standard deviation of the log-ratios
    se: float = math.inf  # standard error of the estimate
    df: float = 1.0  # its degrees of freedom

    @property
    def decided(self) -> bool:
        """A final answer for this metric (the analysis may stop for it)."""
        return self.verdict is not None


def decide(
    log_ratios: Sequence[float],
    *,
    higher_is_worse: bool,
    looks: tuple[int, ...],
    alpha: float,
    effect: float,
    target: float,
    big_enough: bool = True,
    pass_alpha: float | None = None,
) -> PairedDecision:
    """Decide one metric from its log-ratios ``log(candidate / reference)`` at one look.

    ``looks`` are the planned unit counts of this metric's looks (for the boundary);
    ``effect`` the minimum effect of a regression; ``target`` the smallest change that
    counts (the minimum effect, or the absolute floor where that is larger); ``big_enough``
    whether the estimated absolute change reaches the floor.
    """
    x = np.asarray(log_ratios, dtype=np.float64)
    n = len(x)
    if n < 2:
        mean = float(np.mean(x)) if n else 0.0
        return PairedDecision(
            None, n, math.expm1(mean), (-math.inf, math.inf), None, 1.0, math.inf, math.inf, 0.0
        )
    sd = float(np.std(x, ddof=1))
    return _decide(
        float(np.mean(x)),
        sd / math.sqrt(n),
        n,
        sd=sd,
        bootstrap=_bootstrap(x),
        higher_is_worse=higher_is_worse,
        looks=looks,
        alpha=alpha,
        effect=effect,
        target=target,
        big_enough=big_enough,
        pass_alpha=pass_alpha,
    )


def decide_pooled(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    q: float,
    *,
    looks: tuple[int, ...],
    alpha: float,
    effect: float,
    target: float,
    floor: float = 0.0,
    pass_alpha: float | None = None,
) -> PairedDecision | None:
    """Decide a latency percentile ``q`` (99: p99) over the pooled latencies of each arm's
    blocks (one array per block, block i of each arm forming pair i).

    The tail of one short block rests on a handful of requests, so its pair-by-pair ratio
    scatters widely (measured on a CPU-bound model: sd 20% for p99 over 0.5 s blocks).
    Pooled over all blocks, the percentile uses every request; its standard error comes
    from a **pair bootstrap** (pairs resampled with replacement, both arms' blocks of a
    pair together), which keeps the pairing and the correlation of requests inside a
    block. The estimate is asymptotically normal (Bahadur's representation of sample
    quantiles), so the repeated intervals apply with the bootstrap standard error and the
    t quantile at (pairs - 1) degrees of freedom. None until each arm has pooled
    :data:`MIN_POOLED_REQUESTS` requests (too few beyond the percentile to say anything).
    """
    n = min(len(reference), len(candidate))
    ref, cand = list(reference[:n]), list(candidate[:n])
    if n < 2 or min(sum(len(a) for a in ref), sum(len(a) for a in cand)) < MIN_POOLED_REQUESTS:
        return None
    est = math.log(pooled_quantile(cand, q) / pooled_quantile(ref, q))
    rng = np.random.default_rng(n)
    draws = []
    for idx in rng.integers(0, n, size=(POOLED_RESAMPLES, n)):
        r = pooled_quantile([ref[i] for i in idx], q)
        c = pooled_quantile([cand[i] for i in idx], q)
        if r > 0 and c > 0:
            draws.append(math.log(c / r))
    se = float(np.std(draws, ddof=1)) if len(draws) > 2 else math.inf
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (-math.inf, math.inf)
    base = pooled_quantile(ref, q)
    return _decide(
        est,
        se,
        n,
        sd=se * math.sqrt(n),
        bootstrap=(math.expm1(float(lo)), math.expm1(float(hi))),
        higher_is_worse=True,
        looks=looks,
        alpha=alpha,
        effect=effect,
        target=target,
        big_enough=abs(base * math.expm1(est)) >= floor,
        pass_alpha=pass_alpha,
    )


def pooled_quantile(blocks: Sequence[np.ndarray], q: float) -> float:
    """Nearest-rank percentile ``q`` of the concatenated blocks (np.partition: O(n))."""
    values = np.concatenate(blocks)
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return float(np.partition(values, rank - 1)[rank - 1])


def _decide(
    mean: float,
    se: float,
    n: int,
    *,
    sd: float,
    bootstrap: tuple[float, float] | None,
    higher_is_worse: bool,
    looks: tuple[int, ...],
    alpha: float,
    effect: float,
    target: float,
    big_enough: bool,
    df: float | None = None,
    reject_alpha: float | None = None,
    one_sided: bool = False,
    look: int | None = None,
    min_units: int = MIN_UNITS,
    pass_alpha: float | None = None,
) -> PairedDecision:
    """The decision rule of the module docstring for an estimated log-ratio ``mean`` with
    standard error ``se`` over ``n`` units (pairs, or epochs), ``df`` degrees of freedom
    (default ``n - 1``).

    ``reject_alpha`` is the level of the regression and improvement decisions (Holm's share
    of ``alpha`` across the measurement's gated metrics; default ``alpha``); a pass is an
    intersection-union decision (every metric must pass), which needs no adjustment, at
    ``pass_alpha`` (default ``alpha``; the gate's, ``--triton-perf-pass-alpha``, is 0.05).
    ``one_sided``: a non-inferiority metric (a tail) passes when the upper
    bound of its change toward "worse" is below the target, and is never an improvement."""
    from scipy.stats import t as student_t

    dof = max(1.0, float(n - 1 if df is None else df))
    ra = alpha if reject_alpha is None else reject_alpha
    c = nominal_t(pocock_constant(looks, ra), dof)
    c_pass = nominal_t(pocock_constant(looks, alpha if pass_alpha is None else pass_alpha), dof)
    lo, hi = mean - c * se, mean + c * se
    mde = math.expm1((c + float(student_t.ppf(POWER, dof))) * se)
    sign = 1.0 if higher_is_worse else -1.0
    worse_lo = min(sign * lo, sign * hi)
    change = math.expm1(mean)
    worse_change = change if higher_is_worse else -change
    margin = math.log1p(target)
    p = repeated_p_value(abs(mean) / se if se > 0 else 0.0, looks, dof, look)
    if se <= 0:
        p = float(mean == 0)
    verdict: str | None = None
    pass_lo, pass_hi = mean - c_pass * se, mean + c_pass * se
    worse_pass_hi = max(sign * pass_lo, sign * pass_hi)
    worse_pass_lo = min(sign * pass_lo, sign * pass_hi)
    if worse_lo > 0 and worse_change >= effect and big_enough:
        verdict = REGRESSION
    elif not one_sided and max(sign * lo, sign * hi) < 0 and -worse_change >= effect and big_enough:
        verdict = IMPROVEMENT
    elif n >= min_units and worse_pass_hi < margin and (one_sided or worse_pass_lo > -margin):
        verdict = PASS
    return PairedDecision(
        verdict=verdict,
        units=n,
        change=change,
        interval=(math.expm1(lo), math.expm1(hi)),
        bootstrap=bootstrap,
        p_value=p,
        mde=mde,
        c=c,
        sd=sd,
        se=se,
        df=dof,
    )


def repeated_p_value(z: float, looks: tuple[int, ...], df: float, look: int | None) -> float:
    """The one-sided **repeated p-value** at a look (Jennison and Turnbull 2000, section
    9.3): the smallest level at which the repeated confidence intervals up to this look
    would exclude 0, i.e. the probability under no change that the standardised statistic
    crosses ``|z|`` at *some* planned look up to this one. It agrees with the verdict: a
    decision at level alpha has a repeated p-value of at most alpha. ``z`` is a t
    statistic with ``df`` degrees of freedom; it is mapped to the normal scale first."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    if z <= 0:
        return 0.5
    upto = looks if look is None else tuple(x for x in looks if x <= look) or looks[:1]
    zn = float(norm.isf(student_t.sf(z, df)))
    maxima = _max_statistics(upto)
    return float(max(np.mean(maxima >= zn) / 2, student_t.sf(z, df)))


@functools.lru_cache(maxsize=64)
def _max_statistics(looks: tuple[int, ...]) -> np.ndarray:
    """max_k |Z_k| over the looks, for the seeded Monte Carlo draws of :func:`pocock_constant`
    (fewer draws: a p-value needs no more precision than a report shows)."""
    sizes = np.asarray(looks, dtype=np.float64)
    increments = np.diff(np.concatenate([[0.0], sizes]))
    rng = np.random.default_rng(20261130)
    steps = rng.standard_normal((BOUNDARY_DRAWS // 4, len(looks))) * np.sqrt(increments)
    z: np.ndarray = (np.abs(np.cumsum(steps, axis=1)) / np.sqrt(sizes)).max(axis=1)
    return z


def _bootstrap(x: np.ndarray) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the relative change exp(mean log-ratio) - 1."""
    if len(x) < 3:
        return None
    rng = np.random.default_rng(0)
    means = rng.choice(x, size=(BOOTSTRAP_RESAMPLES, len(x)), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return math.expm1(float(lo)), math.expm1(float(hi))


def conditional_power(
    mean: float, se_now: float, se_last: float, c_last: float, effect: float
) -> float:
    """Probability that the last look's lower bound clears 0 when the true change is
    ``effect`` (log scale, toward worse), given the estimate so far (Lan, Simon and
    Halperin, "Stochastically curtailed tests", 1982): the final estimate is the
    information-weighted mean of today's and of the rest's."""
    from scipy.stats import norm

    if not (math.isfinite(se_now) and math.isfinite(se_last)) or se_last >= se_now:
        return 0.0 if mean - c_last * se_now <= 0 else 1.0
    i_now, i_last = 1 / se_now**2, 1 / se_last**2
    mu = (i_now * mean + (i_last - i_now) * effect) / i_last
    sd = math.sqrt(i_last - i_now) / i_last
    return float(norm.sf((c_last * se_last - mu) / sd))


#: A metric is given up only when a regression of its minimum effect has less conditional
#: power than this (and no pass can be reached).
FUTILITY_POWER = 0.10


def futility(
    worse: float,
    se: float,
    df: float,
    c_now: float,
    *,
    units: int,
    looks: tuple[int, ...],
    alpha: float,
    holm: int,
    effect: float,
    margin: float,
    one_sided: bool = False,
    pass_alpha: float | None = None,
) -> float | None:
    """The futility rule of the sequential paired design: the conditional power of a
    regression of ``effect`` when neither answer can be reached by the last look, else
    None (measure on).

    ``worse`` is today's estimate (log scale, toward worse), ``se`` and ``df`` its standard
    error and degrees of freedom at look ``units`` of ``looks``, ``c_now`` today's critical
    value. Neither answer can be reached when (a) no pass can: at this spread, the last
    look's interval would not fit inside ``margin``; and (b) no regression of ``effect``
    can: the interval's bound toward worse is already below ``effect``, or the conditional
    power (Lan, Simon and Halperin 1982) of a regression of ``effect`` is under
    :data:`FUTILITY_POWER`. Where today's estimate is worse than ``effect``, the power is
    taken at the estimate (the current trend): a regression the data already suggest is
    not given up because a smaller one could not be caught. Conditional power grows with
    the effect, so this gives up only where the power at ``effect`` is under the limit too.
    Seeded, at A/B mode's noise on 2 cores (per-pair sd 12%, 4 pairs per epoch, looks after
    epochs 3-7): +15% caught 0.95 without futility, 0.64 with the rule at today's degrees
    of freedom and the minimum effect, 0.83 at the last look's, 0.93 at the trend; A/A
    given up after 3.2 epochs on average, against 7 without
    (``tests/baseline/test_epochs_simulated.py::test_futility_spares_the_budget_not_the_regressions``).

    The last look's critical values are taken at the degrees of freedom it will have:
    they grow with the units (within-epoch ones in proportion, the calibrated offset's by
    one per epoch; proportional growth is assumed, which errs toward measuring on).
    Today's degrees of freedom would overstate them (t at 11 against about 20 at the
    budget's last epoch) and give up changes well within reach: the rule cost A/B mode
    most of its +10% detections on 2 cores (5 of 8 trials given up at the first look with
    estimates of +14-15%). Stopping toward "inconclusive" never adds a false alarm or a
    false pass."""
    last = looks[-1]
    if units >= last or units < 2 or not math.isfinite(se):
        return None
    se_last = se * math.sqrt(units / last)
    df_last = df * last / units
    c_pass = nominal_t(pocock_constant(looks, alpha if pass_alpha is None else pass_alpha), df_last)
    c_reject = nominal_t(pocock_constant(looks, alpha / holm), df_last)
    pass_reachable = abs(worse) + c_pass * se_last < margin or (
        one_sided and worse + c_pass * se_last < margin
    )
    if pass_reachable:
        return None
    reach = conditional_power(worse, se, se_last, c_reject, max(effect, worse))
    if worse + c_now * se < effect or reach < FUTILITY_POWER:
        return reach
    return None
