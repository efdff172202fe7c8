"""What the reports show of a streaming (decoupled) measurement: TTFT, inter-response latency
(pooled gaps, and GenAI-Perf's per-request mean), TPOT (vLLM's), end-to-end latency, time to
second response, responses per request, responses and tokens per second, and with per-request
SLOs their attainment and goodput. One place, so the terminal and the Markdown say the
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
    "TPOT p50 ms",
    "TPOT p99 ms",
    "E2E p50 ms",
    "E2E p99 ms",
    "2nd resp p50 ms",
    "responses/request",
    "responses/s",
    "tokens/s",
    "SLO attainment",
    "goodput req/s",
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
        fmt(_q(r, "tpot_ms", "p50")),
        fmt(_q(r, "tpot_ms", "p99")),
        fmt(_q(r, "e2e_ms", "p50")),
        fmt(_q(r, "e2e_ms", "p99")),
        fmt(_q(r, "second_response_ms", "p50")),
        fmt(r.get("responses_per_request"), 1),
        fmt(r.get("responses_per_s"), 1),
        fmt(r.get("output_tokens_per_s"), 1),
        _attainment(r),
        fmt(r.get("goodput"), 1),
    ]


def _attainment(result: Mapping[str, Any]) -> str:
    """``52.0% [45.1, 58.8]``: the SLO attainment and its 95% interval; ``-`` without SLOs."""
    slo = result.get("slo")
    share = num(result.get("slo_attainment"))
    if not isinstance(slo, Mapping) or share is None:
        return "-"
    interval = slo.get("interval")
    if isinstance(interval, Sequence) and len(interval) == 2:
        return f"{share:.1%} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    return f"{share:.1%}"


def stream_line(record: MeasurementRecord) -> str:
    """``TTFT p50 41.3 ms, p99 42.1 ms; ITL p50 10.0 ms, p99 18.1 ms (per-request mean
    10.07 ms); TPOT p50 10.1 ms, p99 10.4 ms; E2E p50 192 ms, p99 196 ms; 2nd response p50
    51.3 ms; 16.0 responses/request, 80.0 responses/s, 80.0 tokens/s``, then with SLOs
    ``; SLO attainment 52.0% [45.1, 58.8], goodput 10.4 requests/s``."""
    r = record.result
    tokens = num(r.get("output_tokens_per_s"))
    goodput = num(r.get("goodput"))
    return (
        f"TTFT p50 {fmt(_q(r, 'ttft_ms', 'p50'))} ms, p99 {fmt(_q(r, 'ttft_ms', 'p99'))} ms; "
        f"ITL p50 {fmt(_q(r, 'itl_ms', 'p50'))} ms, p99 {fmt(_q(r, 'itl_ms', 'p99'))} ms "
        f"(per-request mean {fmt(_q(r, 'itl_per_request_ms', 'avg'))} ms); "
        f"TPOT p50 {fmt(_q(r, 'tpot_ms', 'p50'))} ms, p99 {fmt(_q(r, 'tpot_ms', 'p99'))} ms; "
        f"E2E p50 {fmt(_q(r, 'e2e_ms', 'p50'))} ms, p99 {fmt(_q(r, 'e2e_ms', 'p99'))} ms; "
        f"2nd response p50 {fmt(_q(r, 'second_response_ms', 'p50'))} ms; "
        f"{fmt(r.get('responses_per_request'), 1)} responses/request, "
        f"{fmt(r.get('responses_per_s'), 1)} responses/s"
        + (f", {fmt(tokens, 1)} tokens/s{_counting(r)}" if tokens is not None else "")
        + (
            f"; SLO attainment {_attainment(r)}, goodput {fmt(goodput, 1)} requests/s"
            if goodput is not None
            else ""
        )
    )


def _counting(result: Mapping[str, Any]) -> str:
    """`` (tokenizer:tokenizer.json; 128.0 in, 16.0 out per request)``: how tokens were
    counted, where not by ``token_output`` (whose name the workload does not show)."""
    counting = result.get("token_counting")
    if not isinstance(counting, str) or not counting.startswith("tokenizer:"):
        return ""
    per = [
        f"{fmt(_q(result, key, 'avg'), 1)} {side}"
        for key, side in (("input_tokens_per_request", "in"), ("output_tokens_per_request", "out"))
        if _q(result, key, "avg") is not None
    ]
    return f" ({counting}" + (f"; {', '.join(per)} per request" if per else "") + ")"


def stream_lines(records: Sequence[MeasurementRecord], verbose: bool) -> list[str]:
    """A line per streaming measurement, for the terminal."""
    return [
        f"streaming: {f'{r.test} ' if verbose else ''}{r.label}: {stream_line(r)}"
        for r in records
        if streamed(r)
    ]
