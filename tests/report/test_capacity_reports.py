"""A capacity search in every report: terminal (headline; step table at -v), Markdown, JSON
(written and read back by ``triton-perf render``) and the latency-vs-throughput plot."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf.cli import main
from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.report.json_report import read_results, write_json
from pytest_triton_perf.report.markdown import render_markdown
from pytest_triton_perf.report.terminal import render_terminal
from pytest_triton_perf.verdicts import MeasurementRecord
from tests.report.factory import document, make_record, make_result

TEST = "tests/test_capacity.py::test_capacity"
BOUND = 30.0

# (load, phase, median latency in ms): p99 is about 1.42 x the median (log-normal, spread
# 0.15), so levels up to 10 hold p99 <= 30 and 11, 12 and 16 break it.
PLAN = [
    (1, "grow", 15.0),
    (2, "grow", 15.5),
    (4, "grow", 16.0),
    (8, "grow", 18.0),
    (16, "grow", 26.0),
    (12, "bisect", 23.0),
    (10, "bisect", 19.5),
    (11, "bisect", 22.0),
]


def _step(load: int, phase: str, median_ms: float, bounds: dict[str, float]) -> dict[str, Any]:
    """One step as ``CapacityStep.to_dict()`` writes it, from a real PerfResult."""
    result = make_result(concurrency=load, median_ms=median_ms, seed=load)
    figures = result.summary()
    breached = [
        f"{key} {fmt(figures[key])} > {bound:g}"
        for key, bound in bounds.items()
        if (figures[key] or 0.0) > bound
    ]
    return {
        "load": float(load),
        "phase": phase,
        "throughput": result.throughput,
        **{k: figures[k] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms")},
        "error_rate": 0.0,
        "passed": not breached,
        "breached": breached,
    }


def capacity_dict(bounds: dict[str, float] | None = None) -> dict[str, Any]:
    """``CapacityResult.to_dict()`` of a search over concurrency limited by p99_ms <= 30."""
    bounds = bounds or {"p99_ms": BOUND}
    steps = [_step(load, phase, median, bounds) for load, phase, median in PLAN]
    assert [s["passed"] for s in steps] == [True] * 4 + [False] * 2 + [True, False]
    return {
        "kind": "capacity",
        "model": "sleepy",
        "over": "concurrency",
        "bounds": bounds,
        "capacity": steps[6]["throughput"],
        "load": 10.0,
        "limited_by": "p99_ms",
        "knee": 8.0,
        "next_load": 11.0,
        "duration_s": 41.3,
        "notes": [],
        "steps": steps,
    }


def capacity_record(analysis: dict[str, Any] | None = None) -> MeasurementRecord:
    record = make_record(make_result(concurrency=10, median_ms=19.5, seed=10), test=TEST)
    return dataclasses.replace(record, analysis={"capacity": analysis or capacity_dict()})


def headline(cap: dict[str, Any]) -> str:
    return (
        f"capacity: {cap['capacity']:.1f} infer/s at concurrency 10 (limited by p99_ms <= 30, "
        f"broken at concurrency 11; knee at concurrency 8) — {TEST}, 8 steps in 41 s"
    )


def test_default_shows_only_the_headline() -> None:
    cap = capacity_dict()
    lines = render_terminal([capacity_record(cap)], 0)
    assert headline(cap) in lines
    assert not any(x.startswith("capacity search:") for x in lines)
    assert not any("bisect" in x for x in lines)
    assert lines[-1].startswith("triton-perf: 1 measurement")


def test_verbose_adds_the_step_table_before_the_headline() -> None:
    cap = capacity_dict()
    lines = render_terminal([capacity_record(cap)], 1)
    start = lines.index(f"capacity search: {TEST}: sleepy over concurrency, bounds p99_ms <= 30")
    assert re.split(r"\s{2,}", lines[start + 1].strip()) == [
        "concurrency",
        "phase",
        "infer/s",
        "p99 ms",
        "result",
    ]
    rows = [re.split(r"\s{2,}", x.strip()) for x in lines[start + 2 : start + 2 + len(PLAN)]]
    # Steps in the order measured: growth first, then the bisection.
    assert [(r[0], r[1]) for r in rows] == [(str(load), phase) for load, phase, _ in PLAN]
    for row, step in zip(rows, cap["steps"], strict=True):
        assert row[2] == fmt(step["throughput"], 1)
        assert row[3] == fmt(step["p99_ms"])
    assert rows[3][4] == "pass (knee)"
    assert rows[6][4] == "pass (capacity)"
    assert rows[4][4] == f"FAIL: {cap['steps'][4]['breached'][0]}"
    assert rows[4][4].startswith("FAIL: p99_ms ") and rows[4][4].endswith(" > 30")
    assert lines[start + 2 + len(PLAN)] == headline(cap)


def test_quiet_shows_no_capacity_lines() -> None:
    lines = render_terminal([capacity_record()], -1)
    assert not any("capacity" in x for x in lines)


def test_every_bounded_latency_gets_a_column() -> None:
    cap = capacity_dict({"p50_ms": 25.0, "p99_ms": BOUND})
    lines = render_terminal([capacity_record(cap)], 1)
    header = next(x for x in lines if x.strip().startswith("concurrency"))
    assert re.split(r"\s{2,}", header.strip())[3:5] == ["p50 ms", "p99 ms"]


def test_no_capacity_when_the_first_level_breaks_a_bound() -> None:
    cap = capacity_dict()
    first = cap["steps"][4]
    broken = {
        **cap,
        "capacity": None,
        "load": None,
        "knee": None,
        "next_load": first["load"],
        "steps": [first],
    }
    lines = render_terminal([capacity_record(broken)], 0)
    assert (
        f"capacity: none within p99_ms <= 30: concurrency 16 already breaks "
        f"{first['breached'][0]} — {TEST}, 1 step in 41 s"
    ) in lines


def test_a_plateau_over_request_rate_reads_in_requests_per_second() -> None:
    cap = {
        **capacity_dict(),
        "over": "request_rate",
        "limited_by": "plateau",
        "load": 120.0,
        "knee": 100.0,
        "next_load": 240.0,
        "notes": ["throughput grew by less than 5% over the last two levels"],
    }
    for step, rate in zip(cap["steps"], (25, 50, 100, 200, 400, 300, 120, 150), strict=True):
        step["load"] = float(rate)
    lines = render_terminal([capacity_record(cap)], 1)
    assert any(
        x.startswith(
            f"capacity: {cap['capacity']:.1f} infer/s at request rate 120/s (limited by a "
            "plateau: throughput stopped growing; knee at request rate 100/s)"
        )
        for x in lines
    )
    assert "  note: throughput grew by less than 5% over the last two levels" in lines
    assert any(x.strip().startswith("rate /s") for x in lines)


def test_markdown_has_the_headline_and_the_step_table() -> None:
    cap = capacity_dict()
    text = render_markdown([capacity_record(cap)])
    section = text.split("### Capacity", 1)[1]
    assert f"#### `{TEST}`: sleepy over concurrency, bounds p99_ms <= 30" in section
    assert (
        f"**capacity: {cap['capacity']:.1f} infer/s at concurrency 10 (limited by p99_ms <= 30, "
        "broken at concurrency 11; knee at concurrency 8)**, 8 steps in 41 s"
    ) in section
    assert "| concurrency | phase | infer/s | p99 ms | result |" in section
    ten = cap["steps"][6]
    assert (
        f"| 10 | bisect | {fmt(ten['throughput'], 1)} | {fmt(ten['p99_ms'])} | pass (capacity) |"
        in section
    )
    sixteen = cap["steps"][4]
    assert f"| 16 | grow | {fmt(sixteen['throughput'], 1)} |" in section
    assert f"| FAIL: {sixteen['breached'][0]} |" in section


def test_a_plain_measurement_has_no_capacity_section() -> None:
    record = make_record(make_result(), test=TEST)
    assert "### Capacity" not in render_markdown([record])
    assert not any(x.startswith("capacity") for x in render_terminal([record], 1))


def test_analysis_survives_the_results_file_and_render(tmp_path: Path) -> None:
    # The results file sorts keys: the bounds still read in the catalogue's order.
    cap = capacity_dict({"p99_ms": BOUND, "avg_ms": 28.0})
    path = write_json(tmp_path / "results.json", document([capacity_record(cap)]))
    stored = json.loads(path.read_text())["measurements"][0]["analysis"]["capacity"]
    assert stored["steps"][4]["breached"] == cap["steps"][4]["breached"]
    _, (back,) = read_results(path)
    assert back.analysis == json.loads(json.dumps({"capacity": cap}))
    assert render_terminal([back], 1) == render_terminal([capacity_record(cap)], 1)

    out = io.StringIO()
    assert main(["render", str(path), "-v"], out=out) == 0
    printed = out.getvalue().splitlines()
    assert headline(cap) in printed
    assert (
        f"capacity search: {TEST}: sleepy over concurrency, bounds p99_ms <= 30, avg_ms <= 28"
        in printed
    )


# -- the plot ---------------------------------------------------------------------------------


def test_the_plot_draws_each_bound_the_curve_and_the_capacity_point(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_triton_perf.report.plots import capacity_figure, write_plots

    cap = capacity_dict({"p50_ms": 25.0, "p99_ms": BOUND})
    fig = capacity_figure(TEST, cap)
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_xlabel() == "throughput (inferences/s)"
    assert ax.get_ylabel() == "latency (ms)"
    assert "sleepy: capacity search over concurrency" in ax.get_title()
    by_label = {line.get_label(): line for line in ax.get_lines()}
    # One curve per bounded latency, steps in load order (not the order measured).
    by_load = sorted(cap["steps"], key=lambda s: s["load"])
    p99 = by_label["p99_ms"]
    assert list(p99.get_xdata()) == [s["throughput"] for s in by_load]
    assert list(p99.get_ydata()) == [s["p99_ms"] for s in by_load]
    assert list(by_label["p50_ms"].get_ydata()) == [s["p50_ms"] for s in by_load]
    # Each bound a horizontal line at its value.
    assert list(by_label["SLA p99_ms <= 30 ms"].get_ydata()) == [BOUND, BOUND]
    assert list(by_label["SLA p50_ms <= 25 ms"].get_ydata()) == [25.0, 25.0]
    assert ax.get_ylim()[1] > BOUND
    # The capacity point, marked and labelled.
    star = by_label[f"capacity {cap['capacity']:.1f} infer/s"]
    assert list(star.get_xdata()) == [cap["capacity"]]
    assert list(star.get_ydata()) == [cap["steps"][6]["p99_ms"]]
    texts = [t.get_text() for t in ax.texts]
    assert f"capacity {cap['capacity']:.1f} infer/s\nat concurrency 10" in texts
    assert {f"c={load}" for load, _, _ in PLAN} <= set(texts)
    # The steps that broke a bound are crossed: 3 steps x 2 curves.
    assert len(by_label["breaks a bound"].get_xdata()) == 6
    knee = by_label["knee (c=8)"]
    assert list(knee.get_xdata()) == [cap["steps"][3]["throughput"]] * 2

    written = write_plots(tmp_path / "plots", [capacity_record(cap)])
    names = sorted(p.name for p in written)
    assert names == [
        "capacity-tests_test_capacity.py_test_capacity-0.png",
        "latency-tests_test_capacity.py_test_capacity-0.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_no_capacity_plot_without_steps(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_triton_perf.report.plots import capacity_figure, write_plots

    empty = {**capacity_dict(), "steps": [], "capacity": None}
    assert capacity_figure(TEST, empty) is None
    written = write_plots(tmp_path, [capacity_record(empty)])
    assert [p.name for p in written] == ["latency-tests_test_capacity.py_test_capacity-0.png"]
