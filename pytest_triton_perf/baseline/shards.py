"""Shards of a test run (``--triton-perf-shard=K/N``) and the test durations that balance them.

A team with more models than one GPU runner can measure in time splits the run over N
runners, its CI's job matrix, and merges the results (``triton-perf merge``). Every runner
collects the same tests and must pick the same split without talking to the others, so the
assignment is a pure function of the test ids and the durations file committed with the
baselines:

- tests with a stored duration go to shards by greedy longest-processing-time scheduling
  (Graham, 1969): longest first, each onto the shard with the least assigned time so far
  (ties: the lower shard; equal durations in test id order). Its makespan is at most 4/3 of
  the optimum;
- tests without one (new tests, or no file yet) follow in the order of a hash of their ids,
  each counted as a typical test (the median stored duration, or 1 s when none is stored),
  onto the least loaded shard: without any durations, the shards get equal numbers of
  tests, whatever order the tests were collected in.

``<baseline dir>/durations.json`` holds each perf test's duration (the call phase, in
seconds) with the date it was measured. ``--triton-perf-save`` updates the tests it ran;
merging shards' baseline directories keeps the newest entry of each test. No pytest import.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_triton_perf.baseline.store import locked, read_json
from pytest_triton_perf.errors import BaselineError
from pytest_triton_perf.files import atomic_write_text

DURATIONS_FILE = "durations.json"
SCHEMA_VERSION = 1


def durations_path(baseline_dir: Path) -> Path:
    """Where the durations of ``baseline_dir``'s tests are stored."""
    return Path(baseline_dir) / DURATIONS_FILE


def read_durations_file(path: Path) -> dict[str, dict[str, Any]]:
    """``{test id: {"duration_s": float, "date": str}}`` of a durations file; {} when there
    is none. BaselineError names the file and what is wrong."""
    if not path.exists():
        return {}
    doc = read_json(path, "durations file")
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise BaselineError(
            f"durations file {path}: expected an object with schema_version "
            f"{SCHEMA_VERSION} and 'tests'. It was left untouched; delete it to start over "
            f"(the next --triton-perf-save writes it again)."
        )
    tests = doc.get("tests")
    if not isinstance(tests, dict):
        raise BaselineError(f"durations file {path}: 'tests' is missing or not an object.")
    out: dict[str, dict[str, Any]] = {}
    for test, entry in tests.items():
        seconds = entry.get("duration_s") if isinstance(entry, dict) else None
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise BaselineError(
                f"durations file {path}: test {test!r}: 'duration_s' must be a number of "
                f"seconds >= 0, got {entry!r}."
            )
        out[str(test)] = {"duration_s": float(seconds), "date": str(entry.get("date") or "")}
    return out


def read_durations(baseline_dir: Path) -> dict[str, float]:
    """Each test's stored duration in seconds."""
    entries = read_durations_file(durations_path(baseline_dir))
    return {test: e["duration_s"] for test, e in entries.items()}


def _write(path: Path, entries: Mapping[str, Mapping[str, Any]]) -> Path:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "tests": {t: dict(entries[t]) for t in sorted(entries)},
    }
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def newest(
    *sources: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Entries of several durations files, the newest of each test (later sources win a
    tie: the dates have a resolution of one second)."""
    out: dict[str, dict[str, Any]] = {}
    for entries in sources:
        for test, entry in entries.items():
            if test not in out or str(entry.get("date", "")) >= str(out[test].get("date", "")):
                out[test] = dict(entry)
    return out


def _update(path: Path, entries: Mapping[str, Mapping[str, Any]]) -> bool:
    """Merge ``entries`` into the durations file at ``path`` under the baseline directory's
    lock, the newest entry of each test kept. True when the file changed."""
    with locked(path, "durations file"):
        mine = read_durations_file(path)
        merged = newest(mine, entries)
        if merged == mine and path.exists():
            return False
        _write(path, merged)
        return True


def save_durations(baseline_dir: Path, durations: Mapping[str, float]) -> Path | None:
    """Record ``durations`` (test id -> seconds) as measured now; other tests keep theirs.
    None when there is nothing to record."""
    if not durations:
        return None
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = {t: {"duration_s": round(float(s), 3), "date": now} for t, s in durations.items()}
    path = durations_path(baseline_dir)
    _update(path, fresh)
    return path


def merge_durations(destination: Path, source: Path) -> bool:
    """Merge the durations file of baseline directory ``source`` into ``destination``'s,
    the newest entry of each test kept. True when the destination changed."""
    theirs = read_durations_file(durations_path(source))
    if not theirs:
        return False
    return _update(durations_path(destination), theirs)


def _hash(test: str) -> int:
    """A hash of a test id, the same on every machine and Python (not ``hash()``, which is
    salted per process)."""
    return int.from_bytes(hashlib.sha256(test.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class ShardPlan:
    """Which shard each test runs in (0-based), and the expected seconds per shard."""

    count: int
    assignment: dict[str, int]
    expected_s: tuple[float, ...]
    balanced: int  # tests placed by their stored duration
    hashed: int  # tests without one, placed in the order of the hash of their id

    def tests(self, shard: int) -> list[str]:
        """The tests of 0-based ``shard``."""
        return [t for t, s in self.assignment.items() if s == shard]


def assign_shards(tests: Iterable[str], count: int, durations: Mapping[str, float]) -> ShardPlan:
    """Split ``tests`` over ``count`` shards (see the module docstring)."""
    ids = list(dict.fromkeys(tests))
    known = {t: float(durations[t]) for t in ids if t in durations}
    # A test without a duration counts as a typical one: the median of the known, or 1 s
    # when none is known (then the shards get equal numbers of tests).
    estimate = statistics.median(known.values()) if known else 1.0
    order = sorted(known, key=lambda t: (-known[t], t))
    order += sorted((t for t in ids if t not in known), key=lambda t: (_hash(t), t))
    loads = [0.0] * count
    assignment: dict[str, int] = {}
    for t in order:
        shard = min(range(count), key=lambda i: (loads[i], i))
        assignment[t] = shard
        loads[shard] += known.get(t, estimate)
    return ShardPlan(
        count=count,
        assignment={t: assignment[t] for t in ids},
        expected_s=tuple(loads),
        balanced=len(known),
        hashed=len(ids) - len(known),
    )
