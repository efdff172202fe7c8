"""pytest-triton-perf: gate builds on the performance of models served by Triton."""

from __future__ import annotations

from pytest_triton_perf.errors import (
    InputSpecError,
    ModelNotReadyError,
    ServerDiedError,
    ServerStartError,
    TritonPerfError,
)
from pytest_triton_perf.measure.result import (
    LatencyStats,
    PerfResult,
    ServerBreakdown,
    WindowResult,
    Workload,
)

__version__ = "0.1.0"

__all__ = [
    "InputSpecError",
    "LatencyStats",
    "ModelNotReadyError",
    "PerfResult",
    "ServerBreakdown",
    "ServerDiedError",
    "ServerStartError",
    "TritonPerfError",
    "WindowResult",
    "Workload",
    "__version__",
]
