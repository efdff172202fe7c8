"""What the server says about a measurement, from Triton's statistics extension: the
measured model's cumulative counters before and after (deltas -> server-side breakdown),
and the requests other models completed meanwhile (a server that was not idle)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_triton_perf.load.loop import in_thread
from pytest_triton_perf.load.model_info import fetch_stats, request_json
from pytest_triton_perf.measure.result import ServerBreakdown
from pytest_triton_perf.server.http import HttpStatusError

#: How long the final snapshot is re-read while the server has not counted every request.
SETTLE_S = 0.5

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


def other_traffic(
    before: Mapping[str, int], after: Mapping[str, int]
) -> tuple[tuple[str, int], ...]:
    """(model, requests completed) of every other model whose count grew, by name."""
    return tuple(
        (name, count - before[name])
        for name, count in sorted(after.items())
        if name in before and count > before[name]
    )


@dataclass
class StatsReader:
    """Reads the statistics of one model (and the other models' counts) during a
    measurement; a figure it cannot read leaves its reason in ``unavailable``.

    Blocking HTTP runs in the loop's executor. A connection failure asks ``check_alive``
    first, so a server that died raises ServerDiedError rather than a missing figure.
    """

    http_url: str
    model: str
    version: str | None
    check_alive: Callable[[], None]
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Why the server has no statistics at all (a KServe V2 server without Triton's
    #: statistics extension), None where it declares them: then nothing is asked of it.
    no_statistics: str | None = None

    def __post_init__(self) -> None:
        if self.no_statistics is not None:
            self.unavailable["server"] = (
                f"server statistics: unavailable ({self.no_statistics}): no queue or compute times"
            )
            self.unavailable["other_traffic"] = (
                f"other models' traffic: not seen ({self.no_statistics})"
            )

    def _read(self) -> StatsSnapshot:
        return StatsSnapshot.from_json(fetch_stats(self.http_url, self.model, self.version))

    async def snapshot(self) -> StatsSnapshot | None:
        """The model's counters now, or None (and the reason) when they cannot be read."""
        if self.no_statistics is not None:
            return None
        try:
            return await in_thread(self._read)
        except HttpStatusError as e:
            self.unavailable["server"] = f"Triton statistics: {e}"
        except OSError as e:
            await in_thread(self.check_alive)
            self.unavailable["server"] = f"Triton statistics: {e}"
        except (ValueError, KeyError, TypeError) as e:
            self.unavailable["server"] = f"Triton statistics unreadable: {e}"
        return None

    async def quiet(self) -> StatsSnapshot | None:
        """The starting snapshot, taken with nothing in flight: re-read until two reads 20 ms
        apart count the same requests (for at most :data:`SETTLE_S`). The warm-up's last
        responses may be published a moment after they left; counted after this snapshot,
        they would be counted in the measured span too."""
        deadline = time.monotonic() + SETTLE_S
        last = await self.snapshot()
        while last is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            now = await self.snapshot()
            if now is None or completed(now) == completed(last):
                return now
            last = now
        return last

    async def settled(self, start: StatsSnapshot, expected: int) -> StatsSnapshot | None:
        """The final snapshot, re-read briefly while the server has counted fewer than
        ``expected`` requests since ``start``.

        Triton may publish a request's statistics a moment after its response left, so the
        last few drained requests can be missing from a snapshot taken at once.
        """
        deadline = time.monotonic() + SETTLE_S
        while True:
            end = await self.snapshot()
            if end is None:
                return None
            counted = (end.success - start.success) + (end.fail - start.fail)
            if counted >= expected or time.monotonic() >= deadline:
                return end
            await asyncio.sleep(0.02)

    def _all_models(self) -> dict[str, StatsSnapshot]:
        if self.no_statistics is not None:
            return {}
        try:
            doc = request_json(self.http_url, "/v2/models/stats")
        except Exception:
            return {}
        grouped: dict[str, list[Any]] = {}
        for entry in doc.get("model_stats", []) if isinstance(doc, dict) else []:
            grouped.setdefault(str(entry.get("name", "")), []).append(entry)
        try:
            return {
                name: StatsSnapshot.from_json({"model_stats": entries})
                for name, entries in grouped.items()
            }
        except (ValueError, TypeError, AttributeError):
            return {}

    async def all_models(self) -> dict[str, StatsSnapshot]:
        """Cumulative counters of every model of the server (the measured one included),
        from one statistics call; {} when the server does not answer it."""
        return await in_thread(self._all_models)

    def _other_models(self) -> dict[str, int]:
        return {
            name: completed(snap) for name, snap in self._all_models().items() if name != self.model
        }

    async def other_models(self) -> dict[str, int]:
        """Completed requests (success + failure) of every OTHER model, from one statistics
        call; {} when the server does not answer it. A shared server (--triton-url) may
        serve other traffic while we measure: the deltas of these counts reveal it."""
        return await in_thread(self._other_models)


def completed(snapshot: StatsSnapshot) -> int:
    """Requests a model completed, successful or failed."""
    return snapshot.success + snapshot.fail
