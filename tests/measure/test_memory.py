"""Prometheus parsing and the memory sampler's sources and reasons."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from pytest_triton_perf.measure.memory import (
    MemoryPeaks,
    MemorySampler,
    NvmlSource,
    metric_sum,
    open_nvml,
    parse_prometheus,
)

TEXT = """\
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 1.5e+09
nv_gpu_memory_used_bytes{gpu_uuid="GPU-b"} 500000000
nv_cpu_memory_used_bytes 775282688
nv_inference_count{model="simple",version="1"} 12 1700000000000
weird{label="a \\"quoted\\" } value",other="x"} 3
"""


def test_parse_prometheus_reads_labels_values_and_timestamps() -> None:
    s = parse_prometheus(TEXT)
    assert s["nv_gpu_memory_used_bytes"] == [
        ({"gpu_uuid": "GPU-a"}, 1.5e9),
        ({"gpu_uuid": "GPU-b"}, 5e8),
    ]
    assert s["nv_inference_count"] == [({"model": "simple", "version": "1"}, 12.0)]
    assert s["weird"] == [({"label": 'a "quoted" } value', "other": "x"}, 3.0)]


def test_malformed_exposition_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_prometheus(TEXT + "not a metric line\n")


def test_metric_sum_sums_over_devices_and_is_none_when_absent() -> None:
    s = parse_prometheus(TEXT)
    assert metric_sum(s, "nv_gpu_memory_used_bytes") == 2e9
    assert metric_sum(s, "nv_gpu_utilization") is None


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[str, type[_Handler]]]:
    """A loopback endpoint serving a chosen Prometheus text (stands in for Triton's)."""
    handler = type("H", (_Handler,), {"body": b""})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/metrics", handler
    srv.shutdown()
    srv.server_close()


def no_nvml() -> tuple[NvmlSource | None, str | None]:
    return None, "NVML Shared Library Not Found"


class FakeNvmlSource(NvmlSource):
    """Stands in for a GPU, which this machine does not have."""

    def __init__(self, values: list[float]) -> None:
        self._values = values

    def used_bytes(self) -> float:
        return self._values.pop(0) if len(self._values) > 1 else self._values[0]

    def close(self) -> None:
        pass


def test_gpu_from_triton_metrics_when_nvml_is_missing(
    metrics_endpoint: tuple[str, type[_Handler]],
) -> None:
    url, handler = metrics_endpoint
    handler.body = TEXT.encode()
    sampler = MemorySampler(url, interval_s=0.01, nvml_factory=no_nvml)
    sampler.start()
    handler.body = TEXT.replace("1.5e+09", "3.5e+09").encode()
    peaks = sampler.stop()
    assert peaks.gpu_mb == pytest.approx(4000.0)  # peak, summed over GPUs, MB = 1e6 bytes
    assert peaks.cpu_mb == pytest.approx(775.282688)
    assert peaks.unavailable == {}


def test_nvml_is_preferred_and_its_peak_kept(
    metrics_endpoint: tuple[str, type[_Handler]],
) -> None:
    url, handler = metrics_endpoint
    handler.body = TEXT.encode()
    fake = FakeNvmlSource([1e9, 7e9, 2e9])
    sampler = MemorySampler(url, interval_s=0.01, nvml_factory=lambda: (fake, None))
    sampler.start()
    sampler.sample()
    peaks = sampler.stop()
    assert peaks.gpu_mb == pytest.approx(7000.0)


def sample_without_nvml(
    metrics_endpoint: tuple[str, type[_Handler]], body: bytes
) -> tuple[str, MemoryPeaks]:
    """The endpoint's URL and the peaks of a sampler reading ``body`` there, no NVML."""
    url, handler = metrics_endpoint
    handler.body = body
    sampler = MemorySampler(url, interval_s=0.01, nvml_factory=no_nvml)
    sampler.start()
    return url, sampler.stop()


def test_no_source_gives_none_with_both_reasons(
    metrics_endpoint: tuple[str, type[_Handler]],
) -> None:
    url, peaks = sample_without_nvml(metrics_endpoint, b"nv_cpu_memory_used_bytes 1000000\n")
    assert peaks.gpu_mb is None
    assert peaks.unavailable["gpu_memory_mb"] == (
        f"NVML: NVML Shared Library Not Found; Triton metrics: no nv_gpu_memory_used_bytes at {url}"
    )
    assert peaks.cpu_mb == 1.0


def test_metrics_disabled_makes_cpu_unavailable_too() -> None:
    sampler = MemorySampler(None, nvml_factory=no_nvml)
    sampler.start()
    peaks = sampler.stop()
    assert peaks.gpu_mb is None and peaks.cpu_mb is None
    assert "no metrics endpoint" in peaks.unavailable["cpu_memory_mb"]
    assert peaks.unavailable["gpu_memory_mb"].startswith("NVML: NVML Shared Library Not Found;")


def test_unreachable_metrics_endpoint_is_named_in_the_reason() -> None:
    sampler = MemorySampler("http://127.0.0.1:9/metrics", nvml_factory=no_nvml)
    sampler.start()
    peaks = sampler.stop()
    assert "http://127.0.0.1:9/metrics unreadable" in peaks.unavailable["cpu_memory_mb"]


def test_unparsable_metrics_are_named_in_the_reason(
    metrics_endpoint: tuple[str, type[_Handler]],
) -> None:
    url, peaks = sample_without_nvml(metrics_endpoint, b"nv_cpu_memory_used_bytes lots\n")
    assert peaks.cpu_mb is None
    assert peaks.unavailable["cpu_memory_mb"].startswith(f"Triton metrics: {url} unreadable: ")
    assert "lots" in peaks.unavailable["cpu_memory_mb"]


def test_real_nvml_on_this_machine_reports_why_it_is_missing() -> None:
    source, reason = open_nvml()
    if source is not None:  # pragma: no cover - a machine with a GPU
        source.close()
        pytest.skip("this machine has NVML")
    assert reason
