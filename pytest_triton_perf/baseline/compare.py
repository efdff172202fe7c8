"""Regression statistics. Pure: numpy and scipy, no pytest, no files.

The unit of analysis is the measurement window, never the single request: requests inside a
window are correlated (queueing, batching), so testing them as independent samples would
flag noise as regressions. A metric regresses only when the change is significant AND at
least the minimum effect AND above the absolute floor (asv's "stats and factor" rule).

- A/B mode (reference and candidate in one server, windows interleaved): one-sided
  Mann-Whitney U on the window values of the two arms. Machine drift hits both arms alike.
- History mode (stored accepted runs): with three or more runs, a one-sided 99% Student-t
  prediction interval over run-level values (each run's median window), because windows of
  one run share that run's offset and pooling them across runs is pseudo-replication; with
  fewer runs, Mann-Whitney against the stored windows. The plugin confirms a history
  regression with one re-measurement before failing.

Every comparison also states its minimum detectable effect (MDE): the smallest change its
test would flag with power 0.8 (:data:`POWER`) at the session's alpha, in percent of the
baseline (:func:`mwu_mde`, :func:`prediction_mde`). A pass claims that the metric did not
change by the minimum effect or more; a comparison whose MDE is larger than that could not
have seen such a change, so it is ``inconclusive`` ("underpowered"), never ``pass``, and its
note estimates the measurement that would have been enough. Regression and improvement
verdicts do not depend on it: a significant change beyond the minimum effect was seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_triton_perf import metrics, options
from pytest_triton_perf.baseline.sequential import MIN_REQUESTS_FOR_P99, POWER
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_BASELINE,
    PASS,
    REGRESSION,
    Comparison,
)

# The defaults of the decision rule, from the metric catalogue.
#: Metrics compared window by window by default, in report order.
GATED_METRICS = tuple(m.name for m in metrics.GATED if m.per_window)
HIGHER_IS_WORSE = {m.name: m.higher_is_worse for m in metrics.CATALOGUE}
DEFAULT_MIN_EFFECT = {m.name: m.gate.min_effect for m in metrics.GATED if m.gate}
DEFAULT_FLOOR = {m.name: m.gate.floor for m in metrics.GATED if m.gate and m.gate.floor}

RUN_SD_FLOOR = 0.02
#: Asymptotic relative efficiency of Mann-Whitney U against the two-sample t-test for
#: normal data (3/pi, Hodges and Lehmann 1956): the rank test needs 1/0.955 times the windows.
MWU_ARE = 3 / math.pi
#: Largest number of windows (per arm) or stored runs an estimate of the measurement needed
#: looks at; beyond it the note says that no practical measurement would do.
MAX_NEEDED = 10_000


@dataclass(frozen=True)
class GateSettings:
    """Decision rule parameters; per-test overrides replace single entries."""

    alpha: float = options.default("alpha")  # --triton-perf-alpha
    min_effect: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_EFFECT))
    floor: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOOR))
    disabled: frozenset[str] = frozenset()
    #: Robust window-to-window variation (MAD / median) above which a metric decides
    #: nothing: it is reported inconclusive instead of passing on too little evidence.
    max_noise: float = 0.15

    def with_overrides(self, overrides: Mapping[str, float | None]) -> GateSettings:
        """A copy with per-metric minimum effects replaced; None switches a metric off."""
        effects = dict(self.min_effect)
        disabled = set(self.disabled)
        for metric, value in overrides.items():
            if value is None:
                disabled.add(metric)
            else:
                effects[metric] = value
        return GateSettings(
            self.alpha, effects, dict(self.floor), frozenset(disabled), self.max_noise
        )


def smallest_change(gate: GateSettings, metric: str, base: float | None) -> float:
    """The smallest relative change that counts for ``metric``: its minimum effect, or the
    absolute floor where that is the larger share of the baseline ``base``."""
    effect = gate.min_effect.get(metric, 0.0)
    floor = gate.floor.get(metric, 0.0)
    return max(effect, floor / abs(base)) if base else effect


def window_values(result: Mapping[str, Any], metric: str) -> list[float]:
    """Per-window values of ``metric`` from ``PerfResult.to_dict()``."""
    meta = metrics.BY_NAME[metric]
    if not meta.per_window:
        return []
    if meta.samples:  # a figure of rounds, not of windows (co-location)
        return meta.read_samples(result)
    return [float(v) for w in result.get("windows", []) if (v := meta.read(w)) is not None]


def noise(values: Sequence[float]) -> float:
    """Robust relative spread of window values: 1.4826 * MAD / median (0 for < 3 values).

    Robust on purpose: one window hit by a hiccup should not void a comparison that the
    rank test handles anyway.
    """
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 3:
        return 0.0
    med = float(np.median(arr))
    if med == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(arr - med)) / abs(med))


def _mwu_p(worse: Sequence[float], better: Sequence[float]) -> float:
    """One-sided p-value that ``worse`` tends to be greater than ``better``."""
    from scipy.stats import mannwhitneyu

    if len(worse) == 0 or len(better) == 0:
        return 1.0
    if np.ptp(np.concatenate([worse, better])) == 0:
        return 1.0  # all values equal: no evidence either way
    return float(mannwhitneyu(worse, better, alternative="greater").pvalue)


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


def _prediction_p(runs: Sequence[float], current: float, higher_is_worse: bool) -> float | None:
    """One-sided p-value of ``current`` under a Student-t prediction interval over ``runs``."""
    from scipy.stats import t as student_t

    r = len(runs)
    mean = float(np.mean(runs))
    # Runs recorded back to back understate how much a machine varies between sessions
    # (measured: sd 1.2% within a session, 3.4% across busy and quiet periods): the
    # interval's scale never goes below 2% of the mean.
    sd = max(float(np.std(runs, ddof=1)), RUN_SD_FLOOR * abs(mean))
    if sd == 0:
        return None
    scale = sd * math.sqrt(1 + 1 / r)
    stat = (current - mean) / scale
    if not higher_is_worse:
        stat = -stat
    return float(student_t.sf(stat, r - 1))


def compare_runs(
    metric: str,
    baseline_windows: Sequence[Sequence[float]],
    current_windows: Sequence[float],
    gate: GateSettings,
    *,
    mode: str = "history",
    window_s: float | None = None,
) -> Comparison:
    """Compare one metric: baseline as runs of window values, current as window values.

    ``mode="ab"`` takes the single reference run measured interleaved with the current one.
    ``window_s``, the length of one window, turns the estimate of the measurement an
    underpowered comparison would have needed into seconds.
    """
    runs = [list(r) for r in baseline_windows if len(r) > 0]
    current = list(current_windows)
    if not runs:
        return Comparison(metric, NO_BASELINE, mode, note="the baseline has no windows")
    if not current:
        return Comparison(
            metric, INCONCLUSIVE, mode, note="no window of this measurement has the figure"
        )
    worse_up = HIGHER_IS_WORSE[metric]
    run_levels = [float(np.median(r)) for r in runs]
    pooled = [v for r in runs for v in r]
    cur = float(np.median(current))
    use_runs = mode == "history" and len(runs) >= 3
    base = float(np.median(run_levels)) if use_runs else float(np.median(pooled))
    base_ci = median_ci(run_levels if use_runs else pooled)
    change = (cur - base) / base if base else 0.0
    diff = abs(cur - base)
    effect = gate.min_effect.get(metric, 0.0)
    floor = gate.floor.get(metric, 0.0)
    # The smallest change that counts: the relative minimum effect, or the absolute floor
    # where that is the larger share of the baseline (below it nothing regresses anyway).
    target = smallest_change(gate, metric, base)

    p_worse = p_better = None
    note = ""
    power: _Power | None = None
    if use_runs:
        p_worse = _prediction_p(run_levels, cur, worse_up)
        p_better = _prediction_p(run_levels, cur, not worse_up)
        power = _prediction_power(run_levels, len(current), gate.alpha, target, window_s)
        note = f"prediction interval over {len(runs)} stored runs ({power.spread})"
    if p_worse is None or p_better is None:
        hi, lo = (current, pooled) if worse_up else (pooled, current)
        p_worse = _mwu_p(hi, lo)
        p_better = _mwu_p(lo, hi)
        power = _mwu_power(current, pooled, base, gate.alpha, target, window_s, mode)
        note = f"Mann-Whitney U, {len(current)} vs {len(pooled)} windows" + (
            "" if mode == "ab" else f" of {len(runs)} stored run(s)"
        )
    assert power is not None
    worse_change = change if worse_up else -change
    big_enough = diff >= floor
    spread = max(noise(current), noise(pooled) if mode == "ab" else 0.0)
    if spread > gate.max_noise:
        verdict, p = INCONCLUSIVE, min(p_worse, p_better)
        note = (
            f"windows too noisy to decide: {spread:.0%} window-to-window variation "
            f"(limit {gate.max_noise:.0%}); {note}"
        )
    elif p_worse < gate.alpha and worse_change >= effect and big_enough:
        verdict, p = REGRESSION, p_worse
    elif p_better < gate.alpha and -worse_change >= effect and big_enough:
        verdict, p = IMPROVEMENT, p_better
    elif target > 0 and power.mde > target:
        # Not significant, but the test could not have seen the smallest change that
        # counts: that is no evidence that the metric did not regress.
        verdict, p = INCONCLUSIVE, min(p_worse, p_better)
        short = metrics.BY_NAME[metric].short
        seen = (
            f"could only see >= {_pct(power.mde)} on {short}"
            if math.isfinite(power.mde)
            else f"too few windows for any change on {short} to reach alpha {gate.alpha:g}"
        )
        note = (
            f"underpowered: {seen} (the smallest change that counts: {_pct(target)}); "
            f"{power.needed}; {note}"
        )
    else:
        verdict, p = PASS, min(p_worse, p_better)
    return Comparison(
        metric=metric,
        verdict=verdict,
        mode=mode,
        baseline=base,
        baseline_ci=base_ci,
        current=cur,
        current_ci=median_ci(current),
        change_pct=100.0 * change,
        p_value=p,
        note=note,
        mde_pct=100.0 * power.mde,
    )


def _pct(fraction: float) -> str:
    """0.038 -> '3.8%', 0.114 -> '11%'."""
    v = 100 * fraction
    return f"{v:.1f}%" if v < 10 else f"{v:.0f}%"


@dataclass(frozen=True)
class _Power:
    """What one comparison could see: its relative MDE, what would have been needed to see
    the smallest change that counts, and (history) the run-to-run spread."""

    mde: float
    needed: str
    spread: str = ""


def _needed(windows: int, window_s: float | None, arms: int = 1) -> str:
    """``about 28 s of measurement would be needed (14 windows of 1 s per arm)``."""
    per_arm = " per arm" if arms > 1 else ""
    if window_s is None:
        return f"{windows} windows{per_arm} would be needed"
    return (
        f"about {arms * windows * window_s:.0f} s of measurement would be needed "
        f"({windows} windows of {window_s:.2g} s{per_arm})"
    )


def _mwu_power(
    current: Sequence[float],
    pooled: Sequence[float],
    base: float,
    alpha: float,
    target: float,
    window_s: float | None,
    mode: str,
) -> _Power:
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
        return _Power(mde, "")
    ab = mode == "ab"
    for m in range(max(n1, 2), MAX_NEEDED + 1):
        if mwu_mde(sd, m, m if ab else n2, alpha) / scale <= target:
            return _Power(mde, _needed(m, window_s, 2 if ab else 1))
    if not ab:
        return _Power(
            mde,
            f"more measuring cannot reach it against {n2} stored windows: save runs with "
            f"more windows (--triton-perf-compare-windows) or compare in A/B mode",
        )
    return _Power(mde, f"more than {MAX_NEEDED} windows per arm would be needed")


def _prediction_power(
    run_levels: Sequence[float], windows: int, alpha: float, target: float, window_s: float | None
) -> _Power:
    """The MDE of the prediction interval (:func:`prediction_mde`) with the run-to-run
    standard deviation (and its floor), and the stored runs that would reach ``target``:
    more windows in this run do not help, the runs' own spread is the noise."""
    r = len(run_levels)
    mean = float(np.mean(run_levels))
    scale = abs(mean) or 1.0
    raw = float(np.std(run_levels, ddof=1))
    sd = max(raw, RUN_SD_FLOOR * abs(mean))
    spread = f"run-to-run spread {_pct(raw / scale)}"
    if sd > raw:
        spread += f", taken as {_pct(RUN_SD_FLOOR)}"
    mde = prediction_mde(sd, r, alpha) / scale
    if target <= 0 or mde <= target:
        return _Power(mde, "", spread)
    from scipy.stats import norm

    limit = float(norm.ppf(1 - alpha) + norm.ppf(POWER)) * sd / scale
    if limit >= target:
        return _Power(
            mde,
            "no number of stored runs would do at this run-to-run spread: compare in A/B "
            "mode (--triton-perf-baseline-ref)",
            spread,
        )
    for n in range(r + 1, MAX_NEEDED + 1):
        if prediction_mde(sd, n, alpha) / scale <= target:
            each = f" of about {windows * window_s:.0f} s each" if window_s is not None else ""
            return _Power(mde, f"about {n} stored runs{each} would be needed", spread)
    return _Power(mde, f"more than {MAX_NEEDED} stored runs would be needed", spread)


def compare_errors(
    baseline: tuple[int, int],
    current: tuple[int, int],
    gate: GateSettings,
    *,
    mode: str,
    metric: str = "error_rate",
) -> Comparison:
    """A rate of failures: one-sided Fisher exact test on (failed, total) counts."""
    from scipy.stats import fisher_exact

    (b_err, b_req), (c_err, c_req) = baseline, current
    if b_req == 0 or c_req == 0:
        return Comparison(metric, INCONCLUSIVE, mode, note="no requests to compare")
    b_rate, c_rate = b_err / b_req, c_err / c_req
    table = [[c_err, c_req - c_err], [b_err, b_req - b_err]]
    p_worse = float(fisher_exact(table, alternative="greater").pvalue)
    p_better = float(fisher_exact(table, alternative="less").pvalue)
    effect = gate.min_effect.get(metric, 0.0)
    if p_worse < gate.alpha and c_rate - b_rate >= effect:
        verdict, p = REGRESSION, p_worse
    elif p_better < gate.alpha and b_rate - c_rate >= effect:
        verdict, p = IMPROVEMENT, p_better
    else:
        verdict, p = PASS, min(p_worse, p_better)
    change = 100.0 * (c_rate - b_rate) / b_rate if b_rate else None
    return Comparison(
        metric,
        verdict,
        mode,
        baseline=b_rate,
        current=c_rate,
        change_pct=change,
        p_value=p,
        note=f"Fisher exact, {c_err}/{c_req} vs {b_err}/{b_req} failed",
    )


def compare_results(
    baseline_results: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any],
    gate: GateSettings,
    *,
    mode: str,
) -> list[Comparison]:
    """Every gated metric of ``current`` (``PerfResult.to_dict()``) against the baseline
    runs (each a ``PerfResult.to_dict()``)."""
    out = []
    searched = current.get("capacity") is not None
    streamed = bool(current.get("streaming"))
    for meta in metrics.GATED:
        metric = meta.name
        if metric in gate.disabled:
            continue
        if meta.search_only != searched and meta.counts is None:
            # A capacity result is compared on its capacity (its latency sits at the bound
            # by construction, at a level that may differ between runs); a plain one never.
            continue
        if meta.streaming_only and not streamed:
            continue  # TTFT and ITL are figures of streaming models only
        if meta.colocation_only and meta.read(current) is None:
            continue  # only a co-location measurement has a co-location cost
        if meta.counts is not None:
            failed, total = meta.counts
            b = (
                sum(int(r.get(failed, 0)) for r in baseline_results),
                sum(int(r.get(total, 0)) for r in baseline_results),
            )
            c = (int(current[failed]), int(current[total]))
            out.append(compare_errors(b, c, gate, mode=mode, metric=metric))
            continue
        if metric in ("p99_ms", "ttft_p99_ms"):
            few = _requests_per_window(current)
            if few is not None and few < MIN_REQUESTS_FOR_P99:
                out.append(
                    Comparison(
                        metric,
                        INCONCLUSIVE,
                        mode,
                        note=f"p99 of a window of {few:g} requests is about its maximum: "
                        f"lengthen --triton-perf-window-s or raise the load to gate p99 "
                        f"(at least {MIN_REQUESTS_FOR_P99} requests per window)",
                    )
                )
                continue
        runs = [window_values(r, metric) for r in baseline_results]
        out.append(
            compare_runs(
                metric,
                runs,
                window_values(current, metric),
                gate,
                mode=mode,
                window_s=_window_s(current),
            )
        )
    return out


def _window_s(result: Mapping[str, Any]) -> float | None:
    """Median length of the measurement's windows, in seconds."""
    lengths = [float(w["duration_s"]) for w in result.get("windows", []) if w.get("duration_s")]
    return float(np.median(lengths)) if lengths else None


def _requests_per_window(result: Mapping[str, Any]) -> float | None:
    """Median number of requests in the measurement's windows."""
    counts = [int(w.get("requests", 0)) for w in result.get("windows", [])]
    return float(np.median(counts)) if counts else None
