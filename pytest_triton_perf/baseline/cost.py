"""The A/B change of a co-location cost on a tail percentile, from pooled tails. Pure: numpy
and scipy.

A co-location cost is a ratio together / alone. On p99, a short block's own percentile is
about its maximum, so ratios taken round by round scatter too widely to decide anything
(12 of 12 A/A comparisons inconclusive). Here each arm's alone blocks and together blocks
are pooled over the rounds: its cost is ``q(pooled together) / q(pooled alone)`` and the
change is ``log(candidate cost / reference cost)``. Its standard error comes from a **pair
bootstrap over rounds** (a round's four blocks resampled together, as
:func:`~pytest_triton_perf.baseline.sequential.decide_pooled` does for one percentile),
inflated by ``sqrt(n / (n - 1))`` (the plug-in bootstrap variance is too small by about that
factor at few rounds; Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993,
section 5.2). The decision is the paired rule with one look and the t quantile at
``rounds - 1`` degrees of freedom: regression when the one-sided (1 - alpha) bound is above
0 and the estimate at least the minimum effect; pass when both one-sided bounds lie inside
the smallest change that counts (Schuirmann's two one-sided tests, 1987).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pytest_triton_perf.baseline.sequential import (
    MIN_POOLED_REQUESTS,
    POOLED_RESAMPLES,
    POWER,
    PairedDecision,
)
from pytest_triton_perf.verdicts import IMPROVEMENT, PASS, REGRESSION

#: One arm's blocks of the interference design: (alone latencies, together latencies) per round.
ArmRounds = tuple[Sequence[np.ndarray], Sequence[np.ndarray]]


def _resampled_quantiles(blocks: Sequence[np.ndarray], q: float, counts: np.ndarray) -> np.ndarray:
    """Nearest-rank percentile ``q`` of the pooled ``blocks`` under each row of ``counts``
    (how often each block is drawn in one bootstrap resample), vectorised over the rows."""
    values = np.concatenate(blocks)
    labels = np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)])
    order = np.argsort(values, kind="stable")
    weights = counts[:, labels[order]]
    cum = np.cumsum(weights, axis=1)
    rank = np.maximum(1, np.ceil(q / 100.0 * cum[:, -1]))
    return values[order][np.argmax(cum >= rank[:, None], axis=1)]


def pooled_cost_change(
    reference: ArmRounds,
    candidate: ArmRounds,
    q: float,
    *,
    alpha: float,
    effect: float,
    target: float,
    pass_alpha: float | None = None,
) -> PairedDecision | None:
    """Decide the change of the co-location cost on percentile ``q`` (module docstring):
    candidate's pooled cost against the reference's, rounds paired by index. None when a
    round lacks a block or an arm pooled fewer than
    :data:`~pytest_triton_perf.baseline.sequential.MIN_POOLED_REQUESTS` per block kind."""
    from scipy.stats import t as student_t

    arms = [list(reference[0]), list(reference[1]), list(candidate[0]), list(candidate[1])]
    n = min(len(a) for a in arms)
    arms = [a[:n] for a in arms]
    if n < 2 or min(sum(len(b) for b in a) for a in arms) < MIN_POOLED_REQUESTS:
        return None
    if any(len(b) == 0 for a in arms for b in a):
        return None
    every = np.ones((1, n), dtype=np.int64)
    rng = np.random.default_rng(n)
    draws = rng.integers(0, n, size=(POOLED_RESAMPLES, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in draws])
    full = [_resampled_quantiles(a, q, every)[0] for a in arms]
    boot = [_resampled_quantiles(a, q, counts) for a in arms]
    if min(full) <= 0:
        return None
    est = math.log(full[3] / full[2]) - math.log(full[1] / full[0])
    logs = np.log(boot[3] / boot[2]) - np.log(boot[1] / boot[0])
    se = float(np.std(logs, ddof=1)) * math.sqrt(n / (n - 1))
    c = float(student_t.ppf(1 - alpha, n - 1))
    lo, hi = est - c * se, est + c * se
    c_pass = float(student_t.ppf(1 - (alpha if pass_alpha is None else pass_alpha), n - 1))
    pass_lo, pass_hi = est - c_pass * se, est + c_pass * se
    margin = math.log1p(target)
    change = math.expm1(est)
    verdict = None
    if lo > 0 and change >= effect:
        verdict = REGRESSION
    elif hi < 0 and -change >= effect:
        verdict = IMPROVEMENT
    elif -margin < pass_lo and pass_hi < margin:
        verdict = PASS
    b_lo, b_hi = np.percentile(logs, [2.5, 97.5])
    return PairedDecision(
        verdict=verdict,
        units=n,
        change=change,
        interval=(math.expm1(lo), math.expm1(hi)),
        bootstrap=(math.expm1(float(b_lo)), math.expm1(float(b_hi))),
        p_value=float(student_t.sf(abs(est) / se, n - 1)) if se > 0 else float(est == 0),
        mde=math.expm1((c + float(student_t.ppf(POWER, n - 1))) * se),
        c=c,
        sd=se * math.sqrt(n),
    )
