"""The open loop's precise timer wakes up on time without spinning."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from pytest_triton_perf.load.loop import run_coroutine
from pytest_triton_perf.load.timer import PreciseTimer


def test_wakeups_are_sub_millisecond_and_cheap() -> None:
    async def run() -> tuple[bool, list[int], float]:
        timer = PreciseTimer()
        lateness = []
        cpu0 = time.thread_time()
        try:
            for _ in range(100):
                target = time.perf_counter_ns() + 2_000_000  # 2 ms ahead
                await timer.wait_until(target)
                lateness.append(time.perf_counter_ns() - target)
        finally:
            timer.close()
        return timer.precise, lateness, time.thread_time() - cpu0

    precise, lateness, cpu = run_coroutine(run)
    assert min(lateness) >= 0  # never early
    if precise:
        # Millisecond timers would be ~0.5-1 ms late on average; a timerfd is far closer.
        assert float(np.median(lateness)) < 300_000
        # 100 waits of 2 ms = 0.2 s of waiting; spinning would burn about that much CPU.
        assert cpu < 0.1


def test_past_deadline_returns_at_once() -> None:
    async def run() -> None:
        timer = PreciseTimer()
        try:
            await asyncio.wait_for(timer.wait_until(time.perf_counter_ns() - 1), 0.1)
        finally:
            timer.close()

    run_coroutine(run)
