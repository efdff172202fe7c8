"""A server killed during a measurement fails it promptly with ServerDiedError, no hang."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pytest_triton_perf.errors import ServerDiedError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS

LONG = MeasureSettings(warmup_s=0.2, windows=3, window_s=10.0, max_windows=3)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_killed_server_fails_the_measurement_fast(
    protocol: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = LocalTritonServer(
        [EXAMPLE_MODELS], models=["simple"], log_dir=tmp_path_factory.mktemp("log")
    )
    with server:
        pid = server.pid
        assert pid is not None
        killed_at: list[float] = []

        def kill_soon() -> None:
            time.sleep(1.5)
            killed_at.append(time.monotonic())
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        try:
            with pytest.raises(ServerDiedError):
                measure(server, "simple", concurrency=4, protocol=protocol, settings=LONG)
            raised_at = time.monotonic()
        finally:
            killer.join()
        # The watchdog asks every 0.5 s; connection errors ask at once.
        assert raised_at - killed_at[0] < 3.0
