"""``triton-perf merge``: the shards of a run as one results file, one set of reports, and
one baseline history."""

from __future__ import annotations

import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_triton_perf import cli
from pytest_triton_perf.baseline.shards import read_durations, save_durations
from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.report.json_report import read_results, write_json
from tests.report.factory import document, mixed_records

KEY = {"triton": "2.51.0", "gpu_count": 0, "cpu": "Test CPU", "cpu_count": 2}


def shard_file(path: Path, shard: str | None, records: list) -> Path:
    doc = document(records)
    if shard:
        doc["session"]["shard"] = shard
        doc["session"]["saved"] = [f"saved-by-{shard}"]
    return write_json(path, doc)


def merge(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(["merge", *args], out)
    return code, out.getvalue()


def test_shards_merge_into_one_results_file_and_one_report(tmp_path: Path) -> None:
    records = mixed_records()
    passing = [r for r in records if r.outcome != "failed"]
    a = shard_file(tmp_path / "a" / "results.json", "1/2", passing[:2])
    b = shard_file(tmp_path / "b" / "results.json", "2/2", passing[2:])
    code, out = merge(
        str(a),
        str(b),
        "-o",
        str(tmp_path / "merged.json"),
        "--junit",
        str(tmp_path / "junit.xml"),
        "--markdown",
        str(tmp_path / "summary.md"),
        "--columns",
        "test,p99",
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["test", "p99", "ms"]
    assert "merged 2 results files (shards 1/2, 2/2): 4 measurements" in lines
    assert f"wrote {tmp_path / 'merged.json'}" in lines
    doc, merged = read_results(tmp_path / "merged.json")
    assert [r.test for r in merged] == [r.test for r in passing]
    assert doc["session"]["shards"] == 2
    assert [s["shard"] for s in doc["session"]["merged_from"]] == ["1/2", "2/2"]
    assert doc["session"]["saved"] == ["saved-by-1/2", "saved-by-2/2"]
    cases = list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    assert {c.get("classname") for c in cases} == {r.test for r in passing}
    assert (tmp_path / "summary.md").read_text().count("| `tests/test_gate.py::") == 4


def test_a_missing_shard_or_a_failed_test_fails_the_merge(tmp_path: Path) -> None:
    records = mixed_records()
    a = shard_file(tmp_path / "a.json", "1/3", records[:1])
    c = shard_file(tmp_path / "c.json", "3/3", records[1:2])  # test_slow failed
    code, out = merge(str(a), str(c))
    assert code == 1
    assert "missing: shard 2/3: no results file of it was given" in out
    assert "failed: tests/test_gate.py::test_slow" in out


def test_what_cannot_be_right_is_said(tmp_path: Path) -> None:
    records = mixed_records()[:1]
    a = shard_file(tmp_path / "a.json", "1/2", records)
    again = shard_file(tmp_path / "again.json", "1/2", records)
    plain = shard_file(tmp_path / "plain.json", None, mixed_records()[2:3])
    code, out = merge(str(a), str(again), str(plain))
    assert code == 1  # and 2/2 is missing
    assert f"note: shard 1/2 is given twice: {a} and {again}" in out
    assert "was measured in two files" in out
    assert f"note: not from a sharded run: {plain}" in out


def test_shards_baselines_merge_into_the_history(tmp_path: Path) -> None:
    """Each shard saved into its copy of the committed history: merged, every run is there
    once, and each test's duration is the newest."""
    history = tmp_path / "repo" / ".triton-perf"
    store = BaselineStore(history)
    run = {"date": "2026-11-20T10:00:00Z", "result": {"n": 0}}
    store.save(KEY, "t.py::test_a", "a", run, workload={}, environment={})
    shards = []
    for n, test in ((1, "t.py::test_a"), (2, "t.py::test_b")):
        copy = tmp_path / f"shard{n}" / "baselines"
        shutil.copytree(history, copy)
        new = {"date": f"2026-11-21T10:00:0{n}Z", "result": {"n": n}}
        BaselineStore(copy).save(KEY, test, test[-1], new, workload={}, environment={})
        save_durations(copy, {test: 10.0 * n})
        shards.append(copy)
    results = shard_file(tmp_path / "r.json", None, mixed_records()[:1])
    args = [str(results), "--baseline-dir", str(history)]
    code, out = merge(*args, "--baselines", str(shards[0]), "--baselines", str(shards[1]))
    assert code == 0, out
    assert (
        f"baselines: merged 2 directories into {history}: 2 file(s) changed, 2 run(s) "
        f"added; test durations updated"
    ) in out
    a, b = store.load(KEY, "t.py::test_a", "a"), store.load(KEY, "t.py::test_b", "b")
    assert a is not None and [r["result"]["n"] for r in a["runs"]] == [0, 1]
    assert b is not None and [r["result"]["n"] for r in b["runs"]] == [2]
    assert read_durations(history) == {"t.py::test_a": 10.0, "t.py::test_b": 20.0}
    code, out = merge(*args, "--baselines", str(tmp_path / "nowhere"))
    assert code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--columns", "p98"], "--columns='p98': unknown column 'p98'. Did you mean 'p99'?"),
        (["--sort", "memory"], "--sort='memory': 'memory' names 2 columns"),
    ],
)
def test_bad_table_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    results = shard_file(tmp_path / "r.json", None, mixed_records()[:1])
    assert cli.main(["render", str(results), *args], io.StringIO()) == 2
    assert message in capsys.readouterr().err
