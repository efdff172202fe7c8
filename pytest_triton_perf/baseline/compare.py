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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_triton_perf import metrics, options
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
#: A window's p99 rests on its slowest 1%: below this many requests it is just its maximum.
MIN_REQUESTS_FOR_P99 = 100


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


def window_values(result: Mapping[str, Any], metric: str) -> list[float]:
    """Per-window values of ``metric`` from ``PerfResult.to_dict()``."""
    meta = metrics.BY_NAME[metric]
    if not meta.per_window:
        return []
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
) -> Comparison:
    """Compare one metric: baseline as runs of window values, current as window values.

    ``mode="ab"`` takes the single reference run measured interleaved with the current one.
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

    p_worse = p_better = None
    note = ""
    if use_runs:
        p_worse = _prediction_p(run_levels, cur, worse_up)
        p_better = _prediction_p(run_levels, cur, not worse_up)
        note = f"prediction interval over {len(runs)} stored runs"
    if p_worse is None or p_better is None:
        hi, lo = (current, pooled) if worse_up else (pooled, current)
        p_worse = _mwu_p(hi, lo)
        p_better = _mwu_p(lo, hi)
        note = f"Mann-Whitney U, {len(current)} vs {len(pooled)} windows" + (
            "" if mode == "ab" else f" of {len(runs)} stored run(s)"
        )
    worse_change = change if worse_up else -change
    effect = gate.min_effect.get(metric, 0.0)
    floor = gate.floor.get(metric, 0.0)
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
    )


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
    for meta in metrics.GATED:
        metric = meta.name
        if metric in gate.disabled:
            continue
        if meta.counts is not None:
            failed, total = meta.counts
            b = (
                sum(int(r.get(failed, 0)) for r in baseline_results),
                sum(int(r.get(total, 0)) for r in baseline_results),
            )
            c = (int(current[failed]), int(current[total]))
            out.append(compare_errors(b, c, gate, mode=mode, metric=metric))
            continue
        if metric == "p99_ms":
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
        out.append(compare_runs(metric, runs, window_values(current, metric), gate, mode=mode))
    return out


def _requests_per_window(result: Mapping[str, Any]) -> float | None:
    """Median number of requests in the measurement's windows."""
    counts = [int(w.get("requests", 0)) for w in result.get("windows", [])]
    return float(np.median(counts)) if counts else None
