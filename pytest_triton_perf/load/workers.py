"""Load from several worker processes, for when one event loop cannot keep up.

Each worker runs a :class:`LocalDriver` on its share of the load (slots of a closed loop, or
an interleaved/independent share of an open-loop schedule) and is steered through a pipe by
the engine: start a phase, report records, stop and drain. Records carry CLOCK_MONOTONIC
times (``time.perf_counter_ns`` on Linux), valid across processes, so the engine cuts windows
over the merged raw records exactly as it does for one process: latencies are pooled, never
averaged percentiles.

A worker does not judge whether the server died (it cannot reach the server handle); the
engine's watchdog does, and tears the workers down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from pytest_triton_perf.errors import MeasurementError
from pytest_triton_perf.load.closed_loop import Supervisor
from pytest_triton_perf.load.driver import Driver, LoadSpec, LocalDriver, PhaseStats
from pytest_triton_perf.load.loop import new_event_loop
from pytest_triton_perf.load.recorder import Records

#: Seconds a worker may take to start (interpreter, imports, connections).
START_TIMEOUT_S = 60.0
_CHILD_CODE = "from pytest_triton_perf.load.workers import _child_main; _child_main()"


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible (larger shares first)."""
    return [total // parts + (1 if j < total % parts else 0) for j in range(parts)]


def worker_loads(load: LoadSpec, workers: int) -> list[LoadSpec]:
    """The per-worker shares of ``load`` (fewer workers than slots are never idle)."""
    if load.open_loop:
        shares = split(load.max_in_flight, workers)
        return [
            replace(load, worker=j, workers=workers, max_in_flight=max(1, shares[j]))
            for j in range(workers)
        ]
    conc = load.concurrency or 1
    n = min(workers, conc)
    return [replace(load, concurrency=c, worker=j, workers=n) for j, c in enumerate(split(conc, n))]


def _child_main() -> None:
    """Entry point of a worker process: ``python -c "...; _child_main()" <fd>``."""
    # The engine's process owns interrupts and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    load = conn.recv()
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(conn, load))
    finally:
        loop.close()
        conn.close()


async def _serve(conn: Connection, load: LoadSpec) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def reader() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("close",)
            loop.call_soon_threadsafe(queue.put_nowait, msg)
            if msg[0] == "close":
                return

    async def nothing() -> None:
        return None

    driver = LocalDriver(load, Supervisor(nothing))
    try:
        await driver.open()
    except Exception as e:
        conn.send(("error", f"worker {load.worker}: {type(e).__name__}: {e}"))
        return
    conn.send(("ok",))
    threading.Thread(target=reader, daemon=True).start()
    try:
        while True:
            msg = await queue.get()
            try:
                if msg[0] == "start":
                    await driver.start(msg[1])
                    conn.send(("ok",))
                elif msg[0] == "snapshot":
                    conn.send(("ok", await driver.snapshot()))
                elif msg[0] == "stop":
                    conn.send(("ok", await driver.stop(msg[1])))
                else:
                    return
            except Exception as e:
                conn.send(("error", f"worker {load.worker}: {type(e).__name__}: {e}"))
    finally:
        await driver.close()


class ProcessDriver:
    """Drives worker processes that each generate a share of the load."""

    def __init__(self, loads: list[LoadSpec]) -> None:
        self._loads = loads
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        # Blocking pipe reads get their own threads: in the loop's default executor they
        # could hold up the watchdog's liveness checks.
        self._executor = ThreadPoolExecutor(len(loads), thread_name_prefix="triton-perf-pipe")

    @property
    def workers(self) -> int:
        """Number of worker processes."""
        return len(self._loads)

    async def _ask(self, msg: tuple[Any, ...], timeout: float) -> list[Any]:
        for c in self._conns:
            c.send(msg)
        return await asyncio.gather(*(self._reply(c, timeout) for c in self._conns))

    async def _reply(self, conn: Connection, timeout: float) -> Any:
        def recv() -> Any:
            if not conn.poll(timeout):
                raise MeasurementError(f"a load worker did not answer within {timeout:g}s")
            return conn.recv()

        try:
            reply = await asyncio.get_running_loop().run_in_executor(self._executor, recv)
        except (EOFError, OSError) as e:
            raise MeasurementError(f"a load worker process died: {e}") from e
        if reply[0] == "error":
            raise MeasurementError(f"load worker failed: {reply[1]}")
        return reply[1] if len(reply) > 1 else None

    async def open(self) -> None:
        """Start the processes; each connects before answering.

        Workers are fresh interpreters started by subprocess rather than multiprocessing's
        spawn, which re-imports the caller's ``__main__`` (a script without the
        ``if __name__ == "__main__"`` guard would run again in every worker).
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        for load in self._loads:
            parent_sock, child_sock = socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE, str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
            child_sock.close()
            conn = Connection(parent_sock.detach())
            self._procs.append(proc)
            self._conns.append(conn)
            conn.send(load)
        await asyncio.gather(*(self._reply(c, START_TIMEOUT_S) for c in self._conns))

    async def start(self, t0_ns: int) -> None:
        """Start a phase in every worker."""
        await self._ask(("start", t0_ns), 30.0)

    async def snapshot(self) -> Records:
        """Merged records of every worker so far."""
        return Records.merge(list(await self._ask(("snapshot",), 30.0)))

    async def stop(self, timeout: float) -> tuple[int, Records, PhaseStats]:
        """Stop every worker; merge their records and costs."""
        replies = await self._ask(("stop", timeout), timeout + 30.0)
        stats = PhaseStats()
        cancelled = 0
        parts = []
        for n, records, s in replies:
            cancelled += n
            parts.append(records)
            stats.wall_s = max(stats.wall_s, s.wall_s)
            stats.loop_cpu_s += s.loop_cpu_s
            stats.process_cpu_s += s.process_cpu_s
            stats.pool_exhausted += s.pool_exhausted
            stats.per_worker_loop_share.append(s.loop_share)
        return cancelled, Records.merge(parts), stats

    async def close(self) -> None:
        """Ask the workers to leave; terminate those that do not."""
        for c in self._conns:
            with contextlib.suppress(Exception):
                c.send(("close",))
        loop = asyncio.get_running_loop()
        for p in self._procs:
            for stop in (None, p.terminate, p.kill):
                if stop is not None:
                    stop()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await loop.run_in_executor(None, p.wait, 5.0)
                    break
        for c in self._conns:
            c.close()
        self._procs, self._conns = [], []
        self._executor.shutdown(wait=False, cancel_futures=True)


async def open_driver(load: LoadSpec, workers: int, supervisor: Supervisor) -> Driver:
    """A connected driver for ``load``: in this process for one worker, else ``workers``
    processes sharing it. Whatever was opened is closed again when connecting fails."""
    driver: Driver
    if workers <= 1:
        driver = LocalDriver(load, supervisor)
    else:
        driver = ProcessDriver(worker_loads(load, workers))
    try:
        await driver.open()
    except BaseException:
        await driver.close()
        raise
    return driver
