"""Per-response figures of streaming (decoupled) measurements, from the raw response records.

The rules of the other figures hold: a request belongs to the window in which it completed
(its final response), and so do all its responses; only successful requests count (a failed
request's TTFT is not a TTFT of the model), as throughput counts only them; percentiles by
nearest rank over pooled values. TTFT and the time to the second response count from the
request's start (its send in a closed loop, its scheduled time in an open loop), like latency.

Per request, as vLLM's benchmark computes them: end-to-end latency is the time to the last
response; TPOT is (end-to-end - TTFT) / (output tokens - 1), over requests with two or more
output tokens (tokens: the elements of ``token_output`` when it is given, else responses).
With ``slo`` (SLO key -> bound in ms) each completed request meets the SLOs or not
(:class:`~pytest_triton_perf.measure.figures.SloFigures`); failed requests count, as
missing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.responses import ResponseRecords
from pytest_triton_perf.measure.figures import LatencyStats, SloFigures, StreamFigures, StreamWindow
from pytest_triton_perf.measure.result import WindowResult
from pytest_triton_perf.measure.windows import assign_windows


def _ms(values_ns: np.ndarray) -> np.ndarray:
    return values_ns.astype(np.float64) / 1e6


def _tokens(r: ResponseRecords) -> int | None:
    """Tokens of the requests, None when they were not counted."""
    if len(r) and (r.tokens < 0).any():
        return None
    return int(r.tokens.sum())


#: Per-request figures (ms), NaN where a request has none.
PerRequest = dict[str, np.ndarray]


def per_request(r: ResponseRecords) -> PerRequest:
    """Each request's TTFT, TPOT and end-to-end latency (ms; NaN: none), and its output
    tokens (the counted tokens where they were counted, else its responses)."""
    answered = r.count >= 1
    out_tokens = np.where(r.tokens >= 0, r.tokens, r.count)
    many = answered & (out_tokens >= 2)
    ttft = np.where(answered, _ms(r.first_ns), np.nan)
    e2e = np.where(answered, _ms(r.last_ns), np.nan)
    tpot = np.full(len(r), np.nan)
    tpot[many] = (e2e[many] - ttft[many]) / (out_tokens[many] - 1)
    return {"ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e, "tokens": out_tokens}


def slo_met(r: ResponseRecords, ok: np.ndarray, slo: Mapping[str, float]) -> dict[str, np.ndarray]:
    """For each SLO, which requests met it: succeeded, answered, and within the bound (a
    request of fewer than two output tokens meets a TPOT bound: it has no time per token)."""
    figs = per_request(r)
    answered = ok & (r.count >= 1)
    met = {}
    for key, bound in slo.items():
        v = figs[key]
        within = v <= bound
        if key == "tpot_ms":
            within |= figs["tokens"] < 2
        met[key] = answered & within
    return met


def slo_figures(
    r: ResponseRecords, ok: np.ndarray, slo: Mapping[str, float] | None, duration_s: float
) -> SloFigures | None:
    """The SLO figures of the requests ``r`` (every completed request, failed ones
    included; ``ok``: which succeeded) over ``duration_s`` seconds."""
    if not slo:
        return None
    met = slo_met(r, ok, slo)
    every = np.logical_and.reduce(list(met.values()))
    return SloFigures(
        slo=tuple((k, float(v)) for k, v in slo.items()),
        requests=len(r),
        met=int(every.sum()),
        missed=tuple((k, int((~m).sum())) for k, m in met.items()),
        duration_s=duration_s,
    )


def figures(
    records: Records,
    boundaries_ns: Sequence[int],
    duration_s: float,
    token_output: str | None,
    slo: Mapping[str, float] | None = None,
) -> StreamFigures | None:
    """Pooled figures over ``[boundaries[0], boundaries[-1])``; None for records without
    responses (a request/response model)."""
    if records.responses is None:
        return None
    span = records.between(boundaries_ns[0], boundaries_ns[-1])
    r_all = span.responses
    assert r_all is not None
    r = r_all.select(span.ok)
    many = r.count >= 2
    figs = per_request(r)
    return _summary(
        ttft=_ms(r.first_ns[r.count >= 1]),
        gaps=_ms(r.gaps_ns),
        per_request=_ms(r.last_ns[many] - r.first_ns[many]) / (r.count[many] - 1),
        second=_ms(r.second_ns[many]),
        tpot=_present(figs["tpot_ms"]),
        e2e=_present(figs["e2e_ms"]),
        responses=int(r.count.sum()),
        requests=len(r),
        tokens=_tokens(r) if token_output is not None else None,
        duration_s=duration_s,
        token_output=token_output,
        slo=slo_figures(r_all, span.ok, slo, duration_s),
    )


def _present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def _summary(
    *,
    ttft: np.ndarray,
    gaps: np.ndarray,
    per_request: np.ndarray,
    second: np.ndarray,
    tpot: np.ndarray,
    e2e: np.ndarray,
    responses: int,
    requests: int,
    tokens: int | None,
    duration_s: float,
    token_output: str | None,
    slo: SloFigures | None,
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
        tpot_ms=LatencyStats.from_samples(tpot),
        e2e_ms=LatencyStats.from_samples(e2e),
        slo=slo,
        ttft_samples_ms=ttft,
        itl_samples_ms=gaps,
        itl_request_samples_ms=per_request,
        second_samples_ms=second,
        tpot_samples_ms=tpot,
        e2e_samples_ms=e2e,
    )


def with_windows(
    windows: Sequence[WindowResult],
    records: Records,
    boundaries_ns: Sequence[int],
    token_output: str | None,
    slo: Mapping[str, float] | None = None,
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
        figs = per_request(r)
        here = idx == w.index
        kept = slo_figures(records.responses.select(here), records.ok[here], slo, d)
        stream = StreamWindow(
            ttft_ms=LatencyStats.from_samples(_ms(r.first_ns[r.count >= 1])),
            itl_ms=LatencyStats.from_samples(_ms(r.gaps_ns)),
            responses=responses,
            responses_per_s=responses / d if d > 0 else 0.0,
            output_tokens_per_s=tokens / d if tokens is not None and d > 0 else None,
            tpot_ms=LatencyStats.from_samples(_present(figs["tpot_ms"])),
            e2e_ms=LatencyStats.from_samples(_present(figs["e2e_ms"])),
            slo_attainment=kept.attainment if kept else None,
            goodput=kept.goodput if kept else None,
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
        tpot=pooled("tpot_samples_ms"),
        e2e=pooled("e2e_samples_ms"),
        responses=sum(p.responses for p in present),
        requests=sum(p.requests for p in present),
        tokens=None if any(t is None for t in counted) else sum(t or 0 for t in counted),
        duration_s=duration_s,
        token_output=present[0].token_output,
        slo=_merge_slo([p.slo for p in present], duration_s),
    )


def _merge_slo(parts: Sequence[SloFigures | None], duration_s: float) -> SloFigures | None:
    """The blocks' SLO figures summed (None unless every block has them)."""
    present = [p for p in parts if p is not None]
    if not present or len(present) != len(parts):
        return None
    missed: dict[str, int] = {}
    for p in present:
        for key, n in p.missed:
            missed[key] = missed.get(key, 0) + n
    return SloFigures(
        slo=present[0].slo,
        requests=sum(p.requests for p in present),
        met=sum(p.met for p in present),
        missed=tuple(missed.items()),
        duration_s=duration_s,
    )
