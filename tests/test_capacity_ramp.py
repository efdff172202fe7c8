"""Capacity over a request rate in one pass (issue 23, part 2): a rate ramp finds the knee
of latency against rate, one steady level below it confirms it.

First the pure parts (the ramp's plan and schedule, the knee it reads), then the method's
flow on a computed open-loop queue: ``find_capacity`` is given its measuring callables, so
a level and a ramp computed from a stated service rate stand in for the server, as the
search's own tests do. Then the real embedded server: the ramp against today's search on
the same model and server in one run, and the fixture's path."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from pytest_triton_perf.capacity import RAMP_MARGIN, CapacityResult, find_capacity
from pytest_triton_perf.capacity.search import RAMP_RESOLUTION
from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.load.schedule import RateRamp, ramp_offsets_ns
from pytest_triton_perf.measure.engine import MeasureSettings, measure, measure_ramp
from pytest_triton_perf.measure.ramp import (
    MAX_DOUBLING_S,
    MIN_BUCKET_REQUESTS,
    MIN_DOUBLING_S,
    STEP,
    RampBucket,
    RampPlan,
    RampRun,
    find_knee,
    plan_ramp,
)
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, WindowResult, Workload
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS, FAST_OPTIONS

BOUNDS = {"p99_ms": 60.0}

# -- the ramp's schedule and plan (pure) ------------------------------------------------------


def test_a_ramp_schedule_holds_then_doubles_and_ends() -> None:
    ramp = RateRamp(100.0, 400.0, 2.0, hold_s=1.0)
    t = np.array(list(ramp_offsets_ns(ramp, "constant")), dtype=np.int64) / 1e9
    assert ramp.duration_s == pytest.approx(5.0) and t[-1] <= 5.0
    assert len(t) == int(ramp.expected(5.0)) + 1
    # 100/s through the hold, 200/s one doubling later, 400/s at its end.
    for at, rate in ((0.5, 100), (3.0, 200), (4.9, 400)):
        assert ramp.rate_at(at) == pytest.approx(rate, rel=0.05)
        near = t[(t >= at - 0.05) & (t < at + 0.05)]
        assert len(near) / 0.1 == pytest.approx(ramp.rate_at(at), rel=0.1)


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_workers_share_a_ramp_as_they_share_a_rate(arrival: str) -> None:
    ramp = RateRamp(500.0, 2000.0, 1.0)
    single = np.array(list(ramp_offsets_ns(ramp, arrival, seed=3)))
    parts = [list(ramp_offsets_ns(ramp, arrival, seed=3, worker=j, workers=3)) for j in range(3)]
    union = np.sort(np.concatenate(parts))
    expected = ramp.expected(ramp.duration_s)
    tolerance = 0.001 if arrival == "constant" else 0.05
    assert len(union) == pytest.approx(expected, rel=tolerance)
    assert len(single) == pytest.approx(expected, rel=tolerance)
    if arrival == "constant":
        assert np.abs(union - single).max() <= 1


def test_a_plan_holds_enough_requests_per_bucket_and_resolves_five_percent() -> None:
    plan = plan_ramp(25.0, 1e6, grace_s=0.1)
    ramp = plan.ramp
    assert MIN_DOUBLING_S <= ramp.doubling_s <= MAX_DOUBLING_S and ramp.end == 25 * 16
    edges = plan.edges_s
    assert edges[0] == 0 and edges[-1] == pytest.approx(ramp.duration_s)
    counts = [ramp.expected(b) - ramp.expected(a) for a, b in itertools.pairwise(edges)]
    assert min(counts[:-1]) >= MIN_BUCKET_REQUESTS
    rates = [plan.rate(i) for i in range(len(edges) - 1)]
    assert rates == sorted(rates) and rates[0] == pytest.approx(25 * (1 + STEP) ** 0.5, rel=0.1)
    # From twice the start rate on, each bucket spans 5% of the rate.
    steps = [b / a for a, b in itertools.pairwise(rates) if a >= 50]
    assert steps and max(steps) == pytest.approx(1 + STEP, abs=0.005)
    # A fast model ramps no faster than MIN_DOUBLING_S, a slow one no slower than MAX.
    assert plan_ramp(5000.0, 1e6, grace_s=0).ramp.doubling_s == MIN_DOUBLING_S
    assert plan_ramp(1.0, 1e6, grace_s=0).ramp.doubling_s == MAX_DOUBLING_S
    assert plan_ramp(25.0, 60.0, grace_s=9).ramp.end == 60 and plan.grace_s == 0.1


def result(rate: float, p99_ms: float, served: float | None = None) -> PerfResult:
    """A result of an open loop at ``rate`` whose every latency figure is ``p99_ms``,
    answering ``served`` (default: ``rate``) per second. Computed, not measured."""
    thr = rate if served is None else served
    n = max(1, round(thr))
    stats = LatencyStats(*[p99_ms] * 7, n)
    window = WindowResult(0, 1.0, n, 0, n, thr, stats)
    workload = Workload("queue", concurrency=None, request_rate=rate, arrival="constant")
    return PerfResult("queue", None, workload, thr, stats, n, 0, (window,), 1.0, True)


def run_of(rates_p99: list[tuple[float, float, float]], stopped: bool) -> RampRun:
    """A ramp run of buckets (rate, p99 ms, answered per s), 1 s each. Computed."""
    plan = plan_ramp(10.0, 1e6, grace_s=0.1)
    buckets = tuple(
        RampBucket(float(i), float(i + 1), rate, served, result(rate, p99, served))
        for i, (rate, p99, served) in enumerate(rates_p99)
    )
    return RampRun(plan, buckets, stopped, float(len(buckets)))


def test_the_knee_is_the_highest_rate_held_capped_by_the_rate_answered_past_it() -> None:
    # Latency holds up to 110/s while the queue is young; the server answered 100/s there.
    run = run_of(
        [(90, 10, 90), (100, 10, 100), (110, 30, 100), (120, 80, 100), (130, 150, 101)], True
    )
    knee = find_knee(run, [True, True, True, False, False])
    assert (knee.rate, knee.held, knee.broke) == (pytest.approx(100.5), 110, 120)
    assert knee.served == pytest.approx(100.5)
    assert knee.describe() == "knee 100.5/s (held up to 110/s, answered 100.5/s past it)"
    # A bound broken before the server saturates: the rate held decides. An isolated
    # break (a stall) below it does not move the knee.
    run = run_of([(90, 10, 90), (100, 70, 100), (110, 10, 110), (120, 70, 120)], False)
    knee = find_knee(run, [i not in (1, 3) for i in range(4)])
    assert (knee.rate, knee.served, knee.broke) == (110, None, 120)
    assert find_knee(run, [False] * 4).rate is None


# -- the method's flow on a computed queue ----------------------------------------------------


def open_queue(sustains: float) -> Callable[[Mapping[str, Any]], PerfResult]:
    """Full-length open-loop levels into a server that sustains ``sustains`` requests/s:
    10 ms up to it, 500 ms above (a level's queue grows all through it). Computed, not
    measured; ``run.levels`` lists the rates measured."""
    levels: list[float] = []

    def run(level: Mapping[str, Any]) -> PerfResult:
        rate = float(level["request_rate"])
        levels.append(rate)
        return result(rate, 10 if rate <= sustains else 500, min(rate, sustains))

    run.levels = levels  # type: ignore[attr-defined]
    return run


def ramp_into(knee: float) -> Callable[[RampPlan, Callable[[PerfResult], bool]], RampRun]:
    """A ramp into a server that answers ``knee`` requests/s at most: 10 ms below it, then
    30 ms more per 1% of rate above it (a queue that builds as the ramp goes on). Computed,
    not measured: each bucket of the plan is judged by ``breaks`` as the engine does."""

    def ramp(plan: RampPlan, breaks: Callable[[PerfResult], bool]) -> RampRun:
        buckets = []
        breaking = 0
        for i in range(len(plan.edges_s) - 1):
            rate = plan.rate(i)
            served = min(rate, knee)
            res = result(rate, 10 + 3000 * max(0.0, rate / knee - 1), served)
            buckets.append(RampBucket(plan.edges_s[i], plan.edges_s[i + 1], rate, served, res))
            breaking = breaking + 1 if breaks(res) else 0
            if breaking >= plan.stop_after:
                return RampRun(plan, tuple(buckets), True, plan.edges_s[i + 1])
        return RampRun(plan, tuple(buckets), False, plan.edges_s[-1])

    return ramp


def phases(found: CapacityResult) -> list[str]:
    """The phases after the ramp's buckets."""
    return [s.phase for s in found.steps if s.phase != "ramp"]


def test_one_ramp_then_a_steady_level_below_its_knee_then_the_bisection_to_ten_percent() -> None:
    levels = open_queue(100)
    found = find_capacity(levels, BOUNDS, over="request_rate", start=20, ramp=ramp_into(100))
    ramped = [s for s in found.steps if s.phase == "ramp"]
    # Latency holds up to the last bucket below 101.7/s (5% apart: 97.7/s), the queue
    # breaks it from the next on; the server answered 100/s past it.
    held = max(s.load for s in ramped if s.passed)
    assert 100 / 1.05 <= held <= 100 and not any(s.passed for s in ramped if s.load > 102)
    assert any(n.startswith("ramp: ") and "answered 100/s past it" in n for n in found.notes)
    # The steady level at 90% of the knee holds; the bisection then closes the bracket up
    # to the first bucket that broke, at full length, to 10% (RAMP_RESOLUTION).
    after = phases(found)
    assert after[0] == "confirm" and set(after[1:]) == {"bisect"} and len(after) <= 4, after
    assert levels.levels[0] == pytest.approx(RAMP_MARGIN * held)  # type: ignore[attr-defined]
    assert found.load is not None and 100 / (1 + RAMP_RESOLUTION) <= found.load <= 100
    assert found.capacity == found.load
    assert found.limited_by == "p99_ms"
    assert ramped[0].load == pytest.approx(20 * (1 + 0.05) ** 0.5, rel=0.1)
    # The next level up is within the bisection's 10%: a later, longer search starts there.
    assert found.next_load is not None and found.next_load / found.load <= 1 + RAMP_RESOLUTION
    # The table shows the ramp as a phase of its own, bucket by bucket, then the levels.
    table = found.step_table().splitlines()
    assert table[1].split()[1] == "ramp" and table[-1].split()[1] in ("confirm", "bisect")
    doc = json.loads(json.dumps(found.to_dict()))
    assert [s["phase"] for s in doc["steps"]] == ["ramp"] * len(ramped) + after
    assert f"{len(after)} levels after a ramp of {len(ramped)} buckets in" in found.describe()
    # Today's search on the same queue: more levels, the same load within its resolution.
    search = find_capacity(open_queue(100), BOUNDS, over="request_rate", start=20)
    assert {s.phase for s in search.steps} == {"grow", "bisect"} and len(search.levels) >= 6
    assert search.load is not None and 0.95 * 100 <= search.load <= 100
    assert len(search.levels) > len(after)
    assert found.load >= search.load / (1 + RAMP_RESOLUTION)


def test_a_confirming_level_that_breaks_falls_back_to_bisection() -> None:
    """The ramp saw about 100/s, but a full-length level holds only up to 80/s (a bound
    that only the steady level breaks): the confirming level at 90% of the knee breaks,
    the level 90% below it holds, and the bisection closes the bracket to 10%."""
    levels = open_queue(80)
    found = find_capacity(levels, BOUNDS, over="request_rate", start=20, ramp=ramp_into(100))
    after = phases(found)
    assert after[:2] == ["confirm", "descend"] and set(after[2:]) == {"bisect"}, after
    confirm, below = levels.levels[:2]  # type: ignore[attr-defined]
    assert confirm > 80 and below == pytest.approx(RAMP_MARGIN * confirm) and below <= 80
    assert found.load is not None and 80 / (1 + RAMP_RESOLUTION) <= found.load <= 80
    assert found.next_load is not None and found.next_load / found.load <= 1 + RAMP_RESOLUTION
    assert found.limited_by == "p99_ms"
    step = next(s for s in found.steps if s.phase == "confirm")
    assert step.breached[0].startswith("p99_ms 500")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"method": "fast"},
            r"^capacity\(method='fast'\): 'ramp' \(one open-loop pass of a rising rate, then "
            r"one steady level below its knee; the default over request_rate\) or 'search' "
            r"\(doubling, then bisection; the default over concurrency\) is accepted$",
        ),
        ({"method": 2}, r"^capacity\(method=2\): 'ramp' "),
        (
            {"method": "ramp", "over": "concurrency"},
            r"^capacity\(method='ramp', over='concurrency'\): a ramp raises an open loop's "
            r"rate, so it needs over='request_rate'; over concurrency use method='search'$",
        ),
        ({"method": "ramp", "ramp": None}, r"^capacity\(method='ramp'\): no rate ramp to run"),
    ],
)
def test_a_bad_method_names_the_value_and_what_is_accepted(
    kwargs: dict[str, Any], message: str
) -> None:
    kwargs = {"over": "request_rate", "ramp": ramp_into(100), **kwargs}
    with pytest.raises(ArgumentError, match=message):
        find_capacity(open_queue(100), BOUNDS, start=20, **kwargs)


def test_the_defaults_ramp_over_a_rate_and_search_over_concurrency_or_a_bracket() -> None:
    ramp = ramp_into(100)
    assert "confirm" in phases(find_capacity(open_queue(100), BOUNDS, over="request_rate",
                                             start=20, ramp=ramp))  # fmt: skip
    # A known bracket (a configuration search's later rung): its two ends first, no ramp.
    bracket = find_capacity(
        open_queue(92), BOUNDS, over="request_rate", start=90, then=95, ramp=ramp
    )
    assert [(s.phase, s.load) for s in bracket.steps[:2]] == [("grow", 90), ("grow", 95)]
    assert "ramp" not in {s.phase for s in bracket.steps}
    # No ramp to run (a measuring function alone): the search, as before.
    alone = find_capacity(open_queue(100), BOUNDS, over="request_rate", start=20)
    assert alone.steps[0].phase == "grow"
    assert find_capacity(open_queue(100), BOUNDS, over="request_rate", start=20,
                         method="search", ramp=ramp).steps[0].phase == "grow"  # fmt: skip


# -- the real server ----------------------------------------------------------------------------

#: Short levels: the comparison is of methods, on one server, in one run.
SHORT = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.3, max_windows=2)
#: A copy of `sleepy` that sleeps 5 ms per execution, one instance: at most 200 requests/s
#: whatever the cores do, less the stub's overhead per request.
FAST_SLEEPY = "sleepy_5ms"


@pytest.fixture(scope="module")
def sleepy_5ms(server: LocalTritonServer) -> Iterator[str]:
    """`sleepy` at 5 ms per execution, loaded as a copy through the repository API."""
    import tritonclient.http
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    src = EXAMPLE_MODELS / "sleepy"
    config = text_format.Parse((src / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = FAST_SLEEPY
    config.parameters["service_time_ms"].string_value = "5"
    client = tritonclient.http.InferenceServerClient(server.http_url, network_timeout=60)
    files = {"file:1/model.py": (src / "1" / "model.py").read_bytes()}
    client.load_model(FAST_SLEEPY, config=json_format.MessageToJson(config), files=files)
    try:
        yield FAST_SLEEPY
    finally:
        client.unload_model(FAST_SLEEPY)
        client.close()


def _capacity(server: LocalTritonServer, model: str, method: str) -> CapacityResult:
    calls = [0]

    def settings() -> MeasureSettings:
        calls[0] += 1
        return SHORT if calls[0] == 1 else MeasureSettings(0.1, 2, 0.3, 2)

    def level(load: Mapping[str, Any]) -> PerfResult:
        return measure(server, model, settings=settings(), **load)

    def ramp(plan: RampPlan, breaks: Callable[[PerfResult], bool]) -> RampRun:
        return measure_ramp(server, model, plan, breaks, settings=settings())

    # Both from 90/s (about half the closed-loop throughput, where the probe would start).
    return find_capacity(
        level, BOUNDS, over="request_rate", start=90, model=model, method=method, ramp=ramp
    )


def test_the_ramp_lands_near_the_search_with_fewer_levels(
    server: LocalTritonServer, sleepy_5ms: str
) -> None:
    """One run, one server, one model: the search (growth and bisection) and the ramp (one
    pass and one steady level at 90% of its knee). The ramp's capacity is the search's less
    its margin, give or take the noise of short levels; it measures one or two levels
    where the search measures six or more."""
    search = _capacity(server, sleepy_5ms, "search")
    ramped = _capacity(server, sleepy_5ms, "ramp")
    tables = f"{search.step_table()}\n{ramped.step_table()}\n{ramped.notes}"
    assert search.capacity is not None and ramped.capacity is not None, tables
    # Up to 1.10: a bare Debian run read the ramp 7% above the search (158 against 148/s),
    # whose short levels are noisy too.
    assert 0.75 * search.capacity <= ramped.capacity <= 1.10 * search.capacity, tables
    assert len(ramped.levels) < len(search.levels), tables
    assert ramped.steps[0].phase == "ramp" and "confirm" in phases(ramped), tables
    buckets = [s for s in ramped.steps if s.phase == "ramp"]
    # Latency against the offered rate: holding below the knee, broken past it, where the
    # ramp stopped.
    assert buckets[0].passed and not buckets[-1].passed, tables
    assert buckets[-1].load < 2 * search.capacity, tables


RAMP_TEST = """
import pytest

@pytest.mark.sla(p99_ms=100)
def test_rate_capacity(triton_perf):
    found = triton_perf.capacity("sleepy", over="request_rate", start=40)
    assert 35 <= found.capacity <= 52, found.step_table()

def test_bad_method(triton_perf):
    with pytest.raises(ValueError, match=r"capacity\\(method='fast'\\): 'ramp' .* is accepted"):
        triton_perf.capacity("sleepy", over="request_rate", method="fast", start=40)
"""


def test_the_fixture_ramps_a_rate_by_default_and_records_the_ramp(
    server: LocalTritonServer, pytester: pytest.Pytester
) -> None:
    """``triton_perf.capacity(over="request_rate")`` ramps (one instance of 20 ms: 50/s at
    most), and the record keeps the ramp's buckets as steps of their own phase."""
    pytester.makepyfile(test_ramp=RAMP_TEST)
    result = pytester.runpytest_inprocess(
        f"--triton-url={server.http_url}",
        f"--triton-grpc-url={server.grpc_url}",
        *FAST_OPTIONS,
        "--triton-perf-json=out.json",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "out.json").read_text())
    [record] = [r for r in doc["measurements"] if r["test"].endswith("test_rate_capacity")]
    steps = record["analysis"]["capacity"]["steps"]
    ramp = [s for s in steps if s["phase"] == "ramp"]
    assert ramp and steps[len(ramp)]["phase"] == "confirm", steps
    assert [s["load"] for s in ramp] == sorted(s["load"] for s in ramp)
