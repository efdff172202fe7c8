"""The levels of one capacity search, measured in order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pytest_triton_perf.capacity.bounds import breaches
from pytest_triton_perf.capacity.result import CapacityStep
from pytest_triton_perf.measure.result import PerfResult

Level = Mapping[str, Any]
#: Upper bound on measured levels, whatever the arguments.
MAX_STEPS = 40


class Levels:
    """The levels a search has measured (and the ramp's buckets), in order, with its notes."""

    def __init__(
        self, measure: Callable[[Level], PerfResult], limits: Mapping[str, float], over: str
    ) -> None:
        self.measure = measure
        self.limits = limits
        self.over = over
        self.steps: list[CapacityStep] = []
        self.notes: list[str] = []

    def run(self, load: float, phase: str, axis: str | None = None) -> CapacityStep:
        """Measure one level and keep it."""
        axis = axis or self.over
        value: float = int(load) if axis == "concurrency" else load
        result = self.measure({axis: value})
        step = CapacityStep(float(value), phase, result, breaches(result, self.limits))
        self.steps.append(step)
        return step

    @property
    def full(self) -> int:
        """Levels measured at full length so far (the ramp's buckets are not)."""
        return sum(1 for s in self.steps if s.phase != "ramp")


def limiting_key(step: CapacityStep | None, limits: Mapping[str, float]) -> str:
    """The bound key a breaking step broke first (in the order of ``limits``)."""
    if step is None:
        return ""
    for key in limits:
        if any(b.startswith(f"{key} ") for b in step.breached):
            return key
    return ""
