"""A run split over runners (``--triton-perf-shard=K/N``) and merged (``triton-perf merge``),
through inner pytest runs: the shards' tests are disjoint and complete, balanced by the
stored durations, and the merge gives one report and one history."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from pytest_triton_perf import cli
from pytest_triton_perf.baseline.shards import read_durations, save_durations
from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.report.json_report import read_results
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import FAST_OPTIONS

PLAIN = "\n".join(f"def test_{i}():\n    pass\n" for i in range(7))


def ran(result: pytest.RunResult) -> set[str]:
    """The tests that passed in an inner run (``-rA`` lines)."""
    return set(re.findall(r"^PASSED (\S+)", result.stdout.str(), re.MULTILINE))


def test_shards_are_disjoint_complete_and_balanced_by_stored_durations(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_plain=PLAIN)
    everything = {f"test_plain.py::test_{i}" for i in range(7)}
    shards = []
    for k in (1, 2, 3):
        result = pytester.runpytest_inprocess(
            f"--triton-perf-shard={k}/3", "-rA", "-p", "no:cacheprovider"
        )
        shards.append(ran(result))
        result.stdout.fnmatch_lines(
            [f"triton-perf: shard {k}/3: {len(shards[-1])} of 7 tests (no stored durations in "
             f".triton-perf/durations.json: split by test id)"]
        )  # fmt: skip
        assert f"{7 - len(shards[-1])} deselected" in result.stdout.str()
    assert set().union(*shards) == everything
    assert sum(map(len, shards)) == 7
    assert sorted(map(len, shards)) == [2, 2, 3]
    # test_3 takes as long as the others together: with the durations stored, it is placed
    # first (longest first) and has shard 1 of 2 to itself.
    save_durations(
        pytester.path / ".triton-perf",
        {t: 1.0 for t in everything} | {"test_plain.py::test_3": 6.0},
    )
    result = pytester.runpytest_inprocess(
        "--triton-perf-shard=1/2", "-rA", "-p", "no:cacheprovider"
    )
    assert ran(result) == {"test_plain.py::test_3"}
    result.stdout.fnmatch_lines(
        [
            "triton-perf: shard 1/2: 1 of 7 tests, about 6 s of 12 s by the durations in "
            ".triton-perf/durations.json (7 tests with a stored duration, 0 without)"
        ]
    )


def test_a_shard_keeps_the_selection_of_k(pytester: pytest.Pytester) -> None:
    """Sharding comes after -k: every runner splits the same selected tests."""
    pytester.makepyfile(test_plain=PLAIN)
    picked = [
        ran(
            pytester.runpytest_inprocess(
                f"--triton-perf-shard={k}/2", "-k", "test_1 or test_2 or test_5", "-rA"
            )
        )
        for k in (1, 2)
    ]
    assert set().union(*picked) == {f"test_plain.py::test_{i}" for i in (1, 2, 5)}
    assert not picked[0] & picked[1]


def test_a_corrupt_durations_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN)
    (pytester.path / ".triton-perf").mkdir()
    (pytester.path / ".triton-perf" / "durations.json").write_text("[")
    result = pytester.runpytest_inprocess("--triton-perf-shard=1/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--triton-perf-shard: durations file * is not valid JSON*"])


MEASURED = """
import pytest

@pytest.mark.sla(p99_ms=500)
def test_sleepy(triton_perf):
    triton_perf.measure("sleepy")

@pytest.mark.sla(p99_ms=500)
def test_simple(triton_perf):
    triton_perf.measure("simple", protocol="http")
"""


def test_two_shards_save_and_merge_into_one_report_and_one_history(
    pytester: pytest.Pytester, server: LocalTritonServer, tmp_path: Path
) -> None:
    """What the perf-gate workflow's matrix does: each runner measures its shard from the
    same committed history and saves into its own copy; the merge job merges both."""
    pytester.makepyfile(test_measured=MEASURED)
    history = pytester.path / ".triton-perf"
    files = []
    for k in (1, 2):
        copy = tmp_path / f"shard{k}"
        result = pytester.runpytest_inprocess(
            f"--triton-url={server.http_url}",
            f"--triton-grpc-url={server.grpc_url}",
            *FAST_OPTIONS,
            "--triton-perf-compare-windows=2",
            f"--triton-perf-shard={k}/2",
            "--triton-perf-save",
            f"--triton-perf-baseline-dir={copy}",
            f"--triton-perf-json={tmp_path / f'results-{k}.json'}",
            "-p",
            "no:cacheprovider",
        )
        result.assert_outcomes(passed=1, deselected=1)
        files.append(str(tmp_path / f"results-{k}.json"))
    out = io.StringIO()
    merged = tmp_path / "results.json"
    args = ["merge", *files, "-o", str(merged), "--baseline-dir", str(history)]
    code = cli.main(
        [*args, "--baselines", str(tmp_path / "shard1"), "--baselines", str(tmp_path / "shard2")],
        out,
    )
    assert code == 0, out.getvalue()
    doc, records = read_results(merged)
    assert sorted(r.test.split("::")[1] for r in records) == ["test_simple", "test_sleepy"]
    assert [s["shard"] for s in doc["session"]["merged_from"]] == ["1/2", "2/2"]
    assert "merged 2 results files (shards 1/2, 2/2): 2 measurements" in out.getvalue()
    saved = {json.loads(p.read_text())["test"] for p in BaselineStore(history).iter_files()}
    assert saved == {r.test for r in records}
    assert set(read_durations(history)) == {r.test for r in records}
