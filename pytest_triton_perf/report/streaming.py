"""What the reports show of a streaming (decoupled) measurement: TTFT, inter-response latency
(pooled gaps, and GenAI-Perf's per-request mean), time to second response, responses per
request, responses and tokens per second. One place, so the terminal and the Markdown say the
same."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_triton_perf.report.text import fmt, model_name, num, workload_text
from pytest_triton_perf.verdicts import MeasurementRecord

HEADER = [
    "test",
    "model",
    "workload",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "ITL p50 ms",
    "ITL p99 ms",
    "ITL/request avg ms",
    "2nd resp p50 ms",
    "responses/request",
    "responses/s",
    "tokens/s",
]


def streamed(record: MeasurementRecord) -> bool:
    """Whether the record is of a streaming model."""
    return bool(record.result.get("streaming"))


def _q(result: Mapping[str, Any], figure: str, q: str) -> float | None:
    stats = result.get(figure)
    return num(stats.get(q)) if isinstance(stats, Mapping) else None


def stream_row(record: MeasurementRecord) -> list[str]:
    """One table row (:data:`HEADER`)."""
    r = record.result
    return [
        record.test,
        model_name(record),
        workload_text(record),
        fmt(_q(r, "ttft_ms", "p50")),
        fmt(_q(r, "ttft_ms", "p99")),
        fmt(_q(r, "itl_ms", "p50")),
        fmt(_q(r, "itl_ms", "p99")),
        fmt(_q(r, "itl_per_request_ms", "avg")),
        fmt(_q(r, "second_response_ms", "p50")),
        fmt(r.get("responses_per_request"), 1),
        fmt(r.get("responses_per_s"), 1),
        fmt(r.get("output_tokens_per_s"), 1),
    ]


def stream_line(record: MeasurementRecord) -> str:
    """``TTFT p50 41.3 ms, p99 42.1 ms; ITL p50 10.0 ms, p99 18.1 ms (per-request mean
    10.07 ms); 2nd response p50 51.3 ms; 16.0 responses/request, 80.0 responses/s, 80.0
    tokens/s``."""
    r = record.result
    tokens = num(r.get("output_tokens_per_s"))
    return (
        f"TTFT p50 {fmt(_q(r, 'ttft_ms', 'p50'))} ms, p99 {fmt(_q(r, 'ttft_ms', 'p99'))} ms; "
        f"ITL p50 {fmt(_q(r, 'itl_ms', 'p50'))} ms, p99 {fmt(_q(r, 'itl_ms', 'p99'))} ms "
        f"(per-request mean {fmt(_q(r, 'itl_per_request_ms', 'avg'))} ms); "
        f"2nd response p50 {fmt(_q(r, 'second_response_ms', 'p50'))} ms; "
        f"{fmt(r.get('responses_per_request'), 1)} responses/request, "
        f"{fmt(r.get('responses_per_s'), 1)} responses/s"
        + (f", {fmt(tokens, 1)} tokens/s" if tokens is not None else "")
    )


def stream_lines(records: Sequence[MeasurementRecord], verbose: bool) -> list[str]:
    """A line per streaming measurement, for the terminal."""
    return [
        f"streaming: {f'{r.test} ' if verbose else ''}{r.label}: {stream_line(r)}"
        for r in records
        if streamed(r)
    ]
