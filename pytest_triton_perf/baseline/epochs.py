"""Load epochs: the arms' own offset, and the estimate of the change across epochs.

The sequential rule (looks, boundaries, decisions) is in
:mod:`pytest_triton_perf.baseline.sequential`; this module gives it, per metric, each
epoch's estimate with its variance and their random-effects mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pytest_triton_perf.baseline.sequential import POOLED_RESAMPLES, pooled_quantile

# The arms' own offset.
#
# Two identical copies of a model are not identical: every load of the pair draws an offset
# ``u`` of its own (where the scheduler puts two backend processes, their memory layout),
# shared by every pair of blocks of that load. The log-ratio of pair i of load (epoch) e is
#
#     x_ei = delta + u_e + eps_ei,   u_e ~ (0, tau^2),   eps: lag-1 correlated noise,
#
# so a paired interval of one load covers ``delta + u``, not ``delta``. The budget is split
# into load epochs (both arms unloaded and loaded again, in a random order, starting the
# block sequence with a random arm); each epoch gives an estimate m_e with its own variance
# v_e, and the change is the random-effects mean of the epochs (DerSimonian and Laird,
# "Meta-analysis in clinical trials", Controlled Clinical Trials 7:177-188, 1986), with
#
# - a stored A/A calibration of the machine (``triton-perf calibrate``) for tau^2, pooled
#   with this run's own between-epoch estimate (each weighted by its degrees of freedom,
#   as variances of groups are pooled), so a run whose epochs spread more than the
#   calibration's widens its interval; Satterthwaite's degrees of freedom between that
#   variance's and the blocks';
# - otherwise the Hartung-Knapp-Sidik-Jonkman standard error, in its modified form that is
#   never below the random-effects one (Roever, Knapp and Friede, BMC Medical Research
#   Methodology 15:99, 2015), on (epochs - 1) degrees of freedom: honest, and wide when
#   the epochs are few.


@dataclass(frozen=True)
class EpochEstimate:
    """One load epoch's estimate of a metric's log-ratio and the variance of that estimate
    within the epoch."""

    mean: float
    var: float
    units: int  # pairs behind it


@dataclass(frozen=True)
class Offset:
    """A metric's per-load offset variance on this machine (log scale), from a stored A/A
    calibration: ``tau2`` over ``epochs`` epochs (``epochs - 1`` degrees of freedom)."""

    tau2: float
    epochs: int

    @property
    def df(self) -> int:
        """Degrees of freedom of the calibrated variance."""
        return max(1, self.epochs - 1)


@dataclass(frozen=True)
class Combined:
    """The change over epochs: estimate, standard error, degrees of freedom, the offset
    variance used and how it was obtained."""

    mean: float
    se: float
    df: float
    tau2: float
    how: str  # "calibration", "epochs" (HKSJ) or "one epoch"


def lag1(series: Sequence[Sequence[float]]) -> float:
    """The lag-1 autocorrelation of consecutive pairs, pooled over epochs (each epoch about
    its own mean), corrected for its bias in short series and clamped to [0, 0.9]:
    neighbouring pairs share a block.

    The estimate about an estimated mean is biased low by about ``(1 + 3 rho) / n`` in a
    series of ``n`` (Kendall, "Note on bias in the estimation of autocorrelation",
    Biometrika 41:403-404, 1954): with epochs of 4-6 pairs that bias is as large as the
    correlation itself (a seeded simulation at rho 0.3 and 5 pairs per epoch read about
    0.05), and the variance of an epoch's mean came out about 20% low. The correction
    inverts Kendall's bias, ``(n r + 1) / (n - 3)``, at the epochs' mean length."""
    num = den = 0.0
    lengths: list[int] = []
    for x in series:
        a = np.asarray(x, dtype=np.float64)
        if len(a) < 3:
            continue
        d = a - a.mean()
        num += float(np.dot(d[:-1], d[1:]))
        den += float(np.dot(d, d))
        lengths.append(len(a))
    if den <= 0:
        return 0.0
    r = num / den
    n = float(np.mean(lengths))
    if n > 4:  # at n <= 4 the inversion divides by 1 or less: left uncorrected
        r = (n * r + 1) / (n - 3)
    return min(0.9, max(0.0, r))


def ar1_factor(rho: float, n: int) -> float:
    """The variance of the mean of ``n`` AR(1) values with correlation ``rho``, over that
    of ``n`` independent ones: ``1 + 2 sum_h (1 - h/n) rho^h``."""
    return 1.0 + 2.0 * sum((1 - h / n) * rho**h for h in range(1, n))


#: Prior degrees of freedom of the moderated per-epoch variances (see :func:`block_epochs`).
PRIOR_DF = 4.0
#: Huber's tuning constant: about 99% of the mean's efficiency where the noise is normal
#: (1.345, the usual 95% choice, clips more of 4-6 normal pairs than their sandwich
#: variance allows for: a nominal 5% test read 6.8% in the seeded simulation of
#: ``tests/baseline/test_epochs_simulated.py``; 2.0 read 5.6%).
HUBER_K = 2.0
#: 1 / Phi^-1(3/4): the median absolute deviation's factor to a normal sd.
MAD_TO_SD = 1.4826


def huber_location(x: np.ndarray, scale: float, k: float = HUBER_K) -> float:
    """Huber's M-estimate of the location of ``x`` at a fixed ``scale`` (Huber, "Robust
    estimation of a location parameter", Annals of Mathematical Statistics 35:73-101,
    1964), by iteratively reweighted means from the median: the mean where no value lies
    beyond ``k`` scales of it."""
    if not math.isfinite(k) or scale <= 0 or len(x) < 3:
        return float(np.mean(x))
    mu = float(np.median(x))
    for _ in range(100):
        r = np.abs(x - mu) / scale
        w = np.where(r <= k, 1.0, k / np.maximum(r, 1e-300))
        new = float(np.sum(w * x) / np.sum(w))
        if abs(new - mu) <= 1e-12 * scale:
            return new
        mu = new
    return mu


def block_epochs(series: Sequence[Sequence[float]], k: float = HUBER_K) -> list[EpochEstimate]:
    """Each epoch's location of its log-ratios with the variance of that estimate.

    - **Robust location:** on a shared virtual machine a few pairs carry most of the
      noise (a block hit by the host's hiccup: with two plain processes alternating in
      0.5 s blocks here, a p50 log-ratio's sd was 18-20% where 1.4826 MAD read 7-8%,
      ``benchmarks/noise_floor.py``). Each epoch's estimate is Huber's M-estimate
      (:func:`huber_location`) at the epoch's scale (1.4826 times the median absolute
      deviation of its pairs, moderated toward the epochs' pooled figure:
      :func:`_scales`), and its variance the
      M-estimator's sandwich, ``s^2 sum(psi^2) / (n - f) / mean(psi')^2``, with ``psi``
      and ``psi'`` pooled over epochs. Where no pair lies beyond ``k`` scales, both are
      the mean and the variance below exactly; ``k = inf`` is the mean always.
    - **Autocorrelation:** neighbouring pairs share a block, so the variance of a mean of
      ``n`` pairs is ``sigma^2 f / n`` with the AR(1) factor ``f`` (:func:`ar1_factor`) at
      the bias-corrected lag-1 correlation (:func:`lag1`); and the sum of squares about an
      epoch's own mean is short of ``(n - 1) sigma^2`` by the same correlation, so it is
      divided by ``n - f`` (its expectation under AR(1)), not ``n - 1``.
    - **Moderated variances:** the machine's noise changes from one epoch to the next (a
      neighbour's burst, another tenant of the host: within-epoch spreads from 2% to 23%
      in one run of ``benchmarks/arm_offset.py``), so an epoch's own variance weighs it in
      the random-effects mean; on 3-5 degrees of freedom an epoch's variance alone is too
      rough, so it is shrunk toward the variance pooled over all epochs, as if that were
      :data:`PRIOR_DF` more degrees of freedom (the empirical-Bayes moderated variance of
      Smyth, "Linear models and empirical Bayes methods for assessing differential
      expression", Statistical Applications in Genetics and Molecular Biology 3:3, 2004,
      with a fixed prior weight: the epochs are too few to estimate it)."""
    rho = lag1(series)
    arrays = [np.asarray(x, dtype=np.float64) for x in series]
    scales = _scales(arrays)
    locs = [
        huber_location(a, sc, k) if len(a) else 0.0 for a, sc in zip(arrays, scales, strict=True)
    ]
    # psi' pooled over epochs: the share of pairs inside k scales (1 for the mean).
    inside = [
        np.abs(a - m) <= k * sc
        for a, m, sc in zip(arrays, locs, scales, strict=True)
        if len(a) >= 2 and sc > 0 and math.isfinite(k)
    ]
    slope = float(np.mean(np.concatenate(inside))) if inside else 1.0
    slope = max(slope, 0.5)  # at most half the pairs clipped: a scale too small otherwise
    ss = 0.0
    dof = 0.0
    own: list[tuple[float, float] | None] = []
    for a, m, sc in zip(arrays, locs, scales, strict=True):
        if len(a) >= 2:
            f = ar1_factor(rho, len(a))
            psi = _psi(a - m, sc, k)
            s = float(np.sum(psi**2)) / slope**2
            ss += s
            dof += len(a) - f
            own.append((s / (len(a) - f), len(a) - f))
        else:
            own.append(None)
    s2 = ss / dof if dof > 0 else math.inf
    out = []
    for a, m, mine in zip(arrays, locs, own, strict=True):
        n = len(a)
        if n:
            var = s2
            if mine is not None and math.isfinite(s2):
                var = (PRIOR_DF * s2 + mine[1] * mine[0]) / (PRIOR_DF + mine[1])
            out.append(EpochEstimate(m, var * ar1_factor(rho, n) / n, n))
    return out


def _scales(arrays: Sequence[np.ndarray]) -> list[float]:
    """Each epoch's scale: 1.4826 times the median absolute deviation of its pairs about
    its median, moderated toward the same figure pooled over epochs (as the variances are,
    with :data:`PRIOR_DF`): an epoch that spreads more as a whole (a burst of noise) keeps
    a wider scale, so its pairs are not taken for outliers, while a single wild pair does
    not widen it much (a median's breakdown point)."""
    dev = [np.abs(a - np.median(a)) if len(a) >= 2 else None for a in arrays]
    some = [d for d in dev if d is not None]
    if not some:
        return [0.0] * len(arrays)
    pooled = (MAD_TO_SD * float(np.median(np.concatenate(some)))) ** 2
    out = []
    for d in dev:
        if d is None:
            out.append(math.sqrt(pooled))
            continue
        mine = (MAD_TO_SD * float(np.median(d))) ** 2
        out.append(math.sqrt((PRIOR_DF * pooled + (len(d) - 1) * mine) / (PRIOR_DF + len(d) - 1)))
    return out


def _psi(r: np.ndarray, scale: float, k: float) -> np.ndarray:
    """Huber's psi of residuals ``r`` in their own units (clipped at ``k`` scales)."""
    if not math.isfinite(k) or scale <= 0:
        return r
    limit = k * scale
    clipped: np.ndarray = np.clip(r, -limit, limit)
    return clipped


def pooled_epoch(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], q: float, seed: int
) -> EpochEstimate | None:
    """One epoch's log-ratio of the arms' pooled percentile ``q`` (block i of each arm
    forming pair i), with its variance from a pair bootstrap inside the epoch (both arms'
    blocks of a pair resampled together: it keeps the pairing and the correlation of
    requests inside a block), times ``n / (n - 1)``. None when an arm has no value."""
    n = min(len(reference), len(candidate))
    ref, cand = list(reference[:n]), list(candidate[:n])
    if n < 1 or not sum(len(a) for a in ref) or not sum(len(a) for a in cand):
        return None
    r0, c0 = pooled_quantile(ref, q), pooled_quantile(cand, q)
    if r0 <= 0 or c0 <= 0:
        return None
    est = math.log(c0 / r0)
    if n < 2:
        return EpochEstimate(est, math.inf, n)
    rng = np.random.default_rng(seed)
    draws = []
    for idx in rng.integers(0, n, size=(POOLED_RESAMPLES, n)):
        r = [ref[i] for i in idx]
        c = [cand[i] for i in idx]
        if sum(map(len, r)) and sum(map(len, c)):
            rq, cq = pooled_quantile(r, q), pooled_quantile(c, q)
            if rq > 0 and cq > 0:
                draws.append(math.log(cq / rq))
    # The plug-in bootstrap variance of a statistic of n resampled units is too small by
    # about (n - 1) / n (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993,
    # section 5.2): with an epoch's 4-6 pairs, a quarter to a sixth. Corrected, as the
    # co-location cost's is (:mod:`pytest_triton_perf.baseline.cost`).
    var = float(np.var(draws, ddof=1)) * n / (n - 1) if len(draws) > 2 else math.inf
    return EpochEstimate(est, var, n)


def combine(epochs: Sequence[EpochEstimate], offset: Offset | None = None) -> Combined:
    """The random-effects mean of the epochs' estimates (see the comment above)."""

    es = [e for e in epochs if math.isfinite(e.var)]
    k = len(es)
    if k == 0:
        return Combined(0.0, math.inf, 1.0, math.inf, "no epoch")
    m = np.array([e.mean for e in es])
    v = np.maximum(np.array([e.var for e in es]), 1e-12)
    dof_within = max(1, sum(e.units - 1 for e in es))
    if offset is not None:
        # The calibration's and these epochs' between-epoch variance, pooled (each with
        # its degrees of freedom): the offset of this run may be larger than the
        # calibration's (a neighbour, another load), and the pooled estimate follows it
        # while keeping the calibration's degrees of freedom.
        now = _moment_tau2(m, v) if k >= 2 else 0.0
        df_tau = offset.df + max(0, k - 1)
        tau2 = max(0.0, (offset.df * offset.tau2 + max(0, k - 1) * now) / df_tau)
        w = 1 / (tau2 + v)
        est = float(np.sum(w * m) / np.sum(w))
        within = float(np.mean(v))
        total = tau2 + within
        df = total**2 / (tau2**2 / df_tau + within**2 / dof_within)
        return Combined(est, math.sqrt(1 / float(np.sum(w))), df, tau2, "calibration")
    if k == 1:  # one load: the within-load interval; the offset is not modelled
        return Combined(float(m[0]), math.sqrt(float(v[0])), float(dof_within), 0.0, "one epoch")
    tau2 = _moment_tau2(m, v)
    w = 1 / (tau2 + v)
    est = float(np.sum(w * m) / np.sum(w))
    se_re = math.sqrt(1 / float(np.sum(w)))
    se_hk = math.sqrt(float(np.sum(w * (m - est) ** 2)) / ((k - 1) * float(np.sum(w))))
    return Combined(est, max(se_re, se_hk), float(k - 1), float(tau2), "epochs")


def _moment_tau2(m: np.ndarray, v: np.ndarray) -> float:
    """DerSimonian-Laird's moment estimate of the between-epoch variance (0 at least)."""
    w0 = 1 / v
    fe = float(np.sum(w0 * m) / np.sum(w0))
    q0 = float(np.sum(w0 * (m - fe) ** 2))
    return max(0.0, (q0 - (len(m) - 1)) / float(np.sum(w0) - np.sum(w0**2) / np.sum(w0)))


def offset_variance(epochs: Sequence[EpochEstimate]) -> float:
    """tau^2 of A/A epochs (DerSimonian-Laird's moment estimate): what a calibration
    stores. Every epoch of an A/A run has delta = 0, so the spread of their estimates beyond
    their own variances is the offset's."""
    es = [e for e in epochs if math.isfinite(e.var)]
    if len(es) < 2:
        return math.inf
    m = np.array([e.mean for e in es])
    w = 1 / np.maximum(np.array([e.var for e in es]), 1e-12)
    # The offset's mean is 0 in an A/A run: its spread is taken about 0.
    q = float(np.sum(w * m**2))
    return max(0.0, (q - len(es)) / float(np.sum(w)))
