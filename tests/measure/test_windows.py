"""Percentiles, window assignment, pooling and the stability rule (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.measure.result import LatencyStats, WindowResult
from pytest_triton_perf.measure.stats import nearest_rank
from pytest_triton_perf.measure.windows import (
    RAMP_MAX_S,
    assign_windows,
    is_stable,
    max_over_min_within,
    pool,
    ramp_s,
    window_results,
)

MS = 1_000_000


@pytest.mark.parametrize(
    ("p", "expected"),
    [(50, 50.0), (90, 90.0), (99, 99.0), (100, 100.0), (0.5, 1.0), (1, 1.0)],
)
def test_nearest_rank_of_1_to_100(p: float, expected: float) -> None:
    assert nearest_rank(np.arange(1, 101, dtype=float), p) == expected


@pytest.mark.parametrize(("p", "expected"), [(50, 2.0), (66.7, 3.0), (99, 3.0)])
def test_nearest_rank_returns_an_observed_value(p: float, expected: float) -> None:
    assert nearest_rank([1.0, 2.0, 3.0], p) == expected


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200), st.floats(0.01, 100))
def test_nearest_rank_is_an_element_with_enough_values_at_or_below(
    values: list[float], p: float
) -> None:
    s = np.sort(np.array(values))
    v = nearest_rank(s, p)
    assert v in s
    assert (s <= v).sum() >= p / 100 * len(s) - 1e-9


def test_assign_windows_is_by_completion_time_half_open() -> None:
    boundaries = [100, 200, 300, 400]
    ends = np.array([99, 100, 199, 200, 350, 399, 400, 1000])
    assert list(assign_windows(ends, boundaries)) == [-1, 0, 0, 1, 2, 2, -1, -1]


def records(ends_ms: list[float], lat_ms: list[float], ok: list[bool] | None = None) -> Records:
    n = len(ends_ms)
    return Records(
        end_ns=np.array([int(e * MS) for e in ends_ms], dtype=np.int64),
        latency_ns=np.array([int(v * MS) for v in lat_ms], dtype=np.int64),
        ok=np.array(ok if ok is not None else [True] * n),
    )


def test_window_results_count_throughput_with_batch_size_and_errors() -> None:
    # Two windows of 100 ms; the third request failed; one request completes after the end.
    r = records([10, 50, 90, 150, 250], [1, 2, 50, 3, 4], [True, True, False, True, True])
    wins = window_results(r, [0, 100 * MS, 200 * MS], batch_size=4)
    w0, w1 = wins
    assert (w0.requests, w0.errors, w0.inferences) == (3, 1, 8)
    assert w0.throughput == pytest.approx(80.0)  # 8 inferences / 0.1 s
    assert w0.latency_ms is not None and w0.latency_ms.max == 2.0  # failed request excluded
    assert (w1.requests, w1.errors, w1.inferences) == (1, 0, 4)
    assert w1.duration_s == pytest.approx(0.1)


def test_pool_uses_pooled_latencies_not_averaged_percentiles() -> None:
    # Window 0: 99 fast requests; window 1: 1 slow one. Averaging per-window p99 would give
    # (1 + 100) / 2; the pooled p99 of 100 values is the 99th smallest, i.e. 1.
    ends = [i * 0.5 for i in range(1, 100)] + [150]
    lats = [1.0] * 99 + [100.0]
    r = records(ends, lats)
    p = pool(r, [0, 100 * MS, 200 * MS], batch_size=1)
    assert p.requests == 100 and p.errors == 0
    assert p.latency_ms is not None and p.latency_ms.p99 == 1.0 and p.latency_ms.max == 100.0
    assert p.throughput == pytest.approx(500.0)
    assert len(p.latencies_ms) == 100


def test_pool_keeps_the_first_error_of_the_span_only() -> None:
    r = Records(
        end_ns=np.array([5, 15]) * MS,
        latency_ns=np.array([1, 1]) * MS,
        ok=np.array([False, False]),
        error_messages=((5 * MS, "warm-up error"), (15 * MS, "window error")),
    )
    p = pool(r, [10 * MS, 20 * MS], batch_size=1)
    assert p.errors == 1 and p.first_error == "window error"
    assert p.latency_ms is None


def win(throughput: float, avg: float, p99: float | None = None) -> WindowResult:
    tail = avg if p99 is None else p99
    lat = LatencyStats(p50=avg, p90=tail, p95=tail, p99=tail, avg=avg, min=avg, max=tail, count=1)
    return WindowResult(
        index=0,
        duration_s=1,
        requests=1,
        errors=0,
        inferences=1,
        throughput=throughput,
        latency_ms=lat,
    )


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([100, 105, 96], 10, True),  # 105 / 96 = 1.094
        ([100, 105, 95], 10, False),  # 105 / 95 = 1.105
        ([100, 110, 100], 10, True),  # exactly at the bound
        ([100, 111, 100], 10, False),
        ([110, 100, 90], 10, False),  # each within 10% of the mean, but 110 / 90 = 1.22
        ([0, 0, 0], 10, False),  # no throughput is never stable
        ([], 10, False),
    ],
)
def test_max_over_min_within(values: list[float], pct: float, expected: bool) -> None:
    assert max_over_min_within(values, pct) is expected


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        ([win(1000, 5.0), win(1000, 5.0), win(1000, 5.0)], True),
        ([win(1000, 5.0), win(1080, 5.4), win(990, 4.95)], True),
        ([win(1000, 5.0), win(1100, 5.0), win(900, 5.0)], False),  # 1100 / 900 = 1.22
        ([win(1000, 5.0), win(1000, 5.0), win(1400, 5.0)], False),  # throughput moved
        ([win(1000, 5.0), win(1000, 5.0), win(1000, 5.6)], False),  # average latency moved
        ([win(1000, 5.0, 9.0), win(1000, 5.0, 30.0), win(1000, 5.0, 12.0)], True),  # p99 noise
        ([win(10, 99.0), win(1000, 5.0), win(1000, 5.0), win(1000, 5.0)], True),  # last 3 only
        ([win(1000, 5.0), win(0, 5.0), win(1000, 5.0)], False),  # an empty window
        ([win(1000, 5.0), win(1050, 5.2)], True),  # fewer windows than 3: those there are
    ],
)
def test_perf_analyzers_stability_rule_over_the_last_three_windows(
    windows: list[WindowResult], expected: bool
) -> None:
    assert is_stable(windows, 10.0) is expected


def test_stability_threshold_is_the_allowed_max_over_min() -> None:
    windows = [win(1000, 5.0), win(1200, 5.0), win(1000, 5.0)]
    assert (is_stable(windows, 19.9), is_stable(windows, 20.0)) == (False, True)


def test_stability_without_successful_request_is_false() -> None:
    empty = WindowResult(0, 1.0, 3, 3, 0, 0.0, None)
    assert is_stable([empty], 10.0) is False
    assert is_stable([win(1000, 5.0), win(1000, 5.0), empty], 10.0) is False


def test_ramp_is_the_p99_latency_of_the_warm_ups_second_half_and_drain() -> None:
    # A warm-up of 1 s, its second half from 500 ms: a cold first request (400 ms) ended in
    # the first half and is left out; 100 requests of 1..100 ms ended after 500 ms, the last
    # ones in the drain (after 1 s); a failed request of 5 s sizes nothing.
    ends = [400.0] + [500.0 + 6 * k for k in range(1, 101)] + [5200.0]
    lats = [400.0] + [float(k) for k in range(1, 101)] + [5000.0]
    r = records(ends, lats, [True] * 101 + [False])
    assert ramp_s(r, 500 * MS, window_s=1.0) == pytest.approx(0.099)


def test_ramp_falls_back_to_the_whole_warm_up_when_its_second_half_answered_nothing() -> None:
    r = records([300.0, 400.0], [300.0, 250.0])
    assert ramp_s(r, 500 * MS, window_s=1.0) == pytest.approx(0.300)


def test_ramp_is_capped_at_two_seconds_and_one_window() -> None:
    slow = records([3000.0, 3100.0], [2900.0, 3000.0])
    assert ramp_s(slow, 0, window_s=10.0) == RAMP_MAX_S == 2.0
    assert ramp_s(slow, 0, window_s=0.5) == 0.5


def test_ramp_is_zero_when_the_warm_up_answered_nothing() -> None:
    assert ramp_s(Records.empty(), 0, window_s=1.0) == 0.0
    assert ramp_s(records([10.0, 20.0], [5.0, 5.0], [False, False]), 0, window_s=1.0) == 0.0
