"""Per-response figures of streaming (decoupled) measurements, from the raw response records.

The rules of the other figures hold: a request belongs to the window in which it completed
(its final response), and so do all its responses; only successful requests count (a failed
request's TTFT is not a TTFT of the model), as throughput counts only them; percentiles by
nearest rank over pooled values. TTFT and the time to the second response count from the
request's start (its send in a closed loop, its scheduled time in an open loop), like latency.

Per request, as vLLM's benchmark computes them: end-to-end latency is the time to the last
response; TPOT is (end-to-end - TTFT) / (output tokens - 1), over requests with two or more
output tokens (tokens: the elements of ``token_output`` when it is given, else responses).
With a tokenizer (text models) the output tokens are its count of each request's text,
counted after the windows by :func:`counted`, and TPOT and tokens per second use them.
With ``slo`` (SLO key -> bound in ms) each request meets the SLOs or not
(:class:`~pytest_triton_perf.measure.figures.SloFigures`); failed requests count, as
missing them. The SLO figures are the one exception to the completion rule: they count the
requests **started** in the windows, each followed to its end through the final drain.
Counted by completion, a window opened on a cold start would under-count slow requests:
in its first (slow - fast) end-to-end time only fast requests can complete. The engine's
ramp (the load runs for the warm-up's p99 latency before the first window opens) removes
most of that, but not all of it (requests slower than the ramp, a capped ramp) and none
without a warm-up (no ramp); counted by start, it cannot matter. With half of the requests
slow, 2 windows of 1 s opened cold read the attainment 3-4 points too high by completion.
Goodput is that attainment times the requests completed per second (the throughput's rule,
failed requests included), so it never exceeds the throughput.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pytest_triton_perf.load import text
from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.responses import ResponseRecords
from pytest_triton_perf.measure.figures import (
    LatencyStats,
    SloFigures,
    StreamFigures,
    StreamWindow,
    TokenStats,
)
from pytest_triton_perf.measure.result import WindowResult
from pytest_triton_perf.measure.windows import assign_windows


def _ms(values_ns: np.ndarray) -> np.ndarray:
    return values_ns.astype(np.float64) / 1e6


def counted(records: Records, prompt_tokens: Sequence[int], tokenizer: str | None) -> Records:
    """``records`` with each request's input tokens (``prompt_tokens`` of the payload it
    sent) and, with a tokenizer, its output tokens counted in its kept text: done once,
    after the windows, so that no tokenizer runs on the load generator's hot path."""
    r = records.responses
    if r is None:
        return records
    changes: dict[str, Any] = {}
    if prompt_tokens:
        table = np.asarray(prompt_tokens, dtype=np.int64)
        ok = (r.prompt >= 0) & (r.prompt < len(table))
        changes["input_tokens"] = np.where(ok, table[np.clip(r.prompt, 0, len(table) - 1)], -1)
    if tokenizer is not None and r.texts is not None:
        changes["tokens"] = text.count_tokens(text.load_tokenizer(tokenizer), r.texts)
        changes["texts"] = None  # counted: the text is no longer needed
    if not changes:
        return records
    return dataclasses.replace(records, responses=dataclasses.replace(r, **changes))


def _counts(r: ResponseRecords, counted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Input tokens (where known) and output tokens of the answered requests of ``r``."""
    answered = r.count >= 1
    out = np.where(r.tokens >= 0, r.tokens, r.count)[answered] if counted else r.count[answered]
    inputs = np.empty(0, np.int64)
    if r.input_tokens is not None:
        known = r.input_tokens[answered]
        inputs = known[known >= 0]
    return inputs, out


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
    r: ResponseRecords,
    ok: np.ndarray,
    slo: Mapping[str, float] | None,
    duration_s: float,
    completed: int | None = None,
) -> SloFigures | None:
    """The SLO figures of the requests ``r`` (failed ones included; ``ok``: which
    succeeded) over ``duration_s`` seconds, in which ``completed`` requests completed
    (None: as many as ``r``)."""
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
        completed=completed,
    )


def figures(
    records: Records,
    boundaries_ns: Sequence[int],
    duration_s: float,
    token_output: str | None,
    slo: Mapping[str, float] | None = None,
    counting: str | None = None,
) -> StreamFigures | None:
    """Pooled figures over ``[boundaries[0], boundaries[-1])``; None for records without
    responses (a request/response model). ``counting``: how output tokens were counted
    (:func:`pytest_triton_perf.load.text.counting_label`; default: by ``token_output``)."""
    counting = counting or text.counting_label(None, token_output)
    is_counted = counting != "responses"
    if records.responses is None:
        return None
    span = records.between(boundaries_ns[0], boundaries_ns[-1])
    r_all = span.responses
    assert r_all is not None
    r = r_all.select(span.ok)
    many = r.count >= 2
    figs = per_request(r)
    inputs, outputs = _counts(r, is_counted)
    return _summary(
        ttft=_ms(r.first_ns[r.count >= 1]),
        gaps=_ms(r.gaps_ns),
        per_request=_ms(r.last_ns[many] - r.first_ns[many]) / (r.count[many] - 1),
        second=_ms(r.second_ns[many]),
        tpot=_present(figs["tpot_ms"]),
        e2e=_present(figs["e2e_ms"]),
        responses=int(r.count.sum()),
        requests=len(r),
        tokens=_tokens(r) if is_counted else None,
        duration_s=duration_s,
        token_output=token_output,
        slo=_slo_started(records, boundaries_ns, slo, duration_s, len(span)),
        counting=counting,
        input_tokens=inputs,
        output_tokens=outputs,
    )


def _slo_started(
    records: Records,
    boundaries_ns: Sequence[int],
    slo: Mapping[str, float] | None,
    duration_s: float,
    completed: int,
) -> SloFigures | None:
    """The SLO figures of the requests started in ``[boundaries[0], boundaries[-1])``,
    drained ones included (the module docstring says why); ``completed`` requests
    completed in that span."""
    if not slo or records.responses is None:
        return None
    started = records.started_ns()
    mask = (started >= boundaries_ns[0]) & (started < boundaries_ns[-1])
    return slo_figures(records.responses.select(mask), records.ok[mask], slo, duration_s, completed)


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
    counting: str = "responses",
    input_tokens: np.ndarray | None = None,
    output_tokens: np.ndarray | None = None,
) -> StreamFigures:
    """The figures of raw values (ms) and counts over ``duration_s`` seconds."""
    inputs = input_tokens if input_tokens is not None else np.empty(0, np.int64)
    outputs = output_tokens if output_tokens is not None else np.empty(0, np.int64)
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
        token_counting=counting,
        input_tokens_per_request=TokenStats.from_counts(inputs),
        output_tokens_per_request=TokenStats.from_counts(outputs),
        input_token_samples=inputs,
        output_token_samples=outputs,
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
    counting: str | None = None,
) -> tuple[WindowResult, ...]:
    """``windows`` with each one's per-response figures (unchanged without responses)."""
    if records.responses is None:
        return tuple(windows)
    is_counted = (counting or text.counting_label(None, token_output)) != "responses"
    idx = assign_windows(records.end_ns, boundaries_ns)
    started = assign_windows(records.started_ns(), boundaries_ns)  # the SLO figures'
    out = []
    for w in windows:
        mask = (idx == w.index) & records.ok
        r = records.responses.select(mask)
        responses = int(r.count.sum())
        tokens = _tokens(r) if is_counted else None
        d = w.duration_s
        figs = per_request(r)
        here = started == w.index
        kept = slo_figures(
            records.responses.select(here), records.ok[here], slo, d, int((idx == w.index).sum())
        )
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
        counting=present[0].token_counting,
        input_tokens=pooled("input_token_samples"),
        output_tokens=pooled("output_token_samples"),
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
        completed=sum(p.requests if p.completed is None else p.completed for p in present),
    )
