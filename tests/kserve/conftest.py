"""A real MLServer (a KServe V2 server other than Triton) serving a scikit-learn model.

MLServer lives in a virtual environment of its own, ``.venv-mlserver``, made by
``scripts/bootstrap test`` from tests/kserve/mlserver-requirements.txt: its protobuf and
grpcio pins need not agree with tritonclient's. Without it the tests skip, saying so; under
CI (the ``CI`` variable set, as .ci/run runs) they fail instead, so that CI never passes by
skipping them. The model is trained here, at test time, on scikit-learn's bundled iris data
(no network), and saved with joblib; the server listens on free loopback ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_triton_perf.server import _pdeathsig
from pytest_triton_perf.server.http import ProbeError, get_json
from tests.conftest import REPO

MLSERVER_VENV = Path(os.environ.get("TRITON_PERF_MLSERVER_VENV", REPO / ".venv-mlserver"))
#: How long MLServer may take to answer ready (it starts in 2 to 3 s on a quiet machine).
STARTUP_TIMEOUT_S = 90.0
PDEATHSIG = _pdeathsig.__file__
MODEL = "iris"
INPUT = "input-0"

TRAIN = """
import sys
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(X, y), sys.argv[1])
"""


@dataclass(frozen=True)
class MLServer:
    """A running MLServer: its endpoints (``host:port``), model directory and log."""

    http_url: str
    grpc_url: str
    metrics_url: str
    models: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports: MLServer's HTTP, gRPC and metrics
    ports as Triton lays them out (HTTP + 1, HTTP + 2), where ``--triton-url`` looks."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((host, 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    """MLServer 1.7 serving ``iris`` (scikit-learn, trained here) over HTTP and gRPC."""
    executable = MLSERVER_VENV / "bin" / "mlserver"
    python = MLSERVER_VENV / "bin" / "python"
    if not executable.exists():
        _unavailable(
            f"MLServer is not installed: no {executable}. Run `scripts/bootstrap test` "
            f"(it installs tests/kserve/mlserver-requirements.txt into {MLSERVER_VENV.name})."
        )
    root = tmp_path_factory.mktemp("mlserver")
    models = root / "models"
    (models / MODEL).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run(
        [str(python), "-c", TRAIN, str(models / MODEL / "model.joblib")],
        check=True,
        env=env,
        timeout=120,
    )
    (models / MODEL / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
                # The metadata the load generator reads: MLServer serves what is declared.
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
            }
        )
    )
    http = _free_ports(3)
    (models / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http,
                "grpc_port": http + 1,
                "metrics_port": http + 2,
                # Inference in the server process itself: no worker pool to start.
                "parallel_workers": 0,
            }
        )
    )
    log = root / "mlserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            # The launchers' watchdog: the kernel kills the server if this pytest is killed.
            [
                sys.executable,
                "-I",
                "-S",
                PDEATHSIG,
                "--parent",
                str(os.getpid()),
                "--",
                str(executable),
                "start",
                str(models),
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MLServer(
        f"127.0.0.1:{http}",
        f"127.0.0.1:{http + 1}",
        f"http://127.0.0.1:{http + 2}/metrics",
        models,
        log,
    )
    try:
        _wait_ready(proc, server)
        yield server
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], server: MLServer) -> None:
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"MLServer exited {proc.returncode} at start:\n{server.log_tail()}", pytrace=False
            )
        with contextlib.suppress(ProbeError):
            status, _ = get_json(f"http://{server.http_url}/v2/models/{MODEL}/ready", timeout=2)
            if status == 200:
                return
        if time.monotonic() - started > STARTUP_TIMEOUT_S:
            pytest.fail(
                f"MLServer did not serve {MODEL} within {STARTUP_TIMEOUT_S:g} s:\n"
                f"{server.log_tail()}",
                pytrace=False,
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
