"""A model's memory footprint: what loading it (and serving it) adds to the server.

Triton Management Service places models on shared servers by their *declared* GPU memory and
has no way to measure it; a Kubernetes pod needs a memory request. :func:`measure_footprint`
measures both for one model:

1. the model is loaded alone into the running server through the repository API (explicit
   model control): as itself when the server has not loaded it, else as a fresh copy of its
   files under ``<model>__fp`` (:class:`~pytest_triton_perf.server.variants.Variants`,
   the one way variants enter a server), so that the delta is a whole new instance's;
2. memory is sampled **before** the load, **after** it, and **under load** (a short
   measurement of the loaded model while a sampler keeps the peak);
3. the model (or its copy) is unloaded again, also when a step fails.

Sources: GPU memory per device through NVML, only the devices the server was given (a
container's ``--gpus``), device-wide (another process's allocations in the same seconds
would count: the footprint is taken on a server that runs nothing else); host memory of the
server process and its descendants (the Python backend's stub processes are children of
``tritonserver``) through psutil, as PSS where readable (shared libraries count once) or
RSS. A source that does not exist (no GPU, a remote server's processes) leaves the figure
None with the reason. MB are 10^6 bytes, as elsewhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import ArgumentError, ModelNotReadyError, TritonPerfError
from pytest_triton_perf.measure.engine import MeasureSettings
from pytest_triton_perf.measure.memory import MB, NvmlSource, open_nvml, process_tree_memory
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.search.config import parse_config
from pytest_triton_perf.server.variants import (
    Variants,
    footprint_name,
    load_error,
    model_directory,
)
from pytest_triton_perf.urls import parse_url

#: Samples per stage (their median): one reading can catch an allocation in passing.
STAGE_SAMPLES = 3
STAGE_INTERVAL_S = 0.1
#: Pause after the load before sampling: a backend may still be touching its pages.
SETTLE_S = 0.5
#: How often the sampler reads memory during the measurement under load.
UNDER_LOAD_INTERVAL_S = 0.1
#: The under-load measurement unless told otherwise: short, it only needs the peak.
UNDER_LOAD = MeasureSettings(warmup_s=0.3, windows=1, window_s=1.0, max_windows=1)
STAGES = ("before load", "after load", "under load")
#: Readings of the same process count that make a server quiet before the first sample.
QUIET_READINGS = 3
MIB = 2**20


@dataclass(frozen=True)
class MemorySample:
    """Memory at one stage: host bytes of the server's processes, GPU bytes per device."""

    stage: str
    cpu_bytes: float | None
    gpu_bytes: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (MB)."""
        return {
            "stage": self.stage,
            "cpu_mb": None if self.cpu_bytes is None else self.cpu_bytes / MB,
            "gpu_mb": {d: b / MB for d, b in self.gpu_bytes},
        }


@dataclass(frozen=True)
class Footprint:
    """What one model adds to the server's memory (``triton_perf.footprint``).

    ``cpu_memory_mb`` and ``gpu_memory_mb`` are deltas against the sample before the load:
    the higher of after-load and under-load (what a placement must reserve); None with the
    reason in ``unavailable`` where no source exists. ``gpu_memory_mb_by_device`` has one
    delta per GPU the server was given.
    """

    model: str
    loaded_as: str
    cpu_memory_mb: float | None
    gpu_memory_mb: float | None
    gpu_memory_mb_by_device: tuple[tuple[str, float], ...] = ()
    samples: tuple[MemorySample, ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()
    cpu_source: str = ""
    gpu_source: str = ""
    load_s: float | None = None  # how long the load took
    workload: str = ""  # the load the under-load stage ran
    notes: tuple[str, ...] = ()
    #: The under-load measurement (of the copy, reported under the model's name).
    result: PerfResult | None = field(default=None, compare=False, repr=False)

    def unavailable_reason(self, figure: str) -> str | None:
        """Why ``cpu_memory_mb`` or ``gpu_memory_mb`` has no value (None if it has one)."""
        return dict(self.unavailable).get(figure)

    def stage_delta_mb(self, stage: str, device: str | None = None) -> float | None:
        """Host (``device`` None) or one GPU's delta at ``stage`` against the first sample."""
        by_stage = {s.stage: s for s in self.samples}
        first, at = by_stage.get(STAGES[0]), by_stage.get(stage)
        if first is None or at is None:
            return None
        if device is None:
            if first.cpu_bytes is None or at.cpu_bytes is None:
                return None
            return (at.cpu_bytes - first.cpu_bytes) / MB
        a, b = dict(first.gpu_bytes).get(device), dict(at.gpu_bytes).get(device)
        return None if a is None or b is None else (b - a) / MB

    def placement(self, headroom: float = 0.0) -> dict[str, Any]:
        """The footprint as placement systems take it, ``headroom`` (0.2: +20%) added:

        - ``kubernetes``: a container's ``resources`` (``requests`` and ``limits`` of
          ``memory`` in Mi, ``nvidia.com/gpu: 1`` when the model uses GPU memory);
        - ``tms``: Triton Management Service's lease into a Triton pool, whose ``--quota``
          TMS's documentation suggests declaring as the GPU memory needed in GB
          (``gpu_memory_gb``), with the ``tmsctl lease create`` line.
        """
        factor = 1.0 + max(0.0, headroom)
        out: dict[str, Any] = {}
        memory = None
        if self.cpu_memory_mb is not None:
            memory = f"{max(1, math.ceil(self.cpu_memory_mb * MB * factor / MIB))}Mi"
        resources: dict[str, Any] = {}
        if memory is not None:
            resources = {"requests": {"memory": memory}, "limits": {"memory": memory}}
        gpu_gb = None
        if self.gpu_memory_mb is not None and self.gpu_memory_mb > 0:
            gpu_gb = max(1, math.ceil(self.gpu_memory_mb * factor / 1000))
            resources.setdefault("requests", {})["nvidia.com/gpu"] = 1
            resources.setdefault("limits", {})["nvidia.com/gpu"] = 1
        out["kubernetes"] = {"resources": resources}
        tms: dict[str, Any] = {"gpu_memory_gb": gpu_gb}
        if gpu_gb is not None:
            tms["lease"] = (
                f"tmsctl lease create -m name={self.model},uri=<model-uri> "
                f"--triton-pool <pool> --quota {gpu_gb}"
            )
        else:
            tms["note"] = "no GPU memory to declare: " + (
                self.unavailable_reason("gpu_memory_mb") or "the model used none"
            )
        out["tms"] = tms
        if headroom:
            out["headroom"] = headroom
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping, the placement snippet included."""
        return {
            "model": self.model,
            "loaded_as": self.loaded_as,
            "cpu_memory_mb": self.cpu_memory_mb,
            "gpu_memory_mb": self.gpu_memory_mb,
            "gpu_memory_mb_by_device": dict(self.gpu_memory_mb_by_device),
            "samples": [s.to_dict() for s in self.samples],
            "unavailable": dict(self.unavailable),
            "cpu_source": self.cpu_source,
            "gpu_source": self.gpu_source,
            "load_s": self.load_s,
            "workload": self.workload,
            "notes": list(self.notes),
            "placement": self.placement(),
        }

    def record(self) -> PerfResult | None:
        """The under-load measurement as the footprint's record: its memory figures are the
        model's deltas (so ``max_cpu_memory_mb`` and ``max_gpu_memory_mb`` bound them)."""
        if self.result is None:
            return None
        unavailable = {
            k: v for k, v in self.result.unavailable if k not in ("cpu_memory_mb", "gpu_memory_mb")
        }
        unavailable.update(dict(self.unavailable))
        return dataclasses.replace(
            self.result,
            cpu_memory_mb=self.cpu_memory_mb,
            gpu_memory_mb=self.gpu_memory_mb,
            gpu_memory_delta_mb=self.gpu_memory_mb,
            unavailable=tuple(sorted(unavailable.items())),
            footprint=True,
        )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def server_pid(server: Any) -> tuple[int | None, str]:
    """The server's process id on this machine, or None and why there is none: the local
    launcher's process; for a server reached at a loopback address (``--triton-url`` to a
    server started by hand, a container on the host network), the process that listens on
    its HTTP port, where this user may see it."""
    import psutil

    pid = getattr(server, "pid", None)
    if pid:
        return int(pid), ""
    host, port = parse_url(str(server.http_url), option="server address")
    if host not in LOOPBACK:
        return None, (
            f"the server runs on another host ({host}): host memory is read from the server "
            f"process and its descendants on this machine"
        )
    try:
        for conn in psutil.net_connections(kind="tcp"):
            listens = conn.status == psutil.CONN_LISTEN and conn.laddr
            if listens and conn.laddr.port == port and conn.pid:
                return int(conn.pid), ""
    except psutil.Error as e:
        return None, f"the processes listening on port {port} cannot be listed: {e}"
    return None, (
        f"no process of this user listens on port {port} (the server may belong to another "
        f"user, e.g. run in a container as root)"
    )


class _Sources:
    """Where memory is read: the server's process tree and NVML over its GPUs."""

    def __init__(self, server: Any) -> None:
        self.pid, why = server_pid(server)
        self.unavailable: dict[str, str] = {}
        self.cpu_kind = ""
        self.processes = 0
        if self.pid is None:
            self.unavailable["cpu_memory_mb"] = why
        devices = getattr(server, "gpu_devices", None)
        self.nvml: NvmlSource | None
        self.nvml, error = open_nvml(devices)
        if self.nvml is None:
            self.unavailable["gpu_memory_mb"] = f"no GPU memory source: NVML: {error}"

    def sample(self, stage: str) -> MemorySample:
        """One reading of every source."""
        cpu = None
        if self.pid is not None and "cpu_memory_mb" not in self.unavailable:
            import psutil

            try:
                cpu, self.processes, self.cpu_kind = process_tree_memory(self.pid)
            except psutil.NoSuchProcess:
                self.unavailable["cpu_memory_mb"] = f"the server process {self.pid} is gone"
            except psutil.Error as e:
                self.unavailable["cpu_memory_mb"] = f"server process {self.pid}: {e}"
        gpu: tuple[tuple[str, float], ...] = ()
        if self.nvml is not None:
            try:
                gpu = tuple(self.nvml.used_by_device().items())
            except Exception as e:
                self.unavailable["gpu_memory_mb"] = f"NVML: {e or type(e).__name__}"
                self.nvml.close()
                self.nvml = None
        return MemorySample(stage, cpu, gpu)

    def settled(self, stage: str) -> MemorySample:
        """The median of a few readings a moment apart."""
        samples = []
        for i in range(STAGE_SAMPLES):
            if i:
                time.sleep(STAGE_INTERVAL_S)
            samples.append(self.sample(stage))
        cpus = [s.cpu_bytes for s in samples if s.cpu_bytes is not None]
        devices = dict(samples[-1].gpu_bytes)
        gpu = tuple(
            (d, statistics.median(dict(s.gpu_bytes).get(d, 0.0) for s in samples)) for d in devices
        )
        return MemorySample(stage, statistics.median(cpus) if cpus else None, gpu)

    def wait_for_processes(self, count: int, timeout_s: float) -> bool:
        """Wait until the server's process tree is back to ``count`` processes (an unloaded
        model's backend stub has exited and returned its memory); False on timeout."""
        if self.pid is None or not count:
            return True
        import psutil

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _, now, _ = process_tree_memory(self.pid)
            except psutil.Error:
                return True
            if now <= count:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def wait_until_quiet(self, server: Any, timeout_s: float) -> bool:
        """Wait until no model is loading or unloading and the server's process tree holds
        still (the same processes for a few readings): a model unloaded a moment ago may
        still be returning its memory. False on timeout."""
        deadline = time.monotonic() + timeout_s
        busy_states = ("LOADING", "UNLOADING")
        while any(m.get("state") in busy_states for m in _index(server)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        if self.pid is None:
            return True
        import psutil

        seen: list[int] = []
        while time.monotonic() < deadline:
            try:
                _, count, _ = process_tree_memory(self.pid)
            except psutil.Error:
                return True
            seen.append(count)
            if len(seen) >= QUIET_READINGS and len(set(seen[-QUIET_READINGS:])) == 1:
                return True
            time.sleep(STAGE_INTERVAL_S)
        return False

    def close(self) -> None:
        """Release NVML."""
        if self.nvml is not None:
            self.nvml.close()
            self.nvml = None


def _index(server: Any) -> list[dict[str, Any]]:
    """The server's repository index ([] when it cannot be read: nothing to wait for)."""
    try:
        return list(server.repository_index())
    except Exception:
        return []


class _PeakSampler:
    """Reads memory in a thread while the model is under load; keeps each source's peak."""

    def __init__(self, sources: _Sources) -> None:
        self._sources = sources
        self._stop = threading.Event()
        self._cpu: float | None = None
        self._gpu: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="triton-perf-footprint", daemon=True)

    def _take(self) -> None:
        s = self._sources.sample(STAGES[2])
        if s.cpu_bytes is not None:
            self._cpu = s.cpu_bytes if self._cpu is None else max(self._cpu, s.cpu_bytes)
        for d, b in s.gpu_bytes:
            self._gpu[d] = max(self._gpu.get(d, b), b)

    def _run(self) -> None:
        while not self._stop.wait(UNDER_LOAD_INTERVAL_S):
            self._take()

    def __enter__(self) -> _PeakSampler:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._take()

    def peak(self) -> MemorySample:
        """The peaks, as the under-load sample."""
        return MemorySample(STAGES[2], self._cpu, tuple(sorted(self._gpu.items())))


class _Loader:
    """Loads the model (or its copy) alone and unloads it again."""

    def __init__(self, server: Any, model: str, model_repository: Any) -> None:
        self.server = server
        self.model = model
        self.variants = Variants(server)
        self.timeout_s = self.variants.timeout_s
        self.loaded = ""
        self.notes: list[str] = []
        self._repository = model_repository

    def load(self) -> str:
        """Load the model alone: itself when the server has not loaded it, else a fresh copy
        ``<model>__fp``; returns the name it is served under."""
        from tritonclient.utils import InferenceServerException

        copy = self.server.model_ready(self.model)
        name = footprint_name(self.model) if copy else self.model
        if copy:
            src = model_directory(
                self.server,
                self.model,
                self._repository,
                who=f"footprint of model '{self.model}'",
                then=", or set --triton-model-repository with --triton-url: the server already "
                "serves the model, so a fresh copy is loaded from its files",
            )
            config = parse_config(src / "config.pbtxt")
            # A copy left by an interrupted run would make the load a no-op.
            self.variants.unload([name])
            self.notes.append(
                f"the server already serves '{self.model}': a fresh copy was loaded as '{name}'"
            )
        self.loaded = name
        try:
            if copy:
                self.variants.load(src, name, config)
            else:
                self.variants.client().load_model(name)
        except InferenceServerException as e:
            self.server.check_alive()
            raise ModelNotReadyError(
                f"footprint of model '{self.model}': loading it as '{name}' failed: "
                f"{load_error(str(e.message() or e))}. The server must allow model control "
                f"(--model-control-mode=explicit)."
            ) from None
        except OSError as e:
            self.server.check_alive()
            raise TritonPerfError(
                f"footprint of model '{self.model}': loading failed: {e}"
            ) from None
        return name

    def unload(self) -> None:
        """Unload what :meth:`load` loaded and wait until it is gone (best effort)."""
        if self.loaded:
            with contextlib.suppress(Exception):
                self.variants.unload([self.loaded])
            self.loaded = ""
        self.variants.close()


def measure_footprint(
    server: Any,
    model: str,
    *,
    measure: Callable[..., PerfResult],
    model_repository: str | Path | None = None,
    settings: MeasureSettings = UNDER_LOAD,
    **load: Any,
) -> Footprint:
    """The memory footprint of ``model`` on ``server`` (module docstring).

    ``measure`` is the engine's ``measure`` (server bound by the caller's ``functools``
    or not: it is called as ``measure(server, name, settings=..., **load)``); ``load`` are
    its keywords for the under-load stage (``concurrency``, ``batch_size``, ``inputs``,
    ...). ``model_repository``: where the model's files are when the server already serves
    it and they are not in the server's own repositories (a remote server).
    """
    if not isinstance(model, str) or not model:
        raise ArgumentError(f"footprint: model must be a model name (a string), got {model!r}")
    for key in ("warmup_s", "windows", "window_s"):
        if key in load:
            raise ArgumentError(
                f"footprint of model '{model}': {key}= is not taken; the under-load stage is a "
                f"short measurement (settings=MeasureSettings(...) to change it)"
            )
    server.check_alive()
    sources = _Sources(server)
    loader = _Loader(server, model, model_repository)
    samples: list[MemorySample] = []
    processes = 0
    try:
        if not sources.wait_until_quiet(server, loader.timeout_s):
            loader.notes.append(
                f"the server was still loading or unloading models {loader.timeout_s:g} s "
                f"after the footprint began: the deltas may include that"
            )
        samples.append(sources.settled(STAGES[0]))
        processes = sources.processes
        t0 = time.perf_counter()
        name = loader.load()
        load_s = time.perf_counter() - t0
        time.sleep(SETTLE_S)
        samples.append(sources.settled(STAGES[1]))
        with _PeakSampler(sources) as peaks:
            result = measure(server, name, settings=settings, **load)
        samples.append(peaks.peak())
    finally:
        loader.unload()
        # The server as it was found: the model's backend processes gone (and their memory
        # returned), so that the next footprint's "before" is not this one's "after".
        if not sources.wait_for_processes(processes, loader.timeout_s):
            loader.notes.append(
                f"the server kept more processes than before the load for "
                f"{loader.timeout_s:g} s after the unload"
            )
        sources.close()
    result = result.renamed(model)
    return _footprint(model, name, samples, sources, load_s, result, loader.notes)


def _footprint(
    model: str,
    name: str,
    samples: Sequence[MemorySample],
    sources: _Sources,
    load_s: float,
    result: PerfResult,
    notes: Sequence[str],
) -> Footprint:
    """The deltas of the samples: the higher of after-load and under-load against before."""
    before = samples[0]
    cpu = None
    if "cpu_memory_mb" not in sources.unavailable and before.cpu_bytes is not None:
        later = [s.cpu_bytes for s in samples[1:] if s.cpu_bytes is not None]
        cpu = (max(later) - before.cpu_bytes) / MB if later else None
    by_device: list[tuple[str, float]] = []
    if "gpu_memory_mb" not in sources.unavailable:
        first = dict(before.gpu_bytes)
        for device, used in first.items():
            later_gpu = [dict(s.gpu_bytes).get(device) for s in samples[1:]]
            present = [v for v in later_gpu if v is not None]
            if present:
                by_device.append((device, (max(present) - used) / MB))
    gpu = sum(d for _, d in by_device) if by_device else None
    unavailable = dict(sources.unavailable)
    if gpu is None and "gpu_memory_mb" not in unavailable:
        unavailable["gpu_memory_mb"] = "NVML gave no reading"
    if cpu is None and "cpu_memory_mb" not in unavailable:
        unavailable["cpu_memory_mb"] = "no reading of the server's processes"
    what = sources.cpu_kind or "PSS"
    cpu_source = (
        f"{what} of the server process {sources.pid} and its descendants "
        f"({sources.processes} processes at the last reading)"
        if cpu is not None
        else ""
    )
    gpu_source = (
        f"NVML, used memory of GPU(s) {', '.join(d for d, _ in by_device)} (device-wide)"
        if gpu is not None
        else ""
    )
    return Footprint(
        model=model,
        loaded_as=name,
        cpu_memory_mb=cpu,
        gpu_memory_mb=gpu,
        gpu_memory_mb_by_device=tuple(by_device),
        samples=tuple(samples),
        unavailable=tuple(sorted(unavailable.items())),
        cpu_source=cpu_source,
        gpu_source=gpu_source,
        load_s=load_s,
        workload=result.workload.describe(),
        notes=tuple(notes),
        result=result,
    )


def placement_lines(doc: Mapping[str, Any]) -> list[str]:
    """A footprint's placement snippet (``Footprint.to_dict()["placement"]``) as YAML-like
    lines for the reports: the Kubernetes resources and the TMS lease."""
    place = doc.get("placement") or {}
    lines = []
    resources = (place.get("kubernetes") or {}).get("resources") or {}
    if resources:
        lines.append("resources:  # Kubernetes container")
        for kind in ("requests", "limits"):
            if resources.get(kind):
                lines.append(f"  {kind}:")
                lines += [f"    {k}: {v}" for k, v in resources[kind].items()]
    tms = place.get("tms") or {}
    if tms.get("lease"):
        lines.append(f"# TMS: {tms['lease']}")
    elif tms.get("note"):
        lines.append(f"# TMS: {tms['note']}")
    return lines


__all__ = ["Footprint", "MemorySample", "measure_footprint", "placement_lines"]
