"""Checks of a measurement's arguments that need no server: the load level, the open loop,
the load generator, sequences and streams. Each raises InputSpecError (a ValueError) naming
the model, the value and what is accepted; :func:`pytest_triton_perf.measure.plan.prepare`
runs them before anything is sent."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import get_args

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.driver import GRPC_CLIENTS
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.load.schedule import ARRIVALS
from pytest_triton_perf.load.sequences import (
    DEFAULT_LENGTH,
    DEFAULT_VARIATION,
    ID_TYPES,
    SequencePlan,
    random_id_base,
)
from pytest_triton_perf.load.stream import StreamSpec
from pytest_triton_perf.measure.figures import SLO_KEYS
from pytest_triton_perf.measure.options import EngineOptions
from pytest_triton_perf.measure.result import Protocol

#: What ``protocol`` accepts.
PROTOCOLS: tuple[str, ...] = get_args(Protocol)


def is_number(value: object) -> bool:
    """A number, not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: object) -> bool:
    """An integer, not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_args(model: str, options: EngineOptions) -> None:
    """InputSpecError naming the model and the first value of the load level, the open
    loop, the load generator or the protocol that is not accepted."""

    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{model}': {what}")

    concurrency, request_rate = options["concurrency"], options["request_rate"]
    protocol, arrival = options["protocol"], options["arrival"]
    max_in_flight, workers = options["max_in_flight"], options["workers"]
    grpc_client = options["grpc_client"]

    if not (is_count(concurrency) and concurrency >= 1):
        raise bad(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if protocol not in PROTOCOLS:
        raise bad(
            f"protocol must be one of {', '.join(map(repr, PROTOCOLS))} (generate: Triton's"
            f" HTTP generate extension), got {protocol!r}"
        )
    if request_rate is not None:
        if not (is_number(request_rate) and request_rate > 0):
            raise bad(f"request_rate must be a number > 0 (requests/s), got {request_rate!r}")
        if concurrency != 1:
            raise bad(
                f"concurrency={concurrency} applies to a closed loop; with request_rate use"
                " max_in_flight to bound requests in flight"
            )
    if arrival not in ARRIVALS:
        raise bad(f"arrival must be one of {', '.join(map(repr, ARRIVALS))}, got {arrival!r}")
    if max_in_flight is not None and not (is_count(max_in_flight) and max_in_flight >= 1):
        raise bad(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
    if workers != "auto" and not (is_count(workers) and int(workers) >= 1):
        raise bad(f"workers must be an integer >= 1 or 'auto', got {workers!r}")
    if grpc_client not in GRPC_CLIENTS:
        raise bad(
            f"grpc_client must be one of {', '.join(map(repr, GRPC_CLIENTS))}, got {grpc_client!r}"
        )


def sequence_plan(
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
    if length is not None and not (is_count(length) and length >= 1):
        raise bad(
            f"sequence_length must be an integer >= 1 (requests per sequence), got {length!r}"
        )
    if variation is not None and not (is_number(variation) and 0 <= variation < 1):
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


def stream_spec(
    spec: ModelSpec,
    protocol: str,
    token_output: str | None,
    timeout_s: float,
    text_output: str | None = None,
) -> StreamSpec | None:
    """How a decoupled model is streamed, or any model driven over ``protocol="generate"``
    (None for a request/response model over the inference protocols); InputSpecError for
    options it cannot take. ``text_output``: the output whose text is kept per request
    (a tokenizer counts it)."""

    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{spec.name}': {what}")

    if not (is_number(timeout_s) and timeout_s > 0):
        raise bad(f"stream_timeout_s must be a number of seconds > 0, got {timeout_s!r}")
    if protocol == "generate":
        if spec.sequence is not None:
            raise bad(
                "protocol='generate' does not carry sequence IDs (the generate extension"
                " takes inputs only); measure a sequence model over 'grpc' or 'http'"
            )
        if token_output is not None and token_output not in {o.name for o in spec.outputs}:
            raise bad(
                f"token_output={token_output!r} is not an output; its outputs are "
                + (", ".join(repr(o.name) for o in spec.outputs) or "(none)")
            )
        return StreamSpec(
            spec.name, token_output, float(timeout_s), text_output, events=spec.decoupled
        )
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
            " drives the ModelStreamInfer stream, or over the generate extension's"
            " generate_stream (protocol='generate')"
        )
    if token_output is not None and token_output not in {o.name for o in spec.outputs}:
        raise bad(
            f"token_output={token_output!r} is not an output; its outputs are "
            + (", ".join(repr(o.name) for o in spec.outputs) or "(none)")
        )
    return StreamSpec(spec.name, token_output, float(timeout_s), text_output)


def check_slo(
    spec: ModelSpec, slo: object, streamed: bool | None = None
) -> tuple[tuple[str, float], ...]:
    """The per-request SLOs of ``slo=`` (None: none) as (key, bound in ms) pairs;
    InputSpecError for a value that is not a non-empty mapping of :data:`SLO_KEYS` to
    milliseconds > 0, or for a model that does not stream (the SLOs bound its responses)."""
    if slo is None:
        return ()
    example = "slo={'ttft_ms': 200, 'tpot_ms': 50, 'e2e_ms': 2000}"
    accepted = ", ".join(SLO_KEYS)

    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{spec.name}': {what}")

    if not isinstance(slo, Mapping) or not slo:
        raise bad(
            f"slo={slo!r} is not a mapping of SLOs; give one or more of {accepted} (upper "
            f"bounds in milliseconds), e.g. {example}"
        )
    out = []
    for key, value in slo.items():
        if key not in SLO_KEYS:
            raise bad(f"slo key {key!r} is not an SLO; accepted: {accepted} (e.g. {example})")
        if not (is_number(value) and 0 < value < math.inf):
            raise bad(f"slo {key}={value!r} is not a number of milliseconds > 0 (e.g. {example})")
        out.append((str(key), float(value)))
    if not (spec.decoupled if streamed is None else streamed):
        raise bad(
            "slo bounds the TTFT, time per output token and end-to-end latency of a streaming"
            " model's requests; this model is not decoupled (one response per request): bound"
            " its latency with the sla marker (p99_ms=...) instead"
        )
    return tuple(out)
