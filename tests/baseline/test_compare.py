"""The decision rule on synthetic window values (no server): significance AND minimum
effect AND floor, in both modes, and the error-rate test."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from pytest_triton_perf.baseline.compare import (
    GateSettings,
    compare_errors,
    compare_errors_paired,
    compare_runs,
)
from pytest_triton_perf.baseline.power import MAX_NEEDED, fewest, mwu_mde, prediction_mde
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.metrics import parse_metric_map
from pytest_triton_perf.verdicts import Comparison

GATE = GateSettings()


def windows(center: float, n: int = 10, spread: float = 0.02, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(center * (1 + spread * rng.standard_normal(n)))


def ab(reference: float, candidate: float, spread: float, n: int = 10, **kw: float) -> Comparison:
    """An A/B comparison of p50 over ``n`` windows per arm scattering by ``spread``."""
    return compare_runs(
        "p50_ms",
        [windows(reference, n, spread, seed=1)],
        windows(candidate, n, spread, seed=2),
        GATE,
        mode="ab",
        **kw,
    )


def test_identical_arms_pass_only_where_the_load_offset_fits_inside_the_margin() -> None:
    # Issue 19: a pass needs the one-sided upper bound inside the margin, and each arm's
    # load carries an offset (2% run-to-run spread) that its windows cannot show: at a
    # pass alpha of 0.01 that alone takes 2.33 * 2% * sqrt(2) = 6.6%, more than p50's 5%
    # (the old rule, "not significant", passed here and passed a true +5% half the time).
    strict = dataclasses.replace(GATE, pass_alpha=0.01)
    same = compare_runs("p50_ms", [windows(20, seed=1)], windows(20, seed=2), strict, mode="ab")
    assert same.verdict == "inconclusive"
    assert abs(same.change_pct or 0) < 5
    assert "may be as bad as" in same.note
    wide = GATE.with_overrides({"p50_ms": 0.10})
    c = compare_runs("p50_ms", [windows(20, seed=1)], windows(20, seed=2), wide, mode="ab")
    assert c.verdict == "pass"


def test_thirty_percent_slower_is_a_regression_with_figures() -> None:
    c = compare_runs("p50_ms", [windows(20, seed=1)], windows(26, seed=2), GATE, mode="ab")
    assert c.verdict == "regression"
    assert c.p_value is not None and c.p_value < 0.01
    assert 25 < (c.change_pct or 0) < 35
    assert c.baseline_ci is not None and c.current_ci is not None
    assert c.baseline_ci[0] <= c.baseline <= c.baseline_ci[1]  # type: ignore[operator]


def test_lower_throughput_is_a_regression_higher_an_improvement() -> None:
    worse = compare_runs("throughput", [windows(100, seed=1)], windows(80, seed=2), GATE)
    better = compare_runs("throughput", [windows(100, seed=1)], windows(120, seed=2), GATE)
    assert (worse.verdict, better.verdict) == ("regression", "improvement")


def test_significant_but_below_minimum_effect_passes() -> None:
    c = compare_runs("p50_ms", [windows(20, spread=0.001)], windows(20.6, spread=0.001), GATE)
    assert c.p_value is not None and c.p_value < 0.01  # 3% slower, clearly significant
    # Below the 5% minimum effect: no regression; but one stored run cannot bound the change
    # under 5% (issue 19: a pass is a one-sided bound inside the margin), so no pass either.
    assert c.verdict == "inconclusive"
    assert (
        compare_runs(
            "p50_ms",
            [windows(20, spread=0.001)],
            windows(20.6, spread=0.001),
            GATE.with_overrides({"p50_ms": 0.12}),
        ).verdict
        == "pass"
    )


def test_change_below_the_absolute_floor_passes() -> None:
    c = compare_runs("p50_ms", [windows(0.5, spread=0.001)], windows(0.65, spread=0.001), GATE)
    assert c.change_pct is not None and c.change_pct > 25  # 30% but only 0.15 ms
    assert c.verdict == "pass"


def test_override_raises_the_minimum_effect() -> None:
    c = compare_runs(
        "p99_ms", [windows(20)], windows(23, seed=3), GATE.with_overrides({"p99_ms": 0.3})
    )
    # +15% against a 30% margin: its upper bound (with one run's offset) is about 22%.
    assert c.verdict == "pass"


def test_too_few_windows_cannot_be_significant_nor_pass() -> None:
    c = compare_runs("p50_ms", [[20.0, 20.1]], [30.0, 30.1], GATE)
    # 2 vs 2 windows: the smallest one-sided p is 1/6, so the test could see nothing.
    assert c.verdict == "inconclusive"
    assert c.mde_pct == math.inf
    assert "underpowered: too few windows for any change on p50 to reach alpha 0.01" in c.note


def test_history_uses_a_prediction_interval_over_runs() -> None:
    runs = [windows(20 * f, seed=i) for i, f in enumerate([1.0, 1.03, 0.98, 1.01, 0.99])]
    drifted = compare_runs("p50_ms", runs, windows(20.8, seed=9), GATE)
    assert "prediction interval over 5 stored runs (run-to-run spread 2.2%)" in drifted.note
    # 4% is inside the run-to-run spread, and so is the 5% minimum effect: not a pass.
    assert drifted.verdict == "inconclusive"
    assert "underpowered: could only see >= 11% on p50" in drifted.note
    slower = compare_runs("p50_ms", runs, windows(26, seed=9), GATE)
    assert slower.verdict == "regression"


def test_no_baseline_windows() -> None:
    assert compare_runs("p50_ms", [], windows(20), GATE).verdict == "no baseline"


def test_error_rate_fisher() -> None:
    assert compare_errors((0, 1000), (50, 1000), GATE, mode="ab").verdict == "regression"
    assert compare_errors((0, 1000), (0, 1000), GATE, mode="ab").verdict == "pass"


def test_median_ci_contains_the_median() -> None:
    values = windows(10, n=20)
    lo, hi = median_ci(values)  # type: ignore[misc]
    assert lo <= float(np.median(values)) <= hi
    assert median_ci([1.0]) is None


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("p50=5%,p99=10%", "%", {"p50_ms": 0.05, "p99_ms": 0.1}),
        ("throughput=0.07, errors=off", "%", {"throughput": 0.07, "error_rate": None}),
        ("p50=0.2ms,p99=1", "ms", {"p50_ms": 0.2, "p99_ms": 1.0}),
    ],
)
def test_parse_metric_map(text: str, unit: str, expected: dict[str, float | None]) -> None:
    assert parse_metric_map(text, where="--x", unit=unit) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p90=5%", "unknown metric 'p90'"),
        ("p50", "is not metric=value"),
        ("p50=-3%", "not a minimum effect"),
    ],
)
def test_parse_metric_map_errors_name_the_value(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_metric_map(text, where="--triton-perf-min-effect")


def test_noisy_windows_are_inconclusive_not_pass() -> None:
    noisy = windows(26, spread=0.4, seed=4)
    c = compare_runs("p99_ms", [windows(20)], noisy, GATE, mode="ab")
    assert c.verdict == "inconclusive"
    assert "windows too noisy to decide" in c.note


def test_one_outlier_window_does_not_void_the_comparison() -> None:
    current = windows(26, seed=5)
    current[3] = 80.0  # one hiccup
    c = compare_runs("p50_ms", [windows(20)], current, GATE, mode="ab")
    assert c.verdict == "regression"


def _result_dict(p99s: list[float], requests: int) -> dict[str, object]:
    return {
        "errors": 0,
        "requests": requests * len(p99s),
        "windows": [
            {"throughput": 50.0, "requests": requests, "latency_ms": {"p50": 20.0, "p99": p}}
            for p in p99s
        ],
    }


def test_p99_of_small_windows_is_inconclusive_saying_what_to_do() -> None:
    from pytest_triton_perf.baseline.compare import compare_results

    base = _result_dict(windows(22), requests=45)
    cur = _result_dict(windows(30), requests=45)
    comps = {c.metric: c for c in compare_results([base], cur, GATE, mode="ab")}
    assert comps["p99_ms"].verdict == "inconclusive"
    assert "lengthen --triton-perf-window-s" in comps["p99_ms"].note
    big = {
        c.metric: c
        for c in compare_results(
            [_result_dict(windows(22), 500)], _result_dict(windows(30), 500), GATE, mode="ab"
        )
    }
    assert big["p99_ms"].verdict == "regression"


def test_prediction_interval_has_a_floor_for_runs_recorded_back_to_back() -> None:
    runs = [windows(20 * f, seed=i) for i, f in enumerate([1.0, 1.001, 0.999, 1.0, 1.0005])]
    # 6% slower than near-identical runs: over the 5% minimum effect, but inside a 2% floor's
    # prediction interval (t(0.99, 4) = 3.7 -> about 8%).
    c = compare_runs("p50_ms", runs, windows(21.2, spread=0.001, seed=9), GATE)
    assert c.verdict != "regression"
    # The floored spread cannot show 5% either (its MDE is 10%): inconclusive, not pass.
    assert c.verdict == "inconclusive"
    assert "run-to-run spread 0.6%, taken as 2.0%" in c.note
    assert "no number of stored runs would do" in c.note


# The minimum detectable effect (MDE) and the "underpowered" rule.


def test_mwu_mde_is_the_normal_approximation_with_the_rank_tests_efficiency() -> None:
    # (z_0.99 + z_0.8) * sd * sqrt(1/10 + 1/10) / sqrt(3/pi)
    expected = (2.3263 + 0.8416) * 1.0 * math.sqrt(0.2) / math.sqrt(3 / math.pi)
    assert mwu_mde(1.0, 10, 10, 0.01) == pytest.approx(expected, rel=1e-3)
    assert mwu_mde(1.0, 2, 2, 0.01) == math.inf  # no arrangement reaches p < 0.01


def test_prediction_mde_uses_t_quantiles_and_the_new_runs_own_spread() -> None:
    # (t_0.99,4 + t_0.8,4) * sd * sqrt(1 + 1/5)
    expected = (3.7469 + 0.9410) * 1.0 * math.sqrt(1.2)
    assert prediction_mde(1.0, 5, 0.01) == pytest.approx(expected, rel=1e-3)
    assert prediction_mde(1.0, 20, 0.01) < prediction_mde(1.0, 5, 0.01)


def test_mde_shrinks_as_windows_grow() -> None:
    mdes = [ab(20, 20, 0.05, n).mde_pct for n in (5, 10, 20, 40, 80)]
    assert all(m is not None for m in mdes)
    assert mdes == sorted(mdes, reverse=True), mdes
    assert mdes[0] > 2 * mdes[-1]  # type: ignore[operator]


def test_a_pass_with_small_noise_stays_pass_and_says_what_it_could_see() -> None:
    # Powered (MDE < 5%), yet the 5% margin is inside what the two loads' offsets could
    # hide at a pass alpha of 0.01 (issue 19): inconclusive, saying how bad it may be; a
    # 10% margin passes at the default pass alpha.
    c = compare_runs(
        "p50_ms",
        [windows(20, 10, 0.02, seed=1)],
        windows(20, 10, 0.02, seed=2),
        dataclasses.replace(GATE, pass_alpha=0.01),
        mode="ab",
    )
    assert c.verdict == "inconclusive" and "may be as bad as" in c.note
    assert c.mde_pct is not None and 0 < c.mde_pct < 5
    wide = compare_runs(
        "p50_ms",
        [windows(20, 10, 0.02, seed=1)],
        windows(20, 10, 0.02, seed=2),
        GATE.with_overrides({"p50_ms": 0.10}),
        mode="ab",
    )
    assert wide.verdict == "pass"


def test_a_noisy_a_a_comparison_is_inconclusive_not_pass() -> None:
    # 12% window-to-window spread: below the 15% noise limit, yet 10 against 10 windows
    # cannot see 5% with power 0.8 at alpha 0.01.
    c = ab(20, 20, 0.12, window_s=1.0)
    assert c.verdict == "inconclusive"
    assert c.mde_pct is not None and c.mde_pct > 5
    assert c.note.startswith("underpowered: could only see >= ")
    found = re.search(
        r"about (\d+) s of measurement would be needed \((\d+) windows of 1 s per arm\)", c.note
    )
    assert found, c.note
    seconds, per_arm = int(found[1]), int(found[2])
    assert seconds == 2 * per_arm
    # The MDE falls with the square root of the windows per arm: the estimate is the
    # smallest count that brings it under 5%.
    assert (
        per_arm == math.ceil(10 * (c.mde_pct / 5) ** 2)
        or per_arm == math.ceil(10 * (c.mde_pct / 5) ** 2) + 1
    )


def test_the_count_needed_is_the_least_that_reaches_the_target() -> None:
    # By bisection over a predicate that turns true once and stays so.
    for least in (2, 3, 17, 4096, MAX_NEEDED):
        assert fewest(2, lambda n, least=least: n >= least) == least
    assert fewest(5, lambda n: True) == 5
    assert fewest(2, lambda n: False) is None
    # On an MDE (sd 3%, alpha 0.01): the count found reaches 12%, one fewer does not.
    n = fewest(2, lambda n: prediction_mde(0.03, n, 0.01) <= 0.12)
    assert n is not None and n > 2 and prediction_mde(0.03, n, 0.01) <= 0.12
    assert prediction_mde(0.03, n - 1, 0.01) > 0.12


def test_regressions_do_not_depend_on_power() -> None:
    # Noisy (8%) but 40% slower: seen, whatever the MDE.
    c = ab(20, 28, 0.08)
    assert c.verdict == "regression"
    assert c.mde_pct is not None and c.mde_pct > 5


def test_history_says_how_many_runs_would_do_where_more_runs_help() -> None:
    runs = [windows(20 * f, seed=i) for i, f in enumerate([1.0, 1.01, 0.99])]
    # p99 at a 10% minimum effect (the default is 20% since issue 19).
    gate = dataclasses.replace(
        GATE, min_effect={**GATE.min_effect, "p99_ms": 0.10}, pass_alpha=0.01
    )
    c = compare_runs("p99_ms", runs, windows(20.2, seed=9), gate, window_s=1.0)
    assert c.verdict == "inconclusive"
    assert re.search(r"about \d+ stored runs of about 10 s each would be needed", c.note), c.note


def test_the_floor_counts_as_the_smallest_change() -> None:
    # 0.5 ms p50: the 0.2 ms floor is 40%, far above the 5% minimum effect, so a noisy
    # comparison that could see 20% passes.
    c = ab(0.5, 0.5, 0.08)
    assert c.verdict == "pass"
    assert c.mde_pct is not None and 5 < c.mde_pct < 40


def test_the_error_rate_has_no_relative_mde() -> None:
    assert compare_errors((0, 1000), (0, 1000), GATE, mode="ab").mde_pct is None


def test_paired_error_rate_regresses_on_a_burst_only_when_it_repeats() -> None:
    # One burst of 60 errors in one candidate block: Fisher's test over the pooled counts
    # calls it a regression, the pairs of blocks (one pair out of 12) do not.
    ref = [(0, 500)] * 12
    burst = [(60, 500)] + [(0, 500)] * 11
    assert compare_errors((0, 6000), (60, 6000), GATE, mode="ab").verdict == "regression"
    one = compare_errors_paired(ref, burst, GATE)
    assert one.verdict == "inconclusive" and "may be up by" in one.note
    every = compare_errors_paired(ref, [(5, 500)] * 12, GATE)  # 1% in every block
    assert every.verdict == "regression" and every.p_value is not None
    assert every.p_value < 0.01 and every.current == pytest.approx(0.01)


def test_paired_error_rate_passes_without_errors_over_enough_requests() -> None:
    # No errors in either arm: a pass, with the zero-event bound -ln(pass alpha) / n stated
    # (-ln(0.05) / 4000 = 0.075%).
    assert compare_errors_paired([(0, 500)] * 10, [(0, 500)] * 10, GATE).verdict == "pass"
    few = compare_errors_paired([(0, 400)] * 10, [(0, 400)] * 10, GATE)
    assert few.verdict == "pass" and "below 0.07% at 1 - pass alpha" in few.note
    # Errors in both arms at the same rate: a pass when the t bound is under 0.1%.
    same = compare_errors_paired([(1, 2000)] * 12, [(1, 2000)] * 12, GATE)
    assert same.verdict == "pass"


def test_paired_error_rate_divides_alpha_over_looks() -> None:
    ref, cand = [(0, 1000)] * 7, [(3, 1000)] * 6 + [(2, 1000)]
    assert compare_errors_paired(ref, cand, GATE).verdict == "regression"  # p = 1/128
    # 7 pairs reach at best p = 1/128: under alpha 0.01 / 3 looks no longer.
    assert compare_errors_paired(ref, cand, GATE, looks=3).verdict != "regression"
