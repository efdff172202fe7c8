"""Raw request records: snapshot, span selection, merging across workers."""

from __future__ import annotations

import pickle

import numpy as np

from pytest_triton_perf.load.recorder import Recorder, Records


def make(records: list[tuple[int, int, str | None]]) -> Records:
    r = Recorder()
    for end, lat, err in records:
        r.add(end, lat, err)
    return r.snapshot()


def test_snapshot_holds_every_record() -> None:
    snap = make([(10, 1, None), (20, 2, "boom"), (30, 3, None)])
    assert list(snap.end_ns) == [10, 20, 30]
    assert list(snap.latency_ns) == [1, 2, 3]
    assert list(snap.ok) == [True, False, True]
    assert snap.first_error() == "boom"


def test_between_is_half_open() -> None:
    snap = make([(10, 1, None), (20, 2, "e20"), (30, 3, "e30")])
    span = snap.between(20, 30)
    assert list(span.end_ns) == [20]
    assert span.first_error() == "e20"
    assert snap.between(21, 31).first_error() == "e30"


def test_merge_pools_raw_records_in_completion_order() -> None:
    a = make([(10, 1, None), (40, 4, "a")])
    b = make([(20, 2, "b"), (30, 3, None)])
    m = Records.merge([a, b])
    assert list(m.end_ns) == [10, 20, 30, 40]
    assert list(m.latency_ns) == [1, 2, 3, 4]
    assert list(m.ok) == [True, False, True, False]
    assert m.first_error() == "b"
    assert len(Records.merge([])) == 0


def test_records_survive_pickling_for_worker_processes() -> None:
    snap = make([(10, 1, None), (20, 2, "x")])
    back = pickle.loads(pickle.dumps(snap))
    assert np.array_equal(back.end_ns, snap.end_ns) and back.error_messages == snap.error_messages


def test_error_without_kept_message_is_still_reported() -> None:
    snap = Records(np.array([5]), np.array([1]), np.array([False]))
    assert snap.first_error() == "(error message not kept)"
