"""The metric catalogue: every place that lists metrics is generated from it, and the
documentation's ``sla`` table says what it says."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.baseline import compare
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.result import Interference
from pytest_triton_perf.report import text
from tests.docs_pages import page
from tests.report.factory import make_record, make_result, make_stream_result


def docs_sla_table() -> list[list[str]]:
    """The rows of the ``sla`` table of the documentation's page "SLA keys" (generated
    when the site is built), as cells."""
    rows = [line for line in page("sla.md").splitlines() if line.startswith("|")]
    assert rows[0].startswith("| key | bound |"), rows[0]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_names_keys_and_aliases_are_unique() -> None:
    names = [m.name for m in metrics.CATALOGUE]
    keys = [m.sla_key for m in metrics.CATALOGUE if m.sla_key]
    aliases = [a for m in metrics.CATALOGUE for a in m.aliases]
    assert len(set(names)) == len(names)
    assert len(set(keys)) == len(keys)
    # An alias naming two metrics, or shadowing a key, would make a marker ambiguous.
    assert len(set(aliases)) == len(aliases)
    assert not set(aliases) & (set(keys) | set(names))
    assert len(metrics.MARKER_KEYS) == len(keys) + len(aliases)


def test_every_row_has_what_its_uses_need() -> None:
    for m in metrics.CATALOGUE:
        assert m.help and m.short and m.source, m
        if m.sla_key:
            assert float(m.example) > 0, m  # a usable example for error messages
        if m.gate is not None:
            assert m.per_window or m.counts, f"{m.name}: gated but no way to compare it"


def test_the_docs_sla_table_is_the_catalogue() -> None:
    rows = docs_sla_table()
    shown = {ticked(row[0])[0]: row for row in rows}
    assert list(shown) == list(metrics.BY_SLA_KEY)
    for key, m in metrics.BY_SLA_KEY.items():
        _, bound, unit, alias = shown[key]
        assert bound == ("upper" if m.upper else "lower"), key
        assert unit == m.help, key
        assert tuple(ticked(alias)) == m.aliases, key


def test_model_analyzer_names_are_aliases() -> None:
    # Model Analyzer's record tags (model_analyzer/record/types/*.py): it has no p50 record.
    assert {
        "perf_latency_p90": "p90_ms",
        "perf_latency_p95": "p95_ms",
        "perf_latency_p99": "p99_ms",
        "perf_latency_avg": "avg_ms",
        "perf_throughput": "min_throughput",
        "gpu_used_memory": "max_gpu_memory_mb",
        "cpu_used_ram": "max_cpu_memory_mb",
    }.items() <= metrics.MARKER_KEYS.items()


def test_generated_tables_follow_the_catalogue() -> None:
    result = make_result(gpu_memory_mb=1234.0)
    summary = result.summary()
    assert list(summary) == [m.name for m in metrics.CATALOGUE]
    assert list(sla.BOUNDS) == list(metrics.BY_SLA_KEY)
    assert set(text.UNITS) == set(text.SHORT_METRIC) == set(summary)
    for m in metrics.CATALOGUE:
        assert text.UNITS[m.name] == m.unit
        assert compare.HIGHER_IS_WORSE[m.name] == m.higher_is_worse
        if m.sla_key:
            bound = sla.BOUNDS[m.sla_key]
            assert (bound.metric, bound.upper, bound.unit) == (m.name, m.upper, m.unit)
            assert f"{m.sla_key}=" in metrics.marker_help()
            assert all(f"{a}=" in metrics.marker_help() for a in m.aliases)


def test_comparison_defaults_are_todays() -> None:
    """The figures the gate was measured with (benchmarks/gate_quality.py)."""
    assert compare.GATED_METRICS == (
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "throughput",
        "capacity",
        "ttft_p50_ms",
        "ttft_p99_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "tpot_p99_ms",
        "e2e_p99_ms",
        "goodput",
        "slo_attainment",
        "colocation_p99",
        "colocation_throughput",
    )
    # TTFT, ITL, TPOT and end-to-end latency (streaming models only) are gated as the
    # latency percentiles are; goodput and SLO attainment only with measure(slo=...).
    assert compare.DEFAULT_MIN_EFFECT == {
        "p50_ms": 0.05,
        "p95_ms": 0.10,
        "p99_ms": 0.20,
        "throughput": 0.05,
        "capacity": 0.10,
        "ttft_p50_ms": 0.05,
        "ttft_p99_ms": 0.20,
        "itl_p50_ms": 0.05,
        "itl_p99_ms": 0.20,
        "tpot_p99_ms": 0.20,
        "e2e_p99_ms": 0.20,
        "goodput": 0.10,
        "slo_attainment": 0.05,
        "colocation_p99": 0.10,
        "colocation_throughput": 0.05,
        "error_rate": 0.001,
    }
    assert compare.DEFAULT_FLOOR == {
        "p50_ms": 0.2,
        "p95_ms": 0.5,
        "p99_ms": 0.5,
        "ttft_p50_ms": 0.2,
        "ttft_p99_ms": 0.5,
        "itl_p50_ms": 0.2,
        "itl_p99_ms": 0.5,
        "tpot_p99_ms": 0.5,
        "e2e_p99_ms": 0.5,
    }
    assert {k: text.SHORT_METRIC[k] for k in ("p50_ms", "p99_ms", "throughput", "error_rate")} == {
        "p50_ms": "p50",
        "p99_ms": "p99",
        "throughput": "throughput",
        "error_rate": "errors",
    }
    assert sla.SlaSpec(bounds=()).with_defaults() == {"max_error_rate": 0.0}


@pytest.mark.parametrize("streaming", [False, True], ids=["request-response", "streaming"])
def test_a_figure_reads_the_same_from_a_result_its_dict_and_a_record(streaming: bool) -> None:
    if streaming:
        result = make_stream_result(errors_every=10)
    else:
        result = make_result(gpu_memory_mb=1234.0, errors=3)
    as_dict = result.to_dict()
    record = make_record(result)
    assert result.summary() == {m.name: m.read(as_dict) for m in metrics.CATALOGUE}
    assert text.summary_figures(record) == result.summary()
    assert result.summary()["p99_ms"] == result.latency_ms.p99  # type: ignore[union-attr]
    assert result.summary()["error_rate"] == result.error_rate > 0
    for m in metrics.CATALOGUE:
        window_figures = [m.read(w) for w in result.windows]
        assert window_figures == [m.read(w) for w in as_dict["windows"]]
        if m.search_only:
            # Only the result a capacity search settled on carries it, window by window.
            assert m.read(result) is None and set(window_figures) == {None}
            settled = result.as_capacity(123.0)
            assert m.read(settled) == 123.0 == m.read(settled.to_dict())
            assert compare.window_values(settled.to_dict(), m.name) == [
                w.throughput for w in result.windows
            ]
        elif m.streaming_only and not streaming:
            # A request/response model has no per-response figures, nor do its windows.
            assert m.read(result) is None and set(window_figures) == {None}
            assert compare.window_values(as_dict, m.name) == []
        elif m.slo_only:
            # Only a measurement with per-request SLOs has goodput and SLO attainment.
            assert m.read(result) is None and set(window_figures) == {None}
            assert compare.window_values(as_dict, m.name) == []
            if streaming:
                with_slo = make_stream_result(errors_every=10, slo={"ttft_ms": 1000.0})
                windows = [m.read(w) for w in with_slo.windows]
                assert None not in windows
                assert compare.window_values(with_slo.to_dict(), m.name) == windows
                assert m.read(with_slo) == m.read(with_slo.to_dict()) is not None
        elif m.colocation_only:
            # Only a group measured with its interference rounds has it, round by round.
            assert m.read(result) is None and set(window_figures) == {None}
            assert compare.window_values(as_dict, m.name) == []
            cost = dataclasses.replace(
                result,
                interference=Interference(
                    rounds=2,
                    together_with=("b",),
                    alone_p99_ms=10.0,
                    together_p99_ms=12.0,
                    alone_throughput=100.0,
                    together_throughput=90.0,
                    p99_ratio=1.2,
                    p99_interval=(1.1, 1.3),
                    throughput_ratio=0.9,
                    throughput_interval=(0.8, 1.0),
                    p99_rounds=(1.1, 1.3),
                    throughput_rounds=(0.85, 0.95),
                ),
            )
            assert m.read(cost) == m.read(cost.to_dict()) in (1.2, 0.9)
            assert compare.window_values(cost.to_dict(), m.name) in ([1.1, 1.3], [0.85, 0.95])
        elif m.per_window:
            assert None not in window_figures, m.name
            assert compare.window_values(as_dict, m.name) == window_figures
        else:
            assert compare.window_values(as_dict, m.name) == []


def test_plugin_registers_the_generated_marker_help() -> None:
    from pytest_triton_perf import plugin

    assert metrics.marker_help() == plugin.MARKER_HELP
    assert metrics.marker_help().startswith("sla(p50_ms=, p90_ms=")


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("perf_latency_p99=15%", {"p99_ms": 0.15}),
        ("perf_throughput=off", {"throughput": None}),
        ("errors=1%", {"error_rate": 0.01}),
    ],
)
def test_metric_maps_take_every_name_of_a_gated_metric(
    text_: str, expected: dict[str, float | None]
) -> None:
    assert metrics.parse_metric_map(text_, where="--x") == expected


def test_unknown_metric_lists_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as info:
        metrics.parse_metric_map("p90=5%", where="--triton-perf-min-effect")
    message = str(info.value)
    assert message.startswith("--triton-perf-min-effect: unknown metric 'p90'; accepted: ")
    assert all(name in message for name in metrics.METRIC_ALIASES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("15%", 0.15),
        (" 15 % ", 0.15),
        ("0.15", 0.15),
        (0.15, 0.15),
        (0, 0.0),
        (np.float32(0.5), 0.5),
    ],
)
def test_a_relative_amount_is_a_percentage_or_a_fraction(value: object, expected: float) -> None:
    assert metrics.parse_relative(value, where="w", what="x") == pytest.approx(expected)


@pytest.mark.parametrize("value", [True, "lots", -0.1, "-3%", [0.1], None, 10**400, "inf"])
def test_a_bad_relative_amount_names_the_value_and_the_accepted_forms(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        metrics.parse_relative(value, where="--x", what="a minimum effect", example=0.15)
    assert str(info.value).startswith("--x: ")
    assert str(info.value).endswith(
        " is not a minimum effect; write a percentage like '15%' or a fraction like 0.15."
    )


def test_a_minimum_effect_and_a_configuration_gap_share_the_parser() -> None:
    assert metrics.parse_effect("12%", where="w") == pytest.approx(0.12)
    with pytest.raises(ConfigError, match=r"^w: 12 is not a minimum effect; write a percentage"):
        metrics.parse_effect(12, where="w")  # 1200%: a percentage written without its %
    assert sla.parse_config_gap("t", 12) == 12  # a gap has no upper limit
    with pytest.raises(ConfigError) as info:
        sla.parse_config_gap("t", "-5%")
    assert str(info.value) == (
        "t: sla(max_config_gap='-5%'): '-5%' is not a configuration gap (how much better than "
        "the committed configuration the best found may be); write a percentage like '15%' or "
        "a fraction like 0.15."
    )
