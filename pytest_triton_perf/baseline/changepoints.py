"""Change points and creep in a series of session levels. Pure: numpy and scipy.

**E-Divisive means** (Matteson and James, "A Nonparametric Approach for Multiple Change Point
Analysis of Multivariate Data", JASA 2014), the detector MongoDB's and Apache Otava's
performance change detection use, with the distance exponent 1: a split ``tau`` of a
segment ``x[a:b]`` into ``X`` and ``Y`` scores

    Q(tau) = |X| |Y| / (|X| + |Y|) * (2 E|X - Y| - E|X - X'| - E|Y - Y'|)

and the best split of the segment with the highest score is the next candidate (binary
segmentation, hierarchical as in the paper). Its significance is a permutation test: the
segment's values shuffled ``permutations`` times (seeded), ``p = (1 + #{max Q* >= max Q}) /
(permutations + 1)``; segmentation stops at the first candidate with ``p > alpha``.

Neither maintained library fits as a dependency of a pytest plugin: ``apache-otava`` 0.8
pins ``numpy==2.2.0.*`` and pulls BigQuery, Postgres and Slack clients;
``signal-processing-algorithms`` 2.1.6 pins ``numpy<2``, ``gevent<25`` (tritonclient's HTTP
client needs a newer one) and Python < 3.12. The detector is about sixty lines here, and the
suite checks its detection and false-alarm rates by seeded simulation
(``tests/baseline/test_changepoints.py``).

Each change point is reported with the level before and after (the segments' means of the
log levels, given back in the metric's unit), the change in percent with a Welch t interval
between the two adjacent segments, and the permutation p-value.

**Creep** (:func:`creep`): the drift over the newest sessions since a reference point, as
the least-squares trend of the log levels times the span, with a Student t interval from
the residual spread: a 1% step per commit over ten commits is seen though no single step is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Significance of a change point (permutation test) unless a caller says otherwise.
ALPHA = 0.05
#: Shuffles per permutation test: with 499 the smallest p-value is 0.002.
PERMUTATIONS = 499
#: Fewest points on either side of a change point.
MIN_SIZE = 2


@dataclass(frozen=True)
class ChangePoint:
    """A change between ``index - 1`` and ``index`` of the series (``index`` is the first
    point of the new level)."""

    index: int
    p_value: float
    before: float  # level of the segment before, in the metric's unit (geometric mean)
    after: float  # level of the segment after
    change_pct: float
    ci_pct: tuple[float, float]  # 95% Welch t interval of the change

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "p_value": self.p_value,
            "before": self.before,
            "after": self.after,
            "change_pct": self.change_pct,
            "ci_pct": list(self.ci_pct),
        }


def _scores(d: np.ndarray, min_size: int) -> np.ndarray:
    """Q(tau) for every split of each segment in ``d`` (shape ``(r, n, n)``: r distance
    matrices); -inf where a side would have fewer than ``min_size`` points."""
    r, n, _ = d.shape
    p = np.zeros((r, n + 1, n + 1))
    p[:, 1:, 1:] = d.cumsum(axis=1).cumsum(axis=2)
    q = np.full((r, n), -np.inf)
    for tau in range(min_size, n - min_size + 1):
        m, k = tau, n - tau
        cross = p[:, tau, n] - p[:, tau, tau]  # rows [0, tau), columns [tau, n)
        left = p[:, tau, tau] / 2.0
        right = (p[:, n, n] - p[:, tau, n] - p[:, n, tau] + p[:, tau, tau]) / 2.0
        e = 2.0 * cross / (m * k) - left / (m * (m - 1) / 2) - right / (k * (k - 1) / 2)
        q[:, tau] = m * k / n * e
    return q


def _best_split(x: np.ndarray, min_size: int) -> tuple[int, float]:
    d = np.abs(x[:, None] - x[None, :])[None]
    q = _scores(d, min_size)[0]
    tau = int(np.argmax(q))
    return tau, float(q[tau])


def _permutation_p(
    x: np.ndarray, observed: float, permutations: int, min_size: int, rng: np.random.Generator
) -> float:
    order = np.argsort(rng.random((permutations, x.size)), axis=1)
    y = x[order]
    d = np.abs(y[:, :, None] - y[:, None, :])
    best = _scores(d, min_size).max(axis=1)
    return float((1 + np.count_nonzero(best >= observed - 1e-12)) / (permutations + 1))


def _describe(x: np.ndarray, lo: int, tau: int, hi: int, p: float) -> ChangePoint:
    from scipy import stats

    a, b = x[lo:tau], x[tau:hi]
    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se > 0:
        df = (va + vb) ** 2 / ((va**2 / (a.size - 1)) + (vb**2 / (b.size - 1)))
        half = float(stats.t.ppf(0.975, df)) * se
    else:
        half = 0.0
    return ChangePoint(
        index=tau,
        p_value=p,
        before=math.exp(float(a.mean())),
        after=math.exp(float(b.mean())),
        change_pct=100.0 * math.expm1(diff),
        ci_pct=(100.0 * math.expm1(diff - half), 100.0 * math.expm1(diff + half)),
    )


def e_divisive(
    levels: Sequence[float],
    *,
    alpha: float = ALPHA,
    permutations: int = PERMUTATIONS,
    min_size: int = MIN_SIZE,
    seed: int = 0,
) -> list[ChangePoint]:
    """The significant change points of a series of positive levels (in order), found on
    their logarithms, first to last. Deterministic for a given ``seed``."""
    x = np.log(np.asarray(levels, dtype=float))
    if x.size < 2 * min_size or not np.all(np.isfinite(x)):
        return []
    rng = np.random.default_rng(seed)
    cuts = [0, x.size]
    found: list[tuple[int, float]] = []
    while True:
        best: tuple[float, int, int, int] | None = None
        for lo, hi in itertools.pairwise(cuts):
            if hi - lo < 2 * min_size:
                continue
            tau, q = _best_split(x[lo:hi], min_size)
            if best is None or q > best[0]:
                best = (q, lo + tau, lo, hi)
        if best is None:
            break
        q, tau, lo, hi = best
        p = _permutation_p(x[lo:hi], q, permutations, min_size, rng)
        if p > alpha:
            break
        found.append((tau, p))
        cuts = sorted([*cuts, tau])
    out = []
    for tau, p in sorted(found):
        i = cuts.index(tau)
        out.append(_describe(x, cuts[i - 1], tau, cuts[i + 1], p))
    return out


@dataclass(frozen=True)
class Creep:
    """The drift of the newest level against the level ``span`` sessions earlier, from the
    least-squares trend of the log levels over those sessions."""

    span: int  # sessions between the reference point and the newest
    change_pct: float
    ci_pct: tuple[float, float]  # two-sided (1 - alpha) t interval
    p_value: float  # two-sided, slope = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "span": self.span,
            "change_pct": self.change_pct,
            "ci_pct": list(self.ci_pct),
            "p_value": self.p_value,
        }


def creep(levels: Sequence[float], alpha: float = 0.05) -> Creep | None:
    """The drift over ``levels`` (the reference point first, the newest last); None with
    fewer than four points (two residual degrees of freedom at least)."""
    from scipy import stats

    y = np.log(np.asarray(levels, dtype=float))
    n = y.size
    if n < 4 or not np.all(np.isfinite(y)):
        return None
    t = np.arange(n, dtype=float)
    fit = stats.linregress(t, y)
    span = n - 1
    drift = float(fit.slope) * span
    se = float(fit.stderr) * span
    half = float(stats.t.ppf(1 - alpha / 2, n - 2)) * se
    return Creep(
        span=span,
        change_pct=100.0 * math.expm1(drift),
        ci_pct=(100.0 * math.expm1(drift - half), 100.0 * math.expm1(drift + half)),
        p_value=float(fit.pvalue) if se > 0 else (0.0 if drift else 1.0),
    )
