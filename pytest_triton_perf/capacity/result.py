"""What a capacity search found: each level measured (:class:`CapacityStep`) and the
answer (:class:`CapacityResult`), with its table and JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.capacity.bounds import ATTAINMENT_KEY, SEARCH_KEYS, attainment_text
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.numbers import fmt

#: The phases of levels measured at full length (a ramp's buckets are not levels).
FULL_PHASES = ("grow", "bisect", "confirm", "descend")


@dataclass(frozen=True)
class CapacityStep:
    """One measured load level of a capacity search."""

    load: float
    #: "probe" (a rate search: the closed-loop throughput it starts from), "grow", "bisect";
    #: a rate ramp's "ramp" (one bucket: the offered rate, the figures of the requests
    #: scheduled in it), then "confirm" (the steady level below its knee) and "descend".
    phase: str
    result: PerfResult
    breached: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Whether every limiting bound held at this level."""
        return not self.breached

    @property
    def throughput(self) -> float:
        """Inferences per second measured at this level."""
        return self.result.throughput

    def to_dict(self) -> dict[str, Any]:
        """One row of the step table."""
        figures = self.result.summary()
        return {
            "load": self.load,
            "phase": self.phase,
            "throughput": self.throughput,
            **{k: figures[k] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms")},
            "error_rate": self.result.error_rate,
            "passed": self.passed,
            "breached": list(self.breached),
            **self._slo(),
        }

    def _slo(self) -> dict[str, Any]:
        """The level's SLO attainment, its 95% interval and goodput (with ``slo=`` only)."""
        r = self.result
        if r.slo is None:
            return {}
        ci = r.slo_attainment_interval
        return {
            "slo_attainment": r.slo_attainment,
            "slo_attainment_interval": list(ci) if ci else None,
            "goodput": r.goodput,
        }


@dataclass(frozen=True)
class CapacityResult:
    """What :func:`find_capacity` found. ``capacity`` is None when even the first level broke
    a bound (``limited_by`` then names it)."""

    model: str
    over: str
    bounds: dict[str, float]
    capacity: float | None
    load: float | None
    steps: tuple[CapacityStep, ...]
    limited_by: str  # a bound key, "plateau" (throughput stopped growing) or "limit"
    knee: float | None
    result: PerfResult | None
    next_load: float | None
    duration_s: float
    notes: tuple[str, ...] = field(default=())

    @property
    def unit(self) -> str:
        """The load axis' unit word: ``concurrency`` or ``requests/s``."""
        return "concurrency" if self.over == "concurrency" else "requests/s"

    def describe(self) -> str:
        """One line: ``capacity 98.2 infer/s at concurrency 4 (limited by p99_ms <= 30)``."""
        if self.capacity is None:
            measured = [s for s in self.steps if s.phase in FULL_PHASES] or self.steps
            first = measured[0] if measured else None
            why = ", ".join(first.breached) if first else "nothing measured"
            return (
                f"no capacity within the bounds: the first level ({self.over} "
                f"{load_text(first.load if first else 0, self.over)}) already breaks {why}"
            )
        if self.limited_by in self.bounds:
            op = "<=" if sla.BOUNDS[self.limited_by].upper else ">="
            why = f"limited by {self.limited_by} {op} {fmt(self.bounds[self.limited_by])}"
        elif self.limited_by == "plateau":
            why = "throughput stopped growing"
        else:
            why = f"the search's limit {load_text(self.load or 0, self.over)} was reached"
        knee = f"; knee at {load_text(self.knee, self.over)}" if self.knee is not None else ""
        assert self.load is not None
        good = ""
        if self.result is not None and self.result.slo is not None:
            good = (
                f", SLO attainment {fmt(self.result.slo_attainment)} "
                f"({attainment_text(self.result)}), goodput {fmt(self.result.goodput)} "
                f"requests/s"
            )
        buckets = len(self.steps) - len(self.levels)
        ramp = f" after a ramp of {buckets} buckets" if buckets else ""
        return (
            f"capacity {fmt(self.capacity)} infer/s at {self.over} "
            f"{load_text(self.load, self.over)}{good} ({why}{knee}; {len(self.levels)} "
            f"level{'s' if len(self.levels) != 1 else ''}{ramp} in {self.duration_s:.1f} s)"
        )

    @property
    def levels(self) -> tuple[CapacityStep, ...]:
        """The steps measured at full length: all but a rate ramp's buckets."""
        return tuple(s for s in self.steps if s.phase != "ramp")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (what reports get under ``record.analysis["capacity"]``)."""
        return {
            "kind": "capacity",
            "model": self.model,
            "over": self.over,
            "bounds": dict(self.bounds),
            "capacity": self.capacity,
            "load": self.load,
            "limited_by": self.limited_by,
            "knee": self.knee,
            "next_load": self.next_load,
            "duration_s": self.duration_s,
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
        }

    def step_table(self) -> str:
        """The steps as a plain text table."""
        keys = [k for k in SEARCH_KEYS if k in self.bounds]
        head = f"{self.over:>14} {'phase':>7} {'infer/s':>9} " + " ".join(f"{k:>9}" for k in keys)
        if ATTAINMENT_KEY in self.bounds:
            head = head.replace(f"{ATTAINMENT_KEY:>9}", f"{'attained':>9}")
        lines = [head]
        for s in self.steps:
            figures = s.result.summary()
            cells = " ".join(f"{fmt(figures[metrics.BY_SLA_KEY[k].name]):>9}" for k in keys)
            verdict = "ok" if s.passed else "breaks " + ", ".join(s.breached)
            lines.append(
                f"{load_text(s.load, self.over):>14} {s.phase:>7} {fmt(s.throughput):>9} "
                f"{cells}  {verdict}"
            )
        return "\n".join(lines)


def load_text(load: float, over: str) -> str:
    """A load as the table shows it: ``4`` (concurrency) or ``120/s`` (a rate)."""
    return str(int(load)) if over == "concurrency" else f"{load:g}/s"
