"""The engine against the real embedded Triton server (the suite's session ``server``)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import numpy as np
import pytest

from pytest_triton_perf.errors import ArgumentError, InputSpecError, ModelNotReadyError
from pytest_triton_perf.measure.engine import Endpoints, MeasureSettings, measure, measure_group
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.server.local import LocalTritonServer

FAST = MeasureSettings(warmup_s=0.3, windows=3, window_s=0.5, max_windows=3)
SLEEPY_MS = 20.0
# Python backend round trip plus a shared 2-core machine: generous, but far below a second
# execution (which would double the latency).
SLEEPY_BOUND_MS = 10.0
# textstream (tests/models) streams 10 tokens, every second request slow: 102 ms end to end,
# or 306 ms for a slow one (about 200 ms on average).
TEXTSTREAM_SLOW_S = 0.306


def check_consistent(r: PerfResult, batch_size: int = 1) -> None:
    """Invariants every result must hold, whatever the load."""
    assert r.requests == sum(w.requests for w in r.windows)
    assert r.errors == sum(w.errors for w in r.windows)
    assert r.duration_s == pytest.approx(sum(w.duration_s for w in r.windows))
    assert r.throughput == pytest.approx((r.requests - r.errors) * batch_size / r.duration_s)
    if r.latency_ms is not None:
        assert r.latency_ms.count == r.requests - r.errors == len(r.latencies_ms)
        assert r.latency_ms.p50 <= r.latency_ms.p90 <= r.latency_ms.p99 <= r.latency_ms.max


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_closed_loop_measures_simple(
    server: LocalTritonServer, protocol: str, concurrency: int
) -> None:
    r = measure(server, "simple", concurrency=concurrency, protocol=protocol, settings=FAST)
    assert r.errors == 0 and r.first_error is None
    assert r.throughput > 0 and r.requests > 100
    assert len(r.windows) == 3 and all(w.requests > 0 for w in r.windows)
    assert r.workload.describe() == f"conc={concurrency} batch=1 {protocol}"
    assert r.seed == 0
    check_consistent(r)
    assert r.server is not None
    # Exact: S0 is taken with nothing in flight, S1 after the drain.
    assert r.server.requests == r.requests + r.drained + r.ramp
    assert r.server.failures == 0
    assert 0 <= r.drained <= concurrency
    assert r.server.inferences == r.server.requests
    assert r.server.compute_infer_ms > 0


def test_batch_size_multiplies_inferences(server: LocalTritonServer) -> None:
    r = measure(server, "simple", batch_size=4, protocol="http", settings=FAST)
    check_consistent(r, batch_size=4)
    assert r.windows[0].inferences == 4 * r.windows[0].requests
    assert r.server is not None and r.server.inferences == 4 * r.server.requests
    assert r.server.batch_executions and all(b % 4 == 0 for b, _ in r.server.batch_executions)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sleepy_model_latency_is_its_service_time(server: LocalTritonServer, protocol: str) -> None:
    r = measure(server, "sleepy", protocol=protocol, settings=FAST)
    assert r.errors == 0 and r.latency_ms is not None
    assert SLEEPY_MS <= r.latency_ms.p50 <= SLEEPY_MS + SLEEPY_BOUND_MS
    assert r.latency_ms.min >= SLEEPY_MS
    # One request at a time: throughput is the inverse of the latency.
    assert r.throughput == pytest.approx(1000.0 / r.latency_ms.avg, rel=0.15)
    assert r.server is not None and r.server.compute_infer_ms >= SLEEPY_MS


def test_failed_requests_are_counted_with_the_first_message(server: LocalTritonServer) -> None:
    r = measure(server, "flaky", protocol="http", settings=FAST)
    assert r.requests > 20
    # Every 4th request of the model instance fails.
    assert r.errors == pytest.approx(r.requests / 4, abs=2)
    assert r.first_error is not None and "deliberate failure" in r.first_error
    assert r.server is not None
    assert r.server.requests + r.server.failures == r.requests + r.drained + r.ramp
    check_consistent(r)


def test_failed_requests_are_counted_over_grpc(server: LocalTritonServer) -> None:
    r = measure(server, "flaky", protocol="grpc", settings=FAST)
    assert r.errors == pytest.approx(r.requests / 4, abs=2)
    assert r.first_error is not None and "deliberate failure" in r.first_error


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bytes_dynamic_and_non_batching_models(server: LocalTritonServer, protocol: str) -> None:
    settings = MeasureSettings(warmup_s=0, windows=1, window_s=0.3, max_windows=1)
    for kwargs in (
        {"model": "bytes_echo", "batch_size": 2},
        {"model": "dynamic", "shapes": {"INPUT0": [5]}, "batch_size": 3},
        {"model": "multi_io", "inputs": "zero"},
        {
            "model": "multi_io",
            "inputs": {
                "IDS": np.array([1, 2], dtype=np.int32),
                "SCALES": np.ones(3, dtype=np.float16),
            },
        },
    ):
        r = measure(server, protocol=protocol, settings=settings, **kwargs)
        assert r.errors == 0, (kwargs, r.first_error)
        assert r.requests > 0
        # No warm-up, nothing to size a ramp from: the first window opens at the start.
        assert r.ramp == 0 and r.ramp_s == 0.0


def test_memory_fields_are_none_with_a_reason_without_gpu(server: LocalTritonServer) -> None:
    r = measure(server, "simple", settings=FAST)
    assert r.gpu_memory_mb is None
    reason = r.unavailable_reason("gpu_memory_mb")
    assert reason is not None and reason.startswith("NVML: ")
    assert "Triton metrics: no nv_gpu_memory_used_bytes" in reason
    # Triton exports host memory on this machine: a real figure, in MB (1e6 bytes).
    assert r.cpu_memory_mb is not None and 1 < r.cpu_memory_mb < 10_000_000


@dataclass
class NoMetrics:
    """The suite's server seen without its metrics endpoint."""

    inner: LocalTritonServer

    @property
    def http_url(self) -> str:
        return self.inner.http_url

    @property
    def grpc_url(self) -> str:
        return self.inner.grpc_url

    metrics_url: str | None = None

    def check_alive(self) -> None:
        self.inner.check_alive()


def test_cpu_memory_is_none_with_a_reason_without_metrics(server: LocalTritonServer) -> None:
    endpoints: Endpoints = NoMetrics(server)
    r = measure(endpoints, "simple", settings=FAST)
    assert r.cpu_memory_mb is None and r.gpu_memory_mb is None
    reason = r.unavailable_reason("cpu_memory_mb")
    assert reason is not None and "no metrics endpoint" in reason


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"inputs": {"INPUT0": np.zeros(16, np.float64)}},
            "model 'simple' input 'INPUT0' has datatype FP32 (numpy float32); got array of"
            " dtype float64",
        ),
        (
            {"inputs": {"INPUT0": np.zeros(15, np.float32)}},
            "model 'simple' input 'INPUT0' expects shape [16]",
        ),
        ({"inputs": {"INPUT9": np.zeros(16, np.float32)}}, "model 'simple' has no input 'INPUT9'"),
        ({"batch_size": 65}, "accepts batch_size 1..64 (max_batch_size); got batch_size=65"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1, got 0"),
        (
            {"protocol": "rest"},
            "protocol must be one of 'grpc', 'http', 'generate' (generate: Triton's HTTP"
            " generate extension), got 'rest'",
        ),
    ],
)
def test_invalid_arguments_raise_input_spec_error(
    server: LocalTritonServer, kwargs: dict[str, object], expected: str
) -> None:
    with pytest.raises(InputSpecError) as info:
        measure(server, "simple", settings=FAST, **kwargs)  # type: ignore[arg-type]
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)  # the caller's value is at fault


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"window_s": 0}, "window_s must be a number of seconds > 0, got 0"),
        ({"warmup_s": -1.0}, "warmup_s must be a number of seconds >= 0, got -1.0"),
        ({"windows": "3"}, "windows must be an integer >= 1, got '3'"),
        ({"windows": 5, "max_windows": 3}, "max_windows must be an integer >= windows (5), got 3"),
        ({"stability_pct": True}, "stability_pct must be a number > 0, got True"),
    ],
)
def test_invalid_settings_raise_argument_error(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(ArgumentError) as info:
        MeasureSettings(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == f"invalid measurement settings: {expected}"
    assert isinstance(info.value, ValueError)


def test_dynamic_input_without_shapes_names_the_input(server: LocalTritonServer) -> None:
    with pytest.raises(InputSpecError) as info:
        measure(server, "dynamic", settings=FAST)
    assert str(info.value) == (
        "model 'dynamic' input 'INPUT0' has dynamic shape [-1]; pass shapes={'INPUT0': [N]}"
    )


def test_unknown_model_is_not_ready_and_lists_ready_models(server: LocalTritonServer) -> None:
    with pytest.raises(ModelNotReadyError) as info:
        measure(server, "no_such_model", settings=FAST)
    assert "model 'no_such_model' is not ready" in str(info.value)
    assert "simple" in str(info.value)


def test_measure_from_a_thread_and_from_a_running_loop(server: LocalTritonServer) -> None:
    settings = MeasureSettings(warmup_s=0, windows=1, window_s=0.2, max_windows=1)
    results: list[PerfResult] = []
    t = threading.Thread(
        target=lambda: results.append(measure(server, "simple", settings=settings))
    )
    t.start()
    t.join()

    async def inside_a_loop() -> PerfResult:
        return measure(server, "simple", protocol="http", settings=settings)

    results.append(asyncio.run(inside_a_loop()))
    assert [r.errors for r in results] == [0, 0]
    assert all(r.requests > 0 for r in results)


@pytest.mark.parametrize(
    ("stability_pct", "windows", "stable"),
    [
        (1000.0, 3, True),  # met at once: no extension
        (0.001, 5, False),  # never met: extended to max_windows and reported unstable
    ],
)
def test_stability_extends_the_measurement_up_to_max_windows(
    server: LocalTritonServer, stability_pct: float, windows: int, stable: bool
) -> None:
    settings = MeasureSettings(
        warmup_s=0.1, windows=3, window_s=0.2, max_windows=5, stability_pct=stability_pct
    )
    r = measure(server, "simple", settings=settings)
    assert (len(r.windows), r.stable) == (windows, stable)
    check_consistent(r)


@pytest.mark.parametrize("model", ["simple", "flaky"])
def test_grpcio_client_gives_the_same_accounting(server: LocalTritonServer, model: str) -> None:
    r = measure(server, model, concurrency=2, grpc_client="grpcio", settings=FAST)
    assert r.requests > 0
    assert r.server is not None
    assert r.server.requests + r.server.failures == r.requests + r.drained + r.ramp
    if model == "flaky":
        assert r.first_error is not None and r.first_error.startswith("INTERNAL: flaky")
    else:
        assert r.errors == 0


def test_lean_grpc_client_reports_the_server_error_text(server: LocalTritonServer) -> None:
    r = measure(server, "flaky", concurrency=2, settings=FAST)
    assert r.first_error is not None
    assert r.first_error.startswith("INTERNAL: flaky: deliberate failure of request")


def test_unknown_grpc_client_is_refused(server: LocalTritonServer) -> None:
    with pytest.raises(InputSpecError, match="grpc_client must be one of 'lean', 'grpcio'"):
        measure(server, "simple", grpc_client="h3", settings=FAST)


def test_a_long_latency_model_reads_its_offered_rate_in_short_windows(
    server: LocalTritonServer,
) -> None:
    """The first window opens after the ramp (the warm-up's p99 latency), on the steady
    state. Opened as the load restarts, it would start cold: nothing completes in its first
    end-to-end latency, and 2 windows of 1 s read about rate x 200 ms requests (10%) low."""
    rate = 40.0
    settings = MeasureSettings(warmup_s=0.5, windows=2, window_s=1.0, max_windows=2)
    r = measure(server, "textstream", request_rate=rate, settings=settings)
    assert r.errors == 0, r.first_error
    check_consistent(r)
    assert TEXTSTREAM_SLOW_S <= r.ramp_s <= TEXTSTREAM_SLOW_S + 0.15
    assert r.throughput == pytest.approx(rate, rel=0.03)
    # The ramp's requests are outside the windows, counted by the server: still exact.
    assert 0 < r.ramp < rate * r.ramp_s
    assert r.server is not None and r.server.requests == r.requests + r.drained + r.ramp


def test_a_group_opens_its_windows_after_the_longest_ramp_of_its_models(
    server: LocalTritonServer,
) -> None:
    settings = MeasureSettings(warmup_s=0.5, windows=1, window_s=0.5, max_windows=1)
    results = measure_group(
        server,
        {"textstream": {"request_rate": 20.0}, "simple": {"request_rate": 100.0}},
        settings=settings,
    )
    text, simple = results["textstream"], results["simple"]
    # simple's own p99 is a few ms: the group waits for textstream's slow requests.
    assert text.ramp_s == simple.ramp_s >= TEXTSTREAM_SLOW_S
    assert simple.ramp > 10
    for r in (text, simple):
        assert r.errors == 0, r.first_error
        assert r.server is not None and r.server.requests == r.requests + r.drained + r.ramp
