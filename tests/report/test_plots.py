"""PNG plots: distributions per measurement, curves for concurrency sweeps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_triton_perf.report.plots import PlotError, write_plots
from tests.report.factory import make_record, make_result, mixed_records

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sweep() -> list:
    return [
        make_record(
            make_result("simple", concurrency=c, median_ms=0.5 + 0.1 * c**1.5, seed=c),
            test="tests/test_sweep.py::test_sweep[grpc]",
            index=i,
        )
        for i, c in enumerate([1, 2, 4, 8])
    ]


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_SIGNATURE and len(data) > 1024


def test_a_distribution_per_measurement_and_a_curve_per_sweep(tmp_path: Path) -> None:
    written = write_plots(tmp_path / "plots", mixed_records() + _sweep())
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "latency-tests_test_gate.py_test_pass-0.png",
            "latency-tests_test_gate.py_test_slow-0.png",
            "latency-tests_test_gate.py_test_fast-0.png",
            "latency-tests_test_gate.py_test_shaky-0.png",
            "latency-tests_test_gate.py_test_new-0.png",
            *(f"latency-tests_test_sweep.py_test_sweep_grpc-{i}.png" for i in range(4)),
            "curve-tests_test_sweep.py_test_sweep_grpc-simple-grpc-b1.png",
        ]
    )
    assert all(_is_png(p) for p in written)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == names


def test_names_are_deterministic_and_collisions_get_a_hash(tmp_path: Path) -> None:
    a = make_record(make_result(), test="t.py::test[a/b]")
    b = make_record(make_result(), test="t.py::test[a_b]")
    first = [p.name for p in write_plots(tmp_path / "1", [a, b])]
    second = [p.name for p in write_plots(tmp_path / "2", [a, b])]
    assert first == second
    assert len(set(first)) == 2
    assert all(n.startswith("latency-t.py_test_a_b-0-") for n in first)


def test_a_measurement_without_latencies_gets_no_distribution(tmp_path: Path) -> None:
    record = make_record(make_result())
    empty = type(record)(**{**record.__dict__, "histogram": {"edges_ms": [], "counts": []}})
    assert write_plots(tmp_path, [empty]) == []


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'pytest-triton-perf\[plots\]'"):
        write_plots(tmp_path / "plots", mixed_records())
    assert not (tmp_path / "plots").exists()
