"""Sharing a load among worker processes (pure parts)."""

from __future__ import annotations

import pytest

from pytest_triton_perf.load.driver import LoadSpec
from pytest_triton_perf.load.workers import split, worker_loads

BASE = LoadSpec(protocol="http", http_url="127.0.0.1:1", grpc_url="127.0.0.1:2", payloads=(b"x",))


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(16, 4, [4, 4, 4, 4]), (10, 4, [3, 3, 2, 2]), (3, 3, [1, 1, 1])],
)
def test_split_is_even_and_complete(total: int, parts: int, expected: list[int]) -> None:
    assert split(total, parts) == expected


def test_closed_loop_slots_are_shared_and_no_worker_is_idle() -> None:
    loads = worker_loads(BASE.__class__(**{**BASE.__dict__, "concurrency": 3}), 4)
    assert [w.concurrency for w in loads] == [1, 1, 1]
    assert [(w.worker, w.workers) for w in loads] == [(0, 3), (1, 3), (2, 3)]


def test_open_loop_workers_share_the_in_flight_bound() -> None:
    load = LoadSpec(**{**BASE.__dict__, "request_rate": 100.0, "max_in_flight": 10})
    loads = worker_loads(load, 3)
    assert [w.max_in_flight for w in loads] == [4, 3, 3]
    assert all(w.request_rate == 100.0 and w.workers == 3 for w in loads)
