"""Waiting for an exact send time inside an event loop.

asyncio's and uvloop's timers have millisecond resolution: a request scheduled 0.3 ms from
now would leave up to a millisecond late, and since open-loop latency counts from the
scheduled time, the generator's own timer would show up as server latency. On Linux a
``timerfd`` armed at an absolute CLOCK_MONOTONIC time (the clock of ``time.perf_counter_ns``)
wakes the loop's poller within microseconds, without spinning. Elsewhere the loop sleeps
until a millisecond before the deadline and yields until it passes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
from time import perf_counter_ns
from typing import Any

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1
_SPIN_NS = 1_000_000


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        )
        return libc
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None


_LIBC = _libc()


class PreciseTimer:
    """``await timer.wait_until(t_ns)`` returns at ``t_ns`` (perf_counter_ns clock)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._waiter: asyncio.Future[None] | None = None
        self._spec = _Itimerspec()
        if _LIBC is not None:
            fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                self._loop.add_reader(fd, self._fired)

    @property
    def precise(self) -> bool:
        """True when a timerfd is in use."""
        return self._fd >= 0

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_until(self, t_ns: int) -> None:
        """Return once the clock has reached ``t_ns``."""
        if perf_counter_ns() >= t_ns:
            return
        if self._fd < 0:
            wait = t_ns - perf_counter_ns()
            if wait > _SPIN_NS:
                await asyncio.sleep((wait - _SPIN_NS) / 1e9)
            while perf_counter_ns() < t_ns:
                await asyncio.sleep(0)
            return
        self._spec.it_value.tv_sec = t_ns // 1_000_000_000
        self._spec.it_value.tv_nsec = t_ns % 1_000_000_000
        waiter = self._loop.create_future()
        self._waiter = waiter
        if _LIBC.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None):
            self._waiter = None  # pragma: no cover - settime cannot fail with valid values
            await asyncio.sleep(max(0, t_ns - perf_counter_ns()) / 1e9)
            return
        await waiter

    def close(self) -> None:
        """Release the timerfd."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
