"""From a measurement's arguments to its plan: the arguments checked, the model's metadata
read, the requests encoded; nothing is sent yet (:mod:`pytest_triton_perf.measure.engine`
runs the plan). Also what every measurement shares: :class:`MeasureSettings` (how long and
how carefully) and :class:`Endpoints` (what the engine needs of a server)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from typing_extensions import Unpack

from pytest_triton_perf import options as option_table
from pytest_triton_perf.errors import ArgumentError, InputSpecError, MeasurementError
from pytest_triton_perf.load import generate, text
from pytest_triton_perf.load.driver import LoadSpec
from pytest_triton_perf.load.inputs import build_inputs, encode_payloads, tensor_sets
from pytest_triton_perf.load.model_info import fetch_model_spec
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.load.prompts import prompt_tensor_sets
from pytest_triton_perf.load.sequences import SequencePlan
from pytest_triton_perf.load.shared_memory import (
    SharedMemory,
    check_kind,
    cuda_unavailable,
    fixed_output_sizes,
    reference_outputs,
    refusal,
)
from pytest_triton_perf.load.transport import InputTensor
from pytest_triton_perf.measure.checks import (
    check_args,
    check_slo,
    is_count,
    is_number,
    sequence_plan,
    stream_spec,
)
from pytest_triton_perf.measure.options import DEFAULT_MAX_IN_FLIGHT, EngineOptions, with_defaults
from pytest_triton_perf.measure.pipeline import StepPlan, check_composing_models, plan_steps
from pytest_triton_perf.measure.result import Workload
from pytest_triton_perf.server.protocol import (
    BINARY_TENSOR_DATA,
    CUDA_SHARED_MEMORY,
    MODEL_CONFIGURATION,
    SYSTEM_SHARED_MEMORY,
    ServerInfo,
    read_server_info,
)
from pytest_triton_perf.urls import base_url, host_port, parse_url


@dataclass(frozen=True)
class MeasureSettings:
    """How long and how carefully to measure one load level.

    Raises ArgumentError (a ValueError) naming every value that is not accepted.
    """

    # The session's defaults are the option table's (--triton-perf-warmup-s, ...).
    warmup_s: float = option_table.default("warmup_s")
    windows: int = option_table.default("windows")  # windows measured at least
    window_s: float = option_table.default("window_s")
    max_windows: int = 10  # windows at most, while the stability rule is not met
    stability_pct: float = 10.0
    drain_timeout_s: float = 10.0  # bound on waiting for requests in flight at the end

    def __post_init__(self) -> None:
        problems = []
        if not (is_number(self.warmup_s) and self.warmup_s >= 0):
            problems.append(f"warmup_s must be a number of seconds >= 0, got {self.warmup_s!r}")
        if not (is_count(self.windows) and self.windows >= 1):
            problems.append(f"windows must be an integer >= 1, got {self.windows!r}")
        if not (is_number(self.window_s) and self.window_s > 0):
            problems.append(f"window_s must be a number of seconds > 0, got {self.window_s!r}")
        if not is_count(self.max_windows) or (
            is_count(self.windows) and self.max_windows < self.windows
        ):
            problems.append(
                f"max_windows must be an integer >= windows ({self.windows!r}),"
                f" got {self.max_windows!r}"
            )
        if not (is_number(self.stability_pct) and self.stability_pct > 0):
            problems.append(f"stability_pct must be a number > 0, got {self.stability_pct!r}")
        if not (is_number(self.drain_timeout_s) and self.drain_timeout_s > 0):
            problems.append(
                f"drain_timeout_s must be a number of seconds > 0, got {self.drain_timeout_s!r}"
            )
        if problems:
            raise ArgumentError("invalid measurement settings: " + "; ".join(problems))

    def with_windows_at_least(self, least: int) -> MeasureSettings:
        """These settings measuring at least ``least`` windows (a comparison's minimum per
        arm), the stability rule's ceiling raised to match."""
        windows = max(self.windows, least)
        return dataclasses.replace(
            self, windows=windows, max_windows=max(self.max_windows, windows)
        )


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


@dataclass(frozen=True)
class Plan:
    """What :func:`prepare` validated and prepared: everything the run needs."""

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
    #: What the server declares (GET /v2): a KServe V2 server other than Triton has none
    #: of Triton's extensions, and the figures they give are unavailable.
    server: ServerInfo = dataclasses.field(default_factory=ServerInfo)
    #: Streaming models: the per-request SLOs (key -> bound in ms) of ``slo=``; empty: none.
    slo: tuple[tuple[str, float], ...] = ()
    #: Text models: each payload's input tokens, and how tokens are counted.
    text: TextPlan | None = None


@dataclass(frozen=True)
class TextPlan:
    """What a text model's measurement counts: each payload's prompt tokens (the
    tokenizer's count, or words without one) and the tokenizer file (None: none)."""

    prompt_tokens: tuple[int, ...]
    tokenizer: str | None = None


def prepare(
    endpoints: Endpoints,
    model: str,
    *,
    settings: MeasureSettings = MeasureSettings(),
    **options: Unpack[EngineOptions],
) -> Plan:
    """Validate the arguments of a measurement of ``model`` under a closed loop
    (``concurrency``) or open loop (``request_rate``) and prepare it (model metadata read,
    requests encoded); :func:`~pytest_triton_perf.measure.engine.measure` runs it.

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
    (:mod:`pytest_triton_perf.load.prompts`). ``slo`` (streaming models) sets per-request
    SLOs, upper bounds in ms on any of ``ttft_ms``, ``tpot_ms`` and ``e2e_ms``: the result's
    ``slo_attainment`` is the share of requests that met them all and ``goodput`` such
    requests per second (:class:`~pytest_triton_perf.measure.figures.SloFigures`).

    Text models (a BYTES ``text_input``, as Triton's vLLM and TensorRT-LLM backends name
    it) get their prompts from ``prompts`` (a JSONL file) or ``prompt_length``, the
    backends' ``stream``, ``exclude_input_in_output`` and ``sampling_parameters`` /
    ``max_tokens`` inputs filled by their conventions (``output_length`` sets max_tokens),
    and with ``tokenizer`` (a local tokenizer.json) their input and output tokens counted
    by it (:mod:`pytest_triton_perf.load.text`). ``protocol="generate"`` drives Triton's
    HTTP generate extension instead: generate_stream's server-sent events for a decoupled
    model, generate for any other, with the same streaming figures
    (:mod:`pytest_triton_perf.load.generate`).

    Pipelines: an ensemble's steps come from its configuration; a BLS model (a Python model
    that calls others) names the models it calls with ``composing_models``. Either way the
    result's ``pipeline`` breaks the server time down per composing model. See
    :mod:`pytest_triton_perf.measure.pipeline`.

    ``shared_memory``: ``"none"`` (tensors over the socket), ``"system"`` (inputs and outputs
    through POSIX shared-memory regions registered with the server) or ``"cuda"`` (GPU
    memory, where a GPU exists), as perf_analyzer's ``--shared-memory``; refused for a
    server on another host. See :mod:`pytest_triton_perf.load.shared_memory`.

    The keywords are :class:`~pytest_triton_perf.measure.options.EngineOptions` (their
    defaults: :data:`~pytest_triton_perf.measure.options.LOAD_DEFAULTS`); one it does not
    take is a TypeError, as for any function.

    Raises InputSpecError (a ValueError) for arguments the model or the load generator cannot
    take, naming the value and what is accepted; ModelNotReadyError for a model that is not
    ready.
    """
    o = with_defaults(options)
    check_args(model, o)
    kind = check_kind(model, o["shared_memory"])
    declared = check_composing_models(model, o["composing_models"])
    if kind != "none":
        check_shared_memory(endpoints, model, kind)
    endpoints.check_alive()
    version, request_rate, arrival = o["version"], o["request_rate"], o["arrival"]
    server, spec = _fetch_spec(endpoints, model, version)
    steps = plan_steps(endpoints.http_url, spec, declared)
    sequence, sequence_notes = sequence_plan(
        spec,
        o["sequence_length"],
        o["sequence_length_variation"],
        o["sequence_id_type"],
        request_rate=request_rate,
        concurrency=o["concurrency"],
        seed=o["seed"],
    )
    texts = _text_requests(spec, o)
    tokenizer = _tokenizer(spec, o)
    stream = stream_spec(
        spec,
        o["protocol"],
        o["token_output"],
        o["stream_timeout_s"],
        text.text_output(spec) if tokenizer is not None else None,
    )
    slo = check_slo(spec, o["slo"], streamed=stream is not None)
    if kind != "none" and o["protocol"] == "generate":
        raise InputSpecError(
            f"model '{model}': shared_memory={kind!r} needs the inference protocols;"
            " protocol='generate' sends its inputs as JSON"
        )
    payloads, label, shm = _encode(endpoints, spec, kind, o, sequence, server, texts)
    text_plan = None
    if texts is not None:
        counts = (
            text.count_tokens(text.load_tokenizer(tokenizer), texts.prompts)
            if tokenizer is not None
            else text.count_words(texts.prompts)
        )
        text_plan = TextPlan(tuple(int(n) for n in counts), tokenizer)
    elif tokenizer is not None:
        text_plan = TextPlan((), tokenizer)
    if stream is not None:
        # The drain at the end of a phase outlasts the response timeout: a request that
        # never ends is counted as failed, not cancelled unseen.
        drain = max(settings.drain_timeout_s, stream.timeout_s + 1.0)
        settings = dataclasses.replace(settings, drain_timeout_s=drain)
    open_loop = request_rate is not None
    concurrency = None if open_loop else o["concurrency"]
    workload = Workload(
        model=model,
        version=version,
        protocol=o["protocol"],
        batch_size=o["batch_size"],
        concurrency=concurrency,
        request_rate=float(request_rate) if request_rate is not None else None,
        arrival="closed" if not open_loop else ("poisson" if arrival == "poisson" else "constant"),
        inputs=label,
        shapes=tuple(sorted((k, tuple(int(d) for d in v)) for k, v in (o["shapes"] or {}).items())),
        sequence_length=sequence.length if sequence else None,
        sequence_length_variation=sequence.variation if sequence else None,
        shared_memory=shm[0].kind if shm else None,
    )
    uses_seed = (
        "random" in label
        or o["prompt_length"] is not None
        or o["output_length"] is not None
        or (texts is not None and o["prompts"] is None)
        or (open_loop and arrival == "poisson")
        or (sequence is not None and sequence.variation > 0)
    )
    load = LoadSpec(
        protocol=workload.protocol,
        http_url=endpoints.http_url,
        grpc_url=endpoints.grpc_url,
        payloads=payloads,
        concurrency=concurrency,
        request_rate=workload.request_rate,
        arrival=arrival,
        seed=o["seed"],
        max_in_flight=o["max_in_flight"] or DEFAULT_MAX_IN_FLIGHT,
        grpc_client=o["grpc_client"],
        sequence=sequence,
        stream=stream,
    )
    return Plan(
        endpoints=endpoints,
        spec=spec,
        load=load,
        workload=workload,
        settings=settings,
        seed=o["seed"] if uses_seed else None,
        workers=o["workers"],
        notes=sequence_notes,
        steps=steps,
        shm=shm,
        server=server,
        slo=slo,
        text=text_plan,
    )


def _text_requests(spec: ModelSpec, o: EngineOptions) -> text.TextRequests | None:
    """A text model's requests (:mod:`pytest_triton_perf.load.text`), when the model follows
    the conventions and ``inputs`` leaves its inputs to them; InputSpecError for a text
    option (``prompts``, ``output_length``) on a model that does not."""
    inputs = o["inputs"]
    given = [k for k in ("prompts", "output_length") if o[k] is not None]
    if not text.is_text_model(spec) or not (
        isinstance(inputs, str) and inputs in ("random", "zero")
    ):
        if given:
            why = (
                f"inputs={inputs!r} gives the inputs"
                if text.is_text_model(spec)
                else f"the model has no BYTES input '{text.TEXT_INPUT}' (the vLLM and"
                " TensorRT-LLM backends' prompt); its inputs are "
                + ", ".join(f"'{t.name}' {t.datatype}" for t in spec.inputs)
            )
            raise InputSpecError(
                f"model '{spec.name}': {', '.join(given)} is for text models: {why}"
            )
        return None
    return text.text_requests(
        spec,
        prompts=o["prompts"],
        prompt_length=o["prompt_length"],
        output_length=o["output_length"],
        streaming=spec.decoupled,
        seed=o["seed"],
    )


def _tokenizer(spec: ModelSpec, o: EngineOptions) -> str | None:
    """The tokenizer file (checked and loaded once), None without one; InputSpecError for
    a model without the text output it counts."""
    given = o["tokenizer"]
    if given is None:
        return None
    path = os.fspath(given)
    if text.text_output(spec) is None:
        raise InputSpecError(
            f"model '{spec.name}': tokenizer={path!r} counts the tokens of a BYTES output"
            f" '{text.TEXT_OUTPUT}' (the vLLM and TensorRT-LLM backends' output); its outputs"
            " are " + (", ".join(f"'{t.name}' {t.datatype}" for t in spec.outputs) or "(none)")
        )
    text.load_tokenizer(path)
    return path


def _encode(
    endpoints: Endpoints,
    spec: ModelSpec,
    kind: str,
    options: EngineOptions,
    sequence: SequencePlan | None,
    server: ServerInfo,
    texts: text.TextRequests | None = None,
) -> tuple[tuple[bytes, ...], str, tuple[SharedMemory, list[dict[str, bytes]] | None] | None]:
    """The request bodies and the inputs' label (see :func:`encode_requests`); with shared
    memory, also the regions' layout (nothing created yet) and the server's answer over the
    socket to each input set, which the outputs read back from the regions must equal. A
    sequence model is not probed: its outputs are sized from its configuration."""
    inputs, shapes, seed = options["inputs"], options["shapes"], options["seed"]
    batch_size, version = options["batch_size"], options["version"]
    prompt_length = options["prompt_length"]
    if texts is not None:
        tensors, label = _text_tensors(spec, texts, options), texts.label
    elif prompt_length is not None:
        tensors, label = prompt_tensor_sets(
            spec, inputs, prompt_length, batch_size=batch_size, shapes=shapes, seed=seed
        )
    else:
        tensors, label = tensor_sets(spec, inputs, batch_size=batch_size, shapes=shapes, seed=seed)
    if options["protocol"] == "generate":
        host, port = parse_url(endpoints.http_url, option="server address")
        return (
            tuple(
                generate.encode_request(
                    host_port(host, port), spec.name, version, t, spec.decoupled
                )
                for t in tensors
            ),
            label,
            None,
        )
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
        protocol=options["protocol"],
        http_url=endpoints.http_url,
        version=version,
        output_shm=shm.outputs if shm else None,
        json_data=not server.has(BINARY_TENSOR_DATA),
    )
    return payloads, label, (shm, expected) if shm else None


def _text_tensors(
    spec: ModelSpec, texts: text.TextRequests, options: EngineOptions
) -> list[tuple[InputTensor, ...]]:
    """The input tensors of a text model's requests: the conventions' inputs as
    ``texts`` sets them, any other input as ``inputs`` says (``"random"`` or ``"zero"``)."""
    batch_size, shapes, seed = options["batch_size"], options["shapes"], options["seed"]
    others = tuple(
        t for t in spec.inputs if t.name not in text.CONVENTION_INPUTS and not t.optional
    )
    names = {t.name for t in others}
    rest_shapes = {k: v for k, v in (shapes or {}).items() if k in names}
    out = []
    for k, arrays in enumerate(texts.arrays):
        conventions = dataclasses.replace(
            spec, inputs=tuple(t for t in spec.inputs if t.name in arrays)
        )
        mine = build_inputs(conventions, arrays, batch_size=batch_size, seed=seed)
        rest: tuple[InputTensor, ...] = ()
        if others:
            rest = build_inputs(
                dataclasses.replace(spec, inputs=others),
                str(options["inputs"]),
                batch_size=batch_size,
                shapes=rest_shapes,
                seed=seed + k,
            )
        by_name = {t.name: t for t in (*mine, *rest)}
        out.append(tuple(by_name[t.name] for t in spec.inputs if t.name in by_name))
    return out


def _reference(
    endpoints: Endpoints, spec: ModelSpec, version: str | None, tensors: Sequence[InputTensor]
) -> dict[str, bytes]:
    try:
        return reference_outputs(endpoints.http_url, spec, version, tensors)
    except MeasurementError:
        endpoints.check_alive()
        raise


def check_shared_memory(endpoints: Endpoints, model: str, kind: str) -> None:
    """InputSpecError when the server cannot map this host's regions of ``kind`` (a
    server on another host, a container with its own /dev/shm), or when this machine
    cannot make them (``"cuda"`` without a GPU or cuda-python)."""
    says = getattr(endpoints, "shared_memory_refusal", None)
    why = refusal(kind, endpoints.http_url, says(kind) if callable(says) else None)
    known = getattr(endpoints, "server_info", None)
    if why is None and isinstance(known, ServerInfo):
        why = known.lacks(SYSTEM_SHARED_MEMORY if kind == "system" else CUDA_SHARED_MEMORY)
    if why is None and kind == "cuda":
        why = cuda_unavailable()
    if why is not None:
        raise InputSpecError(f"model '{model}': shared_memory={kind!r} is refused: {why}")


def configuration_unavailable(plan: Plan) -> str | None:
    """Why a measurement ran from the model's metadata alone (None: it had the model's
    configuration)."""
    if plan.spec.configured:
        return None
    why = plan.server.lacks(MODEL_CONFIGURATION) or "the server gave none"
    return (
        f"model configuration: unavailable ({why}): measured from the model's metadata alone;"
        " no batch dimension of the server's own (batch_size 1, rows through shapes=), no"
        " sequence batching, no ensemble steps"
    )


def _fetch_spec(
    endpoints: Endpoints, model: str, version: str | None
) -> tuple[ServerInfo, ModelSpec]:
    """What the server declares (the handle's, else read now) and the model's spec."""
    try:
        known = getattr(endpoints, "server_info", None)
        server = (
            known
            if isinstance(known, ServerInfo) and known.extensions is not None
            else read_server_info(base_url(endpoints.http_url))
        )
        return server, fetch_model_spec(endpoints.http_url, model, version, server=server)
    except OSError as e:
        endpoints.check_alive()
        raise MeasurementError(
            f"cannot read model '{model}' metadata from {endpoints.http_url}: {e}"
        ) from e
