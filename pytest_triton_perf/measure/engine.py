"""The measurement engine: one call drives load against a model and returns a PerfResult.

Sequence of one measurement::

    warm-up (warmup_s) -> drain -> statistics snapshot S0 -> memory sampler on
    -> windows (at least `windows`, extended up to `max_windows` until stable)
    -> stop sending, drain (requests completing now are not counted) -> snapshot S1

The load pauses between warm-up and the first window so that S0 sees no request in flight,
and S1 is taken once the drain has finished: the server's request count over S0..S1 then
equals the client's count over the same span exactly (``requests + drained``).

Closed loop (``concurrency``) or open loop (``request_rate``, constant or Poisson arrivals,
latency counted from the scheduled send time). The load runs in this process, or in several
worker processes when one cannot keep up (``workers``); either way windows are cut from the
raw records, so merged figures are exact.

Several models at once (:func:`measure_group`, co-location): one driver per model in the same
event loop, warmed up, snapshotted and started together, so every model's windows share the
same boundaries (one window clock) and ``k``-th windows of two models cover the same time.
One run with several drivers rather than parallel runs: a single clock needs no
cross-thread barrier, and an interrupt stops every driver through the one loop.

Each step lives where its concern does: request encoding in ``load.inputs``, the event loop
and the load drivers in ``load``, Triton's statistics (and other models' traffic) in
``measure.server_stats``, memory in ``measure.memory``, windows and pooling in
``measure.windows``. This module runs them in order and summarises what they saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from pytest_triton_perf import options
from pytest_triton_perf.errors import ArgumentError, InputSpecError, MeasurementError
from pytest_triton_perf.load.closed_loop import Supervisor
from pytest_triton_perf.load.driver import GRPC_CLIENTS, Driver, LoadSpec, LocalDriver, PhaseStats
from pytest_triton_perf.load.inputs import InputsArg, encode_payloads, tensor_sets
from pytest_triton_perf.load.loop import in_thread, run_coroutine
from pytest_triton_perf.load.model_info import fetch_model_spec
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.schedule import ARRIVALS
from pytest_triton_perf.load.sequences import (
    DEFAULT_LENGTH,
    DEFAULT_VARIATION,
    ID_TYPES,
    SequencePlan,
    random_id_base,
)
from pytest_triton_perf.load.shared_memory import (
    SharedMemory,
    check_kind,
    cuda_unavailable,
    fixed_output_sizes,
    reference_outputs,
    refusal,
)
from pytest_triton_perf.load.stream import DEFAULT_TIMEOUT_S, StreamSpec
from pytest_triton_perf.load.transport import InputTensor
from pytest_triton_perf.load.workers import open_driver
from pytest_triton_perf.measure import streaming
from pytest_triton_perf.measure.memory import MemoryPeaks, MemorySampler
from pytest_triton_perf.measure.pipeline import StepPlan, assess, check_composing_models, plan_steps
from pytest_triton_perf.measure.result import (
    LatencyStats,
    PerfResult,
    Pipeline,
    ServerBreakdown,
    Workload,
)
from pytest_triton_perf.measure.server_stats import StatsReader, breakdown
from pytest_triton_perf.measure.windows import is_stable, pool, window_results

#: How often the server handle is asked whether the server is still alive.
ALIVE_INTERVAL_S = 0.5
#: Share of one core the event loop may use before the run is flagged client-bound.
CLIENT_BOUND_CPU = 0.9
#: A send later than this after its scheduled time is late (perf_analyzer's threshold).
LATE_NS = 1_000_000
#: Share of late sends above which an open loop is flagged (perf_analyzer warns at 1%).
LATE_SHARE_LIMIT = 0.01
#: Default bound on requests in flight in an open loop.
DEFAULT_MAX_IN_FLIGHT = 256
#: Most worker processes ``workers="auto"`` starts.
MAX_AUTO_WORKERS = 4


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class MeasureSettings:
    """How long and how carefully to measure one load level.

    Raises ArgumentError (a ValueError) naming every value that is not accepted.
    """

    # The session's defaults are the option table's (--triton-perf-warmup-s, ...).
    warmup_s: float = options.default("warmup_s")
    windows: int = options.default("windows")  # windows measured at least
    window_s: float = options.default("window_s")
    max_windows: int = 10  # windows at most, while the stability rule is not met
    stability_pct: float = 10.0
    drain_timeout_s: float = 10.0  # bound on waiting for requests in flight at the end

    def __post_init__(self) -> None:
        problems = []
        if not (_is_number(self.warmup_s) and self.warmup_s >= 0):
            problems.append(f"warmup_s must be a number of seconds >= 0, got {self.warmup_s!r}")
        if not (_is_count(self.windows) and self.windows >= 1):
            problems.append(f"windows must be an integer >= 1, got {self.windows!r}")
        if not (_is_number(self.window_s) and self.window_s > 0):
            problems.append(f"window_s must be a number of seconds > 0, got {self.window_s!r}")
        if not _is_count(self.max_windows) or (
            _is_count(self.windows) and self.max_windows < self.windows
        ):
            problems.append(
                f"max_windows must be an integer >= windows ({self.windows!r}),"
                f" got {self.max_windows!r}"
            )
        if not (_is_number(self.stability_pct) and self.stability_pct > 0):
            problems.append(f"stability_pct must be a number > 0, got {self.stability_pct!r}")
        if not (_is_number(self.drain_timeout_s) and self.drain_timeout_s > 0):
            problems.append(
                f"drain_timeout_s must be a number of seconds > 0, got {self.drain_timeout_s!r}"
            )
        if problems:
            raise ArgumentError("invalid measurement settings: " + "; ".join(problems))


class Endpoints(Protocol):
    """What the engine needs of a server handle (local, container or remote)."""

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint (a scheme is tolerated)."""
        ...

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        ...

    @property
    def metrics_url(self) -> str | None:
        """Full URL of the Prometheus metrics, or None when metrics are off."""
        ...

    def check_alive(self) -> None:
        """Raise ServerDiedError if the server is gone."""
        ...


def measure(endpoints: Endpoints, model: str, **options: Any) -> PerfResult:
    """Measure ``model`` under a closed loop (``concurrency``) or open loop
    (``request_rate``): :func:`prepare`'s arguments, run in a fresh event loop.

    Runs its own event loop, so it is called from synchronous code (or from any thread).
    Raises what :func:`prepare` raises, and ServerDiedError when the server goes away
    during the measurement.
    """
    plan = prepare(endpoints, model, **options)
    if plan.shm is not None:
        return _through_shared_memory(plan, *plan.shm)
    return run_coroutine(lambda: _measure_async([plan]))[0]


def measure_group(
    endpoints: Endpoints,
    loads: Mapping[str, Mapping[str, Any]],
    *,
    settings: MeasureSettings = MeasureSettings(),
) -> dict[str, PerfResult]:
    """Measure several models at the same time, in the same windows: ``loads`` maps each
    model to its own :func:`prepare` keywords (``concurrency``, ``request_rate``, ...);
    ``settings`` (warm-up, windows, stability) is the group's.

    One event loop drives one load driver per model (each in this process or in worker
    processes of its own); the warm-up, the statistics snapshots and every window
    boundary are shared, so window ``k`` of each model covers the same span of time. The
    stability rule holds when every model's windows are stable. Each model's result is
    cut from its own records, as :func:`measure` does, names the others in
    ``together_with``, and does not count their requests as other traffic.
    """
    if not loads:
        raise ArgumentError("measure_group: no models to measure; give {model: {...}, ...}")
    plans = []
    for model, keywords in loads.items():
        if "settings" in keywords:
            raise ArgumentError(
                f"model '{model}': settings apply to the whole group (the same windows for "
                f"every model); pass settings= to measure_group"
            )
        if keywords.get("shared_memory", "none") != "none":
            raise ArgumentError(
                f"model '{model}': shared_memory is not available for models measured "
                f"together; measure it alone for its shared-memory figures"
            )
        plans.append(prepare(endpoints, model, settings=settings, **keywords))
    results = run_coroutine(lambda: _measure_async(plans))
    names = tuple(loads)
    return {
        name: dataclasses.replace(result, together_with=tuple(n for n in names if n != name))
        for name, result in zip(names, results, strict=True)
    }


def prepare(
    endpoints: Endpoints,
    model: str,
    *,
    version: str | None = None,
    concurrency: int = 1,
    batch_size: int = 1,
    protocol: str = "grpc",
    inputs: InputsArg = "random",
    shapes: Mapping[str, Sequence[int]] | None = None,
    settings: MeasureSettings = MeasureSettings(),
    seed: int = 0,
    request_rate: float | None = None,
    arrival: str = "constant",
    max_in_flight: int | None = None,
    workers: int | Literal["auto"] = "auto",
    grpc_client: str = "lean",
    sequence_length: int | None = None,
    sequence_length_variation: float | None = None,
    sequence_id_type: str = "auto",
    token_output: str | None = None,
    prompt_length: Any = None,
    stream_timeout_s: float = DEFAULT_TIMEOUT_S,
    shared_memory: str = "none",
    composing_models: Sequence[str] | None = None,
) -> _Plan:
    """Validate the arguments of a measurement of ``model`` under a closed loop
    (``concurrency``) or open loop (``request_rate``) and prepare it (model metadata read,
    requests encoded); :func:`measure` runs it.

    Inputs are built from the model's metadata and configuration: ``"random"`` (seeded by
    ``seed``), ``"zero"``, a dict of numpy arrays (one sample or a whole batch each), the path
    of a perf_analyzer JSON input-data file, or a list of such input sets sent in turn. They
    are encoded once and sent over ``protocol`` (``"grpc"`` or ``"http"``).

    Open loop: ``request_rate`` requests per second with ``arrival`` ``"constant"`` or
    ``"poisson"`` (seeded by ``seed``); latency counts from each request's scheduled send
    time; at most ``max_in_flight`` requests are outstanding (later sends wait, and count as
    late). ``workers``: load generator processes, or ``"auto"`` to add processes when one is
    saturated. ``grpc_client``: ``"lean"`` (HTTP/2 written directly, the default: far less
    client CPU per request) or ``"grpcio"`` (grpc.aio).

    Sequence models (``sequence_batching`` in the configuration): ``concurrency`` sequences
    in flight, each of ``sequence_length`` requests (give or take
    ``sequence_length_variation``, a fraction, seeded by ``seed``); without
    ``sequence_length``, perf_analyzer's default of 20 +-20%, and the result's notes say so.
    Correlation IDs are numbers, or strings where the model's CORRID control input is
    TYPE_STRING (``sequence_id_type="auto"``; ``"uint64"`` or ``"string"`` to choose). See
    :mod:`pytest_triton_perf.load.sequences`.
    A decoupled model (``model_transaction_policy { decoupled: true }``) is driven over
    gRPC's bidirectional ``ModelStreamInfer`` (either client), every response timed: the
    result's ``stream`` carries TTFT, inter-response latency and responses per second
    (:mod:`pytest_triton_perf.load.stream`). ``token_output`` names the output whose
    element count is a response's tokens (output tokens per second); ``stream_timeout_s``
    is the longest wait for a request's next response before it fails (default 10 s).
    ``prompt_length`` sets the length of prompt inputs in tokens, for any model: ``128``,
    ``(64, 512)``, ``{"mean": 256, "stddev": 64}`` or a dict of these by input name
    (:mod:`pytest_triton_perf.load.prompts`).

    Pipelines: an ensemble's steps come from its configuration; a BLS model (a Python model
    that calls others) names the models it calls with ``composing_models``. Either way the
    result's ``pipeline`` breaks the server time down per composing model. See
    :mod:`pytest_triton_perf.measure.pipeline`.

    ``shared_memory``: ``"none"`` (tensors over the socket), ``"system"`` (inputs and outputs
    through POSIX shared-memory regions registered with the server) or ``"cuda"`` (GPU
    memory, where a GPU exists), as perf_analyzer's ``--shared-memory``; refused for a
    server on another host. See :mod:`pytest_triton_perf.load.shared_memory`.

    Raises InputSpecError (a ValueError) for arguments the model or the load generator cannot
    take, naming the value and what is accepted; ModelNotReadyError for a model that is not
    ready.
    """
    _check_args(
        model, concurrency, protocol, request_rate, arrival, max_in_flight, workers, grpc_client
    )
    kind = check_kind(model, shared_memory)
    declared = check_composing_models(model, composing_models)
    if kind != "none":
        _check_shared_memory(endpoints, model, kind)
    endpoints.check_alive()
    spec = _fetch_spec(endpoints, model, version)
    steps = plan_steps(endpoints.http_url, spec, declared)
    sequence, sequence_notes = _sequence_plan(
        spec,
        sequence_length,
        sequence_length_variation,
        sequence_id_type,
        request_rate=request_rate,
        concurrency=concurrency,
        seed=seed,
    )
    stream = _stream_spec(spec, protocol, token_output, stream_timeout_s)
    payloads, label, shm = _encode(
        endpoints,
        spec,
        kind,
        inputs,
        protocol,
        version,
        batch_size,
        shapes,
        seed,
        sequence,
        prompt_length,
    )
    if stream is not None:
        # The drain at the end of a phase outlasts the response timeout: a request that
        # never ends is counted as failed, not cancelled unseen.
        drain = max(settings.drain_timeout_s, stream.timeout_s + 1.0)
        settings = dataclasses.replace(settings, drain_timeout_s=drain)
    open_loop = request_rate is not None
    workload = Workload(
        model=model,
        version=version,
        protocol="grpc" if protocol == "grpc" else "http",
        batch_size=batch_size,
        concurrency=None if open_loop else concurrency,
        request_rate=float(request_rate) if request_rate is not None else None,
        arrival="closed" if not open_loop else ("poisson" if arrival == "poisson" else "constant"),
        inputs=label,
        shapes=tuple(sorted((k, tuple(int(d) for d in v)) for k, v in (shapes or {}).items())),
        sequence_length=sequence.length if sequence else None,
        sequence_length_variation=sequence.variation if sequence else None,
        shared_memory=shm[0].kind if shm else None,
    )
    uses_seed = (
        "random" in label
        or prompt_length is not None
        or (open_loop and arrival == "poisson")
        or (sequence is not None and sequence.variation > 0)
    )
    load = LoadSpec(
        protocol=workload.protocol,
        http_url=endpoints.http_url,
        grpc_url=endpoints.grpc_url,
        payloads=payloads,
        concurrency=None if open_loop else concurrency,
        request_rate=workload.request_rate,
        arrival=arrival,
        seed=seed,
        max_in_flight=max_in_flight or DEFAULT_MAX_IN_FLIGHT,
        grpc_client=grpc_client,
        sequence=sequence,
        stream=stream,
    )
    plan = _Plan(
        endpoints=endpoints,
        spec=spec,
        load=load,
        workload=workload,
        settings=settings,
        seed=seed if uses_seed else None,
        workers=workers,
        notes=sequence_notes,
        steps=steps,
        shm=shm,
    )
    return plan


def _encode(
    endpoints: Endpoints,
    spec: ModelSpec,
    kind: str,
    inputs: InputsArg,
    protocol: str,
    version: str | None,
    batch_size: int,
    shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
    sequence: SequencePlan | None,
    prompt_length: Any = None,
) -> tuple[tuple[bytes, ...], str, tuple[SharedMemory, list[dict[str, bytes]] | None] | None]:
    """The request bodies and the inputs' label (see :func:`encode_requests`); with shared
    memory, also the regions' layout (nothing created yet) and the server's answer over the
    socket to each input set, which the outputs read back from the regions must equal. A
    sequence model is not probed: its outputs are sized from its configuration."""
    if prompt_length is not None:
        from pytest_triton_perf.load.prompts import prompt_tensor_sets

        tensors, label = prompt_tensor_sets(
            spec, inputs, prompt_length, batch_size=batch_size, shapes=shapes, seed=seed
        )
    else:
        tensors, label = tensor_sets(spec, inputs, batch_size=batch_size, shapes=shapes, seed=seed)
    shm = None
    expected: list[dict[str, bytes]] | None = None
    if kind != "none":
        if sequence is not None:
            sizes = [fixed_output_sizes(spec, batch_size)] * len(tensors)
        else:
            expected = [_reference(endpoints, spec, version, t) for t in tensors]
            sizes = [{name: len(data) for name, data in e.items()} for e in expected]
        shm = SharedMemory.plan(kind, endpoints.http_url, tensors, sizes)
    payloads = encode_payloads(
        spec,
        shm.inputs if shm else tensors,
        protocol=protocol,
        http_url=endpoints.http_url,
        version=version,
        output_shm=shm.outputs if shm else None,
    )
    return payloads, label, (shm, expected) if shm else None


def _reference(
    endpoints: Endpoints, spec: ModelSpec, version: str | None, tensors: Sequence[InputTensor]
) -> dict[str, bytes]:
    try:
        return reference_outputs(endpoints.http_url, spec, version, tensors)
    except MeasurementError:
        endpoints.check_alive()
        raise


def _through_shared_memory(
    plan: _Plan, shm: SharedMemory, expected: Sequence[Mapping[str, bytes]] | None
) -> PerfResult:
    """The measurement with its regions created and registered first, and unregistered and
    removed afterwards whatever happens (a failure, an interrupt)."""
    try:
        shm.open()
        result = run_coroutine(lambda: _measure_async([plan]))[0]
        return _shared_memory_outcome(result, shm, expected)
    finally:
        shm.close()


def _check_shared_memory(endpoints: Endpoints, model: str, kind: str) -> None:
    """InputSpecError when the server cannot map this host's regions of ``kind`` (a
    server on another host, a container with its own /dev/shm), or when this machine
    cannot make them (``"cuda"`` without a GPU or cuda-python)."""
    says = getattr(endpoints, "shared_memory_refusal", None)
    why = refusal(kind, endpoints.http_url, says(kind) if callable(says) else None)
    if why is None and kind == "cuda":
        why = cuda_unavailable()
    if why is not None:
        raise InputSpecError(f"model '{model}': shared_memory={kind!r} is refused: {why}")


def _shared_memory_outcome(
    result: PerfResult, regions: SharedMemory, expected: Sequence[Mapping[str, bytes]] | None
) -> PerfResult:
    """The result with ``outputs_verified`` (the outputs read back from the output region
    against the answer over the socket) and a note when they differ, before the regions go."""
    if expected is None or result.requests == 0:
        return result
    differ = regions.verify(expected)
    notes = result.notes
    if differ:
        notes = (
            *notes,
            f"shared memory ({regions.kind}): the outputs read back from the output region"
            f" differ from the server's answer over the socket to the same inputs for"
            f" {', '.join(differ)}: a model whose outputs vary between calls, or outputs not"
            " written to the region",
        )
    return dataclasses.replace(result, outputs_verified=not differ, notes=notes)


def _check_args(
    model: str,
    concurrency: int,
    protocol: str,
    request_rate: float | None,
    arrival: str,
    max_in_flight: int | None,
    workers: int | str,
    grpc_client: str,
) -> None:
    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{model}': {what}")

    if not (_is_count(concurrency) and concurrency >= 1):
        raise bad(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if protocol not in ("grpc", "http"):
        raise bad(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    if request_rate is not None:
        if not (_is_number(request_rate) and request_rate > 0):
            raise bad(f"request_rate must be a number > 0 (requests/s), got {request_rate!r}")
        if concurrency != 1:
            raise bad(
                f"concurrency={concurrency} applies to a closed loop; with request_rate use"
                " max_in_flight to bound requests in flight"
            )
    if arrival not in ARRIVALS:
        raise bad(f"arrival must be one of {', '.join(map(repr, ARRIVALS))}, got {arrival!r}")
    if max_in_flight is not None and not (_is_count(max_in_flight) and max_in_flight >= 1):
        raise bad(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
    if workers != "auto" and not (_is_count(workers) and int(workers) >= 1):
        raise bad(f"workers must be an integer >= 1 or 'auto', got {workers!r}")
    if grpc_client not in GRPC_CLIENTS:
        raise bad(
            f"grpc_client must be one of {', '.join(map(repr, GRPC_CLIENTS))}, got {grpc_client!r}"
        )


def _sequence_plan(
    spec: ModelSpec,
    length: int | None,
    variation: float | None,
    id_type: str,
    *,
    request_rate: float | None,
    concurrency: int,
    seed: int,
) -> tuple[SequencePlan | None, tuple[str, ...]]:
    """How a sequence model's sequences run, and what the result must say about it; None
    for any other model. InputSpecError for sequence arguments that do not fit the model."""

    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{spec.name}': {what}")

    config = spec.sequence
    given = [
        f"{name}={value!r}"
        for name, value in (
            ("sequence_length", length),
            ("sequence_length_variation", variation),
        )
        if value is not None
    ]
    if config is None:
        if given:
            raise bad(
                f"{', '.join(given)} applies to sequence models only; this model's"
                " configuration has no sequence_batching"
            )
        return None, ()
    if length is not None and not (_is_count(length) and length >= 1):
        raise bad(
            f"sequence_length must be an integer >= 1 (requests per sequence), got {length!r}"
        )
    if variation is not None and not (_is_number(variation) and 0 <= variation < 1):
        raise bad(
            "sequence_length_variation must be a fraction in [0, 1) (0.2 = +-20%),"
            f" got {variation!r}"
        )
    if id_type not in ID_TYPES:
        raise bad(
            f"sequence_id_type must be one of {', '.join(map(repr, ID_TYPES))}, got {id_type!r}"
        )
    if request_rate is not None:
        raise bad(
            f"request_rate={request_rate!r}: an open loop cannot drive a sequence model (a"
            " sequence's requests wait for each other, so no schedule of requests can be kept"
            " without reordering a sequence or leaving it idle); use concurrency=N for N"
            " sequences in flight"
        )
    notes = []
    if length is None:
        length = DEFAULT_LENGTH
        variation = DEFAULT_VARIATION if variation is None else variation
        notes.append(
            f"sequence model: sequence_length not given, driven with perf_analyzer's default"
            f" of {DEFAULT_LENGTH} requests per sequence +-{DEFAULT_VARIATION:.0%} (seeded);"
            " pass sequence_length= to choose"
        )
    if concurrency > config.slots:
        notes.append(
            f"{concurrency} sequences in flight on {config.slots} sequence slot(s)"
            f" ({config.strategy} strategy): the others wait in the sequence batcher's backlog,"
            " which the server queue time shows"
        )
    string_ids = config.string_ids if id_type == "auto" else id_type == "string"
    plan = SequencePlan(
        length=length,
        variation=float(variation or 0.0),
        string_ids=string_ids,
        max_id=config.max_id,
        id_base=random_id_base(config.max_id),
        seed=seed,
    )
    return plan, tuple(notes)


async def _probe_sequences(plan: _Plan, supervisor: Supervisor) -> None:
    """One sequence of one request before anything is measured: a model whose control
    inputs the server cannot fill fails here with one clear error, not one per request."""
    sequence = plan.load.sequence
    config = plan.spec.sequence
    assert sequence is not None and config is not None
    load = dataclasses.replace(
        plan.load, concurrency=1, workers=1, worker=0, sequence=sequence.for_probe()
    )
    driver = LocalDriver(load, supervisor)
    try:
        await driver.open()
        error = await driver.probe_sequence()
    finally:
        await driver.close()
    if error is None:
        return
    names = [c.name for c in config.controls]
    about_controls = any(f"'{n}'" in error for n in names) or any(
        w in error.lower() for w in ("correlation id", "sequence")
    )
    if about_controls:
        ids = "string" if sequence.string_ids else "integer"
        raise InputSpecError(
            f"model '{plan.spec.name}': the server cannot fill its sequence control inputs"
            f" {config.describe_controls()}: a sequence of one request ({ids} sequence_id,"
            f" sequence_start and sequence_end set) over {plan.load.protocol} failed with:"
            f" {error}"
        )


def _stream_spec(
    spec: ModelSpec, protocol: str, token_output: str | None, timeout_s: float
) -> StreamSpec | None:
    """How a decoupled model is streamed (None for a request/response model); InputSpecError
    for options it cannot take."""

    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{spec.name}': {what}")

    if not (_is_number(timeout_s) and timeout_s > 0):
        raise bad(f"stream_timeout_s must be a number of seconds > 0, got {timeout_s!r}")
    if not spec.decoupled:
        if token_output is not None:
            raise bad(
                f"token_output={token_output!r} counts the tokens of a streaming model's"
                " responses; this model is not decoupled (one response per request)"
            )
        return None
    if spec.sequence is not None:
        raise bad(
            "the model is decoupled and has sequence_batching: streamed sequences are not"
            " driven (measure a decoupled model, or a sequence model, not both in one)"
        )
    if protocol != "grpc":
        raise bad(
            f"protocol={protocol!r}: the model is decoupled (model_transaction_policy {{"
            " decoupled: true }) and Triton's HTTP /infer endpoint does not return its"
            " streamed responses; measure it over gRPC (protocol='grpc', the default), which"
            " drives the ModelStreamInfer stream"
        )
    if token_output is not None and token_output not in {o.name for o in spec.outputs}:
        raise bad(
            f"token_output={token_output!r} is not an output; its outputs are "
            + (", ".join(repr(o.name) for o in spec.outputs) or "(none)")
        )
    return StreamSpec(spec.name, token_output, float(timeout_s))


def _fetch_spec(endpoints: Endpoints, model: str, version: str | None) -> ModelSpec:
    try:
        return fetch_model_spec(endpoints.http_url, model, version)
    except OSError as e:
        endpoints.check_alive()
        raise MeasurementError(
            f"cannot read model '{model}' metadata from {endpoints.http_url}: {e}"
        ) from e


@dataclass(frozen=True)
class _Plan:
    """What :func:`measure` validated and prepared: everything the run needs."""

    endpoints: Endpoints
    spec: ModelSpec
    load: LoadSpec
    workload: Workload
    settings: MeasureSettings
    seed: int | None
    workers: int | Literal["auto"]
    notes: tuple[str, ...] = ()  # what the arguments chose that the result must say
    steps: StepPlan | None = None  # an ensemble's or a declared BLS model's steps
    #: Shared memory: the regions' layout and the server's answers to verify (None: none).
    shm: tuple[SharedMemory, list[dict[str, bytes]] | None] | None = None


@dataclass(frozen=True)
class _Observed:
    """Everything one measurement saw, before it is summarised into a PerfResult."""

    records: Records  # every request of the windows and of the final drain
    boundaries: list[int]  # window boundaries (perf_counter ns); the first is t0
    stats: PhaseStats  # the load generator's own cost over the windows
    cancelled: int  # requests still in flight when the drain timed out
    workers: int
    server: ServerBreakdown | None
    memory: MemoryPeaks
    unavailable: Mapping[str, str]  # figure -> why it has no value
    other_traffic: tuple[tuple[str, int], ...]
    notes: tuple[str, ...]  # said while measuring (e.g. more worker processes)
    pipeline: Pipeline | None = None  # per composing model, for ensembles and BLS models


# --- the measurement ----------------------------------------------------------------------


async def _measure_async(plans: Sequence[_Plan]) -> list[PerfResult]:
    """The sequence of the module docstring, in the running loop, for one model or for a
    group measured together (one driver each, every phase and window edge shared)."""
    endpoints, settings = plans[0].endpoints, plans[0].settings
    supervisor = Supervisor(lambda: in_thread(endpoints.check_alive))
    watchdog = asyncio.create_task(supervisor.watch(ALIVE_INTERVAL_S))
    drivers: list[Driver | None] = [None] * len(plans)
    sampler: MemorySampler | None = None
    try:
        workers = [1 if plan.workers == "auto" else plan.workers for plan in plans]
        for plan in plans:
            if plan.load.sequence is not None:
                await _probe_sequences(plan, supervisor)
        for i, plan in enumerate(plans):
            drivers[i] = await open_driver(plan.load, workers[i], supervisor)
        notes: list[list[str]] = [[] for _ in plans]
        if settings.warmup_s > 0:
            stats = await _warm_up(_opened(drivers), supervisor, settings)
            cores = os.cpu_count() or 1
            saturated = False
            for i, plan in enumerate(plans):
                # Only a saturated event loop calls for more processes: late sends alone may
                # come from a machine the server keeps busy, where more processes would not
                # help.
                if plan.workers != "auto" or cores <= 1 or stats[i].loop_share < CLIENT_BOUND_CPU:
                    continue
                # One process could not keep up: share the load among several.
                saturated = True
                driver, drivers[i] = drivers[i], None
                if driver is not None:
                    await driver.close()
                workers[i] = min(cores, MAX_AUTO_WORKERS)
                load = plan.load
                if load.sequence is not None:  # the warm-up's sequence IDs are not reused
                    load = dataclasses.replace(load, sequence=load.sequence.renewed())
                drivers[i] = await open_driver(load, workers[i], supervisor)
                notes[i].append(
                    f"load generator saturated in warm-up: using {workers[i]} processes"
                )
            if saturated:
                await _warm_up(_opened(drivers), supervisor, settings)

        readers = [
            StatsReader(endpoints.http_url, p.spec.name, p.workload.version, endpoints.check_alive)
            for p in plans
        ]
        s0 = [await r.snapshot() for r in readers]
        all0 = await readers[0].all_models()
        # A container given some GPUs (--gpus) names them: NVML measures only those.
        sampler = MemorySampler(
            endpoints.metrics_url, gpu_devices=getattr(endpoints, "gpu_devices", None)
        )
        await in_thread(sampler.start)

        batches = [p.workload.batch_size for p in plans]
        boundaries = await _windows(_opened(drivers), supervisor, settings, batches)
        peaks = asyncio.get_running_loop().run_in_executor(None, sampler.stop)
        stopped = await asyncio.gather(
            *(d.stop(settings.drain_timeout_s) for d in _opened(drivers))
        )
        memory = await peaks
        sampler = None

        ends = [
            await reader.settled(start, len(stop[1])) if start is not None else None
            for reader, start, stop in zip(readers, s0, stopped, strict=True)
        ]
        all1 = await readers[0].all_models()
        # The others of a group are measured with it, not someone else's traffic.
        group = {p.spec.name for p in plans}
        results = []
        for i, plan in enumerate(plans):
            cancelled, records, stats_i = stopped[i]
            start, s1 = s0[i], ends[i]
            # Every model's counters over the same span: the pipeline's steps, other traffic.
            seen = assess(plan.steps, plan.spec, all0, all1)
            observed = _Observed(
                records=records,
                boundaries=boundaries,
                stats=stats_i,
                cancelled=cancelled,
                workers=workers[i],
                server=breakdown(start, s1) if start is not None and s1 is not None else None,
                memory=memory,
                unavailable={**readers[i].unavailable, **seen.unavailable},
                other_traffic=tuple((n, c) for n, c in seen.other_traffic if n not in group),
                notes=(*notes[i], *seen.notes),
                pipeline=seen.pipeline,
            )
            results.append(_result(plan, observed))
        return results
    finally:
        if sampler is not None:
            with contextlib.suppress(Exception):
                await in_thread(sampler.stop)
        watchdog.cancel()
        with contextlib.suppress(BaseException):
            await watchdog
        for driver in drivers:
            if driver is not None:
                await driver.close()
        supervisor.close()


def _opened(drivers: Sequence[Driver | None]) -> list[Driver]:
    """The drivers of a run, every one open (a gap is a bug of the run's sequence)."""
    assert all(d is not None for d in drivers)
    return [d for d in drivers if d is not None]


async def _warm_up(
    drivers: Sequence[Driver], supervisor: Supervisor, settings: MeasureSettings
) -> list[PhaseStats]:
    """Send for ``warmup_s`` (every driver from the same instant), then stop and drain: the
    first window starts with nothing in flight, and statistics snapshot S0 sees no request
    in progress."""
    t0 = time.perf_counter_ns()
    for driver in drivers:
        await driver.start(t0)
    await supervisor.sleep(settings.warmup_s)
    stopped = await asyncio.gather(*(d.stop(settings.drain_timeout_s) for d in drivers))
    return [stats for _, _, stats in stopped]


async def _windows(
    drivers: Sequence[Driver],
    supervisor: Supervisor,
    settings: MeasureSettings,
    batch_sizes: Sequence[int],
) -> list[int]:
    """Start the load and cut windows until the stability rule holds for every driver (at
    least ``windows``, at most ``max_windows``); returns the boundaries, t0 first, shared by
    all the drivers. The load is still running."""
    t0 = time.perf_counter_ns()
    boundaries = [t0]
    for driver in drivers:
        await driver.start(t0)
    window_ns = int(settings.window_s * 1e9)
    while True:
        target = t0 + len(boundaries) * window_ns
        await supervisor.sleep((target - time.perf_counter_ns()) / 1e9)
        boundaries.append(time.perf_counter_ns())
        measured = len(boundaries) - 1
        if measured < settings.windows:
            continue
        if measured >= settings.max_windows:
            return boundaries
        stable = True
        for driver, batch in zip(drivers, batch_sizes, strict=True):
            wins = window_results(await driver.snapshot(), boundaries, batch)
            stable = stable and is_stable(wins, settings.stability_pct)
        if stable:
            return boundaries


def _generator_saturated(records: Records, stats: PhaseStats) -> bool:
    """The load generator, not the server, limited this phase."""
    if stats.loop_share >= CLIENT_BOUND_CPU:
        return True
    late = records.late_share(LATE_NS)
    # Late sends while connections were free: the loop could not keep the schedule.
    return late is not None and late > LATE_SHARE_LIMIT and stats.pool_exhausted == 0


def _result(plan: _Plan, seen: _Observed) -> PerfResult:
    """The figures of the windows (latencies pooled over them), and what qualifies them."""
    batch = plan.workload.batch_size
    t0, t_end = seen.boundaries[0], seen.boundaries[-1]
    span = seen.records.between(t0, t_end)
    late = span.late_share(LATE_NS)
    client_bound = _generator_saturated(span, seen.stats)
    duration_s = (t_end - t0) / 1e9
    wins = window_results(seen.records, seen.boundaries, batch)
    pooled = pool(seen.records, seen.boundaries, batch)
    unavailable = {**seen.unavailable, **seen.memory.unavailable}
    sequences = span.sequences if plan.spec.sequence is not None else None
    tokens = plan.load.stream.token_output if plan.load.stream else None
    if plan.load.stream is not None:
        wins = streaming.with_windows(wins, seen.records, seen.boundaries, tokens)
        if tokens is None:
            unavailable["output_tokens_per_s"] = (
                "tokens are not counted: name the output that carries them, e.g."
                " measure(..., token_output='OUTPUT0')"
            )
    return PerfResult(
        model=plan.spec.name,
        version=plan.workload.version,
        workload=plan.workload,
        throughput=pooled.throughput,
        latency_ms=pooled.latency_ms,
        requests=pooled.requests,
        errors=pooled.errors,
        windows=wins,
        duration_s=pooled.duration_s,
        stable=is_stable(wins, plan.settings.stability_pct),
        server=seen.server,
        gpu_memory_mb=seen.memory.gpu_mb,
        cpu_memory_mb=seen.memory.cpu_mb,
        unavailable=tuple(sorted(unavailable.items())),
        first_error=pooled.first_error,
        client_bound=client_bound,
        seed=plan.seed,
        latencies_ms=pooled.latencies_ms,
        # Answered after the last window closed: counted by the server, not in the figures.
        drained=len(seen.records.between(t_end, np.iinfo(np.int64).max)),
        client_cpu=seen.stats.loop_share,
        notes=tuple(_notes(plan.settings, seen, late, client_bound, plan.notes)),
        client_cpu_s=seen.stats.process_cpu_s,
        late_share=late,
        request_rate_achieved=len(span) / duration_s if duration_s > 0 else 0.0,
        workers=seen.workers,
        gpu_memory_delta_mb=seen.memory.gpu_delta_mb,
        other_traffic=seen.other_traffic,
        sequences=len(sequences) if sequences is not None else None,
        sequence_errors=int((~sequences.ok).sum()) if sequences is not None else None,
        sequence_latency_ms=(
            LatencyStats.from_samples(sequences.latency_ns[sequences.ok] / 1e6)
            if sequences is not None
            else None
        ),
        sequence_slots=plan.spec.sequence.slots if plan.spec.sequence is not None else None,
        stream=streaming.figures(seen.records, seen.boundaries, pooled.duration_s, tokens),
        pipeline=seen.pipeline,
    )


def _notes(
    settings: MeasureSettings,
    seen: _Observed,
    late: float | None,
    client_bound: bool,
    plan_notes: Sequence[str] = (),
) -> list[str]:
    """What a reader of the figures must know: a busy server, cancelled or late requests,
    a saturated load generator."""
    notes = [*plan_notes, *seen.notes]
    if seen.other_traffic:
        notes.append(
            "the server was not idle: other models completed requests during the measurement ("
            + ", ".join(f"{name}: {n}" for name, n in seen.other_traffic)
            + "); the figures include that load"
        )
    if seen.cancelled:
        notes.append(
            f"{seen.cancelled} request(s) still in flight {settings.drain_timeout_s:g}s after the"
            " last window were cancelled; server statistics may include them"
        )
    if late is not None and late > LATE_SHARE_LIMIT:
        notes.append(
            f"{late:.1%} of requests were sent more than {LATE_NS / 1e6:g} ms after their"
            " scheduled time"
            + (
                f" ({seen.stats.pool_exhausted} waited for one of max_in_flight connections)"
                if seen.stats.pool_exhausted
                else " (the load generator fell behind)"
            )
        )
    if client_bound:
        notes.append(
            "client-bound: the load generator was saturated; figures show its limit, not"
            " the server's"
        )
    return notes


__all__ = ["Endpoints", "MeasureSettings", "measure", "measure_group", "prepare"]
