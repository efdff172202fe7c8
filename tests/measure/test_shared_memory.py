"""Measurements through shared memory on the real server: outputs verified against the
answer over the socket, regions registered while measuring and gone afterwards (from
/dev/shm and from the server's status API), also when the measurement is interrupted; the
refusals (another host, no GPU)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_info import request_json
from pytest_triton_perf.load.shared_memory import cuda_unavailable, region_names, region_prefix
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.server.local import LocalTritonServer

FAST = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.3)


def registered(server: LocalTritonServer) -> list[str]:
    """Our regions the server has registered, from Triton's status API."""
    doc = request_json(server.http_url, "/v2/systemsharedmemory/status")
    return sorted(r["name"] for r in doc or [] if r["name"].startswith(region_prefix()))


def assert_all_gone(server: LocalTritonServer) -> None:
    assert region_names() == [], "a region was left in /dev/shm"
    assert registered(server) == [], "a region is still registered with the server"


@pytest.mark.parametrize(
    ("protocol", "kwargs"),
    [
        ("grpc", {"concurrency": 2}),
        ("http", {"inputs": ["random", "zero"], "batch_size": 4}),
        ("grpc", {"grpc_client": "grpcio", "workers": 2, "concurrency": 2}),
    ],
    ids=["lean-grpc", "http-two-sets", "grpcio-two-workers"],
)
def test_outputs_come_back_through_the_region_and_everything_is_removed(
    server: LocalTritonServer, protocol: str, kwargs: dict[str, Any]
) -> None:
    r = measure(
        server, "simple", protocol=protocol, shared_memory="system", settings=FAST, **kwargs
    )
    assert r.errors == 0 and r.requests > 0, r.first_error
    assert r.outputs_verified is True, r.notes
    assert r.workload.shared_memory == "system"
    assert r.workload.describe().endswith(" shm=system")
    assert r.to_dict()["workload"]["shared_memory"] == "system"
    assert_all_gone(server)


def test_over_the_socket_nothing_changes(server: LocalTritonServer) -> None:
    r = measure(server, "simple", settings=FAST)
    assert r.outputs_verified is None and r.workload.shared_memory is None
    assert "shared_memory" not in r.to_dict()["workload"]


def test_a_sequence_model_runs_through_regions_sized_from_its_configuration(
    server: LocalTritonServer,
) -> None:
    r = measure(
        server,
        "accumulator",
        concurrency=2,
        sequence_length=5,
        shared_memory="system",
        settings=FAST,
    )
    assert r.errors == 0 and r.sequences, r.first_error
    assert r.outputs_verified is None  # not probed: a request outside a sequence would fail
    assert_all_gone(server)


def test_an_interrupted_measurement_unregisters_and_removes_its_regions(
    server: LocalTritonServer,
) -> None:
    seen: dict[str, list[str]] = {}

    def interrupt() -> None:
        deadline = time.monotonic() + 20
        while not region_names() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.8)  # into the warm-up or the windows
        seen["files"], seen["server"] = region_names(), registered(server)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            measure(
                server,
                "simple",
                shared_memory="system",
                settings=MeasureSettings(warmup_s=0.2, windows=30, window_s=1.0, max_windows=30),
            )
    finally:
        timer.join()
    assert time.monotonic() - started < 15
    assert len(seen["files"]) == 2 and seen["server"] == seen["files"]  # _in and _out
    assert_all_gone(server)


def test_a_measurement_that_fails_removes_its_regions(server: LocalTritonServer) -> None:
    """``seq_string_id``'s control inputs cannot be filled by Triton 2.51: the measurement
    fails inside the run, after the regions were registered."""
    with pytest.raises(InputSpecError, match="cannot fill its sequence control inputs"):
        measure(server, "seq_string_id", sequence_length=2, shared_memory="system", settings=FAST)
    assert_all_gone(server)


class FakeEndpoints:
    """A server on another host: nothing runs there, the refusal comes before any call."""

    http_url = "192.0.2.7:8000"
    grpc_url = "192.0.2.7:8001"
    metrics_url = None

    def check_alive(self) -> None:
        raise AssertionError("a refused measurement must not reach the server")


def test_a_server_on_another_host_is_refused() -> None:
    with pytest.raises(InputSpecError, match="is not on this host") as info:
        measure(FakeEndpoints(), "simple", shared_memory="system", settings=FAST)
    assert "shared_memory='system' is refused" in str(info.value)
    assert region_names() == []


@pytest.mark.skipif(cuda_unavailable() is None, reason="this machine can make CUDA regions")
def test_cuda_without_a_gpu_is_refused_with_the_reason(server: LocalTritonServer) -> None:
    with pytest.raises(
        InputSpecError, match=r"shared_memory='cuda' is refused: .*(GPU|cuda-python)"
    ):
        measure(server, "simple", shared_memory="cuda", settings=FAST)


@pytest.mark.skipif(
    cuda_unavailable() is not None, reason=f"no CUDA regions here: {cuda_unavailable()}"
)
def test_cuda_regions_carry_the_tensors_where_a_gpu_exists(server: LocalTritonServer) -> None:
    r = measure(server, "simple", concurrency=2, shared_memory="cuda", settings=FAST)
    assert r.errors == 0 and r.requests > 0, r.first_error
    assert r.outputs_verified is True, r.notes
    assert r.workload.describe().endswith(" shm=cuda")
    doc = request_json(server.http_url, "/v2/cudasharedmemory/status")
    assert [x for x in doc or [] if x["name"].startswith(region_prefix())] == []
