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

**Pass** is a non-inferiority decision (Wellek 2010): the one-sided (1 - alpha) upper bound
of the change toward worse lies inside the smallest change that counts
(:func:`smallest_change`). With three or more stored runs the bound is the prediction
interval's (runs are the units); otherwise the Hodges-Lehmann shift of the windows with
Moses' bound, widened by the run-to-run spread that one run or one load per side cannot
show (:data:`~pytest_triton_perf.baseline.power.RUN_SD_FLOOR`). At a true change equal to
that margin a pass comes with probability at most the pass alpha
(``GateSettings.pass_alpha``, 0.05 by default: a 90% two-sided interval, the equivalence
convention of bioequivalence trials); "not significant" alone (which
passes such a change about half the time) is never a pass. An undecided comparison is
``inconclusive``, with its minimum detectable effect
(:mod:`~pytest_triton_perf.baseline.power`) and the measurement that would have been enough.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_triton_perf import metrics, options
from pytest_triton_perf.baseline.power import (
    RUN_SD_FLOOR,
    Power,
    mwu_power,
    pct,
    prediction_power,
)
from pytest_triton_perf.baseline.sequential import MIN_REQUESTS_FOR_P99
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
    #: Level of the pass (equivalence, non-inferiority) decisions: a change of the smallest
    #: size that counts passes with probability at most this (--triton-perf-pass-alpha).
    pass_alpha: float = options.default("pass_alpha")

    def with_overrides(self, overrides: Mapping[str, float | None]) -> GateSettings:
        """A copy with per-metric minimum effects replaced; None switches a metric off."""
        effects = dict(self.min_effect)
        disabled = set(self.disabled)
        for metric, value in overrides.items():
            if value is None:
                disabled.add(metric)
            else:
                effects[metric] = value
        return dataclasses.replace(
            self, min_effect=effects, floor=dict(self.floor), disabled=frozenset(disabled)
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


def _prediction_bound(
    runs: Sequence[float], current: float, higher_is_worse: bool, alpha: float
) -> float:
    """One-sided (1 - alpha) upper bound of the relative change toward worse of a new run
    against ``runs`` (run-level values): the Student-t bound with the prediction interval's
    scale, sd * sqrt(1 + 1/r) with the :data:`RUN_SD_FLOOR` (the new run carries a run
    offset of its own). At a true change equal to the margin it falls inside the margin
    with probability alpha (a one-sided non-inferiority test, Wellek, *Testing Statistical
    Hypotheses of Equivalence and Noninferiority*, 2010, ch. 2)."""
    from scipy.stats import t as student_t

    r = len(runs)
    mean = float(np.mean(runs))
    if mean == 0:
        return math.inf
    sd = max(float(np.std(runs, ddof=1)), RUN_SD_FLOOR * abs(mean))
    worse = (current - mean) if higher_is_worse else (mean - current)
    return (worse + float(student_t.ppf(1 - alpha, r - 1)) * sd * math.sqrt(1 + 1 / r)) / abs(mean)


def _shift_bound(
    current: Sequence[float],
    baseline: Sequence[float],
    base: float,
    higher_is_worse: bool,
    alpha: float,
    between: float,
) -> float:
    """One-sided (1 - alpha) upper bound of the relative shift toward worse of the windows
    ``current`` against ``baseline``, for a non-inferiority pass.

    The Hodges-Lehmann estimate of the shift (the median of the m * n differences) with
    Moses' distribution-free bound, the order statistic of the differences at the
    Mann-Whitney critical value (Hollander, Wolfe and Chicken, *Nonparametric Statistical
    Methods*, 3rd ed., 2014, section 4.3; normal approximation of the critical value).
    Windows share their run's (or load's) offset, which the windows cannot show: its
    variance, ``between`` * :data:`RUN_SD_FLOOR` squared (2 for two loads, 1 + 1/r for a
    run against r stored runs), is added to the bound's (the windows' half-width over
    z), so one run or one load per arm is not taken for the machine's variation."""
    from scipy.stats import norm

    x, y = np.asarray(current, np.float64), np.asarray(baseline, np.float64)
    m, n = len(x), len(y)
    if not base:
        return math.inf
    z = float(norm.ppf(1 - alpha))
    k = math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))
    if k < 1:
        return math.inf  # too few windows for any bound at this alpha
    d = np.sort((x[:, None] - y[None, :]).ravel()) / abs(base)
    if not higher_is_worse:
        d = -d[::-1]
    se = (float(d[m * n - k]) - float(d[k - 1])) / (2 * z)
    se = math.sqrt(se**2 + between * RUN_SD_FLOOR**2)
    return float(np.median(d)) + z * se


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
    power: Power | None = None
    if use_runs:
        p_worse = _prediction_p(run_levels, cur, worse_up)
        p_better = _prediction_p(run_levels, cur, not worse_up)
        power = prediction_power(run_levels, len(current), gate.alpha, target, window_s)
        note = f"prediction interval over {len(runs)} stored runs ({power.spread})"
    if p_worse is None or p_better is None:
        hi, lo = (current, pooled) if worse_up else (pooled, current)
        p_worse = _mwu_p(hi, lo)
        p_better = _mwu_p(lo, hi)
        power = mwu_power(current, pooled, base, gate.alpha, target, window_s, mode)
        note = f"Mann-Whitney U, {len(current)} vs {len(pooled)} windows" + (
            "" if mode == "ab" else f" of {len(runs)} stored run(s)"
        )
    assert power is not None
    worse_change = change if worse_up else -change
    if use_runs:
        worse_hi = _prediction_bound(run_levels, cur, worse_up, gate.pass_alpha)
    else:
        # Each side is one load (A/B) or one run against r stored runs: each carries an
        # offset of its own that no window of it can show.
        between = 2.0 if mode == "ab" else 1 + 1 / len(runs)
        worse_hi = _shift_bound(current, pooled, base, worse_up, gate.pass_alpha, between)
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
    elif worse_hi < target:
        # Non-inferiority: the one-sided (1 - pass alpha) upper bound of the change toward worse
        # lies inside the smallest change that counts.
        verdict, p = PASS, min(p_worse, p_better)
    else:
        verdict, p = INCONCLUSIVE, min(p_worse, p_better)
        short = metrics.BY_NAME[metric].short
        bound = (
            f"the change on {short} may be as bad as {pct(worse_hi)} (one-sided "
            f"{1 - gate.pass_alpha:.0%} bound; the smallest change that counts: {pct(target)})"
        )
        if target > 0 and power.mde > target:
            seen = (
                f"could only see >= {pct(power.mde)} on {short}"
                if math.isfinite(power.mde)
                else f"too few windows for any change on {short} to reach alpha {gate.alpha:g}"
            )
            bound = f"underpowered: {seen} (the smallest change that counts: {pct(target)})"
            bound += f"; {power.needed}"
        note = f"{bound}; {note}"
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


#: Sign vectors a paired permutation test enumerates exactly (2**16); beyond, Monte Carlo.
EXACT_SIGN_FLIPS = 16
#: Random sign vectors of the Monte Carlo permutation test (seeded: deterministic).
SIGN_FLIP_DRAWS = 20_000


def sign_flip_p(differences: Sequence[float] | np.ndarray) -> float:
    """One-sided p-value that the paired ``differences`` tend to be positive: Fisher's
    sign-flip permutation test of their mean (Fisher, *The Design of Experiments*, 1935,
    section 21; Good, *Permutation Tests*, 2005, ch. 3). Under no change each pair's
    difference is as likely negative as positive, whatever its size, so bursts of errors
    inside one block weigh as one pair, not as many independent requests. Exact up to
    :data:`EXACT_SIGN_FLIPS` pairs, Monte Carlo (seeded) beyond."""
    d = np.asarray(differences, np.float64)
    n = len(d)
    if n == 0 or not np.any(d):
        return 1.0
    if n <= EXACT_SIGN_FLIPS:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(n).choice([-1.0, 1.0], size=(SIGN_FLIP_DRAWS, n))
    means = (signs * d).mean(axis=1)
    return float(np.mean(means >= d.mean() - 1e-15))


def compare_errors_paired(
    reference: Sequence[tuple[int, int]],
    candidate: Sequence[tuple[int, int]],
    gate: GateSettings,
    *,
    mode: str = "ab",
    metric: str = "error_rate",
    looks: int = 1,
) -> Comparison:
    """A rate of failures compared block by block: ``(failed, total)`` per block of each
    arm, block i of each arm forming pair i (blocks without requests in either arm are
    left out). Errors come in bursts inside a block, so the unit is the pair of blocks:

    - the change is the mean over pairs of the difference of the blocks' error rates;
    - regression: :func:`sign_flip_p` below alpha AND the mean difference at least the
      metric's minimum effect (improvement: the same on the other side);
    - pass (non-inferiority): the one-sided (1 - alpha) Student-t upper bound of the mean
      difference below the minimum effect; or no error in either arm (nothing changed
      that the requests could show; the note states the zero-event bound -ln(alpha) / n,
      the "rule of three" at alpha 0.05, Hanley and Lippman-Hand, JAMA 249:1743, 1983);
    - otherwise inconclusive.

    ``looks``: the looks at which the caller could have stopped; alpha is divided by them
    (Bonferroni), so the rule holds at whichever look it is applied.
    """
    from scipy.stats import t as student_t

    pairs = [(r, c) for r, c in zip(reference, candidate, strict=False) if r[1] and c[1]]
    alpha = gate.alpha / max(1, looks)
    pass_alpha = gate.pass_alpha / max(1, looks)
    effect = gate.min_effect.get(metric, 0.0)
    b_err, b_req = sum(r[0] for r, _ in pairs), sum(r[1] for r, _ in pairs)
    c_err, c_req = sum(c[0] for _, c in pairs), sum(c[1] for _, c in pairs)
    if not pairs:
        return Comparison(metric, INCONCLUSIVE, mode, note="no pair of blocks with requests")
    b_rate, c_rate = b_err / b_req, c_err / c_req
    d = np.array([c[0] / c[1] - r[0] / r[1] for r, c in pairs])
    n, mean = len(d), float(d.mean())
    p_worse, p_better = sign_flip_p(d), sign_flip_p(-d)
    how = (
        f"sign-flip test over {n} pairs of blocks, {c_err}/{c_req} vs {b_err}/{b_req} "
        f"failed, alpha {alpha:.2g}"
    )
    if b_err == 0 and c_err == 0:
        # No failure on either side: nothing changed that these requests could show. A
        # pass, with the zero-event bound stated (it may exceed the minimum effect when the
        # arms ran few requests).
        bound = -math.log(pass_alpha) / c_req
        upper = 0.0
        how = (
            f"no errors in either arm ({c_req} vs {b_req} requests; the candidate's rate "
            f"is below {bound:.2%} at 1 - pass alpha); {how}"
        )
    elif n >= 2:
        se = float(d.std(ddof=1)) / math.sqrt(n)
        upper = mean + float(student_t.ppf(1 - pass_alpha, n - 1)) * se
    else:
        upper = math.inf
    if p_worse < alpha and mean >= effect:
        verdict, p = REGRESSION, p_worse
    elif p_better < alpha and -mean >= effect:
        verdict, p = IMPROVEMENT, p_better
    elif upper < effect:
        verdict, p = PASS, min(p_worse, p_better)
    else:
        verdict, p = INCONCLUSIVE, min(p_worse, p_better)
        how = f"the rate may be up by {upper:.2%} (minimum effect {effect:.2%}); {how}"
    return Comparison(
        metric,
        verdict,
        mode,
        baseline=b_rate,
        current=c_rate,
        change_pct=100.0 * (c_rate - b_rate) / b_rate if b_rate else None,
        p_value=p,
        note=how,
    )


def compare_results(
    baseline_results: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any],
    gate: GateSettings,
    *,
    mode: str,
    judge: Callable[[str], Comparison] | None = None,
) -> list[Comparison]:
    """Every gated metric of ``current`` (``PerfResult.to_dict()``) against the baseline
    runs (each a ``PerfResult.to_dict()``). ``judge(metric)``, where given, decides each
    metric of windows instead of :func:`compare_runs` (history mode's sessions)."""
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
        if meta.slo_only and meta.read(current) is None:
            continue  # goodput and SLO attainment need the SLOs of measure(slo=...)
        if meta.counts is not None:
            failed, total = meta.counts
            b = (
                sum(int(r.get(failed, 0)) for r in baseline_results),
                sum(int(r.get(total, 0)) for r in baseline_results),
            )
            c = (int(current[failed]), int(current[total]))
            out.append(compare_errors(b, c, gate, mode=mode, metric=metric))
            continue
        if metric in ("p99_ms", "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms"):
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
        if judge is not None:
            out.append(judge(metric))
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
