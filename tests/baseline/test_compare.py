"""The decision rule on synthetic window values (no server): significance AND minimum
effect AND floor, in both modes, and the error-rate test."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_triton_perf.baseline.compare import (
    GateSettings,
    compare_errors,
    compare_runs,
)
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.metrics import parse_metric_map

GATE = GateSettings()


def windows(center: float, n: int = 10, spread: float = 0.02, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(center * (1 + spread * rng.standard_normal(n)))


def test_identical_arms_pass() -> None:
    c = compare_runs("p50_ms", [windows(20, seed=1)], windows(20, seed=2), GATE, mode="ab")
    assert c.verdict == "pass"
    assert abs(c.change_pct or 0) < 5


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
    assert c.verdict == "pass"


def test_change_below_the_absolute_floor_passes() -> None:
    c = compare_runs("p50_ms", [windows(0.5, spread=0.001)], windows(0.65, spread=0.001), GATE)
    assert c.change_pct is not None and c.change_pct > 25  # 30% but only 0.15 ms
    assert c.verdict == "pass"


def test_override_raises_the_minimum_effect() -> None:
    c = compare_runs(
        "p99_ms", [windows(20)], windows(23, seed=3), GATE.with_overrides({"p99_ms": 0.2})
    )
    assert c.verdict == "pass"


def test_too_few_windows_cannot_be_significant() -> None:
    c = compare_runs("p50_ms", [[20.0, 20.1]], [30.0, 30.1], GATE)
    assert c.verdict == "pass"  # 2 vs 2 windows: the smallest one-sided p is 1/6


def test_history_uses_a_prediction_interval_over_runs() -> None:
    runs = [windows(20 * f, seed=i) for i, f in enumerate([1.0, 1.03, 0.98, 1.01, 0.99])]
    drifted = compare_runs("p50_ms", runs, windows(20.8, seed=9), GATE)
    assert "prediction interval over 5 stored runs" in drifted.note
    assert drifted.verdict == "pass"  # 4% is inside the run-to-run spread
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
        ("p95=5%", "unknown metric 'p95'"),
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
    assert c.verdict == "pass"
