"""Statistics snapshots and their deltas (pure), and reading them from the real server."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_triton_perf.load.loop import run_coroutine
from pytest_triton_perf.measure.server_stats import (
    StatsReader,
    StatsSnapshot,
    breakdown,
    other_traffic,
)
from pytest_triton_perf.server.local import LocalTritonServer


def stats_doc(
    success: int,
    fail: int = 0,
    *,
    inference_count: int | None = None,
    execution_count: int | None = None,
    queue_ns: int = 0,
    infer_ns: int = 0,
    batches: dict[int, int] | None = None,
    as_strings: bool = False,
    version: str = "1",
) -> dict[str, Any]:
    """A ``/stats`` document as Triton serves it."""

    def v(x: int) -> Any:
        return str(x) if as_strings else x

    def stat(count: int, ns: int) -> dict[str, Any]:
        return {"count": v(count), "ns": v(ns)}

    return {
        "model_stats": [
            {
                "name": "m",
                "version": version,
                "inference_count": v(inference_count if inference_count is not None else success),
                "execution_count": v(execution_count if execution_count is not None else success),
                "inference_stats": {
                    "success": stat(success, 0),
                    "fail": stat(fail, 0),
                    "queue": stat(success, queue_ns),
                    "compute_input": stat(success, 0),
                    "compute_infer": stat(success, infer_ns),
                    "compute_output": stat(success, 0),
                },
                "batch_stats": [
                    {"batch_size": v(b), "compute_infer": stat(n, 0)}
                    for b, n in (batches or {}).items()
                ],
            }
        ]
    }


@pytest.mark.parametrize("as_strings", [False, True])
def test_breakdown_is_the_delta_of_cumulative_counters(as_strings: bool) -> None:
    s0 = StatsSnapshot.from_json(
        stats_doc(
            100, 1, queue_ns=1_000_000, infer_ns=5_000_000, batches={1: 100}, as_strings=as_strings
        )
    )
    s1 = StatsSnapshot.from_json(
        stats_doc(
            300,
            3,
            inference_count=700,
            execution_count=200,
            queue_ns=1_000_000 + 200 * 500_000,
            infer_ns=5_000_000 + 200 * 2_000_000,
            batches={1: 150, 4: 50, 8: 0},
            as_strings=as_strings,
        )
    )
    b = breakdown(s0, s1)
    assert (b.requests, b.failures) == (200, 2)
    assert (b.inferences, b.executions) == (600, 100)
    assert b.queue_ms == pytest.approx(0.5)
    assert b.compute_infer_ms == pytest.approx(2.0)
    assert b.compute_input_ms == 0.0
    assert b.batch_executions == ((1, 50), (4, 50))


def test_versions_are_summed_when_no_version_was_asked() -> None:
    doc = stats_doc(10)
    doc["model_stats"] += stats_doc(5, version="2")["model_stats"]
    assert StatsSnapshot.from_json(doc).success == 15


def test_no_requests_means_zero_averages_not_division_errors() -> None:
    s = StatsSnapshot.from_json(stats_doc(10, queue_ns=100))
    b = breakdown(s, s)
    assert b.requests == 0 and b.queue_ms == 0.0 and b.batch_executions == ()


def test_other_traffic_is_the_growth_of_models_seen_before_and_after() -> None:
    before = {"a": 1, "b": 5, "idle": 2}
    after = {"b": 9, "a": 4, "idle": 2, "loaded_meanwhile": 7}
    assert other_traffic(before, after) == (("a", 3), ("b", 4))


def test_reader_reads_the_model_and_counts_every_other_model(server: LocalTritonServer) -> None:
    reader = StatsReader(server.http_url, "simple", None, server.check_alive)
    snapshot = run_coroutine(reader.snapshot)
    others = run_coroutine(reader.other_models)
    assert isinstance(snapshot, StatsSnapshot) and snapshot.success >= 0
    assert "simple" not in others and "sleepy" in others
    assert reader.unavailable == {}


def test_reader_says_why_statistics_are_missing(server: LocalTritonServer) -> None:
    reader = StatsReader(server.http_url, "no_such_model", None, server.check_alive)
    assert run_coroutine(reader.snapshot) is None
    assert reader.unavailable["server"].startswith("Triton statistics: HTTP 400")
