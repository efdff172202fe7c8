"""The one result type of a measurement, and the pieces it is made of.

Every figure here is final and plain (floats, ints, tuples) so that results can be pickled
across processes, written to JSON and compared, except the pooled raw latencies, kept as a
numpy array for interval estimates and never compared.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pytest_triton_perf import metrics
from pytest_triton_perf.measure.energy import Energy
from pytest_triton_perf.measure.figures import (
    LatencyStats,
    SloFigures,
    StreamFigures,
    StreamWindow,
    TokenStats,
)

Protocol = Literal["grpc", "http", "generate"]
Arrival = Literal["closed", "constant", "poisson"]


@dataclass(frozen=True)
class Workload:
    """What load was offered: the part of a measurement that identifies it."""

    model: str
    version: str | None = None
    protocol: Protocol = "grpc"
    batch_size: int = 1
    concurrency: int | None = 1
    request_rate: float | None = None
    arrival: Arrival = "closed"
    inputs: str = "random"
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # Sequence models: requests per sequence, and its variation (a fraction: 0.2 = +-20%).
    sequence_length: int | None = None
    sequence_length_variation: float | None = None
    # Tensors through shared-memory regions ("system" or "cuda"); None: over the socket.
    shared_memory: str | None = None

    def describe(self) -> str:
        """Short human text, e.g. ``conc=8 batch=1 grpc``, ``rate=100/s poisson http``, for
        a sequence model ``conc=4 batch=1 grpc seq=20+-20%``, with shared memory
        ``conc=1 batch=1 grpc shm=system``."""
        if self.arrival == "closed":
            load = f"conc={self.concurrency}"
        else:
            load = f"rate={self.request_rate:g}/s {self.arrival}"
        text = f"{load} batch={self.batch_size} {self.protocol}"
        if self.sequence_length is not None:
            text += " " + sequence_text(self.sequence_length, self.sequence_length_variation)
        if self.shared_memory:
            text += f" shm={self.shared_memory}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        d["shapes"] = {name: list(shape) for name, shape in self.shapes}
        if self.sequence_length is None:  # not a sequence model: the keys say nothing
            del d["sequence_length"], d["sequence_length_variation"]
        if self.shared_memory is None:  # over the socket, as every workload before it
            del d["shared_memory"]
        return d


def sequence_text(length: int, variation: float | None) -> str:
    """``seq=20`` or ``seq=20+-20%``: a workload's sequence length as tables show it."""
    if variation:
        return f"seq={length}+-{variation * 100:g}%"
    return f"seq={length}"


@dataclass(frozen=True)
class WindowResult:
    """One measurement window. A request belongs to the window in which it completed."""

    index: int
    duration_s: float
    requests: int
    errors: int
    inferences: int
    throughput: float
    latency_ms: LatencyStats | None
    # Set on the windows of the level a capacity search settled on: their throughput, as
    # samples of the capacity for baseline comparisons.
    capacity: float | None = None
    # Streaming (decoupled) models: the window's per-response figures.
    stream: StreamWindow | None = None

    @property
    def ttft_ms(self) -> LatencyStats | None:
        """Time to first response (streaming models; None otherwise)."""
        return self.stream.ttft_ms if self.stream else None

    @property
    def itl_ms(self) -> LatencyStats | None:
        """Gaps between consecutive responses, pooled (streaming models; None otherwise)."""
        return self.stream.itl_ms if self.stream else None

    @property
    def tpot_ms(self) -> LatencyStats | None:
        """Time per output token, vLLM's TPOT (streaming models; None otherwise)."""
        return self.stream.tpot_ms if self.stream else None

    @property
    def e2e_ms(self) -> LatencyStats | None:
        """End-to-end latency of streamed requests (streaming models; None otherwise)."""
        return self.stream.e2e_ms if self.stream else None

    @property
    def slo_attainment(self) -> float | None:
        """Share of the window's requests that met every SLO (None: no SLO given)."""
        return self.stream.slo_attainment if self.stream else None

    @property
    def goodput(self) -> float | None:
        """Requests per second of the window that met every SLO (None: no SLO given)."""
        return self.stream.goodput if self.stream else None

    @property
    def responses_per_s(self) -> float | None:
        """Responses per second (streaming models; None otherwise)."""
        return self.stream.responses_per_s if self.stream else None

    @property
    def output_tokens_per_s(self) -> float | None:
        """Output tokens per second (None: not a streaming model, or tokens not counted)."""
        return self.stream.output_tokens_per_s if self.stream else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        d["latency_ms"] = self.latency_ms.to_dict() if self.latency_ms else None
        del d["stream"]
        if self.stream is not None:
            d.update(self.stream.to_dict())
        return d


@dataclass(frozen=True)
class ServerBreakdown:
    """Server-side figures from Triton's statistics, as deltas over the measured windows
    (from the snapshot before the load restarts to the one after the drain: the requests of
    the ramp and of the drain are in them, ``PerfResult.ramp`` and ``drained`` count them).

    Times are averages per request in milliseconds, as perf_analyzer reports them.
    """

    requests: int
    failures: int
    inferences: int
    executions: int
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float
    batch_executions: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        d["batch_executions"] = {str(k): v for k, v in self.batch_executions}
        return d


#: The four durations of a server-side breakdown, as ``ServerBreakdown`` names them.
DURATIONS = ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms")


@dataclass(frozen=True)
class PipelineStep:
    """One composing model of a pipeline (an ensemble step, or a model a BLS model calls),
    from its own statistics over the same span as the pipeline's."""

    model: str
    server: ServerBreakdown
    # The step's requests per request of the pipeline (1.0 for a plain ensemble step).
    calls_per_request: float

    @property
    def time_ms(self) -> float:
        """Server time of one request of this step: queue plus compute input, infer and
        output (milliseconds, averages)."""
        return sum(getattr(self.server, d) for d in DURATIONS)

    @property
    def share_ms(self) -> float:
        """Server time this step adds to one request of the pipeline (milliseconds)."""
        return self.time_ms * self.calls_per_request

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (with the derived ``time_ms`` and ``share_ms``)."""
        return {
            "model": self.model,
            "calls_per_request": self.calls_per_request,
            "time_ms": self.time_ms,
            "share_ms": self.share_ms,
            "server": self.server.to_dict(),
        }


@dataclass(frozen=True)
class Pipeline:
    """The server-side breakdown of a pipeline per composing model.

    ``kind``: ``"ensemble"`` (steps from the configuration's ``ensemble_scheduling``) or
    ``"bls"`` (a model that calls others). ``source``: where the steps came from:
    ``"config"`` (the ensemble's configuration), ``"declared"`` (``composing_models=``) or
    ``"traffic"`` (models whose requests grew by a whole multiple of the pipeline's during
    the measurement, inferred, and still reported as other traffic).
    """

    kind: Literal["ensemble", "bls"]
    source: Literal["config", "declared", "traffic"]
    steps: tuple[PipelineStep, ...]

    def step(self, model: str) -> PipelineStep | None:
        """The step of ``model``, None when it is not one."""
        return next((s for s in self.steps if s.model == model), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "kind": self.kind,
            "source": self.source,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Interference:
    """The co-location cost of one model of a group (``triton_perf.measure_together``): the
    model measured alone and together with the others in interleaved rounds, as ratios
    together / alone (1.0: no cost) with 95% intervals.

    ``p99_ratio`` compares the p99 of the pooled blocks of each arm (its interval from a
    pair bootstrap over the rounds); ``throughput_ratio`` is the geometric mean of the
    rounds' ratios (its interval a paired Student-t on their logarithms). ``*_rounds`` hold
    each round's ratio: the samples baseline comparisons use.
    """

    rounds: int
    together_with: tuple[str, ...]
    alone_p99_ms: float | None
    together_p99_ms: float | None
    alone_throughput: float | None
    together_throughput: float | None
    p99_ratio: float | None
    p99_interval: tuple[float, float] | None
    throughput_ratio: float | None
    throughput_interval: tuple[float, float] | None
    p99_rounds: tuple[float, ...] = ()
    throughput_rounds: tuple[float, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def p99_change(self) -> float | None:
        """Relative p99 change together vs alone (0.25: 25% slower together)."""
        return None if self.p99_ratio is None else self.p99_ratio - 1.0

    @property
    def throughput_change(self) -> float | None:
        """Relative throughput change together vs alone (-0.2: 20% less together)."""
        return None if self.throughput_ratio is None else self.throughput_ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        for key in ("together_with", "p99_rounds", "throughput_rounds", "notes"):
            d[key] = list(d[key])
        for key in ("p99_interval", "throughput_interval"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d


@dataclass(frozen=True)
class PerfResult:
    """The result of one ``triton_perf.measure`` call at one load level."""

    model: str
    version: str | None
    workload: Workload
    throughput: float
    latency_ms: LatencyStats | None
    requests: int
    errors: int
    windows: tuple[WindowResult, ...]
    duration_s: float
    stable: bool
    server: ServerBreakdown | None = None
    gpu_memory_mb: float | None = None
    cpu_memory_mb: float | None = None
    unavailable: tuple[tuple[str, str], ...] = ()
    first_error: str | None = None
    client_bound: bool = False
    seed: int | None = None
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False, repr=False)
    # Requests answered after the last window closed: sent during it, not counted in it.
    drained: int = 0
    # Requests answered in the ramp (the load runs ``ramp_s`` seconds before the first
    # window opens, so that it opens on the steady state, not on a cold start): counted by
    # the server (its statistics ``server`` include them), not in the figures. The server's
    # request count is ``requests + drained + ramp``.
    ramp: int = 0
    ramp_s: float = 0.0
    # Share of one CPU core used by the load generator's event loop over the windows (and
    # the ramp before them).
    client_cpu: float | None = None
    # Warnings about the measurement itself (cancelled requests, late sends, ...).
    notes: tuple[str, ...] = ()
    # CPU seconds (all threads, all worker processes) the load generator spent in the windows
    # and the ramp before them.
    client_cpu_s: float | None = None
    # Open loop: share of requests sent more than 1 ms after their scheduled time.
    late_share: float | None = None
    # Requests completed per second over the windows, errors included (the achieved rate).
    request_rate_achieved: float | None = None
    # Load generator processes.
    workers: int = 1
    # Peak GPU memory minus its value when the measurement started (MB), when known.
    gpu_memory_delta_mb: float | None = None
    # Requests other models of the server completed during the measured span: a shared
    # server was not idle, so the figures include someone else's load.
    other_traffic: tuple[tuple[str, int], ...] = ()
    # Inferences/s sustained within the latency bounds, on the result a capacity search
    # settled on (``triton_perf.capacity``); None for a plain measurement.
    capacity: float | None = None
    # Sequence models (None otherwise): sequences completed in the windows (a sequence
    # belongs to the window of its last response), how many had a failed request, the
    # latency of the successful ones from their first send to their last response, and
    # the sequence slots of the model's configuration (more sequences wait in the backlog).
    sequences: int | None = None
    sequence_errors: int | None = None
    sequence_latency_ms: LatencyStats | None = None
    sequence_slots: int | None = None
    # Streaming (decoupled) models: per-response figures (TTFT, inter-response latency,
    # responses and tokens per second); None for a request/response model.
    stream: StreamFigures | None = None
    # Ensembles and BLS models: the server-side breakdown per composing model; None for a
    # model that is neither.
    pipeline: Pipeline | None = None
    # Shared memory: whether the outputs read back from the output region after the last
    # window equal the server's answer over the socket to the same inputs (None: not
    # checked, e.g. over the socket or for a sequence model).
    outputs_verified: bool | None = None
    # Co-location (``triton_perf.measure_together``): the other models measured at the
    # same time, in the same windows, and this model's co-location cost when measured.
    together_with: tuple[str, ...] = ()
    interference: Interference | None = None
    # The record of a memory footprint (``triton_perf.footprint``): ``gpu_memory_mb`` and
    # ``cpu_memory_mb`` are the model's own deltas, not the server's totals.
    footprint: bool = False
    # Energy of the server's GPUs over the windows (NVML's counter); None: see
    # ``unavailable["energy_j"]`` for why.
    energy: Energy | None = None

    def renamed(
        self,
        model: str,
        *,
        step_name: Callable[[str], str] | None = None,
        together_with: Sequence[str] | None = None,
    ) -> PerfResult:
        """This result (of a copy served under a derived name: an A/B arm, a footprint's
        copy) reported under ``model``; ``step_name`` maps its pipeline steps' names back
        the same way (the arms of an ensemble run copies of its composing models), and
        ``together_with`` names the models beside it."""
        pipeline = self.pipeline
        if pipeline is not None and step_name is not None:
            steps = tuple(dataclasses.replace(s, model=step_name(s.model)) for s in pipeline.steps)
            pipeline = dataclasses.replace(pipeline, steps=steps)
        return dataclasses.replace(
            self,
            model=model,
            workload=dataclasses.replace(self.workload, model=model),
            pipeline=pipeline,
            together_with=self.together_with if together_with is None else tuple(together_with),
        )

    def as_capacity(self, capacity: float) -> PerfResult:
        """This result as the one a capacity search settled on: ``capacity`` set, and each
        window's throughput as a sample of it."""
        windows = tuple(dataclasses.replace(w, capacity=w.throughput) for w in self.windows)
        return dataclasses.replace(self, capacity=capacity, windows=windows)

    @property
    def ttft_ms(self) -> LatencyStats | None:
        """Time to first response (streaming models; None otherwise), see StreamFigures."""
        return self.stream.ttft_ms if self.stream else None

    @property
    def itl_ms(self) -> LatencyStats | None:
        """Inter-response latency, gaps pooled over requests (streaming models; None
        otherwise); ``itl_per_request_ms`` is GenAI-Perf's per-request mean."""
        return self.stream.itl_ms if self.stream else None

    @property
    def itl_per_request_ms(self) -> LatencyStats | None:
        """Each request's mean gap between responses (GenAI-Perf's inter-token latency)."""
        return self.stream.itl_per_request_ms if self.stream else None

    @property
    def second_response_ms(self) -> LatencyStats | None:
        """Time to second response (streaming models; None otherwise)."""
        return self.stream.second_response_ms if self.stream else None

    @property
    def tpot_ms(self) -> LatencyStats | None:
        """Time per output token, per request (end-to-end - TTFT) / (output tokens - 1):
        vLLM's TPOT, AIPerf's "inter token latency" (streaming models; None otherwise)."""
        return self.stream.tpot_ms if self.stream else None

    @property
    def e2e_ms(self) -> LatencyStats | None:
        """End-to-end latency of a streamed request, from its start to its last response
        (streaming models; None otherwise)."""
        return self.stream.e2e_ms if self.stream else None

    @property
    def slo(self) -> SloFigures | None:
        """The per-request SLOs, who met them and goodput (None: no ``slo=`` given)."""
        return self.stream.slo if self.stream else None

    @property
    def slo_attainment(self) -> float | None:
        """Share of completed requests (failed ones included) that met every SLO of
        ``measure(slo=...)`` (None: none given); its 95% interval is
        ``slo_attainment_interval``."""
        return self.slo.attainment if self.slo else None

    @property
    def slo_attainment_interval(self) -> tuple[float, float] | None:
        """95% Wilson score interval of ``slo_attainment``."""
        return self.slo.interval if self.slo else None

    @property
    def goodput(self) -> float | None:
        """Requests per second that met every SLO of ``measure(slo=...)``: attainment x
        completed requests / measured seconds (None: no SLO given)."""
        return self.slo.goodput if self.slo else None

    @property
    def responses_per_s(self) -> float | None:
        """Responses per second over the windows (streaming models; None otherwise)."""
        return self.stream.responses_per_s if self.stream else None

    @property
    def responses_per_request(self) -> float | None:
        """Mean responses per successful request (streaming models; None otherwise)."""
        return self.stream.responses_per_request if self.stream else None

    @property
    def output_tokens_per_s(self) -> float | None:
        """Output tokens per second (None: not streaming, or no ``token_output`` given)."""
        return self.stream.output_tokens_per_s if self.stream else None

    @property
    def token_counting(self) -> str | None:
        """How output tokens were counted: ``tokenizer:<file>`` (``tokenizer=``),
        ``token_output:<OUTPUT>`` (its elements) or ``responses`` (streaming models; None
        otherwise)."""
        return self.stream.token_counting if self.stream else None

    @property
    def input_tokens(self) -> TokenStats | None:
        """Input tokens per request: a text model's prompt, counted by the tokenizer, or in
        whitespace-separated words without one (None: not a text model)."""
        return self.stream.input_tokens_per_request if self.stream else None

    @property
    def output_tokens(self) -> TokenStats | None:
        """Output tokens per request, counted as :attr:`token_counting` says (streaming
        models; None otherwise)."""
        return self.stream.output_tokens_per_request if self.stream else None

    @property
    def energy_j(self) -> float | None:
        """Joules the server's GPUs consumed over the windows (None: no NVIDIA GPU to read,
        or another reason that ``unavailable_reason("energy_j")`` gives)."""
        return self.energy.joules if self.energy else None

    @property
    def inferences_per_joule(self) -> float | None:
        """Inferences completed in the windows per joule of GPU energy (None: no energy)."""
        if not self.energy or self.energy.joules <= 0:
            return None
        return sum(w.inferences for w in self.windows) / self.energy.joules

    @property
    def tokens_per_joule(self) -> float | None:
        """Output tokens of a streaming model per joule of GPU energy over the windows:
        the counted tokens (``token_output``), else the responses, as TPOT counts them
        (None: not streaming, or no energy)."""
        if not self.energy or self.energy.joules <= 0 or self.stream is None:
            return None
        tokens = self.stream.output_tokens
        return (tokens if tokens is not None else self.stream.responses) / self.energy.joules

    @property
    def error_rate(self) -> float:
        """Failed requests over all completed requests (0 when nothing completed)."""
        return self.errors / self.requests if self.requests else 0.0

    def unavailable_reason(self, metric: str) -> str | None:
        """Why ``metric`` (e.g. ``gpu_memory_mb``) has no value, or None if it has one."""
        return dict(self.unavailable).get(metric)

    def summary(self) -> Mapping[str, float | None]:
        """The headline figures, named as the metric catalogue names them."""
        return {m.name: m.read(self) for m in metrics.CATALOGUE}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every figure (raw latencies left out)."""

        def clean(v: float | None) -> float | None:
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        return {
            "model": self.model,
            "version": self.version,
            "workload": self.workload.to_dict(),
            "throughput": self.throughput,
            "latency_ms": self.latency_ms.to_dict() if self.latency_ms else None,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "windows": [w.to_dict() for w in self.windows],
            "duration_s": self.duration_s,
            "stable": self.stable,
            "server": self.server.to_dict() if self.server else None,
            "gpu_memory_mb": clean(self.gpu_memory_mb),
            "cpu_memory_mb": clean(self.cpu_memory_mb),
            "unavailable": dict(self.unavailable),
            "first_error": self.first_error,
            "client_bound": self.client_bound,
            "seed": self.seed,
            "drained": self.drained,
            "ramp": self.ramp,
            "ramp_s": self.ramp_s,
            "client_cpu": self.client_cpu,
            "notes": list(self.notes),
            "client_cpu_s": self.client_cpu_s,
            "late_share": self.late_share,
            "request_rate_achieved": self.request_rate_achieved,
            "workers": self.workers,
            "gpu_memory_delta_mb": clean(self.gpu_memory_delta_mb),
            "other_traffic": dict(self.other_traffic),
            "capacity": self.capacity,
            "sequences": self.sequences,
            "sequence_errors": self.sequence_errors,
            "sequence_latency_ms": (
                self.sequence_latency_ms.to_dict() if self.sequence_latency_ms else None
            ),
            "sequence_slots": self.sequence_slots,
            "streaming": self.stream is not None,
            **(self.stream.to_dict() if self.stream is not None else {}),
            "pipeline": self.pipeline.to_dict() if self.pipeline else None,
            "outputs_verified": self.outputs_verified,
            "together_with": list(self.together_with),
            "interference": self.interference.to_dict() if self.interference else None,
            "footprint": self.footprint,
            "energy": self.energy.to_dict() if self.energy else None,
            "energy_j": self.energy_j,
            "inferences_per_joule": self.inferences_per_joule,
            "tokens_per_joule": self.tokens_per_joule,
        }
