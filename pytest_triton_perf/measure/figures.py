"""The plain figures a result is made of: latency summaries, and the per-response figures of
streaming (decoupled) models with their per-request SLOs and goodput. Plain values (floats,
ints, tuples), picklable and JSON-ready, except the pooled raw values kept for intervals and
A/B merging, never compared; :mod:`pytest_triton_perf.measure.result` re-exports them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_triton_perf.measure.stats import nearest_rank


@dataclass(frozen=True)
class LatencyStats:
    """Latency summary in milliseconds; percentiles by nearest rank."""

    p50: float
    p90: float
    p95: float
    p99: float
    avg: float
    min: float
    max: float
    count: int

    @classmethod
    def from_samples(cls, samples_ms: np.ndarray) -> LatencyStats | None:
        """Summarise raw latencies (ms); None when there are none."""
        if len(samples_ms) == 0:
            return None
        s = np.sort(np.asarray(samples_ms, dtype=np.float64))
        return cls(
            p50=nearest_rank(s, 50),
            p90=nearest_rank(s, 90),
            p95=nearest_rank(s, 95),
            p99=nearest_rank(s, 99),
            avg=float(s.mean()),
            min=float(s[0]),
            max=float(s[-1]),
            count=len(s),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TokenStats(LatencyStats):
    """Tokens per request (input or output): :class:`LatencyStats`' percentiles (by nearest
    rank), mean, extremes and the requests counted, in tokens, and their ``total``."""

    total: int

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> TokenStats | None:
        """Summarise per-request token counts; None when there are none."""
        summary = LatencyStats.from_samples(counts)
        if summary is None:
            return None
        return cls(**dataclasses.asdict(summary), total=int(np.sum(counts)))


#: The per-request SLOs ``measure(slo=...)`` takes, each an upper bound in milliseconds.
SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms")


@dataclass(frozen=True)
class SloFigures:
    """Per-request SLOs (``measure(slo={"ttft_ms": 200, "tpot_ms": 50})``) and goodput.

    A request meets the SLOs when it succeeded and each of its figures is within its bound:
    TTFT, TPOT and end-to-end latency as :class:`StreamFigures` defines them; a request
    with fewer than two output tokens has no time per output token and meets a TPOT bound,
    as in vLLM's benchmark. A failed request, or one without a response, meets none.
    ``requests`` counts every request started in the windows, failed ones included, each
    followed to its end; ``attainment`` is the share that met every SLO (its 95% interval:
    Wilson's score interval) and ``goodput`` such requests per second of the windows
    (DistServe's goodput): the attainment times the requests completed per second, failed
    ones included, so that goodput never exceeds the throughput it is a share of.
    """

    slo: tuple[tuple[str, float], ...]
    requests: int
    met: int
    #: Requests that missed each SLO (failed ones in each), in the order of ``slo``.
    missed: tuple[tuple[str, int], ...]
    duration_s: float
    #: Requests completed in the windows, failed ones included (None: ``requests``).
    completed: int | None = None

    @property
    def attainment(self) -> float | None:
        """Share of the requests that met every SLO (None: no request)."""
        return self.met / self.requests if self.requests else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% Wilson score interval of :attr:`attainment`."""
        return wilson_interval(self.met, self.requests)

    @property
    def goodput(self) -> float:
        """Requests per second that met every SLO: the attainment times the requests
        completed per second."""
        if self.duration_s <= 0 or not self.requests:
            return 0.0
        completed = self.requests if self.completed is None else self.completed
        return self.met / self.requests * completed / self.duration_s

    def most_missed(self) -> str:
        """The SLOs by the share of requests that missed each, most missed first:
        ``tpot_ms <= 50 missed by 48.0% of 200 requests, ttft_ms <= 200 by 0.0%``."""
        bounds = dict(self.slo)
        ranked = sorted(self.missed, key=lambda kv: -kv[1])
        parts = [
            f"{key} <= {bounds[key]:g} {'missed by ' if i == 0 else 'by '}"
            f"{n / self.requests if self.requests else 0.0:.1%}"
            + (f" of {self.requests} requests" if i == 0 else "")
            for i, (key, n) in enumerate(ranked)
        ]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "slo": dict(self.slo),
            "requests": self.requests,
            "met": self.met,
            "completed": self.requests if self.completed is None else self.completed,
            "missed": dict(self.missed),
            "attainment": self.attainment,
            "interval": list(self.interval) if self.interval else None,
            "goodput": self.goodput,
        }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson's score interval of a proportion (95% by default; None for n = 0): it stays
    inside [0, 1] and keeps its coverage near 0 and 1, where the normal interval does not."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class StreamWindow:
    """A window's per-response figures (streaming models): of the requests that completed
    in it, successful ones only, as its throughput counts them; its SLO attainment and
    goodput (with ``measure(slo=...)``) count its failed requests as missing the SLOs."""

    ttft_ms: LatencyStats | None
    itl_ms: LatencyStats | None
    responses: int
    responses_per_s: float
    output_tokens_per_s: float | None
    tpot_ms: LatencyStats | None = None
    e2e_ms: LatencyStats | None = None
    slo_attainment: float | None = None
    goodput: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (flat: the window's own keys)."""
        return {
            "ttft_ms": self.ttft_ms.to_dict() if self.ttft_ms else None,
            "itl_ms": self.itl_ms.to_dict() if self.itl_ms else None,
            "tpot_ms": self.tpot_ms.to_dict() if self.tpot_ms else None,
            "e2e_ms": self.e2e_ms.to_dict() if self.e2e_ms else None,
            "responses": self.responses,
            "responses_per_s": self.responses_per_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "slo_attainment": self.slo_attainment,
            "goodput": self.goodput,
        }


def _empty() -> np.ndarray:
    return np.empty(0)


@dataclass(frozen=True)
class StreamFigures:
    """Per-response figures of a streaming (decoupled) measurement, over its successful
    requests; times in milliseconds from each request's start (its send, or its scheduled
    time in an open loop), percentiles by nearest rank over pooled values.

    - ``ttft_ms``: time to the first response;
    - ``itl_ms``: inter-response latency, the gaps between consecutive responses of a
      request, *pooled* over all requests (each gap weighs the same; a stall shows in p99);
    - ``itl_per_request_ms``: each request's mean gap, (last - first response) / (responses
      - 1), over the requests with two or more responses: GenAI-Perf's inter-token latency
      (each request weighs the same, however long). Their averages differ when requests
      differ in length;
    - ``tpot_ms``: time per output token as vLLM defines it (AIPerf's "inter token
      latency"), per request (end-to-end - TTFT) / (output tokens - 1), over the requests
      with two or more output tokens; output tokens are the elements of ``token_output``
      when it is given, the responses otherwise;
    - ``e2e_ms``: end-to-end latency of a streamed request, to its last response;
    - ``second_response_ms``: time to the second response;
    - ``slo``: the per-request SLOs and goodput (None: no ``measure(slo=...)``);
    - ``responses_per_request``: mean responses per request (the empty message that carries
      only the final flag is not a response);
    - ``responses_per_s`` and ``output_tokens_per_s``: per second of the windows; tokens are
      the elements of ``token_output`` in the responses, or the tokenizer's count of a text
      model's output (None: not counted);
    - ``token_counting``: how output tokens are counted, ``tokenizer:<file>``,
      ``token_output:<OUTPUT>`` or ``responses``;
    - ``input_tokens_per_request`` / ``output_tokens_per_request``: tokens per request (input
      tokens: a text model's prompt, by the tokenizer or in words without one).
    """

    ttft_ms: LatencyStats | None
    itl_ms: LatencyStats | None
    itl_per_request_ms: LatencyStats | None
    second_response_ms: LatencyStats | None
    responses: int
    responses_per_request: float | None
    responses_per_s: float
    output_tokens: int | None
    output_tokens_per_s: float | None
    token_output: str | None = None
    requests: int = 0  # the successful requests these figures are of
    tpot_ms: LatencyStats | None = None
    e2e_ms: LatencyStats | None = None
    slo: SloFigures | None = None
    token_counting: str = "responses"
    input_tokens_per_request: TokenStats | None = None
    output_tokens_per_request: TokenStats | None = None
    # The pooled raw values (ms), for A/B merging and intervals; never compared.
    ttft_samples_ms: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    itl_samples_ms: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    itl_request_samples_ms: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    second_samples_ms: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    tpot_samples_ms: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    e2e_samples_ms: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    input_token_samples: np.ndarray = field(default_factory=_empty, compare=False, repr=False)
    output_token_samples: np.ndarray = field(default_factory=_empty, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (flat: the keys are the result's own)."""

        def stats(s: LatencyStats | None) -> dict[str, Any] | None:
            return s.to_dict() if s else None

        return {
            "ttft_ms": stats(self.ttft_ms),
            "itl_ms": stats(self.itl_ms),
            "itl_per_request_ms": stats(self.itl_per_request_ms),
            "second_response_ms": stats(self.second_response_ms),
            "tpot_ms": stats(self.tpot_ms),
            "e2e_ms": stats(self.e2e_ms),
            "responses": self.responses,
            "responses_per_request": self.responses_per_request,
            "responses_per_s": self.responses_per_s,
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": self.output_tokens_per_s,
            "token_output": self.token_output,
            "token_counting": self.token_counting,
            "input_tokens_per_request": (
                self.input_tokens_per_request.to_dict() if self.input_tokens_per_request else None
            ),
            "output_tokens_per_request": (
                self.output_tokens_per_request.to_dict() if self.output_tokens_per_request else None
            ),
            "slo": self.slo.to_dict() if self.slo else None,
            "slo_attainment": self.slo.attainment if self.slo else None,
            "goodput": self.slo.goodput if self.slo else None,
        }
