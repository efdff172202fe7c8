"""Memory figures sampled during a measurement: GPU through NVML or Triton's metrics, CPU
through Triton's metrics. A figure without a source is None with the reason, never 0.

MB are 10^6 bytes, as Model Analyzer reports them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pytest_triton_perf.server.http import HttpStatusError, get_text

GPU_METRIC = "nv_gpu_memory_used_bytes"
CPU_METRIC = "nv_cpu_memory_used_bytes"
MB = 1e6


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of a Prometheus text exposition: name -> [(labels, value), ...].

    Parsed by prometheus_client's reference parser; a malformed exposition raises
    ValueError (a sampler reports it as the reason the figure is missing).
    """
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def metric_sum(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float | None:
    """Sum of a metric over its label sets (e.g. over GPUs), None when absent."""
    if name not in samples:
        return None
    return sum(v for _, v in samples[name])


class NvmlSource:
    """Device memory in use, summed over all GPUs, through NVML (pynvml, imported lazily).

    ``devices`` limits the sum to those GPUs, named by NVML index or UUID (the ones given to
    a container with ``--gpus``); None: every GPU of the host.
    """

    def __init__(self, devices: Sequence[str] | None = None) -> None:
        import pynvml

        self._nvml: Any = pynvml
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                raise RuntimeError("no GPU devices")
            if devices is None:
                self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
                self.devices = tuple(str(i) for i in range(count))
            else:
                self._handles = [_device_handle(pynvml, d) for d in devices]
                self.devices = tuple(devices)
        except BaseException:
            pynvml.nvmlShutdown()
            raise

    def used_bytes(self) -> float:
        """Used device memory in bytes, all devices."""
        return float(sum(self._nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles))

    def used_by_device(self) -> dict[str, float]:
        """Used device memory in bytes per GPU, named as ``devices`` names them."""
        return {
            name: float(self._nvml.nvmlDeviceGetMemoryInfo(h).used)
            for name, h in zip(self.devices, self._handles, strict=True)
        }

    def energy_mj(self) -> dict[str, int]:
        """Energy each GPU consumed since the driver was loaded, in millijoules, named as
        ``devices`` names them (NVML's total-energy counter: Volta or newer)."""
        get = self._nvml.nvmlDeviceGetTotalEnergyConsumption
        return {name: int(get(h)) for name, h in zip(self.devices, self._handles, strict=True)}

    def close(self) -> None:
        """Shut NVML down."""
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def _device_handle(pynvml: Any, device: str) -> Any:
    """The NVML handle of a GPU named by index ("0") or UUID ("GPU-...", "MIG-...")."""
    if device.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(device))
    return pynvml.nvmlDeviceGetHandleByUUID(device)


def open_nvml(devices: Sequence[str] | None = None) -> tuple[NvmlSource | None, str | None]:
    """An NVML source (over ``devices``, or every GPU), or None and the reason there is none."""
    try:
        return NvmlSource(devices), None
    except Exception as e:
        text = str(e) or type(e).__name__
        return None, text


def fetch_metrics(url: str, timeout: float = 2.0) -> str:
    """The text of a Prometheus endpoint."""
    return get_text(url, timeout=timeout)


@dataclass
class MemoryPeaks:
    """Peaks observed by a sampler, and why a figure has no value."""

    gpu_mb: float | None = None
    gpu_delta_mb: float | None = None  # peak minus the first sample of the same source
    cpu_mb: float | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


class MemorySampler:
    """Background thread sampling memory during a measurement; keeps the peaks.

    GPU: NVML when it works, else Triton's ``nv_gpu_memory_used_bytes``. CPU: Triton's
    ``nv_cpu_memory_used_bytes``. Triton refreshes these gauges every ~2 s, so the sampler also
    samples once at start and once at stop, whatever the interval.
    """

    def __init__(
        self,
        metrics_url: str | None,
        *,
        interval_s: float = 0.5,
        nvml_factory: Callable[[], tuple[NvmlSource | None, str | None]] | None = None,
        gpu_devices: Sequence[str] | None = None,
    ) -> None:
        self._metrics_url = metrics_url
        self._interval = interval_s
        # gpu_devices: the server's GPUs (NVML index or UUID); None measures every GPU.
        self._nvml_factory = nvml_factory or (lambda: open_nvml(gpu_devices))
        self._nvml: NvmlSource | None = None
        self._nvml_error: str | None = None
        self._gpu_nvml: float | None = None
        self._gpu_metrics: float | None = None
        self._gpu_nvml_first: float | None = None
        self._gpu_metrics_first: float | None = None
        self._cpu: float | None = None
        self._metrics_error: str | None = None
        self._metrics_seen = False
        # Whether the endpoint served any of Triton's nv_* metrics (another KServe V2
        # server's endpoint, e.g. MLServer's, serves its own).
        self._triton_metrics = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open the sources, take a first sample, and start the thread."""
        self._nvml, self._nvml_error = self._nvml_factory()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="triton-perf-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every source now."""
        nvml_value: float | None = None
        if self._nvml is not None:
            try:
                nvml_value = self._nvml.used_bytes()
            except Exception as e:
                self._nvml_error = str(e) or type(e).__name__
        gpu = cpu = None
        if self._metrics_url:
            try:
                samples = parse_prometheus(fetch_metrics(self._metrics_url))
                self._metrics_seen = True
                self._triton_metrics = self._triton_metrics or any(
                    name.startswith("nv_") for name in samples
                )
                gpu = metric_sum(samples, GPU_METRIC)
                cpu = metric_sum(samples, CPU_METRIC)
            except (OSError, HttpStatusError, ValueError) as e:
                self._metrics_error = str(e) or type(e).__name__
        with self._lock:
            if self._gpu_nvml_first is None:
                self._gpu_nvml_first = nvml_value
            if self._gpu_metrics_first is None:
                self._gpu_metrics_first = gpu
            self._gpu_nvml = _peak(self._gpu_nvml, nvml_value)
            self._gpu_metrics = _peak(self._gpu_metrics, gpu)
            self._cpu = _peak(self._cpu, cpu)

    def stop(self) -> MemoryPeaks:
        """Stop the thread, take a last sample, and return the peaks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.sample()
        if self._nvml is not None:
            self._nvml.close()
        return self.peaks()

    def peaks(self) -> MemoryPeaks:
        """Peaks so far, in MB, with reasons for missing figures."""
        with self._lock:
            gpu_nvml, gpu_metrics, cpu = self._gpu_nvml, self._gpu_metrics, self._cpu
            nvml_first, metrics_first = self._gpu_nvml_first, self._gpu_metrics_first
        out = MemoryPeaks()
        if gpu_nvml is not None:
            out.gpu_mb = gpu_nvml / MB
            if nvml_first is not None:
                out.gpu_delta_mb = (gpu_nvml - nvml_first) / MB
        elif gpu_metrics is not None:
            out.gpu_mb = gpu_metrics / MB
            if metrics_first is not None:
                out.gpu_delta_mb = (gpu_metrics - metrics_first) / MB
        else:
            out.unavailable["gpu_memory_mb"] = (
                f"NVML: {self._nvml_error or 'no reading'}; Triton metrics: "
                f"{self._metrics_reason(GPU_METRIC)}"
            )
        if cpu is not None:
            out.cpu_mb = cpu / MB
        else:
            out.unavailable["cpu_memory_mb"] = f"Triton metrics: {self._metrics_reason(CPU_METRIC)}"
        return out

    def _metrics_reason(self, metric: str) -> str:
        if not self._metrics_url:
            return "no metrics endpoint (metrics disabled or not exposed)"
        if not self._metrics_seen:
            return f"{self._metrics_url} unreadable: {self._metrics_error}"
        if not self._triton_metrics:
            return (
                f"the metrics at {self._metrics_url} are not Triton's (none of its nv_*"
                " metrics: a KServe V2 server other than Triton)"
            )
        return f"no {metric} at {self._metrics_url}"


def _peak(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def process_tree_memory(pid: int) -> tuple[float, int, str]:
    """Host memory of process ``pid`` and its descendants (e.g. Triton's Python backend
    stubs), in bytes: (bytes, processes counted, what was summed).

    The sum of PSS (proportional set size: a page shared by n processes counts 1/n in each)
    where every process's ``smaps`` can be read, so that libraries shared between the
    server and its stubs count once; RSS otherwise (a server of another user, e.g. in a
    container), which counts shared pages in every process. Raises psutil.NoSuchProcess
    when ``pid`` is gone.
    """
    import psutil

    root = psutil.Process(pid)
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    pss: list[float] = []
    rss: list[float] = []
    for proc in procs:
        try:
            rss.append(float(proc.memory_info().rss))
        except psutil.NoSuchProcess:
            if proc is root:
                raise
            continue  # a child that ended meanwhile holds no memory
        except psutil.Error:
            continue
        with contextlib.suppress(psutil.Error, AttributeError):
            pss.append(float(proc.memory_full_info().pss))
    if len(pss) == len(rss):
        return sum(pss), len(pss), "PSS"
    return sum(rss), len(rss), "RSS"
