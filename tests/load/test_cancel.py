"""Stopping on an interrupt or a failure: requests in flight complete within a grace
period instead of being cancelled (cancelling a gRPC call can crash Triton 2.51), and what
outlasts it is cancelled."""

from __future__ import annotations

import asyncio
import time

from pytest_triton_perf.load import closed_loop
from pytest_triton_perf.load.closed_loop import finish_or_cancel


def test_requests_in_flight_finish_within_the_grace_and_the_rest_are_cancelled() -> None:
    finished: list[str] = []
    cancelled: list[str] = []

    async def request(name: str, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
            finished.append(name)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def main() -> float:
        tasks = [
            asyncio.create_task(request("quick", 0.05)),
            asyncio.create_task(request("slow", 30.0)),
        ]
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        await finish_or_cancel(tasks)
        assert all(t.done() for t in tasks)
        return time.perf_counter() - t0

    took = asyncio.run(main())
    assert finished == ["quick"] and cancelled == ["slow"]
    # The slow one waited out the grace, no longer.
    assert closed_loop.CANCEL_GRACE_S * 0.9 <= took < closed_loop.CANCEL_GRACE_S + 2.0


def test_nothing_in_flight_costs_no_grace() -> None:
    async def main() -> float:
        t0 = time.perf_counter()
        await finish_or_cancel([])
        return time.perf_counter() - t0

    assert asyncio.run(main()) < 0.5
