"""Open loop: requests sent on a schedule, whatever the answers; latency from schedule.

A dispatcher waits for each scheduled time and hands the request to an idle client (one HTTP
connection, or a gRPC stub on a shared channel), opening another while fewer than
``max_in_flight`` exist. When all are busy the send waits, and since latency counts from the
*scheduled* time, that wait is measured rather than hidden (no coordinated omission); the
send delay of every request is recorded so the result can say how late the generator was.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from time import perf_counter_ns

from pytest_triton_perf.load.closed_loop import (
    RECONNECT_BACKOFF_S,
    Supervisor,
    cancel_and_wait,
    finish_or_cancel,
)
from pytest_triton_perf.load.recorder import Recorder
from pytest_triton_perf.load.timer import PreciseTimer
from pytest_triton_perf.load.transport import InferClient, TransportError

#: While sends are this late, the dispatcher yields to the loop every YIELD_EVERY sends.
YIELD_BEHIND_NS = 1_000_000
YIELD_EVERY = 16


class OpenLoop:
    """Sends on a schedule through a bounded pool of clients."""

    def __init__(
        self,
        new_client: Callable[[], InferClient],
        clients: list[InferClient],
        n_requests: int,
        recorder: Recorder,
        supervisor: Supervisor,
        schedule: Callable[[], Iterator[int]],
        max_in_flight: int,
    ) -> None:
        self._new_client = new_client
        self._all = list(clients)
        self._idle: deque[InferClient] = deque(clients)
        self._n = max(1, n_requests)
        self._next = 0
        self._recorder = recorder
        self._supervisor = supervisor
        self._schedule = schedule
        self._max = max(1, max_in_flight)
        self._running = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._freed: asyncio.Event | None = None
        self.pool_exhausted = 0  # sends that had to wait for a free client

    @property
    def clients(self) -> list[InferClient]:
        """Every client opened so far (for closing)."""
        return self._all

    def reset(self, recorder: Recorder) -> None:
        """Record the next phase into ``recorder``; the connection pool is kept."""
        self._recorder = recorder
        self.pool_exhausted = 0

    def start(self, t0_ns: int | None = None) -> None:
        """Start dispatching; schedule offsets count from ``t0_ns`` (now by default)."""
        self._running = True
        self._freed = asyncio.Event()
        t0 = perf_counter_ns() if t0_ns is None else t0_ns
        self._dispatcher = asyncio.create_task(self._dispatch(t0))

    async def _acquire(self) -> InferClient:
        while True:
            if self._idle:
                return self._idle.pop()
            if len(self._all) < self._max:
                client = self._new_client()
                self._all.append(client)
                return client
            self.pool_exhausted += 1
            assert self._freed is not None
            self._freed.clear()
            await self._freed.wait()

    async def _dispatch(self, t0: int) -> None:
        timer = PreciseTimer()
        behind = 0
        try:
            for offset in self._schedule():
                if not self._running:
                    return
                ts = t0 + offset
                await timer.wait_until(ts)
                if not self._running:
                    return
                client = await self._acquire()
                i = self._next
                self._next = i + 1 if i + 1 < self._n else 0
                now = perf_counter_ns()
                task = asyncio.create_task(self._one(client, i, ts, now))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
                behind += 1 if now > ts + YIELD_BEHIND_NS else -behind
                if behind >= YIELD_EVERY:
                    # Catching up after a stall: let responses be read between bursts of
                    # sends, or their latencies would include the whole burst.
                    behind = 0
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._supervisor.fail(e)
            raise
        finally:
            timer.close()

    async def _one(self, client: InferClient, i: int, ts: int, sent: int) -> None:
        try:
            try:
                error = await client.infer(i)
            except TransportError as e:
                await self._supervisor.check_alive()
                await asyncio.sleep(RECONNECT_BACKOFF_S)
                error = f"connection error: {e}"
            end = perf_counter_ns()
            self._recorder.add_scheduled(end, end - ts, error, sent - ts)
            if self._recorder.responses is not None:  # a streaming model: from the schedule
                self._recorder.responses.add(ts, client)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._supervisor.fail(e)
            raise
        self._idle.append(client)
        if self._freed is not None:
            self._freed.set()

    async def stop(self, timeout: float) -> int:
        """Stop sending; wait up to ``timeout`` s for requests in flight; return how many
        were cancelled."""
        self._running = False
        if self._dispatcher is not None:
            await cancel_and_wait([self._dispatcher])
            self._dispatcher = None
        tasks = list(self._in_flight)
        pending = await self._supervisor.wait(tasks, timeout) if tasks else set()
        await cancel_and_wait(list(pending))
        return len(pending)

    async def cancel(self) -> None:
        """Stop (interrupt or failure path): the dispatcher at once, the requests in flight
        after :data:`~pytest_triton_perf.load.closed_loop.CANCEL_GRACE_S` to complete."""
        self._running = False
        if self._dispatcher is not None:
            await cancel_and_wait([self._dispatcher])
            self._dispatcher = None
        await finish_or_cancel(list(self._in_flight))
