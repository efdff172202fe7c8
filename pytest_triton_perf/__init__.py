"""pytest-triton-perf: gate builds on the performance of models served by Triton."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pytest_triton_perf.capacity import CapacityResult, CapacityStep, find_capacity
from pytest_triton_perf.errors import (
    ArgumentError,
    ConfigError,
    InputSpecError,
    MeasurementError,
    ModelNotReadyError,
    ServerDiedError,
    ServerStartError,
    TritonPerfError,
)
from pytest_triton_perf.fixtures import TritonPerf
from pytest_triton_perf.footprint import Footprint
from pytest_triton_perf.measure.result import (
    Interference,
    LatencyStats,
    PerfResult,
    ServerBreakdown,
    WindowResult,
    Workload,
)

try:
    __version__ = version("pytest-triton-perf")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ArgumentError",
    "CapacityResult",
    "CapacityStep",
    "ConfigError",
    "Footprint",
    "InputSpecError",
    "Interference",
    "LatencyStats",
    "MeasurementError",
    "ModelNotReadyError",
    "PerfResult",
    "ServerBreakdown",
    "ServerDiedError",
    "ServerStartError",
    "TritonPerf",
    "TritonPerfError",
    "WindowResult",
    "Workload",
    "__version__",
    "find_capacity",
]
