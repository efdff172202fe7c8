"""YAML suites: from a file to the calls of ``triton_perf``, and every kind of bad input to
one error naming file, line and column, the key, the value and what is accepted."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_triton_perf.measure.options import LoadOptions, docs, keys
from pytest_triton_perf.suite import schema
from pytest_triton_perf.suite.kinds import Record
from pytest_triton_perf.suite.loader import SuiteError, load_suite
from tests.conftest import REPO

EXAMPLE_SUITE = REPO / "example_repo" / "triton-perf-suite.yaml"


def suite(tmp_path: Path, text: str):
    path = tmp_path / "triton-perf-x.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_suite(path, shown_as="triton-perf-x.yaml")


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SuiteError) as info:
        suite(tmp_path, text)
    return str(info.value).splitlines()


def test_the_issue_example_becomes_a_measure_call(tmp_path: Path) -> None:
    found = suite(
        tmp_path,
        """
        defaults: {protocol: grpc, window_s: 2}
        tests:
          - name: bert_p99
            model: bert-large
            load: {concurrency: [1, 8]}          # or request_rate, or capacity, or search
            inputs: zero
            sla: {p99_ms: 30, min_throughput: 50, max_gpu_memory_mb: 5000}
            regression: {p99: 15%}
        """,
    )
    (test,) = found.tests
    assert (test.name, test.line, test.call, test.model) == ("bert_p99", 4, "measure", "bert-large")
    assert test.arguments == {
        "protocol": "grpc",
        "window_s": 2,
        "inputs": "zero",
        "concurrency": [1, 8],
    }
    assert test.sla == (
        {
            "p99_ms": 30,
            "min_throughput": 50,
            "max_gpu_memory_mb": 5000,
            "regression": {"p99": "15%"},
        },
    )


def test_defaults_merge_as_markers_do(tmp_path: Path) -> None:
    """The test's keys replace the defaults'; sla adds up (the test's own first, so it wins
    per key as a function marker over a module marker); markers add up."""
    (test,) = suite(
        tmp_path,
        """
        defaults:
          protocol: http
          load: {concurrency: 4}
          sla: {p99_ms: 100, max_error_rate: 0.01}
          markers: [slow]
        tests:
          - name: t
            model: simple
            load: {request_rate: 50, arrival: poisson, seed: 3, max_in_flight: 8}
            sla: {p99_ms: 20}
            markers: [{xfail: {reason: demo, strict: true}}, {skipif: [false]}, {timeout: 60}]
        """,
    ).tests
    assert test.arguments == {
        "protocol": "http",
        "request_rate": 50,
        "arrival": "poisson",
        "seed": 3,
        "max_in_flight": 8,
    }
    assert test.sla == ({"p99_ms": 20}, {"p99_ms": 100, "max_error_rate": 0.01})
    assert [(m.name, m.args, m.kwargs) for m in test.markers] == [
        ("xfail", (), {"reason": "demo", "strict": True}),
        ("skipif", (False,), {}),
        ("timeout", (60,), {}),
        ("slow", (), {}),
    ]


def test_capacity_and_search_become_their_calls(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    capacity, search, default_capacity = suite(
        tmp_path,
        """
        tests:
          - name: cap
            model: sleepy
            load: {capacity: {over: request_rate, start: 10, limit: 80, resolution: 5,
                              bounds: {p99_ms: 50}, method: search}, arrival: poisson}
          - name: best
            model: sleepy
            load:
              concurrency: 4
              search:
                space: {instance_count: [1, 2], parameters.service_time_ms: [10, 20]}
                objective: perf_throughput
                strategy: grid
                model_repository: models
                sla: {perf_latency_p99: 300}
          - name: cap_defaults
            model: sleepy
            load: {capacity: true}
            sla: {p99_ms: 100, min_capacity: 40}
        """,
    ).tests
    assert capacity.call == "capacity"
    assert capacity.arguments == {
        "arrival": "poisson",
        "over": "request_rate",
        "start": 10,
        "limit": 80,
        "resolution": 5,
        "bounds": {"p99_ms": 50},
        "method": "search",
    }
    assert search.call == "search"
    assert search.arguments["space"] == {
        "instance_count": [1, 2],
        "parameters.service_time_ms": [10, 20],
    }
    assert search.arguments["model_repository"] == str(tmp_path / "models")
    assert search.arguments["concurrency"] == 4
    assert (search.arguments["objective"], search.arguments["strategy"]) == (
        "perf_throughput",
        "grid",
    )
    assert default_capacity.call == "capacity" and "over" not in default_capacity.arguments


def test_every_measure_keyword_is_reachable(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text('{"data": [{"INPUT0": [1]}]}')
    (test,) = suite(
        tmp_path,
        """
        tests:
          - name: all
            model: accumulator
            version: 1
            batch_size: 2
            protocol: http
            inputs:
              [random, zero, data.json, {INPUT0: [1, 2]}, {INPUT0: {content: [1], shape: [1]}}]
            shapes: {INPUT0: [1]}
            warmup_s: 0
            windows: 2
            window_s: 0.5
            workers: auto
            grpc_client: grpcio
            sequence_length: 10
            sequence_length_variation: 0.2
            sequence_id_type: uint64
            token_output: TOKEN
            stream_timeout_s: 30
            prompt_length: {PROMPT: [64, 512], ids: {mean: 256, stddev: 64}}
            slo: {ttft_ms: 200, tpot_ms: 50.5}
            prompts: data.json
            output_length: [16, 64]
            tokenizer: data.json
            shared_memory: system
            composing_models: [simple, sleepy]
            load: {request_rate: 50, seed: 1, arrival: poisson, max_in_flight: 8}
        """,
    ).tests
    assert test.inline_inputs
    assert test.arguments["version"] == "1"
    assert test.arguments["inputs"][2] == str(tmp_path / "data.json")
    assert test.arguments["prompt_length"]["PROMPT"] == [64, 512]
    assert test.arguments["slo"] == {"ttft_ms": 200, "tpot_ms": 50.5}
    assert test.arguments["prompts"] == test.arguments["tokenizer"] == str(tmp_path / "data.json")
    # Every load option but concurrency (the closed loop) reaches the call.
    assert set(test.arguments) == set(keys(LoadOptions)) - {"concurrency"}


def test_every_load_option_is_a_key_of_the_validator_and_of_the_published_schema() -> None:
    """The keys come from LoadOptions, the one list of measure()'s keywords: each is a key
    of a test (or of its load:), in the validator's table and in the committed schema file,
    and no row names a keyword measure() does not take."""
    published = json.loads(schema.SCHEMA_FILE.read_text(encoding="utf-8"))["definitions"]
    load = schema.LOAD.kind
    assert isinstance(load, Record)
    test_keys, load_keys = schema.test_record().by_key, load.by_key
    for key in keys(LoadOptions):
        if key in schema.LOAD_KEYWORDS:
            assert key in load_keys and key in published["load"]["properties"], key
        else:
            assert key in test_keys and key in published["test"]["properties"], key
            assert key in published["defaults"]["properties"], key
    rows = {f.key for f in schema.TEST_FIELDS} - set(schema.NOT_KEYWORDS)
    assert rows | set(schema.LOAD_KEYWORDS) <= set(keys(LoadOptions))


def test_a_load_option_without_a_row_is_checked_as_its_type_says(tmp_path: Path) -> None:
    """shared_memory has no row in the table: its Literal type makes it a choice, with the
    line of documentation LoadOptions gives it."""
    assert "shared_memory" in schema.unlisted_options()
    (test,) = suite(tmp_path, "tests: [{name: t, model: simple, shared_memory: system}]").tests
    assert test.arguments == {"shared_memory": "system"}
    (problem,) = problems(tmp_path, "tests: [{name: t, model: s, shared_memory: sytem}]")
    assert problem.endswith(
        "t: shared_memory: 'sytem' is not accepted. Did you mean 'system'? Accepted: one of"
        " 'none', 'system', 'cuda'."
    ), problem
    field = schema.test_record().by_key["shared_memory"]
    assert field.text == docs()["shared_memory"].replace("``", "").rstrip(".")


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (Literal["a", "b"], {"enum": ["a", "b"]}),
        (str | None, {"type": "string", "minLength": 1}),
        (Sequence[int], {"type": "array", "minItems": 1, "items": {"type": "integer"}}),
        (
            Mapping[str, bool],
            {"type": "object", "additionalProperties": {"type": "boolean"}, "minProperties": 1},
        ),
        (int | Literal["auto"], {"anyOf": [{"type": "integer"}, {"enum": ["auto"]}]}),
        (float, {}),
        (int | float, {}),
    ],
)
def test_the_kind_of_a_type(hint: Any, expected: dict[str, Any]) -> None:
    assert schema.kind_of(hint).schema() == expected


def test_yaml_anchors_and_merge_keys_share_keys(tmp_path: Path) -> None:
    a, b = suite(
        tmp_path,
        """
        common: &common {model: simple, load: {concurrency: 2}}
        tests:
          - {<<: *common, name: a}
          - {<<: *common, name: b, model: sleepy}
        """.replace("common: &common", "defaults: &common"),
    ).tests
    assert (a.model, b.model) == ("simple", "sleepy")
    assert a.arguments == b.arguments == {"concurrency": 2}


def test_the_example_suite_is_valid() -> None:
    found = load_suite(EXAMPLE_SUITE)
    assert [t.call for t in found.tests] == ["measure", "measure", "capacity"]


# -- every kind of bad input: file:line:col, the key, the value, what is accepted ----------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    protocl: grpc\n",
            "triton-perf-x.yaml:4:5: a: unknown key 'protocl'. Did you mean 'protocol'? "
            "Accepted keys: name, model, *",
            id="unknown-key",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    load: {concurency: 4}\n",
            "triton-perf-x.yaml:4:12: a: unknown key 'concurency' in load. Did you mean "
            "'concurrency'? Accepted keys: concurrency, request_rate, *",
            id="unknown-load-key",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    load: {concurrency: 0}\n",
            "triton-perf-x.yaml:4:25: a: load.concurrency: 0 is not accepted; a whole number "
            ">= 1 or a non-empty list, each a whole number >= 1 is.",
            id="bad-value",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    load: {concurrency: [1, -2]}\n",
            "triton-perf-x.yaml:4:29: a: load.concurrency[1]: -2 is not accepted; a whole "
            "number >= 1 is.",
            id="bad-list-element",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    load: {request_rate: 1e3}\n",
            "*load.request_rate: '1e3' is not accepted; a number > 0 (requests/s)*(YAML reads "
            "1e3 as text: write it with a dot, e.g. 1.0e3)",
            id="number-as-text",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: textgen, prompts: p.jsonl}\n",
            "triton-perf-x.yaml:2:40: a: prompts: 'p.jsonl' is not accepted: no such file in * "
            "(accepted: the path of a JSONL file of prompts relative to this suite).",
            id="prompts-file",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    protocol: htpp\n",
            "triton-perf-x.yaml:4:15: a: protocol: 'htpp' is not accepted. Did you mean "
            "'http'? Accepted: one of 'grpc', 'http', 'generate'.",
            id="bad-choice",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: llm\n    slo: {ttft: 200}\n",
            "triton-perf-x.yaml:4:11: a: unknown key 'ttft' in slo. Did you mean 'ttft_ms'? "
            "Accepted keys: ttft_ms, tpot_ms, e2e_ms.",
            id="slo-unknown-key",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: llm\n    slo: {tpot_ms: 0}\n",
            "triton-perf-x.yaml:4:20: a: slo.tpot_ms: 0 is not accepted; a number > 0 (ms) is.",
            id="slo-bad-value",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    sla: {p99: 30}\n",
            "triton-perf-x.yaml:4:11: a: sla: unknown sla key 'p99'. Did you mean 'p99_ms'? "
            "Valid keys: p50_ms, *",
            id="sla-unknown-key",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    sla: {p99_ms: 30, min_throughput: fast}\n",
            "triton-perf-x.yaml:4:39: a: sla: sla(min_throughput='fast'): the bound must be a "
            "number, e.g. sla(min_throughput=*",
            id="sla-bad-value",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    sla: {p99_ms: 30, perf_latency_p99: 20}\n",
            "triton-perf-x.yaml:4:23: a: sla: sla(p99_ms=30, perf_latency_p99=20) bounds p99_ms "
            "twice*",
            id="sla-twice",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: simple\n    regression: {p99: 15}\n",
            "triton-perf-x.yaml:4:17: a: regression: *15 is not a minimum effect; write a "
            "percentage like '10%' or a fraction like 0.1.",
            id="regression",
        ),
        pytest.param(
            "tests:\n  - name: a\n",
            "triton-perf-x.yaml:2:5: a: model is missing: name the model to measure, e.g. "
            "model: simple.",
            id="missing-model",
        ),
        pytest.param(
            "tests:\n  - model: simple\n",
            "triton-perf-x.yaml:2:5: tests?0?: name is missing: *e.g. name: bert_p99.",
            id="missing-name",
        ),
        pytest.param(
            "tests:\n  - name: a b\n    model: simple\n",
            "triton-perf-x.yaml:2:11: a b: name: 'a b' is not accepted; a name of letters, "
            "digits, _ . - (the pytest id) is.",
            id="bad-name",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s}\n  - {name: a, model: s}\n",
            "triton-perf-x.yaml:3:12: a: name 'a' is taken by the test at "
            "triton-perf-x.yaml:2:5; test names are pytest ids and must differ.",
            id="duplicate-name",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: s\n    model: t\n",
            "triton-perf-x.yaml:4:5: a: model: given twice; keep one.",
            id="duplicate-key",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: [s\n",
            "triton-perf-x.yaml:4:1: not valid YAML: while parsing a flow sequence "
            "expected ',' or ']', but got '<stream end>'",
            id="yaml-syntax",
        ),
        pytest.param(
            "", "triton-perf-x.yaml: the suite is empty; it needs tests:, e.g.", id="empty"
        ),
        pytest.param(
            "tests: {name: a}\n",
            "triton-perf-x.yaml:1:8: tests: a non-empty list of tests is accepted, e.g.",
            id="tests-not-a-list",
        ),
        pytest.param(
            "tests:\n  - simple\n",
            "triton-perf-x.yaml:2:5: tests?0?: a test is a mapping of keys (name, model, load, "
            "...), not 'simple'.",
            id="test-not-a-mapping",
        ),
        pytest.param(
            "defaults: [1]\ntests: [{name: a, model: s}]\n",
            "triton-perf-x.yaml:1:11: defaults: defaults is a mapping of keys*, not ?1?.",
            id="defaults-not-a-mapping",
        ),
        pytest.param(
            "test:\n  - {name: a, model: s}\n",
            "triton-perf-x.yaml:1:1: unknown key 'test' at the top of the suite. Did you mean "
            "'tests'? Accepted keys: defaults, tests.",
            id="unknown-top-key",
        ),
        pytest.param(
            "defaults: {window_s: 0}\ntests: [{name: a, model: s}]\n",
            "triton-perf-x.yaml:1:22: defaults: window_s: 0 is not accepted; a number > 0 "
            "(seconds) is.",
            id="bad-default",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, load: {concurrency: 2, request_rate: 9}}\n",
            "triton-perf-x.yaml:2:62: a: load: concurrency (closed loop) and request_rate "
            "(open loop) exclude each other*",
            id="closed-and-open-loop",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, load: {arrival: poisson}}\n",
            "triton-perf-x.yaml:2:41: a: load: arrival applies to an open loop: give request_rate*",
            id="arrival-without-rate",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, load: {capacity: true}, sla: {min_throughput: 5}}\n",
            "triton-perf-x.yaml:2:42: a: load: capacity is the load sustained while latency "
            "bounds hold: give one in sla:*",
            id="capacity-without-latency-bound",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, load: {capacity: {}, concurrency: 4}, "
            "sla: {p99_ms: 9}}\n",
            "triton-perf-x.yaml:2:59: a: load: capacity searches the load itself: remove "
            "concurrency*",
            id="capacity-with-a-level",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, sla: {p99_ms: 9, min_capacity: 5}}\n",
            "triton-perf-x.yaml:2:5: a: sla: min_capacity checks a capacity search: add load: "
            "{capacity: true}*",
            id="min-capacity-without-capacity",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, sla: {min_capacity: 5}, "
            "load: {capacity: {bounds: {p99_ms: 5}}}}\n",
            "triton-perf-x.yaml:2:30: a: sla(min_capacity=5) without a latency bound*",
            id="marker-merge",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: s\n    load: {search: {space: {instance_cnt: [1]}}}\n"
            "    sla: {p99_ms: 9}\n",
            "triton-perf-x.yaml:4:29: a: load.search.space: search space: unknown key "
            "'instance_cnt'. Did you mean 'instance_count'?*",
            id="search-space-key",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: s\n    load: {search: {space: {instance_count: [1]}, "
            "objective: thruput}}\n",
            "triton-perf-x.yaml:4:62: a: load.search.objective: 'thruput' is not accepted. Did "
            "you mean 'throughput'? Accepted: one of 'capacity', *",
            id="search-objective",
        ),
        pytest.param(
            "tests:\n  - name: a\n    model: s\n"
            "    load: {search: {space: {instance_count: [1]}}}\n",
            "triton-perf-x.yaml:4:20: a: load: search with objective capacity (the default) "
            "needs a latency bound*",
            id="search-capacity-without-bound",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, sla: {p99_ms: 9}, load: {capacity: {method: fast}}}\n",
            "triton-perf-x.yaml:2:*: a: load.capacity.method: 'fast' is not accepted*'ramp'*",
            id="capacity-method",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, sla: {p99_ms: 9}, load: {capacity: {method: ramp}}}\n",
            "triton-perf-x.yaml:2:*: a: load: capacity: method ramp raises an open loop's rate: "
            "give over: request_rate (over concurrency, method: search).",
            id="capacity-ramp-over-concurrency",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, inputs: [zero, data.json]}\n",
            "triton-perf-x.yaml:2:40: a: inputs: 'data.json' is not accepted: no such file in *",
            id="inputs-file",
        ),
        pytest.param(
            "tests:\n  - {name: a, model: s, markers: [sla]}\n",
            "triton-perf-x.yaml:2:35: a: markers: 'sla' is not accepted here: write the bounds "
            "under the test's sla: key.",
            id="sla-as-marker",
        ),
    ],
)
def test_bad_input_names_file_line_column_key_value_and_form(
    tmp_path: Path, text: str, expected: str
) -> None:
    from fnmatch import fnmatch

    found = problems(tmp_path, text)
    assert any(fnmatch(line, expected) or line.startswith(expected) for line in found), found


def test_every_problem_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        tests:
          - name: a
            model: s
            protocol: tcp
            sla: {p99: 30, min_throughput: 0}
          - name: b
            model: s
            windows: 0
        """,
    )
    assert [line.split(": ")[0] for line in found] == [
        "triton-perf-x.yaml:5:15",
        "triton-perf-x.yaml:6:11",
        "triton-perf-x.yaml:6:36",
        "triton-perf-x.yaml:9:14",
    ]
