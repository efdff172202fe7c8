"""Shards of a run (``--triton-perf-shard``) and the durations file that balances them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pytest_triton_perf.baseline.shards import (
    assign_shards,
    durations_path,
    merge_durations,
    read_durations,
    read_durations_file,
    save_durations,
)
from pytest_triton_perf.baseline.store import BaselineError

TESTS = [f"test_gate.py::test_{i:02d}" for i in range(23)]


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("known", [0, 10, 23])
def test_every_test_runs_in_exactly_one_shard_whatever_the_order(count: int, known: int) -> None:
    rng = random.Random(count * 100 + known)
    durations = {t: rng.uniform(0.5, 30) for t in TESTS[:known]}
    plan = assign_shards(TESTS, count, durations)
    shuffled = TESTS[:]
    rng.shuffle(shuffled)
    # Another runner collects in another order: same split.
    assert assign_shards(shuffled, count, durations).assignment == plan.assignment
    assert sorted(t for k in range(count) for t in plan.tests(k)) == sorted(TESTS)
    assert (plan.balanced, plan.hashed) == (known, len(TESTS) - known)


def test_without_durations_the_shards_get_equal_numbers_of_tests() -> None:
    plan = assign_shards(TESTS, 4, {})
    assert sorted(len(plan.tests(k)) for k in range(4)) == [5, 6, 6, 6]


def test_known_durations_are_balanced_longest_first() -> None:
    """LPT on 7, 5, 4, 3, 3, 2 over two shards: 12 against 12 (the optimum here), where a
    split by count or by hash leaves one shard far longer."""
    durations = {"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 3.0, "f": 2.0}
    plan = assign_shards(list(durations), 2, durations)
    assert plan.expected_s == (12.0, 12.0)
    assert plan.tests(0) == ["a", "d", "f"]
    by_count = assign_shards(list(durations), 2, {})
    loads = [sum(durations[t] for t in by_count.tests(k)) for k in range(2)]
    assert max(loads) > 12.0


def test_an_unknown_test_counts_as_a_typical_one() -> None:
    """The new test counts as the median (10 s), after the known ones: onto the shard
    holding 10 s, not onto the one holding 11 s."""
    durations = {"a": 10.0, "b": 10.0, "c": 1.0}
    plan = assign_shards(["a", "b", "c", "new"], 2, durations)
    assert plan.assignment == {"a": 0, "b": 1, "c": 0, "new": 1}
    assert plan.expected_s == (11.0, 20.0)


def test_durations_are_saved_read_and_merged_newest_first(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert read_durations(ours) == {}
    save_durations(ours, {"t::a": 1.23456, "t::b": 2.0})
    save_durations(theirs, {"t::b": 3.0, "t::c": 4.0})
    doc = json.loads(durations_path(ours).read_text())
    assert doc["schema_version"] == 1 and doc["tests"]["t::a"]["duration_s"] == 1.235
    assert merge_durations(ours, theirs)
    assert read_durations(ours) == {"t::a": 1.235, "t::b": 3.0, "t::c": 4.0}
    assert not merge_durations(ours, theirs)  # nothing newer: unchanged
    entries = read_durations_file(durations_path(ours))
    entries["t::c"]["date"] = "2000-01-01T00:00:00Z"  # an old entry loses to a newer one
    durations_path(theirs).write_text(
        json.dumps({"schema_version": 1, "tests": {"t::c": entries["t::c"]}})
    )
    assert not merge_durations(ours, theirs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON at line 1"),
        ('{"tests": {}}', "expected an object with schema_version 1"),
        ('{"schema_version": 1, "tests": {"t": {"duration_s": -1}}}', "test 't': 'duration_s'"),
    ],
)
def test_a_bad_durations_file_names_itself(tmp_path: Path, text: str, message: str) -> None:
    durations_path(tmp_path).write_text(text)
    with pytest.raises(BaselineError, match=message) as info:
        read_durations(tmp_path)
    assert str(durations_path(tmp_path)) in str(info.value)
