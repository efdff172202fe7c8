"""A configuration search in every report: the ranked table, the best and its lead over the
committed configuration, time spent and pruning (terminal, Markdown), the results file read
back by ``triton-perf render``, and the throughput-vs-p99 and GPU-memory-vs-p99 plots."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf.cli import main
from pytest_triton_perf.report.json_report import read_results, write_json
from pytest_triton_perf.report.markdown import render_markdown
from pytest_triton_perf.report.terminal import render_terminal
from pytest_triton_perf.verdicts import MeasurementRecord
from tests.report.factory import document, make_record, make_result

TEST = "tests/test_search.py::test_search"
DIFF = (
    "--- sleepy/config.pbtxt\n"
    "+++ sleepy__cfg3/config.pbtxt\n"
    "@@ -4,3 +4,4 @@\n"
    "-instance_group [{ count: 1 kind: KIND_CPU }]\n"
    "+instance_group [{ count: 2 kind: KIND_CPU }]\n"
    "+dynamic_batching { max_queue_delay_microseconds: 500 }\n"
)


def _candidate(
    n: int,
    rank: int | None,
    values: dict[str, Any],
    *,
    median_ms: float | None,
    concurrency: int = 8,
    status: str = "finalist",
    note: str = "",
    sla_ok: bool = True,
    gpu_memory_mb: float | None = None,
    diff: str = "(a diff)",
    committed: bool = False,
) -> dict[str, Any]:
    """One candidate as ``SearchResult.to_dict()`` lists it, its figures from a real
    PerfResult (None: it failed to load and has none)."""
    figures: dict[str, Any] = dict.fromkeys(
        ("objective", "capacity", "p99_ms", "throughput", "cpu_memory_mb")
    )
    if median_ms is not None:
        result = make_result(concurrency=concurrency, median_ms=median_ms, seed=n)
        summary = result.summary()
        figures = {
            "objective": result.throughput,
            "capacity": result.throughput,
            "p99_ms": summary["p99_ms"],
            "throughput": result.throughput,
            "cpu_memory_mb": 500.0 + 20 * n,
        }
    return {
        "name": f"sleepy__cfg{n}",
        "rank": rank,
        "values": values,
        "config_diff": "" if committed else diff,
        **figures,
        "gpu_memory_mb": gpu_memory_mb,
        "sla_ok": sla_ok,
        "status": status,
        "note": note,
        "rung": 2 if status == "finalist" else 0,
        "committed": committed,
    }


def search_dict(gpu: bool = False) -> dict[str, Any]:
    """``SearchResult.to_dict()``: five candidates, cfg3 best, cfg0 committed, one pruned,
    one over the SLA, one that failed to load. ``gpu``: GPU memory measured."""
    mem = (lambda mb: mb) if gpu else (lambda mb: None)
    candidates = [
        _candidate(
            3,
            1,
            {"instance_count": 2, "dynamic_batching": True},
            median_ms=10.0,
            diff=DIFF,
            gpu_memory_mb=mem(1800.0),
        ),
        _candidate(
            1,
            2,
            {"instance_count": 2, "dynamic_batching": False},
            median_ms=14.0,
            gpu_memory_mb=mem(1750.0),
        ),
        _candidate(
            0,
            3,
            {"instance_count": 1, "dynamic_batching": False},
            median_ms=18.0,
            committed=True,
            gpu_memory_mb=mem(900.0),
        ),
        _candidate(
            2,
            4,
            {"instance_count": 1, "dynamic_batching": True},
            median_ms=19.0,
            status="pruned",
            note="dominated at rung 0",
            gpu_memory_mb=mem(950.0),
        ),
        _candidate(
            5,
            5,
            {"instance_count": 4, "dynamic_batching": False},
            median_ms=30.0,
            status="infeasible",
            note="p99_ms above 30",
            sla_ok=False,
            gpu_memory_mb=mem(3500.0),
        ),
        _candidate(
            4,
            None,
            {"instance_count": 8, "dynamic_batching": True},
            median_ms=None,
            status="failed",
            note="failed to load: out of memory",
            sla_ok=False,
        ),
    ]
    best, committed = candidates[0], candidates[2]
    return {
        "kind": "search",
        "model": "sleepy",
        "objective": "capacity",
        "strategy": "halving",
        "space": {"instance_count": [1, 2, 4, 8], "dynamic_batching": [False, True]},
        "sla": {"p99_ms": 30.0},
        "duration_s": 254.0,
        "pruned": 1,
        "best": best["name"],
        "best_config_pbtxt": "name: 'sleepy'\n",
        "committed": committed["name"],
        "gap": (best["objective"] - committed["objective"]) / committed["objective"],
        "max_config_gap": 0.15,
        "candidates": candidates,
    }


def search_record(search: dict[str, Any] | None = None) -> MeasurementRecord:
    record = make_record(make_result(concurrency=8, median_ms=18.0, seed=20), test=TEST)
    return dataclasses.replace(record, analysis={"search": search or search_dict()})


def _table(lines: list[str]) -> list[list[str]]:
    start = next(i for i, x in enumerate(lines) if x.strip().startswith("rank"))
    rows = []
    for x in lines[start:]:
        if not x.startswith("  "):
            break
        rows.append(re.split(r"\s{2,}", x.strip()))
    return rows


def test_the_ranked_table_lists_every_candidate_best_first() -> None:
    search = search_dict()
    lines = render_terminal([search_record(search)], 0)
    assert (
        f"configuration search: {TEST}: sleepy: objective capacity, halving over 6 configurations"
        in lines
    )
    header, *rows = _table(lines)
    assert header == [
        "rank",
        "candidate",
        "values",
        "objective",
        "capacity",
        "p99 ms",
        "infer/s",
        "GPU MB",
        "CPU MB",
        "SLA",
        "status",
    ]
    assert [r[1] for r in rows] == [c["name"] for c in search["candidates"]]
    best = rows[0]
    c = search["candidates"][0]
    assert best[:3] == ["1", "sleepy__cfg3", "dynamic_batching=true, instance_count=2"]
    assert best[3] == f"{c['objective']:.1f} infer/s"
    assert best[5] == f"{c['p99_ms']:.2f}"
    assert best[7:] == ["-", "560", "ok", "finalist (best)"]
    assert rows[2][-1] == "finalist (committed)"
    assert rows[3][-1] == "pruned: dominated at rung 0"
    assert rows[4][-2:] == ["FAIL", "infeasible: p99_ms above 30"]
    failed = rows[5]
    assert failed[0] == "-" and failed[3:10] == ["-"] * 7
    assert failed[-1] == "failed: failed to load: out of memory"


def test_best_gap_time_and_pruning_follow_the_table() -> None:
    search = search_dict()
    lines = render_terminal([search_record(search)], 0)
    best, committed = search["candidates"][0], search["candidates"][2]
    assert (
        f"best: sleepy__cfg3 (dynamic_batching=true, instance_count=2): capacity "
        f"{best['objective']:.1f} infer/s"
    ) in lines
    assert (
        f"committed: sleepy__cfg0: capacity {committed['objective']:.1f} infer/s; the best beats "
        f"it by {search['gap']:.1%} on capacity (max_config_gap 15%: exceeds)"
    ) in lines
    assert (
        "searched 6 configurations in 4.2 min: 1 pruned, 1 infeasible, 1 failed; SLA p99_ms <= 30"
        in lines
    )
    # The diff of the best configuration only at -v.
    assert "+dynamic_batching { max_queue_delay_microseconds: 500 }" not in " ".join(lines)
    verbose = render_terminal([search_record(search)], 1)
    at = verbose.index("best config.pbtxt, diff against the committed one:")
    assert verbose[at + 1 : at + 7] == ["  " + x for x in DIFF.splitlines()]
    assert not any("configuration search" in x for x in render_terminal([search_record()], -1))


def test_a_committed_best_and_no_feasible_candidate() -> None:
    search = search_dict()
    mine = {**search, "best": "sleepy__cfg0", "gap": 0.0}
    lines = render_terminal([search_record(mine)], 0)
    assert any(
        x.startswith("committed: sleepy__cfg0:")
        and x.endswith("; the committed configuration is the best (max_config_gap 15%: within)")
        for x in lines
    )
    none = {**search, "best": None, "gap": None, "committed": None}
    none["candidates"] = [c for c in search["candidates"] if not c["committed"]]
    lines = render_terminal([search_record(none)], 1)
    assert "best: none: no configuration holds the SLA" in lines
    assert not any(x.startswith("committed:") for x in lines)
    assert "best config.pbtxt, diff against the committed one:" not in lines


def test_markdown_has_the_lines_the_table_and_the_diff() -> None:
    search = search_dict()
    text = render_markdown([search_record(search)])
    section = text.split("### Configuration search", 1)[1]
    assert f"#### `{TEST}`: sleepy: objective capacity, halving over 6 configurations" in section
    assert "- best: sleepy__cfg3 (dynamic_batching=true, instance_count=2): capacity " in section
    assert "(max_config_gap 15%: exceeds)" in section
    assert "- searched 6 configurations in 4.2 min: 1 pruned, 1 infeasible, 1 failed" in section
    assert (
        "| rank | candidate | values | objective | capacity | p99 ms | infer/s | GPU MB | CPU MB "
        "| SLA | status |" in section
    )
    rows = [x for x in section.splitlines() if x.startswith("| ") and "sleepy__cfg" in x]
    assert [r.split(" | ")[1] for r in rows] == [c["name"] for c in search["candidates"]]
    assert rows[0].endswith("| ok | finalist (best) |")
    assert rows[-1].startswith("| - | sleepy__cfg4 | dynamic_batching=true, instance_count=8 | -")
    diff = section.split("<details><summary>best config.pbtxt (diff against the committed one)")[1]
    assert "```diff\n" + DIFF + "```\n\n</details>" in diff


def test_a_pipe_in_a_note_does_not_break_the_markdown_table() -> None:
    search = search_dict()
    search["candidates"][3]["note"] = "dominated | at rung 0"
    text = render_markdown([search_record(search)])
    row = next(x for x in text.splitlines() if x.startswith("| 4 | sleepy__cfg2"))
    assert row.endswith("| pruned: dominated \\| at rung 0 |")


def test_analysis_survives_the_results_file_and_render(tmp_path: Path) -> None:
    search = search_dict(gpu=True)
    path = write_json(tmp_path / "results.json", document([search_record(search)]))
    _, (back,) = read_results(path)
    assert back.analysis == json.loads(json.dumps({"search": search}))
    # Keys come back sorted; the candidates keep their rank order.
    assert [c["name"] for c in back.analysis["search"]["candidates"]] == [
        c["name"] for c in search["candidates"]
    ]
    assert render_markdown([back]) == render_markdown([search_record(search)])

    out = io.StringIO()
    assert main(["render", str(path)], out=out) == 0
    printed = out.getvalue().splitlines()
    assert any(x.startswith("best: sleepy__cfg3 (") for x in printed)
    assert [r[1] for r in _table(printed)[1:]] == [c["name"] for c in search["candidates"]]


# -- the plots --------------------------------------------------------------------------------


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_every_candidate_on_throughput_vs_p99_with_best_committed_and_bound() -> None:
    pytest.importorskip("matplotlib")
    from pytest_triton_perf.report.plots import search_figure

    search = search_dict()
    fig = search_figure(TEST, search)
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_xlabel() == "throughput (inferences/s)"
    assert ax.get_ylabel() == "p99 latency (ms)"
    assert "5 configurations measured, objective capacity (halving)" in ax.get_title()
    lines = _lines(ax)
    finalists = [c for c in search["candidates"] if c["status"] == "finalist"]
    assert sorted(lines["finalist (3)"].get_xdata()) == sorted(c["throughput"] for c in finalists)
    assert list(lines["pruned (1)"].get_ydata()) == [search["candidates"][3]["p99_ms"]]
    assert list(lines["infeasible (1)"].get_ydata()) == [search["candidates"][4]["p99_ms"]]
    best = search["candidates"][0]
    assert list(lines["best: sleepy__cfg3"].get_xdata()) == [best["throughput"]]
    assert list(lines["committed: sleepy__cfg0"].get_ydata()) == [search["candidates"][2]["p99_ms"]]
    assert list(lines["SLA p99_ms <= 30 ms"].get_ydata()) == [30.0, 30.0]
    assert ax.get_ylim()[1] > 30.0
    # Each measured candidate labelled; the failed one has no figures to draw.
    assert {t.get_text() for t in ax.texts} == {"cfg3", "cfg1", "cfg0", "cfg2", "cfg5"}


def test_gpu_memory_vs_p99_only_when_gpu_memory_is_measured(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_triton_perf.report.plots import search_memory_figure, write_plots

    assert search_memory_figure(TEST, search_dict()) is None
    written = write_plots(tmp_path / "cpu", [search_record(search_dict())])
    assert sorted(p.name for p in written) == [
        "latency-tests_test_search.py_test_search-0.png",
        "search-tests_test_search.py_test_search-0.png",
    ]

    search = search_dict(gpu=True)
    search["sla"] = {"p99_ms": 30.0, "max_gpu_memory_mb": 2000.0}
    fig = search_memory_figure(TEST, search)
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_xlabel() == "GPU memory (MB)"
    assert ax.get_ylabel() == "p99 latency (ms)"
    lines = _lines(ax)
    assert list(lines["best: sleepy__cfg3"].get_xdata()) == [1800.0]
    assert list(lines["SLA max_gpu_memory_mb <= 2000 MB"].get_xdata()) == [2000.0, 2000.0]
    assert list(lines["SLA p99_ms <= 30 ms"].get_ydata()) == [30.0, 30.0]

    written = write_plots(tmp_path / "gpu", [search_record(search)])
    assert sorted(p.name for p in written) == [
        "latency-tests_test_search.py_test_search-0.png",
        "search-memory-tests_test_search.py_test_search-0.png",
        "search-tests_test_search.py_test_search-0.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_no_search_plot_when_no_candidate_was_measured(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_triton_perf.report.plots import search_figure, write_plots

    search = search_dict()
    search["candidates"] = [c for c in search["candidates"] if c["status"] == "failed"]
    assert search_figure(TEST, search) is None
    written = write_plots(tmp_path, [search_record(search)])
    assert [p.name for p in written] == ["latency-tests_test_search.py_test_search-0.png"]
