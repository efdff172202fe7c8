"""The table of a suite file's keys: one :class:`~.kinds.Field` per key, from which both the
validator (:mod:`.loader`) and the JSON Schema (:func:`json_schema`, published as
``triton-perf-suite.schema.json`` and printed by ``triton-perf schema``) are made.

A test's keys are the load options (:class:`~pytest_triton_perf.measure.options.LoadOptions`,
the one list of what ``measure()`` takes) and the suite's own (:data:`NOT_KEYWORDS`). A load
option has a row here where its values are checked more closely than its type says; one
without a row (a keyword added later) is accepted too, checked as its type says and
documented by its line in ``LoadOptions``: see :func:`unlisted_options`.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.capacity import AXES, METHODS
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.load.driver import GRPC_CLIENTS
from pytest_triton_perf.load.prompts import parse_rule
from pytest_triton_perf.load.schedule import ARRIVALS
from pytest_triton_perf.load.sequences import ID_TYPES
from pytest_triton_perf.measure import options
from pytest_triton_perf.measure.figures import SLO_KEYS
from pytest_triton_perf.measure.result import Protocol
from pytest_triton_perf.search.objective import ALIASES as OBJECTIVE_ALIASES
from pytest_triton_perf.search.objective import MAXIMISE
from pytest_triton_perf.search.space import KEYS as SPACE_KEYS
from pytest_triton_perf.search.space import PARAMETER_PREFIX, parse_space
from pytest_triton_perf.search.strategy import STRATEGIES
from pytest_triton_perf.suite.kinds import (
    Anything,
    Boolean,
    Checked,
    Choice,
    Either,
    Field,
    KeyProblem,
    Kind,
    ListOf,
    MapOf,
    Number,
    Record,
    Ref,
    Text,
    Whole,
)

#: The published schema, beside the package's modules.
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "triton-perf-suite.schema.json"
#: Test names: what pytest ids and ``-k`` take without quoting.
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
#: Placeholder test name for the sla parsers, whose messages start with ``<test>: ``.
_WHO = "\0"


def _strip(message: str) -> str:
    return message.replace(f"{_WHO}: ", "").replace(_WHO, "")


# -- values checked by the package's own parsers --------------------------------------------


def parse_bounds(value: Any, path: str, *, extras: bool = True) -> dict[str, Any]:
    """The ``sla`` mapping: the marker's keys (Model Analyzer's names accepted), and with
    ``extras`` ``regression`` and ``max_config_gap``; checked by the marker's parsers."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            f"{path}: {value!r} is not accepted; a mapping of sla keys -> bounds is, e.g. "
            f"{path.rpartition('.')[2]}: {{p99_ms: 30, min_throughput: 50}}."
        )
    for key, bound in value.items():
        try:
            if extras and key == "regression":
                sla.parse_regression(_WHO, bound)
            elif extras and key == "max_config_gap":
                sla.parse_config_gap(_WHO, bound)
            elif key in sla.NOT_BOUNDS or not isinstance(key, str):
                raise ConfigError(f"unknown sla key {key!r} here: bounds only.")
            else:
                sla.parse_marker(_WHO, (), {key: bound})
        except ConfigError as e:
            unknown = key not in metrics.MARKER_KEYS and not (extras and key in sla.NOT_BOUNDS)
            raise KeyProblem(key, f"{path}: {_strip(str(e))}", at_key=unknown) from None
    try:  # one bound named twice (p99_ms and perf_latency_p99)
        sla.parse_marker(_WHO, (), dict(value))
    except ConfigError as e:
        last = list(value)[-1]
        raise KeyProblem(last, f"{path}: {_strip(str(e))}", at_key=True) from None
    return dict(value)


def parse_regression_map(value: Any, path: str) -> Any:
    """``regression: {p99: 15%}`` or ``regression: false``."""
    try:
        sla.parse_regression(_WHO, value)
    except ConfigError as e:
        raise ValueError(f"{path}: {_strip(str(e))}") from None
    return value


def parse_search_space(value: Any, path: str) -> dict[str, Any]:
    """The search space, checked key by key by the search's own parser."""
    if isinstance(value, Mapping):
        for key, values in value.items():
            try:
                parse_space({key: values})
            except ValueError as e:
                known = key in SPACE_KEYS or str(key).startswith(PARAMETER_PREFIX)
                raise KeyProblem(key, f"{path}: {e}", at_key=not known) from None
    try:
        parse_space(value)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return dict(value)


def parse_prompt_length(value: Any, path: str) -> Any:
    """``prompt_length``: one length rule, or a rule per input name; each checked by the
    prompts' own parser (which input is a prompt, only the model's metadata tells)."""
    per_input = isinstance(value, Mapping) and not set(value) <= {"mean", "stddev"}
    rules = list(value.items()) if per_input else [("", value)]
    for name, rule in rules:
        where = f"{path}.{name}" if name else path
        try:
            parse_rule("", rule, where)
        except ValueError as e:
            # The parser's message starts with the model, which a suite names elsewhere.
            raise ValueError(str(e).partition(": ")[2]) from None
    return value


def parse_output_length(value: Any, path: str) -> Any:
    """``output_length``: one length rule, checked by the prompts' own parser."""
    try:
        parse_rule("", value, path)
    except ValueError as e:
        raise ValueError(str(e).partition(": ")[2]) from None
    return value


_PROMPT_RULE: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 2,
            "maxItems": 2,
        },
        {
            "type": "object",
            "properties": {
                "mean": {"type": "number", "minimum": 1},
                "stddev": {"type": "number", "minimum": 0},
            },
            "required": ["mean", "stddev"],
            "additionalProperties": False,
        },
    ]
}
PROMPT_LENGTH_SCHEMA: dict[str, Any] = {
    "anyOf": [
        _PROMPT_RULE,
        {"type": "object", "minProperties": 1, "additionalProperties": _PROMPT_RULE},
    ]
}


def _bound_schema(key: str) -> dict[str, Any]:
    meta = metrics.BY_SLA_KEY[metrics.MARKER_KEYS[key]]
    if meta.fraction:
        return {"type": "number", "minimum": 0, "maximum": 1}
    return {"type": "number", "exclusiveMinimum": 0}


REGRESSION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"enum": [False]},
        {
            "type": "object",
            "propertyNames": {"enum": sorted(metrics.METRIC_ALIASES)},
            "additionalProperties": {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string"},
                    {"type": "null"},
                    {"enum": [False]},
                ]
            },
        },
    ]
}


def _bounds_schema(extras: bool) -> dict[str, Any]:
    props: dict[str, Any] = {key: _bound_schema(key) for key in metrics.MARKER_KEYS}
    if extras:
        props["regression"] = REGRESSION_SCHEMA
        props["max_config_gap"] = {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9.]+\s*%?\s*$"},
            ]
        }
    return {
        "type": "object",
        "minProperties": 1,
        "properties": props,
        "additionalProperties": False,
    }


_SPACE_ITEM: dict[str, dict[str, Any]] = {
    "instance_count": {"type": "integer", "minimum": 1},
    "instance_kind": {"type": "string"},
    "max_batch_size": {"type": "integer", "minimum": 0},
    "dynamic_batching": {"type": "boolean"},
    "preferred_batch_size": {"type": "integer", "minimum": 1},
    "max_queue_delay_us": {"type": "integer", "minimum": 0},
}
SPACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        key: {"type": "array", "minItems": 1, "items": _SPACE_ITEM.get(key, {})}
        for key in SPACE_KEYS
    },
    "patternProperties": {
        "^parameters\\..+$": {
            "type": "array",
            "minItems": 1,
            "items": {"type": ["string", "number"]},
        }
    },
    "additionalProperties": False,
}

SLA = Ref(
    "sla",
    Checked(
        parse_bounds,
        _bounds_schema(True),
        "a mapping of the sla marker's keys (Model Analyzer's names too), regression and "
        "max_config_gap",
        per_key=True,
    ),
)
BOUNDS = Ref(
    "bounds",
    Checked(
        functools.partial(parse_bounds, extras=False),
        _bounds_schema(False),
        "a mapping of the sla marker's bound keys",
        per_key=True,
    ),
)
REGRESSION = Ref(
    "regression",
    Checked(
        parse_regression_map,
        REGRESSION_SCHEMA,
        "a mapping of metric -> minimum effect (p99: 15%), or false",
    ),
)
PROMPT_LENGTH = Ref(
    "prompt_length",
    Checked(
        parse_prompt_length,
        PROMPT_LENGTH_SCHEMA,
        "a number of tokens >= 1, [low, high], {mean, stddev}, or a mapping of input name -> "
        "one of these",
    ),
)
OUTPUT_LENGTH = Ref(
    "output_length",
    Checked(
        parse_output_length,
        _PROMPT_RULE,
        "a number of tokens >= 1, [low, high] or {mean, stddev}",
    ),
)
SPACE = Checked(
    parse_search_space,
    SPACE_SCHEMA,
    f"a mapping of {', '.join(SPACE_KEYS)} or {PARAMETER_PREFIX}<key> -> a list of values",
    per_key=True,
)

# -- the table -------------------------------------------------------------------------------

#: What each per-request SLO of ``slo:`` bounds (its key is ``measure(slo=...)``'s).
_SLO_TEXT = {
    "ttft_ms": "time to first response",
    "tpot_ms": "time per output token (vLLM's TPOT)",
    "e2e_ms": "end-to-end latency, to the last response",
}
SLO = Record(
    "slo",
    tuple(
        Field(key, Number(0.0, unit="ms"), f"upper bound on each request's {_SLO_TEXT[key]}",
              {"ttft_ms": "200", "tpot_ms": "50"}.get(key, "2000"))
        for key in SLO_KEYS
    ),
)  # fmt: skip

SECONDS = "seconds"
COUNT = Whole(1)
POSITIVE = Number(0.0)

CAPACITY = Record(
    "capacity",
    (
        Field("over", Choice(AXES), "the load axis searched (default concurrency)", "request_rate"),
        Field("start", POSITIVE, "the first level (default 1, or for a rate half the closed-loop "
              "throughput at concurrency 1)", "4"),
        Field("limit", POSITIVE, "the highest level tried (default 1024, or 10^6 requests/s)",
              "64"),
        Field("resolution", POSITIVE, "the bisection stops this close (default 1, or 5% of the "
              "rate)", "2"),
        Field("bounds", BOUNDS, "bounds added to or overriding the test's sla for the search",
              "{p99_ms: 30}"),
        Field("attainment", Number(0.0, maximum=1.0), "capacity by goodput: the share of "
              "requests that must meet every SLO of slo: (DistServe's capacity)", "0.9"),
        Field("method", Choice(METHODS), "ramp (one pass of a rising rate, then one steady "
              "level; the default over request_rate) or search (doubling, then bisection; "
              "the default over concurrency)", "search"),
    ),
)  # fmt: skip

SEARCH = Record(
    "search",
    (
        Field("space", SPACE, "the configurations: key -> list of values", "{instance_count: "
              "[1, 2], dynamic_batching: [false, true]}", required=True),
        Field("objective", Choice(tuple(MAXIMISE), tuple(OBJECTIVE_ALIASES)),
              "what is best (default capacity, which needs a latency bound)", "throughput"),
        Field("strategy", Choice(STRATEGIES), "predict (a short probe, a queueing model, one "
              "level at full length; default), race (candidates loaded together, measured in "
              "interleaved rounds), halving (short measurements first) or grid", "grid"),
        Field("over", Choice(AXES), "the capacity objective's load axis", "concurrency"),
        Field("start", POSITIVE, "the capacity objective's first level", "1"),
        Field("limit", POSITIVE, "the capacity objective's highest level", "8"),
        Field("method", Choice(METHODS), "the capacity objective's method: ramp (the default "
              "over request_rate) or search", "search"),
        Field("model_repository", Text(), "where the model's files are, relative to this file "
              "(a remote server)", "models"),
        Field("sla", BOUNDS, "the constraints (default: the test's sla bounds)", "{p99_ms: 50}"),
    ),
)  # fmt: skip

LOAD = Ref("load", Record(
    "load",
    (
        Field("concurrency", Either((COUNT, ListOf(COUNT))), "closed loop: requests in flight; "
              "a list measures each level", "[1, 8]"),
        Field("request_rate", Either((Number(0.0, unit="requests/s"),
                                      ListOf(Number(0.0, unit="requests/s")))),
              "open loop: requests per second; a list measures each rate", "[50, 100]"),
        Field("arrival", Choice(ARRIVALS), "open loop: arrivals (default constant)", "poisson"),
        Field("seed", Whole(0), "seeds Poisson arrivals, random inputs and sequence lengths "
              "(default 0)", "7"),
        Field("max_in_flight", COUNT, "open loop: at most this many requests outstanding",
              "64"),
        Field("capacity", Either((CAPACITY, Boolean())), "search the highest load within the "
              "latency bounds (triton_perf.capacity); true or {} for the defaults",
              "{over: concurrency, limit: 64}"),
        Field("search", SEARCH, "search the model's configurations (triton_perf.search)",
              "{space: {instance_count: [1, 2]}, objective: throughput}"),
    ),
))  # fmt: skip

INPUT_VALUE = Either(
    (
        ListOf(Anything(words="a value")),
        Record(
            "input",
            (
                Field(
                    "content",
                    ListOf(Anything(words="a value")),
                    "the values, row-major",
                    "[1, 2, 3, 4]",
                ),
                Field("shape", ListOf(Whole(0)), "their shape", "[2, 2]"),
                Field("b64", Text(), "raw bytes, base64", "AACAPwAAAEA="),
            ),
        ),
    )
)
INPUT_SET = Either(
    (
        Text(words="'random', 'zero' or the path of a perf_analyzer JSON input-data file "
             "(relative to this file)"),
        MapOf(INPUT_VALUE, what="input name"),
    )
)  # fmt: skip
INPUTS = Ref(
    "inputs",
    Either((INPUT_SET, ListOf(INPUT_SET))),
    "'random', 'zero', the path of a perf_analyzer JSON input-data file (relative to this "
    "file), a mapping of input name -> values, or a non-empty list of these",
)

MARKER_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
MARKER = Either(
    (
        Text(words="a marker name", pattern=MARKER_NAME),
        MapOf(
            Anything(words="its arguments"),
            what="marker name",
            key_pattern=MARKER_NAME,
            max_items=1,
        ),
    )
)

#: Every key of a test (``defaults`` takes them all but ``name``), in the documentation's order.
TEST_FIELDS: tuple[Field, ...] = (
    Field("name", Text(words="a name of letters, digits, _ . - (the pytest id)",
                       pattern=NAME_PATTERN),
          "the test's name: its pytest id is FILE::name", "bert_p99", required=True),
    Field("model", Text(), "the model to measure (here or in defaults)", "bert-large"),
    Field("version", Either((Whole(1), Text())), "the model version (default: the server's "
          "choice)", "2"),
    Field("load", LOAD, "the load: concurrency, request_rate, capacity or search "
          "(default concurrency 1)", "{concurrency: [1, 8]}"),
    Field("inputs", INPUTS, "'random' (default), 'zero', a perf_analyzer JSON file, input name "
          "-> values, or a list of these (sent in turn)", "zero"),
    Field("shapes", MapOf(ListOf(Whole(1)), what="input name"), "fills dynamic (-1) "
          "dimensions", "{INPUT0: [16]}"),
    Field("batch_size", COUNT, "inferences per request (default 1)", "8"),
    Field("protocol", Choice(PROTOCOLS), "grpc (default), http or generate (Triton's HTTP "
          "generate extension)", "http"),
    Field("warmup_s", Number(0.0, exclusive=False, unit=SECONDS), "warm-up before the "
          "windows (default: --triton-perf-warmup-s)", "1"),
    Field("windows", COUNT, "measurement windows (default: --triton-perf-windows)", "3"),
    Field("window_s", Number(0.0, unit=SECONDS), "seconds per window (default: "
          "--triton-perf-window-s)", "2"),
    Field("workers", Either((COUNT, Choice(("auto",)))), "load generator processes (default "
          "auto)", "2"),
    Field("grpc_client", Choice(GRPC_CLIENTS), "gRPC client: lean (default) or grpcio",
          "grpcio"),
    Field("sequence_length", COUNT, "sequence models: requests per sequence", "10"),
    Field("sequence_length_variation", Number(0.0, exclusive=False), "sequence models: the "
          "length's variation, a fraction", "0.2"),
    Field("sequence_id_type", Choice(ID_TYPES), "sequence models: correlation ID "
          "type (default auto)", "uint64"),
    Field("token_output", Text(), "streaming models: the output whose elements are a "
          "response's tokens", "TOKEN"),
    Field("stream_timeout_s", Number(0.0, unit=SECONDS), "streaming models: the longest wait "
          "for a request's next response (default 10)", "30"),
    Field("prompt_length", PROMPT_LENGTH, "prompt inputs' length in tokens: fixed, [low, high] "
          "or {mean, stddev}, or by input name", "[64, 512]"),
    Field("slo", SLO, "streaming models: per-request SLOs (ms), for goodput and "
          "slo_attainment", "{ttft_ms: 200, tpot_ms: 50}"),
    Field("prompts", Text(), "text models: a JSONL file of prompts (relative to this file), "
          "one {text, output_length} object per line", "prompts.jsonl"),
    Field("output_length", OUTPUT_LENGTH, "text models: tokens to generate (max_tokens): "
          "fixed, [low, high] or {mean, stddev}", "128"),
    Field("tokenizer", Text(), "text models: a local tokenizer.json (relative to this file) "
          "counting input and output tokens", "tokenizer.json"),
    Field("sla", SLA, "the sla marker's keys: bounds checked on every measurement",
          "{p99_ms: 30, min_throughput: 50}"),
    Field("regression", REGRESSION, "minimum effects of baseline comparisons (the marker's "
          "regression=)", "{p99: 15%}"),
    Field("markers", ListOf(MARKER), "pytest markers: a name, or name -> arguments (a "
          "mapping: keyword arguments; a list: positional ones)", "[slow]"),
)  # fmt: skip

#: Keys of ``load`` that are measure() keywords, and the test keys that are not.
LOAD_KEYWORDS = ("concurrency", "request_rate", "arrival", "seed", "max_in_flight")
NOT_KEYWORDS = ("name", "model", "load", "sla", "regression", "markers")


def unlisted_options() -> tuple[str, ...]:
    """The load options (``LoadOptions``) that no row of the table names: accepted in a
    test, checked as their type says, and passed on to ``measure()``."""
    known = {f.key for f in TEST_FIELDS} | set(LOAD_KEYWORDS)
    return tuple(k for k in options.keys(options.LoadOptions) if k not in known)


def kind_of(hint: Any) -> Kind:
    """The kind of a value of type ``hint``: a choice for a Literal, a text, a whole number,
    true or false, a list or a mapping of these; None (the default) is left out. Any value
    for the rest: the engine checks it."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal and all(isinstance(a, str) for a in args):
        return Choice(args)
    if origin in (typing.Union, types.UnionType):
        kinds = [kind_of(a) for a in args if a is not type(None)]
        if any(isinstance(k, Anything) for k in kinds):
            return Anything()
        return kinds[0] if len(kinds) == 1 else Either(tuple(kinds))
    if origin in (Sequence, list) and len(args) == 1:
        return ListOf(kind_of(args[0]))
    if origin in (Mapping, dict) and args[:1] == (str,):
        return MapOf(kind_of(args[1]))
    simple: dict[Any, Kind] = {str: Text(), int: Whole(None), bool: Boolean()}
    return simple.get(hint, Anything())


def _unlisted(key: str) -> Field:
    hint = typing.get_type_hints(options.LoadOptions)[key]
    text = options.docs().get(key, "a keyword of measure(), passed on to it")
    return Field(key, kind_of(hint), text.replace("``", "").rstrip("."))


@functools.cache
def test_record(defaults: bool = False) -> Record:
    """A test's record (``defaults``: every key optional, no ``name``)."""
    fields = [*TEST_FIELDS, *(_unlisted(k) for k in unlisted_options())]
    if defaults:
        fields = [f for f in fields if f.key != "name"]
    return Record("defaults" if defaults else "test", tuple(fields))


@functools.cache
def document_record() -> Record:
    """The file: ``defaults`` and ``tests``."""
    return Record(
        "suite",
        (
            Field("defaults", test_record(True), "keys merged into every test (sla, "
                  "regression and markers add up, the test's own win per key)",
                  "{protocol: grpc, window_s: 2}"),
            Field("tests", ListOf(test_record()), "the tests: one pytest item each",
                  "[{name: bert_p99, model: bert-large}]", required=True),
        ),
    )  # fmt: skip


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 07) of a suite file, for editors (yaml-language-server)."""
    test = test_record().schema()
    defaults = test_record(True).schema()
    doc = document_record()
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "pytest-triton-perf suite (triton-perf*.yaml)",
        "description": "Performance tests of models served by Triton, collected by pytest.",
        "type": "object",
        "properties": {
            "defaults": {
                "description": doc.by_key["defaults"].text,
                "$ref": "#/definitions/defaults",
            },
            "tests": {
                "description": doc.by_key["tests"].text,
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/definitions/test"},
            },
        },
        "required": ["tests"],
        "additionalProperties": False,
        "definitions": {
            "test": test,
            "defaults": defaults,
            **{
                ref.name: ref.kind.schema()
                for ref in (LOAD, INPUTS, PROMPT_LENGTH, SLA, BOUNDS, REGRESSION)
            },
        },
    }


def json_schema_text() -> str:
    """The schema as the published file holds it."""
    return json.dumps(json_schema(), indent=2) + "\n"
