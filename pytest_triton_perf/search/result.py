"""What a configuration search found: every candidate, ranked, and the best one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pytest_triton_perf.search.objective import relative_gain

if TYPE_CHECKING:
    from pytest_triton_perf.capacity import CapacityResult
    from pytest_triton_perf.measure.result import PerfResult

Status = Literal["finalist", "pruned", "infeasible", "failed"]


@dataclass(frozen=True)
class Candidate:
    """One configuration of the space, as measured.

    ``status``: ``finalist`` (measured at full length, the SLA holds), ``pruned`` (dropped
    at a short rung, dominated on the objective), ``infeasible`` (broke the SLA: at a short
    rung clearly, at full length at all), ``failed`` (did not load, or its measurement
    failed; ``note`` has Triton's message). ``rung``: the last rung it was measured at
    (-1: never measured). The figures are those of its last measurement; for a capacity
    search, those at the capacity's load.
    """

    name: str
    values: Mapping[str, Any]
    config_pbtxt: str
    config_diff: str
    committed: bool
    status: Status
    rank: int | None
    objective: float | None
    capacity: float | None
    p99_ms: float | None
    throughput: float | None
    gpu_memory_mb: float | None
    cpu_memory_mb: float | None
    sla_ok: bool
    note: str
    rung: int
    #: The predictive strategy's queueing model for this candidate: ``capacity``,
    #: ``load``, ``knee``, ``limited_by``, ``latency_ms``, ``error`` (measured / predicted
    #: - 1; None: not verified), ``held``, ``tolerance``, ``model``; None otherwise.
    prediction: Mapping[str, Any] | None = None
    result: PerfResult | None = field(default=None, compare=False, repr=False)
    capacity_result: CapacityResult | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """``instance_count=2, dynamic_batching=True``."""
        return ", ".join(f"{k}={v}" for k, v in self.values.items())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (one row of ``SearchResult.to_dict()["candidates"]``)."""
        return {
            "name": self.name,
            "rank": self.rank,
            "values": dict(self.values),
            "config_diff": self.config_diff,
            "objective": self.objective,
            "capacity": self.capacity,
            "p99_ms": self.p99_ms,
            "throughput": self.throughput,
            "gpu_memory_mb": self.gpu_memory_mb,
            "cpu_memory_mb": self.cpu_memory_mb,
            "sla_ok": self.sla_ok,
            "status": self.status,
            "note": self.note,
            "rung": self.rung,
            "committed": self.committed,
            "prediction": dict(self.prediction) if self.prediction is not None else None,
        }


@dataclass(frozen=True)
class SearchResult:
    """A configuration search: ``candidates`` ranked (best first, failed last), ``best``
    (None when no candidate held the SLA at full length), the time spent, how many
    candidates short measurements or predictions pruned (``pruned``), how many
    combinations of the space could not be valid configurations (``skipped``), a tie of
    the best two said out loud (``tie``) and what the search cost (``cost``)."""

    model: str
    objective: str
    strategy: str
    space: Mapping[str, tuple[Any, ...]]
    sla: Mapping[str, float]
    candidates: tuple[Candidate, ...]
    duration_s: float
    pruned: int
    skipped: int = 0
    max_config_gap: float | None = None
    notes: tuple[str, ...] = ()
    #: When the best two were within the measurement's noise: which, and how they were
    #: ranked (``strategy.tie_break``); None otherwise.
    tie: str | None = None
    #: What the search cost: ``wall_s``, ``server_s``, ``gpu_s`` (None without a GPU),
    #: ``gpus``, ``levels`` measured, ``measured_s`` under load, ``loads``, ``load_s``.
    cost: Mapping[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Candidate | None:
        """The best candidate measured at full length within the SLA."""
        first = self.candidates[0] if self.candidates else None
        return first if first is not None and first.status == "finalist" else None

    @property
    def committed(self) -> Candidate | None:
        """The candidate with the committed configuration."""
        return next((c for c in self.candidates if c.committed), None)

    @property
    def gap(self) -> float | None:
        """How much better the best candidate is than the committed one on the objective,
        relative to the committed one (0.15: 15% better; 0 when the committed one is the
        best); None when either has no value."""
        best, committed = self.best, self.committed
        if best is None or committed is None:
            return None
        if best is committed:
            return 0.0
        return relative_gain(self.objective, best.objective, committed.objective)

    @property
    def drifted(self) -> bool:
        """Whether the best configuration beats the committed one by more than
        ``max_config_gap`` (False when no gap is set or none could be computed)."""
        gap = self.gap
        return self.max_config_gap is not None and gap is not None and gap > self.max_config_gap

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (what reports get under ``record.analysis["search"]``)."""
        best, committed = self.best, self.committed
        return {
            "kind": "search",
            "model": self.model,
            "objective": self.objective,
            "strategy": self.strategy,
            "space": {k: list(v) for k, v in self.space.items()},
            "sla": dict(self.sla),
            "duration_s": self.duration_s,
            "pruned": self.pruned,
            "best": best.name if best else None,
            "best_config_pbtxt": best.config_pbtxt if best else None,
            "committed": committed.name if committed else None,
            "gap": self.gap,
            "max_config_gap": self.max_config_gap,
            "tie": self.tie,
            "cost": dict(self.cost),
            "notes": list(self.notes),
            "candidates": [c.to_dict() for c in self.candidates],
        }
