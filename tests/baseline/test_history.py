"""History over sessions (issue 20): the session is the unit, the spread is the sessions'
(own, the machine's, or an assumed one said out loud), a shift counts once a second session
sees it, accepted changes and change points move the reference. Seeded simulations with
1.2% within and 3.2% between sessions, the spreads measured on a CPU-bound model."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_triton_perf.baseline import history
from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.errors import BaselineError
from pytest_triton_perf.verdicts import INCONCLUSIVE, PASS, REGRESSION, Comparison

GATE = GateSettings()
WITHIN, BETWEEN = 0.012, 0.032


def _result(level_ms: float, windows: int = 8, rng: np.random.Generator | None = None) -> dict:
    """A result dict whose windows' p50 scatter around ``level_ms`` by ``WITHIN``."""
    rng = rng or np.random.default_rng(0)
    values = level_ms * np.exp(rng.normal(0.0, WITHIN, windows))
    return {
        "windows": [
            {"duration_s": 2.0, "requests": 200, "latency_ms": {"p50": float(v)}} for v in values
        ]
    }


def _commit(i: int) -> str:
    return hashlib.sha1(str(i).encode()).hexdigest()


def _runs(levels: list[float], runs_per_session: int = 1, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i, level in enumerate(levels):
        for j in range(runs_per_session):
            out.append(
                {
                    "date": f"2026-01-{i + 1:02d}T00:00:{j:02d}Z",
                    "git_commit": _commit(i),
                    "session": f"s{i}",
                    "result": _result(level, rng=rng),
                }
            )
    return out


def _p50(runs: list[dict], current: dict, **kw: Any) -> Comparison:
    return history.compare_sessions("p50_ms", history.sessions(runs), current, GATE, **kw)


def test_runs_of_one_session_are_one_unit() -> None:
    runs = _runs([10.0, 11.0], runs_per_session=3)
    ss = history.sessions(runs)
    assert [s.id for s in ss] == ["s0", "s1"]
    assert [len(s.results) for s in ss] == [3, 3]
    legacy = [{k: v for k, v in r.items() if k != "session"} for r in runs]
    assert len(history.sessions(legacy)) == 6  # stored before sessions: one each


@pytest.mark.parametrize("stored", [3, 5, 10, 20])
def test_false_alarms_do_not_grow_with_history(stored: int) -> None:
    """A/A: stored sessions and the new one all drawn alike (3.2% between, 1.2% within). The
    one-sided 5% prediction interval over sessions flags at most alpha whatever the length
    of the record (the windows' pooled test flagged 4%, 10%, 13% at 5, 10, 20 runs)."""
    alarms, trials = 0, 300
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        levels = list(10.0 * np.exp(rng.normal(0.0, BETWEEN, stored + 1)))
        runs = _runs(levels[:-1], seed=seed)
        c = _p50(runs, _result(levels[-1], rng=rng))
        alarms += c.verdict == REGRESSION
    assert alarms / trials <= GATE.alpha + 0.02


def test_own_spread_needs_three_sessions_else_the_machine_is_asked() -> None:
    asked = []

    def machine() -> history.Spread:
        asked.append(1)
        return history.Spread(0.03, 40, "the machine's")

    c = _p50(_runs([10.0, 10.2]), _result(10.1), machine=machine)
    assert asked and "the machine's" in c.note
    asked.clear()
    c = _p50(_runs([10.0, 10.2, 9.9]), _result(10.1), machine=machine)
    assert not asked and "3 sessions" in c.note


def test_with_no_estimate_at_all_the_assumed_spread_is_named_and_nothing_passes() -> None:
    c = _p50(_runs([10.0]), _result(10.0))
    assert c.verdict == INCONCLUSIVE
    assert "assumed session-to-session sd 5.0%" in c.note
    assert c.mde_pct is not None and c.mde_pct > 10  # it says what it could see


def test_a_large_regression_is_seen_and_the_smallest_change_it_could_see_stated() -> None:
    runs = _runs([10.0, 10.1, 9.95, 10.05, 9.98, 10.02])
    c = _p50(runs, _result(13.0))
    assert c.verdict == REGRESSION and c.change_pct == pytest.approx(30, abs=3)
    assert "could see >=" in c.note
    same = _p50(runs, _result(10.0))
    assert same.verdict == PASS


def test_machine_spread_pools_sessions_of_every_test_of_the_key() -> None:
    rng = np.random.default_rng(1)
    docs = [
        {"runs": _runs(list(10.0 * np.exp(rng.normal(0, BETWEEN, 6))), seed=i)} for i in range(4)
    ]
    spread = history.machine_spread(docs, "p50_ms")
    assert spread is not None and spread.df == 20
    assert 0.015 < spread.sd < 0.06
    assert history.machine_spread([{"runs": _runs([10.0])}], "p50_ms") is None


def test_machine_spread_is_taken_within_the_segments_between_change_points() -> None:
    rng = np.random.default_rng(2)
    levels = list(10.0 * np.exp(rng.normal(0, 0.01, 12)))
    stepped = levels[:6] + [v * 1.5 for v in levels[6:]]
    spread = history.machine_spread([{"runs": _runs(stepped)}], "p50_ms")
    assert spread is not None and spread.sd < 0.03  # not the 20% a step would add


def test_after_a_change_point_the_reference_is_the_new_level() -> None:
    levels = [10.0, 10.1, 9.9, 10.0, 10.05, 12.0, 12.1, 11.9, 12.05, 12.0]
    c = _p50(_runs(levels), _result(12.0))
    assert c.verdict == PASS
    assert "since the change point at commit" in c.note
    assert c.baseline == pytest.approx(12.0, rel=0.02)


def test_an_accepted_commit_moves_the_reference() -> None:
    levels = [10.0, 10.1, 9.9, 11.0, 11.1, 10.9]
    runs = _runs(levels)
    accepted = [runs[3]["git_commit"][:12]]
    c = _p50(runs, _result(11.0), accepted=accepted)
    assert "accepted" in c.note
    assert c.baseline == pytest.approx(11.0, rel=0.02)


@contextlib.contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _regressed() -> list[Comparison]:
    return [
        Comparison("p50_ms", REGRESSION, "history", change_pct=20.0, note="n"),
        Comparison("throughput", PASS, "history", note="t"),
    ]


def test_a_shift_seen_once_is_suspected_and_confirmed_by_another_session(tmp_path: Path) -> None:
    sus = history.Suspicions(tmp_path / history.SUSPECTED_FILE, _no_lock)
    first = sus.settle("m.json", _regressed(), "session-1", "abc")
    assert first[0].verdict == INCONCLUSIVE
    assert "suspected regression (+20.0%), not yet confirmed" in first[0].note
    assert first[1].verdict == PASS
    again = sus.settle("m.json", _regressed(), "session-1", "abc")
    assert again[0].verdict == INCONCLUSIVE  # the same session never confirms itself
    second = sus.settle("m.json", _regressed(), "session-2", "def")
    assert second[0].verdict == REGRESSION
    assert "confirmed: also seen in an earlier session" in second[0].note
    stored = json.loads((tmp_path / history.SUSPECTED_FILE).read_text())
    assert stored["m.json"]["p50_ms"]["session"] == "session-1"


def test_a_suspicion_not_seen_again_is_cleared(tmp_path: Path) -> None:
    sus = history.Suspicions(tmp_path / history.SUSPECTED_FILE, _no_lock)
    sus.settle("m.json", _regressed(), "session-1", "abc")
    fine = [Comparison("p50_ms", PASS, "history", note="n")]
    out = sus.settle("m.json", fine, "session-2", "def")
    assert out[0].verdict == PASS and "was not seen again: cleared" in out[0].note
    assert json.loads((tmp_path / history.SUSPECTED_FILE).read_text()) == {}


def _store_with(tmp_path: Path, levels: list[float]) -> tuple[BaselineStore, Path]:
    store = BaselineStore(tmp_path / "b")
    key = {"cpu": "test", "triton": "1"}
    for run in _runs(levels):
        path = store.save(key, "t.py::test_a", "m", run, workload={}, environment={})
    return store, path


def test_accept_records_a_stored_commit_and_rejects_others(tmp_path: Path) -> None:
    store, path = _store_with(tmp_path, [10.0, 10.0, 11.0])
    commit = _commit(2)
    entry = store.accept(path, commit[:8], note="bigger model on purpose")
    assert entry["commit"] == commit
    doc = store.read_file(path)
    assert store.accepted(doc) == [commit]
    with pytest.raises(BaselineError, match=r"'ffff' is not among the runs stored .*oldest"):
        store.accept(path, "ffff")
    # A later save keeps what was accepted.
    store.save(doc["key"], "t.py::test_a", "m", _runs([10.0])[0], workload={}, environment={})
    assert store.accepted(store.read_file(path)) == [commit]


def test_the_store_lists_no_side_file_as_a_baseline(tmp_path: Path) -> None:
    store, path = _store_with(tmp_path, [10.0])
    (path.parent / history.SUSPECTED_FILE).write_text("{}")
    (path.parent / "calibration.json").write_text("{}")
    assert list(store.iter_files()) == [path]


def test_the_session_is_the_ci_run_and_attempt_else_the_boot_and_pytest_session() -> None:
    from pytest_triton_perf.baseline.key import session_id

    assert session_id("u" * 32, {"TRITON_PERF_SESSION": "mine", "GITHUB_RUN_ID": "1"}) == "mine"
    github = {"GITHUB_RUN_ID": "123", "GITHUB_RUN_ATTEMPT": "2"}
    assert session_id("u" * 32, github) == "github-123-2"
    assert session_id("x", {"CI_PIPELINE_ID": "7", "CI_JOB_ID": "9"}) == "gitlab-7-9"
    local = session_id("abcdef0123456789", {})
    assert local.startswith("local-") and local.endswith("-abcdef012345")
    assert session_id("abcdef0123456789", {}) == local  # one pytest session, one identity
    assert session_id("fedcba9876543210", {}) != local


def test_a_suspicion_that_cannot_be_recorded_is_still_reported(tmp_path: Path) -> None:
    (tmp_path / history.SUSPECTED_FILE).mkdir()  # cannot be replaced by a file
    sus = history.Suspicions(tmp_path / history.SUSPECTED_FILE, _no_lock)
    (c, _) = sus.settle("m.json", _regressed(), "session-1", "abc")
    assert c.verdict == INCONCLUSIVE and "could not record it in" in c.note
