"""The published JSON Schema of suites is the validator's table: the committed file is what
the table makes, and a small JSON Schema checker agrees with the validator on good and bad
suites. The documentation's YAML keys reference names every key."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_triton_perf.cli import main
from pytest_triton_perf.suite import schema as suite_schema
from pytest_triton_perf.suite.kinds import Field, Record, Ref
from pytest_triton_perf.suite.loader import SuiteError, load_suite
from pytest_triton_perf.suite.schema import SCHEMA_FILE, json_schema, json_schema_text
from tests.conftest import REPO
from tests.docs_pages import page


def test_the_published_schema_is_the_tables() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        "the committed schema is stale: run "
        "`triton-perf schema` after regenerating it with "
        "python -c 'from pytest_triton_perf.suite.schema import SCHEMA_FILE, json_schema_text; "
        "SCHEMA_FILE.write_text(json_schema_text())'"
    )


def test_triton_perf_schema_prints_it() -> None:
    out = io.StringIO()
    assert main(["schema"], out) == 0
    assert json.loads(out.getvalue()) == json_schema()


# -- a small JSON Schema (draft 07) checker: the keywords the table's schema uses ------------


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` (empty: valid)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        return errors(value, root["definitions"][name], root, path)
    out: list[str] = []
    kinds = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(kinds[t](value) for t in types):
            return [f"{path}: not {schema['type']}"]
    if "enum" in schema and not any(value == e and type(value) is type(e) for e in schema["enum"]):
        out.append(f"{path}: not in enum")
    if "anyOf" in schema and all(errors(value, s, root, path) for s in schema["anyOf"]):
        out.append(f"{path}: matches no anyOf")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path}: not above exclusiveMinimum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: too few items")
        for i, item in enumerate(value):
            out += errors(item, schema.get("items", {}), root, f"{path}[{i}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{path}: too few properties")
        if len(value) > schema.get("maxProperties", len(value)):
            out.append(f"{path}: too many properties")
        out += [f"{path}: {k} is required" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key, item in value.items():
            if "propertyNames" in schema:
                out += errors(key, schema["propertyNames"], root, f"{path}.{key} (name)")
            matched = [s for p, s in patterns.items() if re.search(p, key)]
            if key in props:
                out += errors(item, props[key], root, f"{path}.{key}")
            for s in matched:
                out += errors(item, s, root, f"{path}.{key}")
            extra = schema.get("additionalProperties", True)
            if key not in props and not matched:
                if extra is False:
                    out.append(f"{path}: {key} is not allowed")
                elif isinstance(extra, dict):
                    out += errors(item, extra, root, f"{path}.{key}")
    return out


GOOD = [
    (REPO / "example_repo" / "triton-perf-suite.yaml").read_text(),
    """
    defaults: {protocol: grpc, window_s: 2, markers: [slow]}
    tests:
      - name: bert_p99
        model: bert-large
        load: {concurrency: [1, 8]}
        inputs: zero
        sla: {p99_ms: 30, min_throughput: 50, max_gpu_memory_mb: 5000}
        regression: {p99: 15%}
      - name: open
        model: simple
        version: 2
        load: {request_rate: [50, 100.5], arrival: poisson, seed: 3, max_in_flight: 4}
        inputs: [random, {INPUT0: [1, 2]}, {INPUT0: {content: [1], shape: [1]}}]
        shapes: {INPUT0: [16]}
        workers: auto
        grpc_client: grpcio
        sla: {perf_latency_p99: 50, max_error_rate: 0.01, regression: false}
        markers: [{xfail: {reason: x}}, {skipif: [false]}]
      - name: cap
        model: sleepy
        load: {capacity: {over: request_rate, start: 5, bounds: {p99_ms: 40}}}
        sla: {min_capacity: 40, p95_ms: 80}
      - name: best
        model: sleepy
        load:
          search:
            space: {instance_count: [1, 2], instance_kind: [cpu], parameters.x: [1, "2"]}
            objective: perf_throughput
            strategy: grid
        sla: {p99_ms: 100, max_config_gap: 15%}
        sequence_length: 10
        sequence_length_variation: 0.2
        sequence_id_type: uint64
    """,
]

BAD = [
    "tests: []",
    "tests: [{model: s}]",
    "tests: [{name: a, model: s, protocl: grpc}]",
    "tests: [{name: a, model: s, load: {concurrency: 0}}]",
    "tests: [{name: a, model: s, load: {concurrency: [1, true]}}]",
    "tests: [{name: a, model: s, load: {request_rate: -1}}]",
    "tests: [{name: a, model: s, load: {arrival: burst, request_rate: 1}}]",
    "tests: [{name: a, model: s, load: {capacity: {over: batch}}}]",
    "tests: [{name: a, model: s, load: {search: {objective: throughput}}}]",
    "tests: [{name: a, model: s, load: {search: {space: {instance_cnt: [1]}}}}]",
    "tests: [{name: a, model: s, protocol: tcp}]",
    "tests: [{name: 'a b', model: s}]",
    "tests: [{name: a, model: s, windows: 1.5}]",
    "tests: [{name: a, model: s, window_s: 0}]",
    "tests: [{name: a, model: s, sla: {p99: 30}}]",
    "tests: [{name: a, model: s, sla: {p99_ms: -1}}]",
    "tests: [{name: a, model: s, sla: {max_error_rate: 2}}]",
    "tests: [{name: a, model: s, regression: {latency: 5%}}]",
    "tests: [{name: a, model: s, markers: [{xfail: {}, skip: {}}]}]",
    "tests: [{name: a, model: s, shapes: {INPUT0: [0]}}]",
    "defaults: {name: a}\ntests: [{name: a, model: s}]",
    "tets: [{name: a, model: s}]",
]


def _validate(tmp_path: Path, text: str) -> str:
    path = tmp_path / "triton-perf-x.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    try:
        load_suite(path)
    except SuiteError as e:
        return str(e)
    return ""


@pytest.mark.parametrize("text", GOOD, ids=["example", "every-key"])
def test_a_suite_the_validator_accepts_the_schema_accepts(tmp_path: Path, text: str) -> None:
    assert _validate(tmp_path, text) == ""
    schema = json_schema()
    assert errors(yaml.safe_load(textwrap.dedent(text)), schema, schema) == []


@pytest.mark.parametrize("text", BAD)
def test_a_suite_the_schema_refuses_the_validator_refuses(tmp_path: Path, text: str) -> None:
    schema = json_schema()
    assert errors(yaml.safe_load(text), schema, schema), "the schema accepts it"
    assert _validate(tmp_path, text), "the validator accepts it"


def _keys(record: Record) -> list[Field]:
    out = []
    for f in record.fields:
        out.append(f)
        kind = f.kind.kind if isinstance(f.kind, Ref) else f.kind
        if isinstance(kind, Record):
            out += _keys(kind)
        for inner in getattr(kind, "kinds", ()):
            if isinstance(inner, Record) and inner.name != "input":
                out += _keys(inner)
    return out


def test_the_docs_document_every_key() -> None:
    """The YAML keys reference (its tables generated from this schema when the site is
    built) names every key, nested ones too."""
    text = page("reference/yaml-keys.md")
    keys = {f.key for f in _keys(suite_schema.document_record())}
    keys |= {f.key for f in _keys(suite_schema.test_record())}
    missing = sorted(k for k in keys if f"| `{k}`" not in text)
    assert not missing, f"the YAML keys reference does not name {missing}"
