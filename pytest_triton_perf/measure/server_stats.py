"""Server-side breakdown from Triton's statistics extension (cumulative counters -> deltas)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_triton_perf.measure.result import ServerBreakdown

_DURATIONS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class StatsSnapshot:
    """Cumulative counters of one model, summed over the versions reported."""

    success: int = 0
    fail: int = 0
    inference_count: int = 0
    execution_count: int = 0
    # name -> (count, ns) for queue / compute_input / compute_infer / compute_output
    durations: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # batch size -> executions (compute_infer count of that batch size)
    batches: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StatsSnapshot:
        """Parse ``GET /v2/models/<m>[/versions/<v>]/stats``.

        When no version was asked, Triton lists every loaded version; they are summed, which
        equals perf_analyzer's "the version whose counters moved" as the others do not move.
        Counts may arrive as strings (int64 through protobuf JSON): they are converted.
        """
        success = fail = inferences = executions = 0
        durations: dict[str, list[int]] = {d: [0, 0] for d in _DURATIONS}
        batches: dict[int, int] = {}
        for m in doc.get("model_stats", []):
            inferences += int(m.get("inference_count", 0))
            executions += int(m.get("execution_count", 0))
            st = m.get("inference_stats", {})
            success += int(st.get("success", {}).get("count", 0))
            fail += int(st.get("fail", {}).get("count", 0))
            for d in _DURATIONS:
                durations[d][0] += int(st.get(d, {}).get("count", 0))
                durations[d][1] += int(st.get(d, {}).get("ns", 0))
            for b in m.get("batch_stats", []) or []:
                size = int(b.get("batch_size", 0))
                batches[size] = batches.get(size, 0) + int(
                    b.get("compute_infer", {}).get("count", 0)
                )
        return cls(
            success=success,
            fail=fail,
            inference_count=inferences,
            execution_count=executions,
            durations={k: (v[0], v[1]) for k, v in durations.items()},
            batches=batches,
        )


def breakdown(start: StatsSnapshot, end: StatsSnapshot) -> ServerBreakdown:
    """Deltas between two snapshots; durations as average milliseconds per request."""

    def avg_ms(name: str) -> float:
        c0, n0 = start.durations.get(name, (0, 0))
        c1, n1 = end.durations.get(name, (0, 0))
        count = c1 - c0
        return (n1 - n0) / count / 1e6 if count > 0 else 0.0

    batches = tuple(
        (size, end.batches.get(size, 0) - start.batches.get(size, 0))
        for size in sorted(end.batches)
        if end.batches.get(size, 0) - start.batches.get(size, 0) > 0
    )
    return ServerBreakdown(
        requests=end.success - start.success,
        failures=end.fail - start.fail,
        inferences=end.inference_count - start.inference_count,
        executions=end.execution_count - start.execution_count,
        queue_ms=avg_ms("queue"),
        compute_input_ms=avg_ms("compute_input"),
        compute_infer_ms=avg_ms("compute_infer"),
        compute_output_ms=avg_ms("compute_output"),
        batch_executions=batches,
    )
