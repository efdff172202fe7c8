"""What a comparison could see: minimum detectable effects and the measurement that would
have been enough. Pure: numpy and scipy.

Every comparison states its minimum detectable effect (MDE): the smallest change its test
would flag with power 0.8 (:data:`POWER`) at the session's alpha, in percent of the baseline
(:func:`mwu_mde`, :func:`prediction_mde`). An inconclusive comparison's note estimates the
measurement that would have been enough to see the smallest change that counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_triton_perf.baseline.sequential import POWER

#: Run-to-run (session-to-session) spread assumed where a comparison cannot estimate it
#: (measured here: sd 1.2% within a session, 3.4% across busy and quiet periods).
RUN_SD_FLOOR = 0.02
#: Asymptotic relative efficiency of Mann-Whitney U against the two-sample t-test for
#: normal data (3/pi, Hodges and Lehmann 1956): the rank test needs 1/0.955 times the windows.
MWU_ARE = 3 / math.pi
#: Largest number of windows (per arm) or stored runs an estimate of the measurement needed
#: looks at; beyond it the note says that no practical measurement would do.
MAX_NEEDED = 10_000


def robust_sd(values: Sequence[float]) -> float:
    """Robust standard deviation: 1.4826 * MAD (the standard deviation for normal data,
    unmoved by one hiccup window); the sample standard deviation where more than half the
    values are equal (MAD 0), 0 for fewer than 2 values."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 2:
        return 0.0
    mad = float(1.4826 * np.median(np.abs(arr - np.median(arr))))
    return mad if mad > 0 else float(np.std(arr, ddof=1))


def mwu_mde(sd: float, n1: int, n2: int, alpha: float, power: float = POWER) -> float:
    """Minimum detectable shift (absolute) of a one-sided Mann-Whitney U test of n1 against
    n2 windows whose values scatter with standard deviation ``sd``.

    The normal approximation of the two-sample power calculation, divided by the square root
    of the rank test's asymptotic relative efficiency (:data:`MWU_ARE`)::

        MDE = (z_{1-alpha} + z_{power}) * sd * sqrt(1/n1 + 1/n2) / sqrt(3/pi)

    (e.g. Lehmann, *Nonparametrics*, 1975, ch. 2). Infinite when no arrangement of n1 + n2
    windows reaches ``alpha`` at all: the smallest one-sided exact p-value is
    1 / C(n1 + n2, n1) (2 against 2 windows: 1/6).
    """
    from scipy.stats import norm

    if n1 < 1 or n2 < 1 or (n1 + n2 < 60 and 1 / math.comb(n1 + n2, n1) >= alpha):
        return math.inf
    z = float(norm.ppf(1 - alpha) + norm.ppf(power))
    return z * sd * math.sqrt(1 / n1 + 1 / n2) / math.sqrt(MWU_ARE)


def prediction_mde(sd: float, runs: int, alpha: float, power: float = POWER) -> float:
    """Minimum detectable shift (absolute) of the one-sided Student-t prediction interval
    over ``runs`` run-level values with run-to-run standard deviation ``sd``.

    A new run differs from the mean of r runs with standard deviation sd * sqrt(1 + 1/r);
    the test flags it beyond t_{1-alpha, r-1} of those, and flags a run shifted by delta with
    probability ``power`` when (the usual approximation of the noncentral t)::

        MDE = (t_{1-alpha, r-1} + t_{power, r-1}) * sd * sqrt(1 + 1/r)

    More runs shrink only the t quantiles and sqrt(1 + 1/r): the limit is
    (z_{1-alpha} + z_{power}) * sd, so a run-to-run spread of 2% can never show 5% at
    alpha 0.01 (the limit is 6.3%).
    """
    from scipy.stats import t as student_t

    if runs < 2:
        return math.inf
    df = runs - 1
    q = float(student_t.ppf(1 - alpha, df) + student_t.ppf(power, df))
    return q * sd * math.sqrt(1 + 1 / runs)


def pct(fraction: float) -> str:
    """A fraction in percent for notes: 0.038 -> '3.8%', 0.114 -> '11%'."""
    v = 100 * fraction
    return f"{v:.1f}%" if v < 10 else f"{v:.0f}%"


@dataclass(frozen=True)
class Power:
    """What one comparison could see: its relative MDE, what would have been needed to see
    the smallest change that counts, and (history) the run-to-run spread."""

    mde: float
    needed: str
    spread: str = ""


def fewest(start: int, reaches: Callable[[int], bool]) -> int | None:
    """The least n in ``start``..:data:`MAX_NEEDED` for which ``reaches(n)`` holds, None when
    none does; ``reaches`` must be monotone (false, then true from some n on), as an MDE that
    falls with n is. By bisection: about 14 evaluations where a scan took up to 10^4, each a
    pair of scipy quantiles (seconds per comparison)."""
    lo, hi = start, MAX_NEEDED + 1  # hi: none reaches
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo if lo <= MAX_NEEDED else None


def needed_text(windows: int, window_s: float | None, arms: int = 1) -> str:
    """What an underpowered comparison would have needed, e.g.
    ``about 28 s of measurement would be needed (14 windows of 1 s per arm)``."""
    per_arm = " per arm" if arms > 1 else ""
    if window_s is None:
        return f"{windows} windows{per_arm} would be needed"
    return (
        f"about {arms * windows * window_s:.0f} s of measurement would be needed "
        f"({windows} windows of {window_s:.2g} s{per_arm})"
    )


def mwu_power(
    current: Sequence[float],
    pooled: Sequence[float],
    base: float,
    alpha: float,
    target: float,
    window_s: float | None,
    mode: str,
) -> Power:
    """The MDE of the Mann-Whitney comparison (:func:`mwu_mde`) with the pooled robust
    spread of both sides' windows, and the windows that would reach ``target``: in A/B
    mode both arms grow (MDE ~ 1/sqrt(windows per arm)); in history mode only the current
    side does, so the stored windows bound what more measuring can reach."""
    n1, n2 = len(current), len(pooled)
    s1, s2 = robust_sd(current), robust_sd(pooled)
    dof = n1 + n2 - 2
    sd = math.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / dof) if dof > 0 else max(s1, s2)
    scale = abs(base) or 1.0
    mde = mwu_mde(sd, n1, n2, alpha) / scale
    if target <= 0 or mde <= target:
        return Power(mde, "")
    ab = mode == "ab"
    # The MDE falls as windows are added: infinite while no arrangement reaches alpha, then
    # sqrt(1/m + 1/n2) shrinks.
    m = fewest(max(n1, 2), lambda m: mwu_mde(sd, m, m if ab else n2, alpha) / scale <= target)
    if m is not None:
        return Power(mde, needed_text(m, window_s, 2 if ab else 1))
    if not ab:
        return Power(
            mde,
            f"more measuring cannot reach it against {n2} stored windows: save runs with "
            f"more windows (--triton-perf-compare-windows) or compare in A/B mode",
        )
    return Power(mde, f"more than {MAX_NEEDED} windows per arm would be needed")


def prediction_power(
    run_levels: Sequence[float], windows: int, alpha: float, target: float, window_s: float | None
) -> Power:
    """The MDE of the prediction interval (:func:`prediction_mde`) with the run-to-run
    standard deviation (and its floor), and the stored runs that would reach ``target``:
    more windows in this run do not help, the runs' own spread is the noise."""
    r = len(run_levels)
    mean = float(np.mean(run_levels))
    scale = abs(mean) or 1.0
    raw = float(np.std(run_levels, ddof=1))
    sd = max(raw, RUN_SD_FLOOR * abs(mean))
    spread = f"run-to-run spread {pct(raw / scale)}"
    if sd > raw:
        spread += f", taken as {pct(RUN_SD_FLOOR)}"
    mde = prediction_mde(sd, r, alpha) / scale
    if target <= 0 or mde <= target:
        return Power(mde, "", spread)
    from scipy.stats import norm

    limit = float(norm.ppf(1 - alpha) + norm.ppf(POWER)) * sd / scale
    if limit >= target:
        return Power(
            mde,
            "no number of stored runs would do at this run-to-run spread: compare in A/B "
            "mode (--triton-perf-baseline-ref)",
            spread,
        )
    # The MDE falls as runs are added (both t quantiles and sqrt(1 + 1/n) do).
    n = fewest(r + 1, lambda n: prediction_mde(sd, n, alpha) / scale <= target)
    if n is not None:
        each = f" of about {windows * window_s:.0f} s each" if window_s is not None else ""
        return Power(mde, f"about {n} stored runs{each} would be needed", spread)
    return Power(mde, f"more than {MAX_NEEDED} stored runs would be needed", spread)
