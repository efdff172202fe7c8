"""Every key the documentation lists for a YAML suite's test, in one suite run against the
suite's server: it is collected, every test passes, and each key reached the measurement
(the JSON results show what was measured). The streaming keys run on the decoupled ``llm``
model; ``search`` (a configuration search, which loads model copies) has tests of its own."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS
from tests.docs_pages import hooks
from tests.test_plugin import remote_args

SUITE = """\
defaults:
  windows: 2
  sla: {max_error_rate: 0}
  regression: {p99: 50%}
  markers: [documented]
tests:
  - name: open_loop_http
    model: simple
    version: 1
    load: {request_rate: 40, arrival: poisson, seed: 3, max_in_flight: 4}
    inputs: [zero, {INPUT0: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}]
    batch_size: 2
    protocol: http
    warmup_s: 0.1
    window_s: 0.25
    workers: 1
    sla: {p99_ms: 5000, min_throughput: 1}
  - name: dynamic_grpcio
    model: dynamic
    load: {concurrency: 2}
    shapes: {INPUT0: [4]}
    grpc_client: grpcio
  - name: sequences
    model: accumulator
    load: {concurrency: 2}
    sequence_length: 3
    sequence_length_variation: 0.2
    sequence_id_type: uint64
  - name: streaming_prompts
    model: llm
    load: {concurrency: 4}
    token_output: TOKEN
    stream_timeout_s: 5
    prompt_length: [8, 16]
    slo: {ttft_ms: 5000, tpot_ms: 1000, e2e_ms: 10000}
    sla: {min_goodput: 1, min_slo_attainment: 0.9, tpot_p99_ms: 1000}
  - name: text_generate
    model: textstream
    load: {concurrency: 2}
    protocol: generate
    prompts: prompts.jsonl
    output_length: 4
    tokenizer: tokenizer.json
  - name: bls
    model: bls_caller
    composing_models: [scale]
  - name: regions
    model: simple
    shared_memory: system
  - name: capacity
    model: simple
    load: {capacity: {over: concurrency, start: 1, limit: 2, resolution: 1, bounds: {p95_ms: 5000}}}
    sla: {min_capacity: 1, p99_ms: 5000}
"""
TOKENIZER = EXAMPLE_MODELS / "textgen" / "tokenizer.json"
INI = "[pytest]\nmarkers =\n    documented: a test of every documented key\n"
#: Load keys left out here: a configuration search loads model copies (tests/search).
NOT_HERE = {"search"}


def documented_keys() -> set[str]:
    """The keys in the first column of the documentation's tables of a test's keys and of
    ``load`` (generated from the suite schema when the site is built)."""
    text = "\n".join(hooks().yaml_keys(record) for record in ("test", "load"))
    keys = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return keys


def suite_keys(node: Any) -> set[str]:
    """Every mapping key of the suite, at any depth."""
    if isinstance(node, dict):
        return set(node).union(*(suite_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(suite_keys(v) for v in node))
    return set()


def test_the_suite_uses_every_documented_key() -> None:
    documented = documented_keys()
    assert {"prompt_length", "token_output", "stream_timeout_s", "concurrency"} <= documented
    missing = documented - NOT_HERE - suite_keys(yaml.safe_load(SUITE))
    assert not missing, f"keys of the documented tables the suite does not use: {missing}"


def test_a_suite_with_every_documented_key_runs_and_passes(
    pytester: pytest.Pytester, server: LocalTritonServer
) -> None:
    pytester.makeini(INI)
    (pytester.path / "triton-perf-suite.yaml").write_text(SUITE, encoding="utf-8")
    (pytester.path / "prompts.jsonl").write_text('{"text": "a b c"}\n', encoding="utf-8")
    (pytester.path / "tokenizer.json").write_bytes(TOKENIZER.read_bytes())
    results = pytester.path / "results.json"
    run = pytester.runpytest_inprocess(
        *remote_args(server),
        "--strict-markers",
        "-m",
        "documented",
        f"--triton-perf-json={results}",
    )
    run.assert_outcomes(passed=8)
    records = json.loads(results.read_text())["measurements"]
    assert {(m["sla_verdict"], m["result"]["errors"]) for m in records} == {("pass", 0)}
    measured = {m["test"].partition("::")[2]: m["result"] for m in records}

    http = measured["open_loop_http"]
    assert http["workload"] == {
        "arrival": "poisson",
        "batch_size": 2,
        "concurrency": None,
        "inputs": "list[2]:zero,user",
        "model": "simple",
        "protocol": "http",
        "request_rate": 40.0,
        "shapes": {},
        "version": "1",
    }
    assert (http["seed"], http["workers"]) == (3, 1)
    assert measured["dynamic_grpcio"]["workload"]["shapes"] == {"INPUT0": [4]}
    sequences = measured["sequences"]
    assert (sequences["workload"]["sequence_length"], sequences["sequences"] > 0) == (3, True)
    assert sequences["workload"]["sequence_length_variation"] == 0.2
    # A decoupled model streamed with prompts of 8 to 16 words, its tokens counted.
    llm = measured["streaming_prompts"]
    assert llm["streaming"] and llm["workload"]["inputs"] == "random,prompt=8-16"
    assert all(w["output_tokens_per_s"] > 0 for w in llm["windows"])
    # Its per-request SLOs, met by every request: goodput is its request rate.
    assert llm["slo"]["slo"] == {"ttft_ms": 5000, "tpot_ms": 1000, "e2e_ms": 10000}
    assert llm["slo_attainment"] == 1.0 and llm["goodput"] == pytest.approx(llm["throughput"])
    assert 8 < llm["tpot_ms"]["p50"] < 15
    # A text model over the generate endpoint, its prompts from a file, tokens counted.
    text = measured["text_generate"]
    assert text["workload"]["protocol"] == "generate"
    assert text["workload"]["inputs"] == "prompts=prompts.jsonl,output=4"
    assert text["token_counting"] == "tokenizer:tokenizer.json"
    assert text["output_tokens_per_request"]["avg"] == 4
    assert text["input_tokens_per_request"]["avg"] == 3
    pipeline = measured["bls"]["pipeline"]
    assert (pipeline["kind"], pipeline["source"]) == ("bls", "declared")
    assert [s["model"] for s in pipeline["steps"]] == ["scale"]
    regions = measured["regions"]
    assert regions["workload"]["shared_memory"] == "system" and regions["outputs_verified"]
    assert measured["capacity"]["capacity"] >= 1
