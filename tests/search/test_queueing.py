"""The predictive search's queueing model against a seeded discrete-event simulation of the
system it models: N closed-loop clients, c instances, a greedy dynamic batcher (an idle
instance takes every queued request, up to R), service time S(b) with a little jitter."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from pytest_triton_perf.search import queueing
from pytest_triton_perf.search.queueing import Profile, point, predict, profile


def simulate(
    *,
    clients: int,
    instances: int,
    batch_limit: int,
    service_ms: float,
    slope_ms: float = 0.0,
    overhead_ms: float = 0.3,
    jitter: float = 0.03,
    requests: int = 6000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(throughput /s, mean latency ms, p99 ms) of the closed loop, simulated."""
    rng = np.random.default_rng(seed)
    now = 0.0
    # Events: (time, kind, payload); kind 0: a request reaches the queue, 1: an instance
    # finishes its execution.
    events: list[tuple[float, int, object]] = []
    for _ in range(clients):
        heapq.heappush(events, (rng.uniform(0, service_ms), 0, None))
    queue: list[float] = []  # send times of queued requests
    idle = instances
    latencies: list[float] = []
    done_at: list[float] = []

    def start(t: float) -> None:
        nonlocal idle
        while idle and queue:
            batch = queue[:batch_limit]
            del queue[:batch_limit]
            idle -= 1
            s = (service_ms + slope_ms * (len(batch) - 1)) * (1 + jitter * rng.standard_normal())
            heapq.heappush(events, (t + max(s, 0.1), 1, batch))

    while len(latencies) < requests:
        now, kind, payload = heapq.heappop(events)
        if kind == 0:
            queue.append(now)
            start(now)
        else:
            idle += 1
            assert isinstance(payload, list)
            for sent in payload:
                back = now + overhead_ms
                latencies.append(back - sent)
                done_at.append(back)
                heapq.heappush(events, (back, 0, None))  # the client sends again at once
            start(now)
    lat = np.array(latencies[len(latencies) // 5 :])  # past the start-up
    span = done_at[-1] - done_at[len(done_at) // 5]
    return len(lat) / span * 1000.0, float(lat.mean()), float(np.percentile(lat, 99))


def _profile(instances: int, batch_limit: int, service_ms: float, **kw: float) -> Profile:
    return Profile(
        instances=instances,
        batch_limit=batch_limit,
        service_ms=service_ms,
        slope_ms=kw.get("slope_ms", 0.0),
        overhead_ms=0.3,
        think_ms=0.0,
        spread_ms=1.0,
    )


@pytest.mark.parametrize(
    ("instances", "batch_limit", "service_ms", "clients"),
    [
        (1, 1, 10.0, 4),  # one instance, no batching: a queue of 3
        (3, 1, 10.0, 3),  # one request per instance: no queue
        (3, 1, 10.0, 12),  # queued rounds
        (2, 8, 20.0, 40),  # full batches, queued
        (1, 4, 20.0, 16),
    ],
)
def test_throughput_and_mean_latency_match_the_simulation(
    instances: int, batch_limit: int, service_ms: float, clients: int
) -> None:
    rate, mean, p99 = simulate(
        clients=clients, instances=instances, batch_limit=batch_limit, service_ms=service_ms
    )
    model = point(_profile(instances, batch_limit, service_ms), clients)
    assert model.throughput == pytest.approx(rate, rel=0.10)
    assert model.mean_ms == pytest.approx(mean, rel=0.12)
    # The tail: a request that misses a round waits one execution more (conservative).
    assert model.tail_ms >= p99 * 0.95


def test_batch_service_that_grows_with_the_batch_saturates_lower() -> None:
    flat = _profile(2, 8, 20.0)
    growing = _profile(2, 8, 20.0, slope_ms=2.0)  # 34 ms for a batch of 8
    rate, _, _ = simulate(
        clients=48, instances=2, batch_limit=8, service_ms=20.0, slope_ms=2.0, seed=3
    )
    assert point(growing, 48).throughput == pytest.approx(rate, rel=0.10)
    assert point(growing, 48).throughput < 0.7 * point(flat, 48).throughput


@pytest.mark.parametrize("instances", [1, 2, 3])
def test_the_capacity_under_a_p99_bound_is_the_simulated_plateau(instances: int) -> None:
    p = _profile(instances, 1, 10.0)
    found = predict(p, {"p99_ms": 60.0})
    assert found.capacity == pytest.approx(1000 * instances / 10.0, rel=0.05)
    assert found.limited_by == "p99_ms" and found.load is not None
    assert found.next_load == found.load + 1
    # Just below the predicted load the simulation keeps the bound; well above it, not.
    _, _, p99 = simulate(clients=found.load, instances=instances, batch_limit=1, service_ms=10.0)
    assert p99 <= 60.0
    _, _, p99 = simulate(
        clients=2 * found.load, instances=instances, batch_limit=1, service_ms=10.0
    )
    assert p99 > 60.0
    # Checked with room to spare, at a level that reaches the capacity.
    assert found.check is not None and found.check.population <= found.load
    assert found.check.tail_ms <= 60.0 * (1 - queueing.CHECK_MARGIN) or (found.check is found.reach)
    assert found.check.throughput >= queueing.CHECK_REACH * found.capacity


def test_a_limit_and_an_impossible_bound() -> None:
    p = _profile(3, 1, 10.0)
    capped = predict(p, {"p99_ms": 60.0}, limit=2)
    assert capped.load == 2 and capped.limited_by == "limit"
    assert capped.capacity == pytest.approx(2 / 10.3 * 1000, rel=0.01)
    never = predict(p, {"p99_ms": 5.0})
    assert never.capacity is None and never.load is None and never.next_load == 1
    assert "predicted to break p99_ms at concurrency 1" in never.describe()


def test_profile_from_measured_figures() -> None:
    # 3 instances at concurrency 3: 273 requests/s, 10.95 ms mean, Triton says 10.6 ms.
    p = profile(
        instances=3,
        batch_limit=1,
        concurrency=3,
        throughput_rps=273.3,
        mean_ms=10.95,
        p99_ms=14.5,
        service_ms=10.6,
        queue_ms=0.05,
    )
    assert p.service_ms == 10.6 and p.slope_ms == 0.0
    assert p.overhead_ms == pytest.approx(0.3, abs=0.01)
    assert p.think_ms == pytest.approx(3 / 273.3 * 1000 - 10.95, abs=0.01)
    assert p.spread_ms == pytest.approx(3.55)
    # Batches of 5.3 measured at 30 ms: S grows by (30 - 10.6) / 4.3 ms per request.
    batched = profile(
        instances=1,
        batch_limit=8,
        concurrency=1,
        throughput_rps=90,
        mean_ms=11,
        p99_ms=12,
        service_ms=10.6,
        batched=(5.3, 30.0),
    )
    assert batched.slope_ms == pytest.approx((30.0 - 10.6) / 4.3)
    assert "1 instance x 8 requests per execution" in batched.describe()
