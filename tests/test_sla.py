"""Unit tests of the sla marker's parsing, merging and evaluation (no server)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from pytest_triton_perf import sla
from pytest_triton_perf.capacity import breaches as capacity_breaches
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, Workload
from pytest_triton_perf.sla import (
    SlaSpec,
    evaluate,
    failure_text,
    label,
    merge_markers,
    parse_marker,
)


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


def windowed(p99s: list[float], point: float) -> PerfResult:
    """A result with windows of the given p99 values and a pooled p99 of ``point``."""
    from pytest_triton_perf.measure.result import WindowResult

    def lat(p: float) -> LatencyStats | None:
        return LatencyStats.from_samples(np.array([p / 2] * 98 + [p, p]))

    wins = tuple(WindowResult(i, 1.0, 100, 0, 100, 100.0, lat(p)) for i, p in enumerate(p99s))
    return result(p99=point, windows=wins)


def test_bound_inside_the_interval_is_marginal_and_fails_only_in_strict_mode() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 24})])
    r = windowed([20, 26, 22, 25, 21], point=22)
    lenient = next(c for c in evaluate(spec, [r]) if c.key == "p99_ms")
    assert lenient.passed and lenient.marginal
    assert lenient.interval is not None and lenient.interval[0] <= 24 <= lenient.interval[1]
    strict = next(c for c in evaluate(spec, [r], strict=True) if c.key == "p99_ms")
    assert strict.marginal and not strict.passed
    assert "--triton-perf-sla-mode=strict fails marginal results" in strict.note
    assert "ok (marginal)" in failure_text("t", [lenient])


def test_clear_pass_is_not_marginal() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 100})])
    r = windowed([20, 21, 22], point=22)
    check = next(c for c in evaluate(spec, [r]) if c.key == "p99_ms")
    assert check.passed and not check.marginal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"p99": "15%"}, {"p99_ms": 0.15}),
        ({"p50": None, "throughput": 0.1}, {"p50_ms": None, "throughput": 0.1}),
    ],
)
def test_regression_override_on_the_marker(value: object, expected: dict[str, object]) -> None:
    spec = merge_markers("t", [((), {"p99_ms": 30, "regression": value})])
    assert spec is not None and spec.regression == expected
    assert spec.as_dict == {"p99_ms": 30.0}


def test_regression_false_switches_every_comparison_off() -> None:
    spec = merge_markers("t", [((), {"regression": False})])
    assert spec is not None and spec.regression is not None
    assert set(spec.regression.values()) == {None}


def test_bad_regression_override_names_the_test() -> None:
    with pytest.raises(ConfigError, match=r"t1: sla\(regression='fast'\): a dict of metric"):
        merge_markers("t1", [((), {"regression": "fast"})])
    with pytest.raises(ConfigError, match="unknown metric 'p90'"):
        merge_markers("t1", [((), {"regression": {"p90": "5%"}})])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"perf_latency_p99": 30}, {"p99_ms": 30.0}),
        ({"perf_throughput": 100}, {"min_throughput": 100.0}),  # a lower bound, as in MA
        ({"gpu_used_memory": 5000, "cpu_used_ram": 800}, {"max_gpu_memory_mb": 5000.0,
                                                          "max_cpu_memory_mb": 800.0}),
    ],
)  # fmt: skip
def test_model_analyzer_names_are_the_same_bounds(
    kwargs: dict[str, float], expected: dict[str, float]
) -> None:
    assert parse_marker("t", (), kwargs) == expected


def test_an_alias_bounds_in_the_same_direction() -> None:
    spec = merge_markers("t", [((), {"perf_throughput": 50})])
    (check,) = [c for c in evaluate(spec, [result(throughput=10)]) if c.key == "min_throughput"]
    assert not check.passed


def test_an_alias_and_its_key_on_one_marker_is_an_error_naming_both() -> None:
    with pytest.raises(ConfigError) as info:
        parse_marker("t", (), {"p99_ms": 30, "perf_latency_p99": 25})
    message = str(info.value)
    assert "sla(p99_ms=30, perf_latency_p99=25)" in message and "keep one of them" in message


def test_closest_marker_wins_across_an_alias_and_its_key() -> None:
    spec = merge_markers("t", [((), {"perf_latency_p99": 10}), ((), {"p99_ms": 50})])
    assert spec == SlaSpec(bounds=(("p99_ms", 10.0),))


def test_alias_errors_name_the_key_as_written() -> None:
    with pytest.raises(ConfigError, match=r"sla\(perf_latency_p99=-1\).*positive finite number"):
        parse_marker("t", (), {"perf_latency_p99": -1})
    with pytest.raises(ConfigError, match="Model Analyzer's perf_latency_p90"):
        parse_marker("t", (), {"perf_latency_p50": 1})


def test_failure_screen_and_reports_write_figures_alike() -> None:
    """One number formatter: the SLA failure screen and the report's one-line reason show
    the same value and interval the same way."""
    from pytest_triton_perf.report.text import sla_reason
    from pytest_triton_perf.verdicts import SlaRecord

    spec = merge_markers("t", [((), {"p99_ms": 24, "min_throughput": 1000})])
    r = windowed([20, 26, 22, 25, 21], point=22)
    checks = evaluate(spec, [r])
    screen = failure_text("t", checks)
    for c in checks:
        reason = sla_reason(
            SlaRecord(c.key, c.bound, c.value, c.passed, c.marginal, c.interval, c.note)
        )
        line = next(ln for ln in screen.splitlines() if f" {c.key} " in ln)
        for token in reason.replace(",", " ").replace("[", " ").replace("]", " ").split():
            with contextlib.suppress(ValueError):
                float(token)  # a figure: the screen writes it the same way
                assert token in line, (token, line, reason)
    assert ">= 1000 " in screen  # 1000 as the reports write it, not 1000.0


def test_max_config_gap_is_parsed_closest_first_and_is_not_a_bound() -> None:
    spec = merge_markers("t", [((), {"max_config_gap": "15%"}), ((), {"max_config_gap": 0.3})])
    assert spec is not None and spec.max_config_gap == pytest.approx(0.15)
    assert spec.bounds == ()
    spec = merge_markers("t", [((), {"p99_ms": 30, "max_config_gap": 0.2})])
    assert spec is not None and spec.as_dict == {"p99_ms": 30} and spec.max_config_gap == 0.2


@pytest.mark.parametrize("value", [True, "lots", -0.1, [0.1], None])
def test_max_config_gap_rejects_what_is_not_a_fraction(value: object) -> None:
    with pytest.raises(ConfigError, match=r"t: sla\(max_config_gap=.*(fraction|percentage)"):
        merge_markers("t", [((), {"max_config_gap": value})])


def test_min_capacity_is_checked_only_on_capacity_results() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 500, "min_capacity": 10})])
    plain = result()
    checks = evaluate(spec, [plain])
    # No search at all: min_capacity fails and says why.
    missing = [c for c in checks if c.key == "min_capacity"]
    assert len(missing) == 1 and not missing[0].passed
    assert "ran no triton_perf.capacity() search" in missing[0].note
    settled = plain.as_capacity(plain.throughput)
    checks = evaluate(spec, [plain, settled])
    by = [(c.measurement, c.key, c.passed) for c in checks if c.key == "min_capacity"]
    assert by == [(label(settled), "min_capacity", settled.throughput >= 10)]
    assert label(settled).endswith("capacity over concurrency batch=1 grpc")


# -- per-model bounds: sla(models={...}) -----------------------------------------------------


def test_models_bounds_apply_to_their_model_over_the_tests() -> None:
    spec = merge_markers(
        "t",
        [((), {"p99_ms": 30, "models": {"a": {"p99_ms": 10}, "b": {"min_throughput": 50}}})],
    )
    assert spec is not None and spec.as_dict == {"p99_ms": 30}
    assert spec.bounds_for("a") == {"p99_ms": 10, "max_error_rate": 0.0}
    assert spec.bounds_for("b") == {"p99_ms": 30, "min_throughput": 50, "max_error_rate": 0.0}
    assert spec.bounds_for("c") == {"p99_ms": 30, "max_error_rate": 0.0}
    a = result(p99=20.0, model="a", workload=Workload("a"))
    b = result(p99=20.0, throughput=40.0, model="b", workload=Workload("b"))
    failed = {(c.measurement.split()[0], c.key) for c in evaluate(spec, [a, b]) if not c.passed}
    assert failed == {("a", "p99_ms"), ("b", "min_throughput")}


def test_models_bounds_merge_closest_first_per_model_and_key() -> None:
    spec = merge_markers(
        "t",
        [
            ((), {"models": {"a": {"p99_ms": 10}}}),
            ((), {"models": {"a": {"p99_ms": 99, "p50_ms": 5}, "b": {"p50_ms": 7}}}),
        ],
    )
    assert spec is not None
    assert dict(spec.models) == {"a": (("p50_ms", 5.0), ("p99_ms", 10.0)), "b": (("p50_ms", 7.0),)}


def test_a_model_bounded_but_not_measured_fails_naming_it() -> None:
    spec = merge_markers("t", [((), {"models": {"ghost": {"p99_ms": 10}}})])
    checks = evaluate(spec, [result()])
    missing = [c for c in checks if not c.passed]
    assert len(missing) == 1 and missing[0].key == "p99_ms"
    assert "bounds model 'ghost' but the test measured no result of it" in missing[0].note
    assert "measured: sleepy" in missing[0].note


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a", r"t: sla\(models='a'\): a dict of model name -> bounds is accepted"),
        ({}, r"a dict of model name -> bounds is accepted"),
        ({"a": 30}, r'sla\(models=\{"a": \.\.\.\}\): the bounds of model \'a\' must be a dict'),
        ({"a": {"p99": 30}}, r'sla\(models=\{"a": \.\.\.\}\): unknown sla key \'p99\''),
        ({"a": {"p99_ms": -1}}, r'sla\(models=\{"a": \.\.\.\}\)\): sla\(p99_ms=-1\)|p99_ms=-1'),
        ({"a": {"regression": False}}, r"regression applies to the whole test"),
        ({1: {"p99_ms": 3}}, r"1 is not a model name"),
    ],
)
def test_models_rejects_bad_input_naming_test_model_and_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        merge_markers("t", [((), {"models": value})])


def test_label_names_the_models_measured_beside_and_a_footprint() -> None:
    assert label(result(together_with=("b", "c"))) == "sleepy conc=1 batch=1 grpc with b+c"
    assert label(result(footprint=True)) == "sleepy footprint"


def test_breaches_name_each_broken_bound_and_its_value_in_the_bounds_order() -> None:
    figures = {"p99_ms": 33.0, "throughput": 90.0, "error_rate": 0.0, "gpu_memory_mb": None}
    bounds = {"min_throughput": 100.0, "p99_ms": 30.0, "max_error_rate": 0.0}
    found = sla.breaches(figures, {**bounds, "max_gpu_memory_mb": 10.0})
    assert found == (
        sla.Breach("min_throughput", 100.0, 90.0),
        sla.Breach("p99_ms", 30.0, 33.0),
        sla.Breach("max_gpu_memory_mb", 10.0, None),
    )
    assert [str(b) for b in found] == [
        "min_throughput 90.00 < 100.0",
        "p99_ms 33.00 > 30.00",
        "max_gpu_memory_mb unavailable",
    ]
    # A bound met exactly holds; a tolerance widens both directions; NaN is never within.
    assert sla.breaches({**figures, "p99_ms": 30.0, "throughput": 100.0}, bounds) == ()
    assert sla.breaches(figures, bounds, tolerance=0.2) == ()
    assert sla.breaches({"p99_ms": float("nan")}, {"p99_ms": 30.0})[0].key == "p99_ms"


def test_evaluate_and_capacity_levels_judge_a_bound_alike() -> None:
    spec = merge_markers("t", [((), {"p99_ms": 30, "min_throughput": 120})])
    assert spec is not None
    slow = result(p99=33.0, throughput=100.0)
    checks = {c.key: c.passed for c in evaluate(spec, [slow])}
    broken = {b.key for b in sla.breaches(slow.summary(), spec.with_defaults())}
    assert checks == {k: k not in broken for k in checks}
    assert capacity_breaches(slow, {"p99_ms": 30.0}) == ("p99_ms 33.00 > 30.00",)
