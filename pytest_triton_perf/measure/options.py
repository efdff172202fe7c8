"""The load options of a measurement: one typed structure that everyone who takes them reads.

``triton_perf.measure()`` and ``triton_perf.capacity()`` type their keywords with it, the
engine (:func:`pytest_triton_perf.measure.engine.prepare`) takes and checks them, and the
YAML suite's validator and JSON Schema (:mod:`pytest_triton_perf.suite.schema`) accept its
keys. A keyword is added here, once: its type, its line of documentation (the ``#:``
comment, which the schema shows) and its default (:data:`LOAD_DEFAULTS`).

The structure is split by who takes which part: :class:`EngineOptions` is one measurement
of the engine (one load level), :class:`CallOptions` is what the fixture's calls take
beside their load axis (``measure()``'s level, ``capacity()``'s search), and
:class:`LoadOptions` is every key.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypedDict, cast

from pytest_triton_perf.load.driver import GrpcClient
from pytest_triton_perf.load.inputs import InputsArg
from pytest_triton_perf.load.prompts import PromptLength
from pytest_triton_perf.load.schedule import ArrivalKind
from pytest_triton_perf.load.sequences import IdType
from pytest_triton_perf.load.shared_memory import ShmKind
from pytest_triton_perf.load.stream import DEFAULT_TIMEOUT_S
from pytest_triton_perf.measure.result import Protocol

#: Requests outstanding at most in an open loop when ``max_in_flight`` is not given.
DEFAULT_MAX_IN_FLIGHT = 256


class WorkloadOptions(TypedDict, total=False):
    """What is sent and how, apart from the load level and the windows."""

    #: The model version (default: the server's choice).
    version: str | None
    #: Inferences per request.
    batch_size: int
    #: ``"grpc"``, ``"http"`` or ``"generate"`` (Triton's HTTP generate extension:
    #: generate_stream's server-sent events for a decoupled model, generate otherwise).
    protocol: Protocol
    #: ``"random"``, ``"zero"``, the path of a perf_analyzer JSON input-data file, arrays by
    #: input name, or a list of these (sent in turn).
    inputs: InputsArg
    #: Sizes of dynamic (-1) dimensions by input name.
    shapes: Mapping[str, Sequence[int]] | None
    #: Seeds random inputs, Poisson arrivals, sequence lengths and prompt lengths.
    seed: int
    #: Open loop: ``"constant"`` or ``"poisson"`` arrivals.
    arrival: ArrivalKind
    #: Open loop: at most this many requests outstanding (default 256).
    max_in_flight: int | None
    #: Load generator processes, or ``"auto"`` to add processes when one is saturated.
    workers: int | Literal["auto"]
    #: gRPC client: ``"lean"`` (HTTP/2 written directly) or ``"grpcio"`` (grpc.aio).
    grpc_client: GrpcClient
    #: Sequence models: requests per sequence (default: 20 +-20%, perf_analyzer's).
    sequence_length: int | None
    #: Sequence models: the length's variation, a fraction in [0, 1).
    sequence_length_variation: float | None
    #: Sequence models: correlation ID type; ``"auto"`` follows the model's CORRID input.
    sequence_id_type: IdType
    #: Streaming models: the output whose elements are a response's tokens.
    token_output: str | None
    #: Length of prompt inputs in tokens: 128, (64, 512), {"mean": 256, "stddev": 64}, or
    #: a dict of these by input name.
    prompt_length: PromptLength | None
    #: Text models (a BYTES ``text_input``): a JSONL file of prompts, one object per line,
    #: {"text": "...", "output_length": 128} ("prompt" for "text"; output_length optional).
    prompts: str | os.PathLike[str] | None
    #: Text models: tokens to generate (sent as max_tokens): 128, (64, 512) or
    #: {"mean": 256, "stddev": 64}; a prompts file's output_length takes precedence.
    output_length: PromptLength | None
    #: Text models: a local tokenizer.json (the tokenizers library's) counting input and
    #: output tokens; without it output tokens are responses.
    tokenizer: str | os.PathLike[str] | None
    #: Streaming models: the longest wait for a request's next response, in seconds.
    stream_timeout_s: float
    #: Streaming models: per-request SLOs, upper bounds in ms on ttft_ms, tpot_ms and
    #: e2e_ms (any of them), for slo_attainment and goodput: {"ttft_ms": 200, "tpot_ms": 50}.
    slo: Mapping[str, float] | None
    #: ``"none"`` (tensors over the socket), ``"system"`` or ``"cuda"`` shared-memory regions.
    shared_memory: ShmKind
    #: BLS models: the models they call, for the server time per composing model.
    composing_models: Sequence[str] | None


class LevelOptions(TypedDict, total=False):
    """One load level: a closed loop or an open loop."""

    #: Closed loop: requests (or sequences) in flight.
    concurrency: int
    #: Open loop: requests per second (instead of ``concurrency``).
    request_rate: float | None


class WindowOptions(TypedDict, total=False):
    """How long to measure, over the session's ``--triton-perf-*`` defaults."""

    #: Seconds of warm-up before the windows (default: ``--triton-perf-warmup-s``).
    warmup_s: float | None
    #: Measurement windows at least (default: ``--triton-perf-windows``).
    windows: int | None
    #: Seconds per window (default: ``--triton-perf-window-s``).
    window_s: float | None


class EngineOptions(LevelOptions, WorkloadOptions, total=False):
    """The keywords of one measurement by the engine (its ``settings`` hold the windows)."""


class CallOptions(WorkloadOptions, WindowOptions, total=False):
    """The keywords of ``triton_perf.measure()`` beside its level, and of ``.capacity()``."""


class LoadOptions(LevelOptions, WorkloadOptions, WindowOptions, total=False):
    """Every load option: what a YAML suite's test and ``triton_perf.measure()`` take."""


def keys(options: type) -> tuple[str, ...]:
    """The keys of a TypedDict of this module, in the order they are declared."""
    return tuple(options.__annotations__)


#: Every option's default: the one place they are written.
LOAD_DEFAULTS: Final[LoadOptions] = {
    "version": None,
    "batch_size": 1,
    "protocol": "grpc",
    "inputs": "random",
    "shapes": None,
    "seed": 0,
    "arrival": "constant",
    "max_in_flight": None,
    "workers": "auto",
    "grpc_client": "lean",
    "sequence_length": None,
    "sequence_length_variation": None,
    "sequence_id_type": "auto",
    "token_output": None,
    "prompt_length": None,
    "prompts": None,
    "output_length": None,
    "tokenizer": None,
    "stream_timeout_s": DEFAULT_TIMEOUT_S,
    "slo": None,
    "shared_memory": "none",
    "composing_models": None,
    "concurrency": 1,
    "request_rate": None,
    "warmup_s": None,
    "windows": None,
    "window_s": None,
}
ENGINE_KEYS: Final = frozenset(keys(EngineOptions))
WINDOW_KEYS: Final = keys(WindowOptions)


def with_defaults(options: Mapping[str, Any]) -> EngineOptions:
    """The engine's options: those given, the others' defaults. A keyword the engine does
    not take is the TypeError Python raises for a function's unknown keyword."""
    for key in options:
        if key not in ENGINE_KEYS:
            raise TypeError(f"prepare() got an unexpected keyword argument {key!r}")
    values = {k: v for k, v in LOAD_DEFAULTS.items() if k in ENGINE_KEYS}
    values.update(options)
    return cast(EngineOptions, values)


def split_windows(options: CallOptions) -> tuple[WindowOptions, WorkloadOptions]:
    """A call's window overrides, and the rest (the engine's keywords)."""
    rest = dict(options)
    windows = {key: rest.pop(key) for key in WINDOW_KEYS if key in rest}
    return cast(WindowOptions, windows), cast(WorkloadOptions, rest)


@functools.cache
def docs() -> dict[str, str]:
    """Each option's documentation: the ``#:`` comment above its key, read from this
    module's source as Sphinx reads attribute comments."""
    try:
        source = inspect.getsource(sys.modules[__name__])
    except OSError:  # installed without sources: no lines to show
        return {}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for cls in ast.parse(source).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                comment: list[str] = []
                row = node.lineno - 2  # the line above, 0-based
                while row >= 0 and lines[row].strip().startswith("#:"):
                    comment.insert(0, lines[row].strip().removeprefix("#:").strip())
                    row -= 1
                out[node.target.id] = " ".join(comment)
    return out


__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "LOAD_DEFAULTS",
    "CallOptions",
    "EngineOptions",
    "LevelOptions",
    "LoadOptions",
    "WindowOptions",
    "WorkloadOptions",
    "docs",
    "keys",
    "split_windows",
    "with_defaults",
]
