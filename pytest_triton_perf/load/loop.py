"""Event-loop plumbing of the load generator: a fresh loop per measurement (uvloop's when it
is installed), run from synchronous code or from a thread that already runs a loop, with
interrupts routed through the loop so that a Ctrl-C closes connections and worker processes
before it is delivered."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a fresh event loop (uvloop when available).

    From a thread that already runs a loop (an async test), the work moves to a helper thread:
    nesting loops is not allowed.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(factory)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _run_here(factory)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target, name="triton-perf-measure")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _run_here(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = new_event_loop()
    handled: list[tuple[int, Any]] = []
    received: list[int] = []
    try:
        asyncio.set_event_loop(loop)
        main = loop.create_task(factory())
        if threading.current_thread() is threading.main_thread():
            # An interrupt raised inside a transport callback would be swallowed by the loop
            # ("fatal error on transport"): route SIGINT, and SIGTERM when someone handles
            # it, through the loop instead, cancel cleanly, then hand the signal on.
            def on_signal(signum: int) -> None:
                received.append(signum)
                main.cancel()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(sig)
                if not callable(previous):
                    continue
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.add_signal_handler(sig, on_signal, sig)
                    handled.append((sig, previous))
        try:
            result = loop.run_until_complete(main)
            if not received:
                return result
            # A signal that came as the measurement ended is still delivered below.
        except BaseException:
            # Failure or interrupt: cancel what still runs so that connections and worker
            # processes are closed before the loop goes.
            main.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(main)
            if not received:
                raise
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            for signum, previous in handled:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
                signal.signal(signum, previous)
            asyncio.set_event_loop(None)
            loop.close()
    # Interrupted, and everything is closed: deliver the signal as it would have been.
    first = received[0]
    dict(handled)[first](first, None)
    raise KeyboardInterrupt  # the handler returned: still, this measurement is over


async def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in the loop's default executor: blocking calls (HTTP control requests, the
    server handle's liveness check) stay off the loop that times the requests."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)
