"""Unit tests of the sla marker's parsing, merging and evaluation (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, Workload
from pytest_triton_perf.sla import SlaSpec, evaluate, failure_text, merge_markers, parse_marker


def result(
    p99: float = 20.0, throughput: float = 100.0, errors: int = 0, **kw: object
) -> PerfResult:
    lat = LatencyStats.from_samples(np.array([p99 / 2] * 98 + [p99, p99]))
    fields: dict[str, object] = dict(
        model="sleepy",
        version=None,
        workload=Workload("sleepy"),
        throughput=throughput,
        latency_ms=lat,
        requests=100,
        errors=errors,
        windows=(),
        duration_s=1.0,
        stable=True,
    )
    fields.update(kw)
    return PerfResult(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"p99_ms": 30}, {"p99_ms": 30.0}),
        ({"p50_ms": 1.5, "min_throughput": 50}, {"p50_ms": 1.5, "min_throughput": 50.0}),
        ({"max_error_rate": 0}, {"max_error_rate": 0.0}),
        (
            {"max_gpu_memory_mb": 5000, "max_cpu_memory_mb": 800},
            {"max_gpu_memory_mb": 5000.0, "max_cpu_memory_mb": 800.0},
        ),
    ],
)
def test_parse_accepts_valid_bounds(kwargs: dict[str, float], expected: dict[str, float]) -> None:
    assert parse_marker("t", (), kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"p99": 30}, "Did you mean 'p99_ms'?"),
        ({"min_througput": 5}, "Did you mean 'min_throughput'?"),
        ({"latency": 5}, "Valid keys: p50_ms"),
        ({"p99_ms": "30"}, "sla(p99_ms='30'): the bound must be a number"),
        ({"p99_ms": True}, "the bound must be a number"),
        ({"p99_ms": -1}, "positive finite number (ms)"),
        ({"p99_ms": 0}, "positive finite number"),
        ({"min_throughput": float("inf")}, "positive finite number"),
        ({"max_error_rate": 1.5}, "a rate between 0 and 1"),
        ({"max_error_rate": float("nan")}, "must be a number"),
    ],
)
def test_parse_rejects_bad_input_naming_test_key_and_value(
    kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_marker("tests/test_x.py::test_y", (), kwargs)
    assert fragment in str(info.value)
    assert "tests/test_x.py::test_y" in str(info.value)


def test_positional_arguments_are_rejected() -> None:
    with pytest.raises(ConfigError, match="keyword arguments only"):
        parse_marker("t", (30,), {})


def test_closest_marker_wins_per_key() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 10}), ((), {"p99_ms": 50, "min_throughput": 7})])
    assert spec == SlaSpec(bounds=(("min_throughput", 7.0), ("p99_ms", 10.0)))


def test_no_marker_gives_no_spec() -> None:
    assert merge_markers("t", []) is None


def test_evaluate_pass_and_breach() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 30, "min_throughput": 50})])
    assert all(c.passed for c in evaluate(spec, [result(p99=20, throughput=100)]))
    checks = evaluate(spec, [result(p99=40, throughput=10)])
    failed = {c.key for c in checks if not c.passed}
    assert failed == {"p99_ms", "min_throughput"}


def test_error_rate_defaults_to_zero_even_without_marker() -> None:
    checks = evaluate(None, [result(errors=1, first_error="boom")])
    assert [(c.key, c.passed) for c in checks] == [("max_error_rate", False)]
    assert "1 of 100 requests failed; first error: boom" in checks[0].note


def test_unavailable_metric_fails_with_its_reason() -> None:
    spec = merge_markers("t", [((), {"max_gpu_memory_mb": 5000})])
    r = result(unavailable=(("gpu_memory_mb", "NVML: no GPU"),))
    checks = [c for c in evaluate(spec, [r]) if c.key == "max_gpu_memory_mb"]
    assert not checks[0].passed
    assert checks[0].note == "unavailable: NVML: no GPU"


def test_no_latency_when_every_request_failed() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 30})])
    r = result(latency_ms=None, errors=100)
    check = next(c for c in evaluate(spec, [r]) if c.key == "p99_ms")
    assert not check.passed
    assert "no request succeeded" in check.note


def test_failure_text_is_a_table_with_measured_values() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 5})])
    text = failure_text("test_a", evaluate(spec, [result(p99=21.5)]))
    lines = text.splitlines()
    assert lines[0] == "SLA breached in test_a: 1 of 2 checks failed"
    assert "measurement" in lines[1] and "measured" in lines[1]
    p99_line = next(line for line in lines if "p99_ms" in line)
    assert "<= 5.00" in p99_line and "21.50" in p99_line and p99_line.endswith("FAIL")
