"""Closed loop: ``concurrency`` slots, each sending its next request as soon as the last returns.

The loop only records raw completions (see :mod:`recorder`); windows are cut afterwards. A
slot that loses its connection asks the :class:`Supervisor` whether the server is alive: a
dead server ends the run with ServerDiedError at once instead of being counted as errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter_ns

from pytest_triton_perf.load.recorder import Recorder
from pytest_triton_perf.load.transport import InferClient, TransportError

#: Pause after a failed connection before the slot retries, so that a flapping server yields
#: a handful of counted errors rather than a storm.
RECONNECT_BACKOFF_S = 0.05
#: On an interrupt or a failure, requests in flight get this long to complete before they
#: are cancelled. Cancelling a gRPC call (RST_STREAM, or the connection closed under it)
#: races in Triton's gRPC front end up to 24.11 (2.52) and can crash the server with signal
#: 11 (triton-inference-server/server#7368, fixed by #7840): seen twice in this project's
#: CI on Ctrl-C of a measurement. Answered requests are never cancelled.
CANCEL_GRACE_S = 1.0


class Supervisor:
    """Carries the first fatal failure (e.g. server died) to whoever is waiting in the run."""

    def __init__(self, check_alive: Callable[[], Awaitable[None]]) -> None:
        self._check_alive = check_alive
        self._failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, exc: BaseException) -> None:
        """Record a fatal failure (the first one wins)."""
        if not self._failed.done():
            self._failed.set_exception(exc)

    def raise_if_failed(self) -> None:
        """Raise the recorded failure, if any."""
        if self._failed.done():
            self._failed.result()

    async def check_alive(self) -> None:
        """Ask the server handle; records and raises its error when the server is gone."""
        try:
            await self._check_alive()
        except Exception as e:
            self.fail(e)
            raise

    async def watch(self, interval_s: float) -> None:
        """Ask the server handle every ``interval_s`` until cancelled (a task of the run):
        a server that dies while no request is outstanding is noticed as well."""
        while True:
            await asyncio.sleep(interval_s)
            await self.check_alive()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but raise at once if a fatal failure is recorded meanwhile."""
        if seconds > 0:
            await asyncio.wait({self._failed}, timeout=seconds)
        self.raise_if_failed()

    async def wait(
        self, tasks: Sequence[asyncio.Task[None]], timeout: float
    ) -> set[asyncio.Task[None]]:
        """Wait for ``tasks`` up to ``timeout``; raise on a fatal failure; return the pending."""
        pending: set[asyncio.Future[None]] = set(tasks)
        deadline = asyncio.get_running_loop().time() + timeout
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            _, pending = await asyncio.wait(
                pending | {self._failed}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            self.raise_if_failed()
            pending.discard(self._failed)
        return {t for t in tasks if not t.done()}

    def close(self) -> None:
        """Retrieve an unobserved failure so asyncio does not log it."""
        if self._failed.done() and not self._failed.cancelled():
            self._failed.exception()


async def finish_or_cancel(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Let ``tasks`` (requests in flight; nothing new is sent) finish for up to
    :data:`CANCEL_GRACE_S`, then cancel what still runs and wait for it."""
    if tasks:
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)
    await cancel_and_wait(tasks)


async def cancel_and_wait(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Cancel ``tasks`` and wait until each has finished, whatever it raised."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


class ClosedLoop:
    """Keeps one request in flight per client until stopped."""

    def __init__(
        self,
        clients: Sequence[InferClient],
        n_requests: int,
        recorder: Recorder,
        supervisor: Supervisor,
    ) -> None:
        self._clients = list(clients)
        self._n = max(1, n_requests)
        self._next = 0
        self._recorder = recorder
        self._supervisor = supervisor
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def concurrency(self) -> int:
        """Number of slots."""
        return len(self._clients)

    def start(self) -> None:
        """Start every slot."""
        self._running = True
        self._tasks = [asyncio.create_task(self._slot(c)) for c in self._clients]

    async def _slot(self, client: InferClient) -> None:
        add = self._recorder.add
        n = self._n
        try:
            while self._running:
                i = self._next
                self._next = i + 1 if i + 1 < n else 0
                t0 = perf_counter_ns()
                try:
                    error = await client.infer(i)
                except TransportError as e:
                    await self._supervisor.check_alive()
                    await asyncio.sleep(RECONNECT_BACKOFF_S)
                    error = f"connection error: {e}"
                t1 = perf_counter_ns()
                add(t1, t1 - t0, error)
                if self._recorder.responses is not None:  # a streaming model
                    self._recorder.responses.add(t0, client)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._supervisor.fail(e)
            raise

    async def stop(self, timeout: float) -> int:
        """Stop sending; let requests in flight complete for up to ``timeout`` seconds.

        Returns how many had to be cancelled (their outcome is unknown and not recorded).
        """
        self._running = False
        tasks, self._tasks = self._tasks, []
        pending = await self._supervisor.wait(tasks, timeout)
        await cancel_and_wait(list(pending))
        return len(pending)

    async def cancel(self) -> None:
        """Stop every slot (interrupt or failure path): nothing new is sent, the requests in
        flight get :data:`CANCEL_GRACE_S` to complete, the rest are cancelled."""
        self._running = False
        tasks, self._tasks = self._tasks, []
        await finish_or_cancel(tasks)
