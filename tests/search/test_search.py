"""Configuration searches on the suite's real embedded server (example model ``sleepy``:
20 ms per execution, max_batch_size 8, one instance, no dynamic batching)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.search import run_search
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.server.remote import RemoteTritonServer
from tests.conftest import EXAMPLE_MODELS

FULL = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.3, max_windows=2)
SHORT = MeasureSettings(warmup_s=0.1, windows=2, window_s=0.15, max_windows=2)
#: The keys of SearchResult.to_dict() and of each candidate's row (the issue's contract).
RESULT_KEYS = {
    "kind", "model", "objective", "strategy", "space", "sla", "duration_s", "pruned", "best",
    "best_config_pbtxt", "committed", "gap", "max_config_gap", "candidates", "tie", "cost",
    "notes",
}  # fmt: skip
CANDIDATE_KEYS = {
    "name", "rank", "values", "config_diff", "objective", "capacity", "p99_ms", "throughput",
    "gpu_memory_mb", "cpu_memory_mb", "sla_ok", "status", "note", "rung", "committed",
    "prediction",
}  # fmt: skip


def _left_loaded(server: LocalTritonServer) -> list[dict[str, Any]]:
    """Candidates the repository index still shows as loaded, loading or unloading."""
    return [
        m
        for m in server.repository_index()
        if "__cfg" in m["name"] and m.get("state") in ("READY", "LOADING", "UNLOADING")
    ]


def test_batching_wins_the_capacity_search_and_every_candidate_is_unloaded(
    server: LocalTritonServer,
) -> None:
    lines: list[str] = []
    result = run_search(
        server,
        "sleepy",
        {"instance_count": [1, 2], "dynamic_batching": [False, True]},
        sla={"perf_latency_p99": 60},  # Model Analyzer's name for p99_ms
        settings=FULL,
        short_settings=SHORT,
        limit=16,
        max_config_gap=0.15,
        notify=lines.append,
    )
    assert _left_loaded(server) == []
    assert server.model_ready("sleepy")  # the model itself is untouched

    # One instance without batching serves 1000 / 20 = 50 inferences/s; batching up to 8
    # requests per execution serves several times more within 60 ms.
    committed = result.committed
    assert committed is not None and committed.name == "sleepy__cfg0"
    assert committed.values == {"instance_count": 1, "dynamic_batching": False}
    assert committed.status == "finalist" and committed.config_diff == ""
    assert committed.capacity is not None and abs(committed.capacity - 50) / 50 < 0.15
    best = result.best
    assert best is not None and best.values["dynamic_batching"] is True
    assert best.capacity is not None and best.capacity > 3 * committed.capacity
    assert best.objective == best.capacity and best.sla_ok and best.rank == 1
    assert best.p99_ms is not None and best.p99_ms <= 60
    config = text_format.Parse(best.config_pbtxt, model_config_pb2.ModelConfig())
    assert config.name == "sleepy" and config.HasField("dynamic_batching")
    assert "+dynamic_batching {" in best.config_diff
    assert result.gap is not None and result.gap > 2 and result.drifted

    # Predict, then verify (the default): all four probed, the best predicted verified at
    # full length, and the committed one too (max_config_gap needs its figure); two
    # instances without batching (about 100/s) cannot beat the best even 15% up: pruned.
    assert result.strategy == "predict"
    assert all(c.prediction is not None for c in result.candidates)
    (slow,) = [
        c for c in result.candidates if c.values == {"instance_count": 2, "dynamic_batching": False}
    ]
    assert slow.status == "pruned" and slow.rung == 0 and result.pruned >= 1
    assert slow.note.startswith("pruned on its prediction: capacity")
    assert slow.prediction is not None and slow.prediction["error"] is None
    assert any("pruned on its prediction" in line for line in lines)
    prediction = best.prediction
    assert prediction is not None and prediction["tolerance"] == 0.15
    assert prediction["capacity"] == pytest.approx(best.capacity, rel=0.5)
    if prediction["held"]:  # else it fell back to the full search (rung 2), and says so
        assert best.rung == 1 and abs(prediction["error"]) <= 0.15
    else:
        assert best.rung == 2 and "capacity searched at full length" in best.note
    assert [c.rank for c in result.candidates] == [1, 2, 3, 4]
    cost = result.cost
    assert cost["wall_s"] == cost["server_s"] and 0 < cost["wall_s"] <= result.duration_s
    assert cost["gpu_s"] is None or cost["gpu_s"] > 0
    assert cost["levels"] >= 4 + 2 and cost["loads"] >= 4

    document = json.loads(json.dumps(result.to_dict()))
    assert set(document) == RESULT_KEYS
    assert all(set(c) == CANDIDATE_KEYS for c in document["candidates"])
    assert document["best"] == best.name and document["committed"] == "sleepy__cfg0"
    assert document["space"] == {"instance_count": [1, 2], "dynamic_batching": [False, True]}
    assert document["sla"] == {"p99_ms": 60.0}


def test_over_a_request_rate_each_candidate_is_ramped_then_confirmed(
    server: LocalTritonServer,
) -> None:
    """A capacity over a rate: each candidate's by one ramp and one steady level (the
    method's default), not growth and bisection. The committed configuration (20 ms per
    execution) serves 50/s, the candidate (15 ms) 67/s; with one challenger both are
    measured at full length at once."""
    result = run_search(
        server,
        "sleepy",
        {"parameters.service_time_ms": [15]},
        sla={"p99_ms": 60},
        settings=FULL,
        short_settings=SHORT,
        request_rate=35,  # the ramps start at 70% of the lower knee: a first bucket near it broke
        limit=400,
    )
    assert result.strategy == "halving" and any("predict: " in n for n in result.notes)
    assert _left_loaded(server) == []
    best, committed = result.best, result.committed
    assert best is not None and best.values == {"parameters.service_time_ms": 15}
    assert committed is not None and committed.capacity is not None
    assert best.capacity is not None and best.capacity > 1.15 * committed.capacity
    for candidate in (best, committed):
        found = candidate.capacity_result
        assert found is not None and found.steps[0].phase == "ramp", found
        assert found.levels[0].phase == "confirm", found.step_table()
        assert "after a ramp of" in candidate.note
    assert result.cost["ramps"] == 2 and result.cost["levels"] >= 2
    assert abs(committed.capacity - 45) / 45 < 0.2, committed.capacity_result


def test_a_candidate_that_fails_to_load_or_to_measure_is_reported_and_the_search_goes_on(
    server: LocalTritonServer,
) -> None:
    result = run_search(
        server,
        "sleepy",
        {"parameters.service_time_ms": ["not-a-number", "5"], "max_batch_size": [2, 8]},
        objective="perf_throughput",
        strategy="grid",
        settings=FULL,
        concurrency=2,
        batch_size=4,
    )
    assert _left_loaded(server) == []
    by_values = {tuple(c.values.values()): c for c in result.candidates}
    for size in (2, 8):
        broken = by_values[("not-a-number", size)]
        assert broken.status == "failed" and broken.rank is None and broken.objective is None
        # Triton's own message, on one line.
        assert "could not convert string to float: 'not-a-number'" in broken.note
        assert "\n" not in broken.note
    too_small = by_values[("5", 2)]  # batches of 4 do not fit max_batch_size 2
    assert too_small.status == "failed"
    assert too_small.note.startswith("measurement failed at rung 0:")
    assert "batch" in too_small.note
    best = result.best
    assert best is not None and best.values == {
        "parameters.service_time_ms": "5",
        "max_batch_size": 8,
    }
    committed = result.committed
    assert committed is not None and committed.status == "finalist"
    assert best.throughput is not None and committed.throughput is not None
    assert best.throughput > 2 * committed.throughput  # 5 ms per execution instead of 20
    assert [c.status for c in result.candidates] == ["finalist", "finalist", *["failed"] * 3]


def test_gpu_memory_where_it_is_not_measured_is_an_argument_error_and_nothing_stays_loaded(
    server: LocalTritonServer,
) -> None:
    probe = measure(server, "sleepy", settings=MeasureSettings(warmup_s=0, windows=1, window_s=0.1))
    if probe.gpu_memory_mb is not None:
        pytest.skip("this machine measures GPU memory")
    reason = probe.unavailable_reason("gpu_memory_mb")
    assert reason
    with pytest.raises(ArgumentError, match="the objective gpu_memory_mb cannot be measured here"):
        run_search(
            server,
            "sleepy",
            {"instance_count": [1, 2]},
            objective="gpu_used_memory",
            settings=SHORT,
        )
    assert _left_loaded(server) == []


@pytest.mark.parametrize("strategy", ["halving", "race"])
def test_an_interrupt_mid_search_leaves_no_candidate_loaded(
    server: LocalTritonServer, strategy: str
) -> None:
    measured: list[str] = []

    def interrupted(model: str, *, settings: MeasureSettings, **kwargs: Any) -> Any:
        measured.append(model)
        if model != "sleepy__cfg0":
            assert server.model_ready(model)  # loaded while it is measured
            raise KeyboardInterrupt
        return measure(server, model, settings=settings, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        run_search(
            server,
            "sleepy",
            {"instance_count": [2, 3]},
            objective="throughput",
            strategy=strategy,
            settings=SHORT,
            measure=interrupted,
        )
    if strategy == "halving":  # one at a time, the committed configuration first
        assert measured == ["sleepy__cfg0", "sleepy__cfg1"]
    else:  # all three loaded; the first round's order is random
        assert measured[-1] in ("sleepy__cfg1", "sleepy__cfg2")
        assert set(measured[:-1]) <= {"sleepy__cfg0"}
    assert _left_loaded(server) == []


def test_arguments_are_checked_before_anything_is_loaded(server: LocalTritonServer) -> None:
    space = {"instance_count": [1, 2]}
    with pytest.raises(ArgumentError, match="no latency bound"):
        run_search(server, "sleepy", space, sla={"min_throughput": 10})
    with pytest.raises(ArgumentError, match="strategy='random'"):
        run_search(server, "sleepy", space, sla={"p99_ms": 30}, strategy="random")
    with pytest.raises(ArgumentError, match="unknown key 'instance'"):
        run_search(server, "sleepy", {"instance": [1]}, sla={"p99_ms": 30})
    with pytest.raises(ArgumentError, match="over, start and limit bound a capacity search"):
        run_search(server, "sleepy", space, objective="throughput", limit=8)
    with pytest.raises(ArgumentError, match=r"^capacity\(method='ramp', over='concurrency'\)"):
        run_search(server, "sleepy", space, sla={"p99_ms": 30}, method="ramp")
    with pytest.raises(ArgumentError, match=r"^capacity\(method='fast'\): 'ramp' "):
        run_search(server, "sleepy", space, sla={"p99_ms": 30}, request_rate=10, method="fast")
    # A remote server: the model's files are not at hand without model_repository.
    remote = RemoteTritonServer(server.http_url, grpc_url=server.grpc_url).start()
    with pytest.raises(ArgumentError, match=r"its files are not at hand.*model_repository=DIR"):
        run_search(remote, "sleepy", space, sla={"p99_ms": 30})
    with pytest.raises(ArgumentError, match=r"no sleepy/config\.pbtxt there"):
        run_search(
            remote, "sleepy", space, sla={"p99_ms": 30}, model_repository=EXAMPLE_MODELS.parent
        )
    assert _left_loaded(server) == []
