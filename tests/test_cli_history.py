"""``triton-perf history`` and ``history accept`` on a record saved through the real store:
six sessions at 20 ms, then three at 24 ms (+20%)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_triton_perf.baseline.store import BaselineStore
from tests.report.factory import make_result
from tests.test_cli import run

TEST = "tests/test_x.py::test_model"
KEY = {"cpu": "history-test", "triton": "2.0"}


def _commit(i: int) -> str:
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()


STEPPED = [20.0, 20.3, 19.8, 20.1, 19.9, 20.2, 24.0, 24.3, 23.9]


def save_record(root: Path, levels: list[float]) -> Path:
    """One session a level, each at a commit of its own, saved through the real store."""
    store = BaselineStore(root)
    for i, level in enumerate(levels):
        r = make_result(median_ms=level, windows=4, per_window=100, spread=0.05, seed=i)
        store.save(
            KEY,
            TEST,
            "sleepy conc=1",
            {
                "date": f"2026-11-{i + 1:02d}T10:00:00Z",
                "git_commit": _commit(i),
                "session": f"ci-{i}-1",
                "result": r.to_dict(),
            },
            workload={},
            environment={},
        )
    return root


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return save_record(tmp_path / "baselines", STEPPED)


def test_history_names_the_change_point_commit_and_fails_on_new(
    record: Path, tmp_path: Path
) -> None:
    proc = run(
        tmp_path,
        "history",
        "--baselines",
        str(record),
        "--fail-on-new",
        "3",
        "--json",
        "h.json",
        "--markdown",
        "h.md",
        "--plots",
        "plots",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "h.json").read_text())
    p50 = next(s for s in doc["series"] if s["metric"] == "p50_ms")
    assert len(p50["points"]) == 9
    (cp,) = p50["change_points"]
    assert cp["index"] == 6 and cp["commit"] == _commit(6)
    assert cp["kind"] == "regression"
    assert 15 < cp["change_pct"] < 25 and cp["ci_pct"][0] > 10
    assert cp["p_value"] <= 0.05
    assert doc["new_regressions"]
    assert f"regression at {_commit(6)[:10]}" in proc.stdout
    assert "regression change point(s) among the newest 3 session(s)" in proc.stdout
    assert "| p50_ms |" in (tmp_path / "h.md").read_text()
    pngs = list((tmp_path / "plots").glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_an_old_change_point_does_not_fail_the_newest_runs(record: Path, tmp_path: Path) -> None:
    proc = run(tmp_path, "history", "--baselines", str(record), "--fail-on-new", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_creep_since_a_commit(record: Path, tmp_path: Path) -> None:
    proc = run(
        tmp_path, "history", "--baselines", str(record), "--since", _commit(3)[:8], "--json", "c"
    )
    assert proc.returncode == 0, proc.stderr
    p50 = next(
        s for s in json.loads((tmp_path / "c").read_text())["series"] if s["metric"] == "p50_ms"
    )
    assert p50["creep"]["since_commit"] == _commit(3) and p50["creep"]["span"] == 5
    assert p50["creep"]["change_pct"] > 10
    bad = run(tmp_path, "history", "--baselines", str(record), "--since", "nope")
    assert bad.returncode == 2
    assert "--since=nope: not a number of sessions, a date (YYYY-MM-DD) or a stored commit" in (
        bad.stderr
    )


def test_accept_records_the_commit_and_names_stored_ones_on_a_typo(
    record: Path, tmp_path: Path
) -> None:
    proc = run(
        tmp_path, "history", "accept", TEST, "--at", _commit(6)[:10], "--baselines", str(record)
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = BaselineStore(record).iter_files()
    assert BaselineStore.accepted(json.loads(path.read_text())) == [_commit(6)]
    typo = run(tmp_path, "history", "accept", TEST, "--at", "beef", "--baselines", str(record))
    assert typo.returncode == 2
    assert "'beef' is not among the runs stored" in typo.stderr and _commit(0)[:10] in typo.stderr
    other = run(tmp_path, "history", "accept", "nope", "--at", "beef", "--baselines", str(record))
    assert other.returncode == 2 and f"stored tests: {TEST}" in other.stderr


def test_history_of_an_empty_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run(tmp_path, "history", "--baselines", "empty")
    assert proc.returncode == 2 and "no baseline file under empty" in proc.stderr


def test_history_help_lists_its_exit_statuses(tmp_path: Path) -> None:
    proc = run(tmp_path, "history", "--help")
    assert proc.returncode == 0
    assert "exit status:" in proc.stdout and "--fail-on-new N" in proc.stdout
