"""Capacity searches (issue 11): the search rule on a synthetic queue (pure logic), then on
the real embedded server with models whose capacity is known by construction: `sleepy`
sleeps 20 ms per execution, so one instance serves 50 inferences/s and two serve 100."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from pytest_triton_perf.capacity import CapacityResult, find_capacity
from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, WindowResult, Workload
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS

SHORT = MeasureSettings(warmup_s=0.3, windows=2, window_s=0.4, max_windows=2)


# -- the search rule, on a synthetic queue -------------------------------------------------


def synthetic_queue(service_ms: float, servers: int) -> Any:
    """A closed-loop queue of ``servers`` servers of ``service_ms`` each, computed, not
    measured: throughput min(c, servers) / service, latency c / throughput. Pure logic for
    the search rule; the real server is measured below."""
    levels: list[float] = []

    def run(level: Mapping[str, Any]) -> PerfResult:
        c = float(level["concurrency"])
        levels.append(c)
        thr = min(c, servers) / service_ms * 1000
        lat = c / thr * 1000
        stats = LatencyStats(lat, lat, lat, lat, lat, lat, lat, 100)
        window = WindowResult(0, 1.0, 100, 0, 100, thr, stats)
        return PerfResult(
            "synthetic",
            None,
            Workload("synthetic", concurrency=int(c)),
            thr,
            stats,
            100,
            0,
            (window,),
            1.0,
            True,
        )

    run.levels = levels  # type: ignore[attr-defined]
    return run


def test_growth_then_bisection_stops_at_the_highest_level_within_the_bound() -> None:
    # 4 servers of 10 ms: 400/s from concurrency 4; latency 10 ms up to c=4, then c * 2.5 ms.
    run = synthetic_queue(10, 4)
    found = find_capacity(run, {"p99_ms": 30}, model="synthetic")
    # Growth 1, 2, 4, 8, 16 (40 ms: breaks), bisection 12 (30 ms: holds), 14, 13 (break).
    assert [s.load for s in found.steps] == [1, 2, 4, 8, 16, 12, 14, 13] == run.levels
    assert [s.phase for s in found.steps] == ["grow"] * 5 + ["bisect"] * 3
    assert found.limited_by == "p99_ms" and found.steps[4].breached[0].startswith("p99_ms 40")
    assert found.load == 12 and found.next_load == 13
    assert found.capacity == pytest.approx(400)
    assert found.knee == 4  # throughput stops growing there: more load only queues


def test_the_search_stops_when_throughput_stops_growing() -> None:
    # One server of 10 ms under a loose bound: 100/s at every level from 1 on.
    run = synthetic_queue(10, 1)
    found = find_capacity(run, {"p99_ms": 1000})
    assert [s.load for s in found.steps] == [1, 2, 4]
    assert found.limited_by == "plateau" and found.load == 4 and found.next_load == 8
    assert found.knee == 1 and found.capacity == pytest.approx(100)


def test_limit_resolution_and_start() -> None:
    run = synthetic_queue(10, 1000)
    found = find_capacity(run, {"p99_ms": 50}, start=3, limit=20)
    assert found.limited_by == "limit" and found.load == 20
    assert [s.load for s in found.steps] == [3, 6, 12, 20]
    run = synthetic_queue(10, 40)
    coarse = find_capacity(run, {"p99_ms": 10.5}, resolution=8)
    assert coarse.next_load is not None and coarse.load is not None
    assert coarse.next_load - coarse.load <= 8 and coarse.load <= 40


def test_no_capacity_when_the_first_level_breaks_a_bound() -> None:
    found = find_capacity(synthetic_queue(50, 1), {"p99_ms": 30})
    assert found.capacity is None and found.load is None and found.result is None
    assert found.limited_by == "p99_ms"
    assert "already breaks p99_ms 50" in found.describe()
    assert found.to_dict()["capacity"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"over": "rps"}, r"capacity\(over='rps'\): 'concurrency' \(closed loop\) or"),
        ({"start": 0}, r"capacity\(start=0\): an integer >= 1"),
        ({"start": 2.5}, r"capacity\(start=2.5\): an integer >= 1"),
        ({"limit": -1.0, "over": "request_rate"}, r"capacity\(limit=-1.0\): a number >= 0.001"),
        ({"start": 8, "limit": 4}, "start exceeds the limit"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        find_capacity(synthetic_queue(10, 1), {"p99_ms": 30}, **kwargs)


def test_a_search_without_a_latency_bound_is_refused() -> None:
    with pytest.raises(ArgumentError, match="no latency bound to search under"):
        find_capacity(synthetic_queue(10, 1), {"min_throughput": 30, "max_error_rate": 0})


# -- the real server -------------------------------------------------------------------------


def _search(server: LocalTritonServer, model: str, **kwargs: Any) -> CapacityResult:
    def run(level: Mapping[str, Any]) -> PerfResult:
        return measure(server, model, settings=SHORT, **level)

    return find_capacity(run, kwargs.pop("bounds", {"p99_ms": 150}), model=model, **kwargs)


@pytest.fixture(scope="module")
def sleepy_x2(server: LocalTritonServer) -> Iterator[str]:
    """`sleepy` with two instances, loaded as a copy through the repository API."""
    import tritonclient.http
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    src = EXAMPLE_MODELS / "sleepy"
    config = text_format.Parse((src / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = "sleepy_x2"
    config.instance_group[0].count = 2
    client = tritonclient.http.InferenceServerClient(server.http_url, network_timeout=60)
    files = {"file:1/model.py": (src / "1" / "model.py").read_bytes()}
    client.load_model("sleepy_x2", config=json_format.MessageToJson(config), files=files)
    try:
        yield "sleepy_x2"
    finally:
        client.unload_model("sleepy_x2")
        client.close()


def test_one_instance_of_a_20_ms_model_sustains_50_per_s(server: LocalTritonServer) -> None:
    found = _search(server, "sleepy")
    assert found.capacity is not None
    assert found.capacity == pytest.approx(50, rel=0.15), found.step_table()
    # Throughput stops growing from concurrency 1 or 2; the search stops on the plateau. On
    # a loaded machine concurrency 1 can read 10% low, the step to 2 then counts as growth
    # and the search goes on until p99 breaks (seen in the suite under load): the capacity
    # is the same plateau either way.
    assert found.limited_by in ("plateau", "p99_ms"), found.step_table()
    if found.limited_by == "plateau":
        assert found.knee in (1, 2), found.step_table()
    levels = [s for s in found.steps if s.passed]
    assert max(s.throughput for s in levels) < 1.15 * 50, found.step_table()
    assert found.result is not None and found.result.workload.concurrency == found.load


def test_two_instances_sustain_twice_as_much(server: LocalTritonServer, sleepy_x2: str) -> None:
    found = _search(server, sleepy_x2)
    assert found.capacity is not None
    assert found.capacity == pytest.approx(100, rel=0.15), found.step_table()
    # The knee is the lowest level within 5% of the best throughput: from 2 on here, but a
    # loaded machine can read one level 5.1% short (92.5/s at 2, 94.9/s at 4, 99.9/s at 8 in
    # a container) and move it up the plateau.
    assert found.knee in (2, 4, 8), found.step_table()
    plateau = [s.throughput for s in found.steps if s.passed and s.load >= 2]
    assert min(plateau) >= 0.85 * max(plateau), found.step_table()


def test_a_tight_bound_limits_the_capacity_by_bisection(
    server: LocalTritonServer, sleepy_x2: str
) -> None:
    # Two instances of 20 ms: c=2 answers in ~20 ms; at c=3 one request in three waits for
    # an instance (~40 ms), so the 90th percentile breaks a 30 ms bound.
    found = _search(server, sleepy_x2, bounds={"p90_ms": 30})
    assert found.limited_by == "p90_ms", found.step_table()
    assert found.load == 2 and found.next_load == 3, found.step_table()
    # About 100/s; the capacity is what the client got through at c=2, and with the other
    # worker busy it read 62.5/s in CI (the load generator late between requests, every
    # answer still inside the bound): what must hold is that the chosen level's throughput
    # is the capacity, and no more than two 20 ms instances give.
    assert found.result is not None
    assert found.capacity == pytest.approx(found.result.throughput, rel=1e-6)
    assert 50 <= found.capacity <= 115, found.step_table()


def test_over_request_rate_the_open_loop_finds_the_service_rate(
    server: LocalTritonServer,
) -> None:
    found = _search(server, "sleepy", over="request_rate", bounds={"p99_ms": 150})
    assert found.steps[0].phase == "probe"
    assert found.capacity is not None and found.load is not None
    # Past 50/s the queue grows without end, and latency counts from the schedule.
    assert 35 <= found.capacity <= 55, found.step_table()
    assert found.limited_by == "p99_ms"
    over = [s for s in found.steps if s.phase != "probe" and s.load > 60]
    assert over and not any(s.passed for s in over), found.step_table()
    doc = json.loads(json.dumps(found.to_dict()))
    assert doc["over"] == "request_rate" and len(doc["steps"]) == len(found.steps)
    assert math.isclose(doc["capacity"], found.capacity)


def test_capacity_result_to_dict_has_the_step_table(server: LocalTritonServer) -> None:
    found = _search(server, "sleepy", limit=2)
    d = found.to_dict()
    assert d["kind"] == "capacity" and d["model"] == "sleepy" and d["over"] == "concurrency"
    assert d["bounds"] == {"p99_ms": 150, "max_error_rate": 0.0}
    assert [s["load"] for s in d["steps"]] == [1.0, 2.0]
    assert all(s["passed"] and s["p99_ms"] > 19 for s in d["steps"])
    assert d["limited_by"] == "limit"
    assert "capacity" in found.describe() and "infer/s at concurrency" in found.describe()


def test_a_start_above_the_capacity_descends_then_bisects() -> None:
    run = synthetic_queue(10, 40)  # 10 ms up to c=40
    found = find_capacity(run, {"p99_ms": 10.2}, start=200)
    # 200 and 100 break; 50 too; 25 holds: then bisection between 25 and 50.
    assert [s.load for s in found.steps][:4] == [200, 100, 50, 25]
    assert found.load == 40 and found.next_load == 41
    assert found.limited_by == "p99_ms"


def test_a_known_bracket_is_measured_first() -> None:
    run = synthetic_queue(10, 40)
    found = find_capacity(run, {"p99_ms": 10.2}, start=38, then=42)
    assert [s.load for s in found.steps] == [38, 42, 40, 41]
    assert found.load == 40
    run = synthetic_queue(10, 40)  # the bracket was too low: growth goes on from its top
    found = find_capacity(run, {"p99_ms": 10.2}, start=10, then=20)
    assert [s.load for s in found.steps][:3] == [10, 20, 40]
    assert found.load == 40
