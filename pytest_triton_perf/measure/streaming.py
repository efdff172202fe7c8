"""Per-response figures of streaming (decoupled) measurements, from the raw response records.

The rules of the other figures hold: a request belongs to the window in which it completed
(its final response), and so do all its responses; only successful requests count (a failed
request's TTFT is not a TTFT of the model), as throughput counts only them; percentiles by
nearest rank over pooled values. TTFT and the time to the second response count from the
request's start (its send in a closed loop, its scheduled time in an open loop), like latency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.responses import ResponseRecords
from pytest_triton_perf.measure.result import (
    LatencyStats,
    StreamFigures,
    StreamWindow,
    WindowResult,
)
from pytest_triton_perf.measure.windows import assign_windows


def _ms(values_ns: np.ndarray) -> np.ndarray:
    return values_ns.astype(np.float64) / 1e6


def _tokens(r: ResponseRecords) -> int | None:
    """Tokens of the requests, None when they were not counted."""
    if len(r) and (r.tokens < 0).any():
        return None
    return int(r.tokens.sum())


def _successful(records: Records) -> ResponseRecords:
    assert records.responses is not None
    return records.responses.select(records.ok)


def figures(
    records: Records,
    boundaries_ns: Sequence[int],
    duration_s: float,
    token_output: str | None,
) -> StreamFigures | None:
    """Pooled figures over ``[boundaries[0], boundaries[-1])``; None for records without
    responses (a request/response model)."""
    if records.responses is None:
        return None
    r = _successful(records.between(boundaries_ns[0], boundaries_ns[-1]))
    many = r.count >= 2
    return _summary(
        ttft=_ms(r.first_ns[r.count >= 1]),
        gaps=_ms(r.gaps_ns),
        per_request=_ms(r.last_ns[many] - r.first_ns[many]) / (r.count[many] - 1),
        second=_ms(r.second_ns[many]),
        responses=int(r.count.sum()),
        requests=len(r),
        tokens=_tokens(r) if token_output is not None else None,
        duration_s=duration_s,
        token_output=token_output,
    )


def _summary(
    *,
    ttft: np.ndarray,
    gaps: np.ndarray,
    per_request: np.ndarray,
    second: np.ndarray,
    responses: int,
    requests: int,
    tokens: int | None,
    duration_s: float,
    token_output: str | None,
) -> StreamFigures:
    """The figures of raw values (ms) and counts over ``duration_s`` seconds."""
    return StreamFigures(
        ttft_ms=LatencyStats.from_samples(ttft),
        itl_ms=LatencyStats.from_samples(gaps),
        itl_per_request_ms=LatencyStats.from_samples(per_request),
        second_response_ms=LatencyStats.from_samples(second),
        responses=responses,
        responses_per_request=responses / requests if requests else None,
        responses_per_s=responses / duration_s if duration_s > 0 else 0.0,
        output_tokens=tokens,
        output_tokens_per_s=(
            tokens / duration_s if tokens is not None and duration_s > 0 else None
        ),
        token_output=token_output,
        requests=requests,
        ttft_samples_ms=ttft,
        itl_samples_ms=gaps,
        itl_request_samples_ms=per_request,
        second_samples_ms=second,
    )


def with_windows(
    windows: Sequence[WindowResult],
    records: Records,
    boundaries_ns: Sequence[int],
    token_output: str | None,
) -> tuple[WindowResult, ...]:
    """``windows`` with each one's per-response figures (unchanged without responses)."""
    if records.responses is None:
        return tuple(windows)
    idx = assign_windows(records.end_ns, boundaries_ns)
    out = []
    for w in windows:
        mask = (idx == w.index) & records.ok
        r = records.responses.select(mask)
        responses = int(r.count.sum())
        tokens = _tokens(r) if token_output is not None else None
        d = w.duration_s
        stream = StreamWindow(
            ttft_ms=LatencyStats.from_samples(_ms(r.first_ns[r.count >= 1])),
            itl_ms=LatencyStats.from_samples(_ms(r.gaps_ns)),
            responses=responses,
            responses_per_s=responses / d if d > 0 else 0.0,
            output_tokens_per_s=tokens / d if tokens is not None and d > 0 else None,
        )
        out.append(dataclasses.replace(w, stream=stream))
    return tuple(out)


def merge(parts: Sequence[StreamFigures | None], duration_s: float) -> StreamFigures | None:
    """One arm's figures from its blocks' (A/B mode): raw values pooled, counts summed, rates
    over the blocks' summed windows. None unless every block streamed."""
    present = [p for p in parts if p is not None]
    if not present or len(present) != len(parts):
        return None

    def pooled(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in present])

    counted = [p.output_tokens for p in present]
    return _summary(
        ttft=pooled("ttft_samples_ms"),
        gaps=pooled("itl_samples_ms"),
        per_request=pooled("itl_request_samples_ms"),
        second=pooled("second_samples_ms"),
        responses=sum(p.responses for p in present),
        requests=sum(p.requests for p in present),
        tokens=None if any(t is None for t in counted) else sum(t or 0 for t in counted),
        duration_s=duration_s,
        token_output=present[0].token_output,
    )
