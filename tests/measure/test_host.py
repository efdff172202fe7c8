"""The machine's load during a measurement: load average and CPU steal share."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_triton_perf.measure.host import HostLoad, cpu_ticks, describe


def _stat(path: Path, steal: int, idle: int) -> None:
    path.write_text(f"cpu  100 0 50 {idle} 10 0 5 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")


def test_steal_is_the_share_of_cpu_time_between_start_and_finish(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, steal=20, idle=815)  # 1000 ticks
    load = HostLoad(stat)
    _stat(stat, steal=70, idle=1265)  # 500 more ticks, 50 of them stolen
    figures = load.finish()
    assert figures["steal_pct"] == pytest.approx(10.0)
    assert figures["load_1m"] is None or figures["load_1m"] >= 0


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu  1 2 3\n", "cpu  a b c d e f g h\n"])
def test_no_steal_where_the_kernel_does_not_report_it(tmp_path: Path, text: str) -> None:
    stat = tmp_path / "stat"
    stat.write_text(text)
    assert cpu_ticks(stat) is None
    assert HostLoad(stat).finish()["steal_pct"] is None
    assert HostLoad(tmp_path / "missing").finish()["steal_pct"] is None


def test_no_tick_passed_is_no_figure(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, steal=20, idle=815)
    assert HostLoad(stat).finish()["steal_pct"] is None


def test_described_as_the_reports_show_it() -> None:
    assert describe({"load_1m": 3.24, "steal_pct": 0.4}) == "load 3.2, steal 0%"
    assert describe({"load_1m": 0.5, "steal_pct": None}) == "load 0.5"
    assert describe(None) == ""
