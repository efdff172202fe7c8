"""The baseline store on a real filesystem: layout, corruption, atomic writes, locking."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from pytest_triton_perf import files
from pytest_triton_perf.baseline.store import SCHEMA_VERSION, BaselineError, BaselineStore

KEY = {"triton": "2.51.0", "gpu_count": 0, "cpu": "Test CPU", "cpu_count": 2}
TEST, LABEL = "tests/test_x.py::test_y[a]", "sleepy conc=1 batch=1 grpc"


def run(n: int) -> dict[str, object]:
    return {"date": f"2026-11-21T00:00:{n:02d}Z", "git_commit": "abc", "result": {"n": n}}


def save(store: BaselineStore, n: int) -> Path:
    return store.save(KEY, TEST, LABEL, run(n), workload={"model": "sleepy"}, environment={})


def test_save_then_load_round_trip_and_layout(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    path = save(store, 1)
    save(store, 2)
    doc = store.load(KEY, TEST, LABEL)
    assert doc is not None and [r["result"]["n"] for r in doc["runs"]] == [1, 2]
    assert doc["schema_version"] == SCHEMA_VERSION
    assert path.parent.name.startswith("cpu-Test_CPU_triton-2.51.0-")
    assert json.loads((path.parent / "environment.json").read_text())["key"] == KEY
    assert path.read_text().startswith("{\n  ")  # indented: diff-friendly
    assert list(store.iter_files()) == [path]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_runs_are_capped(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    for n in range(5):
        store.save(KEY, TEST, LABEL, run(n), workload={}, environment={}, max_runs=3)
    doc = store.load(KEY, TEST, LABEL)
    assert doc is not None and [r["result"]["n"] for r in doc["runs"]] == [2, 3, 4]


def test_other_hardware_is_no_baseline_but_listed(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    save(store, 1)
    other = dict(KEY, cpu="Other CPU")
    assert store.load(other, TEST, LABEL) is None
    assert store.other_keys_with(TEST, LABEL) == [store.path(KEY, TEST, LABEL).parent.name]


def test_a_missing_baseline_says_where_it_was_looked_for(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "baselines")
    mine = store.path(KEY, TEST, LABEL).parent.name
    gone = store.missing(KEY, TEST, LABEL, root=tmp_path)
    assert gone["note"] == f"searched baselines for key {mine}: the directory does not exist"
    assert (gone["dir"], gone["key_dir"], gone["stored_keys"]) == ("baselines", mine, [])
    other = dict(KEY, cpu="Other CPU")
    store.save(other, "t.py::test_z", LABEL, run(1), workload={}, environment={})
    theirs = store.path(other, TEST, LABEL).parent.name
    assert store.missing(KEY, TEST, LABEL, root=tmp_path)["note"] == (
        f"searched baselines for key {mine}: no such key directory; stored there: {theirs}"
    )
    store.save(other, TEST, LABEL, run(1), workload={}, environment={})
    elsewhere = store.missing(KEY, TEST, LABEL)  # outside any root: the path as given
    assert elsewhere["elsewhere"] == [theirs]
    assert elsewhere["note"].startswith(f"stored for: {theirs}; searched {store.root} for key")
    save(store, 1)
    assert store.missing(KEY, "t.py::test_new", LABEL, root=tmp_path)["note"].endswith(
        f"{mine}: no t.py_test_new__sleepy_conc=1_batch=1_grpc.json in it"
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"schema_version": 1, "runs": [', "is not valid JSON at line 1 column 32"),
        (b'{"schema_version": 1,\n "runs": [\xff]}', "is not valid UTF-8 at byte 32"),
        (b'{"schema_version": 99, "runs": []}', "has schema_version 99"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_corrupt_file_is_an_error_and_stays_byte_identical(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    store = BaselineStore(tmp_path)
    path = store.path(KEY, TEST, LABEL)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(BaselineError) as info:
        store.load(KEY, TEST, LABEL)
    assert str(path) in str(info.value) and fragment in str(info.value)
    with pytest.raises(BaselineError):
        save(store, 1)  # never overwritten silently
    assert path.read_bytes() == content


def test_disk_full_during_write_keeps_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BaselineStore(tmp_path)
    path = save(store, 1)
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(BaselineError, match=r"No space left on device\. The previous file"):
        save(store, 2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["environment.json", path.name])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    path = save(store, 1)
    path.parent.chmod(0o500)
    try:
        with pytest.raises(BaselineError, match="cannot write baseline file"):
            save(store, 2)
    finally:
        path.parent.chmod(0o700)


def test_read_only_directory_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root (CI here) permissions do not stop writes: simulate EROFS at the temp file."""
    store = BaselineStore(tmp_path)
    path = save(store, 1)

    def readonly(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkstemp", readonly)
    with pytest.raises(BaselineError, match=f"cannot write baseline file {path}: Read-only"):
        save(store, 2)


def _saver(root: str, worker: int) -> None:
    store = BaselineStore(root)
    for n in range(10):
        save(store, worker * 100 + n)


def test_concurrent_savers_leave_a_valid_file_with_every_run(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_saver, args=(str(tmp_path), w)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    doc = BaselineStore(tmp_path).load(KEY, TEST, LABEL)
    assert doc is not None
    got = sorted(r["result"]["n"] for r in doc["runs"])
    assert got == sorted([100 + n for n in range(10)] + [200 + n for n in range(10)])


# -- merging the baseline directories of a sharded run --------------------------------------


def test_merge_runs_unites_copies_without_doubles_and_keeps_the_newest() -> None:
    from pytest_triton_perf.baseline.store import merge_runs

    committed = [run(n) for n in range(5)]
    shard_a, shard_b = [*committed, run(7)], [*committed, run(6)]
    merged = merge_runs(committed, shard_a, shard_b)
    assert [r["result"]["n"] for r in merged] == [0, 1, 2, 3, 4, 6, 7]  # by date
    assert [r["result"]["n"] for r in merge_runs(shard_a, shard_b, max_runs=3)] == [4, 6, 7]


def test_merging_shards_loses_no_run_and_counts_none_twice(tmp_path: Path) -> None:
    """The same file saved by two shards (both carry the committed runs): the union; a
    file only one shard has: copied with its environment; merging again changes nothing."""
    committed = BaselineStore(tmp_path / "repo")
    save(committed, 1)
    shards = []
    for n in (2, 3):
        shard = tmp_path / f"shard{n}"
        shutil.copytree(committed.root, shard)
        save(BaselineStore(shard), n)
        shards.append(shard)
    BaselineStore(shards[1]).save(
        KEY, "tests/test_x.py::test_other", LABEL, run(4), workload={}, environment={"a": 1}
    )
    for shard, expected in zip(shards, [(1, 1), (2, 2)], strict=True):
        assert committed.merge(shard) == expected
    doc = committed.load(KEY, TEST, LABEL)
    assert doc is not None and [r["result"]["n"] for r in doc["runs"]] == [1, 2, 3]
    assert doc["workload"] == {"model": "sleepy"}
    other = committed.load(KEY, "tests/test_x.py::test_other", LABEL)
    assert other is not None and [r["result"]["n"] for r in other["runs"]] == [4]
    assert committed.merge(shards[0]) == committed.merge(shards[1]) == (0, 0)


def test_merging_a_corrupt_shard_file_names_it_and_changes_nothing(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "repo")
    path = save(store, 1)
    before = path.read_bytes()
    shard = tmp_path / "shard"
    shutil.copytree(store.root, shard)
    broken = shard / path.parent.name / path.name
    broken.write_text("{ not json")
    with pytest.raises(BaselineError, match=f"baseline file {broken} is not valid JSON"):
        store.merge(shard)
    assert path.read_bytes() == before
