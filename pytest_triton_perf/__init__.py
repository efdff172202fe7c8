"""pytest-triton-perf: gate builds on the performance of models served by Triton.

Everything a user names is importable from here: the fixture's class (to type
``triton_perf``), the results its calls return and the exceptions they raise. The
submodules are internal and may change in any 0.x release; the documentation's "Public API
and stability" (``docs/measuring.md``) says what is stable.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.capacity import CapacityResult, CapacityStep, find_capacity
from pytest_triton_perf.errors import (
    ArgumentError,
    BaselineError,
    CliError,
    ConfigError,
    InputSpecError,
    MeasurementError,
    ModelNotReadyError,
    PlotError,
    ReportError,
    ResultsFileError,
    ServerDiedError,
    ServerStartError,
    StaleServerError,
    SuiteError,
    TritonPerfError,
)
from pytest_triton_perf.footprint import Footprint, MemorySample

# Not `measure`: that name is the subpackage, and `import pytest_triton_perf.measure.engine as
# engine` fails once the package's attribute is a function.
from pytest_triton_perf.measure.engine import measure as measure_model
from pytest_triton_perf.measure.figures import (
    LatencyStats,
    SloFigures,
    StreamFigures,
    StreamWindow,
)
from pytest_triton_perf.measure.result import (
    Interference,
    PerfResult,
    Pipeline,
    PipelineStep,
    ServerBreakdown,
    WindowResult,
    Workload,
)
from pytest_triton_perf.search.result import Candidate, SearchResult
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.remote import RemoteTritonServer

if TYPE_CHECKING:
    # Imported on first use (see __getattr__). The fixtures import pytest, and the modules
    # below the package root stay importable without it (the CLI, scripts); the local and
    # container launchers bring grpc and psutil, which a reader of stored results never needs.
    from pytest_triton_perf.fixtures import TritonPerf
    from pytest_triton_perf.server.container import ContainerTritonServer
    from pytest_triton_perf.server.local import LocalTritonServer

try:
    __version__ = version("pytest-triton-perf")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


#: Names imported on first access, and their modules.
_LAZY = {
    "ContainerTritonServer": "pytest_triton_perf.server.container",
    "LocalTritonServer": "pytest_triton_perf.server.local",
    "TritonPerf": "pytest_triton_perf.fixtures",
}


def __getattr__(name: str) -> Any:
    """The names of ``_LAZY``, imported on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ArgumentError",
    "BaselineError",
    "Candidate",
    "CapacityResult",
    "CapacityStep",
    "CliError",
    "ConfigError",
    "ContainerTritonServer",
    "Footprint",
    "InputSpecError",
    "Interference",
    "LatencyStats",
    "LocalTritonServer",
    "MeasurementError",
    "MemorySample",
    "ModelNotReadyError",
    "PerfResult",
    "Pipeline",
    "PipelineStep",
    "PlotError",
    "RemoteTritonServer",
    "ReportError",
    "ResultsFileError",
    "SearchResult",
    "ServerBreakdown",
    "ServerDiedError",
    "ServerStartError",
    "SloFigures",
    "StaleServerError",
    "StreamFigures",
    "StreamWindow",
    "SuiteError",
    "TritonPerf",
    "TritonPerfError",
    "TritonServer",
    "WindowResult",
    "Workload",
    "__version__",
    "find_capacity",
    "measure_model",
]
