"""The remote launcher: a Triton server that is already running (``--triton-url``).

It never loads or unloads models there: it checks that the server is live and that the
models a test asks for are ready, and lists the available ones when one is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_triton_perf.errors import ServerDiedError
from pytest_triton_perf.options import REMOTE_STARTUP_TIMEOUT_S
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.http import ProbeError, get_json
from pytest_triton_perf.urls import host_port, parse_url

#: The wait for a running server unless told (``--triton-startup-timeout``).
STARTUP_TIMEOUT_S = REMOTE_STARTUP_TIMEOUT_S


class RemoteTritonServer(TritonServer):
    """A handle on a server started elsewhere.

    Without ``grpc_url``, gRPC goes to the same host at the HTTP port + 1 (Triton's default
    layout 8000/8001/8002); metrics likewise at the HTTP port + 2, when they answer.
    """

    kind = "remote"

    def __init__(
        self,
        http_url: str,
        *,
        grpc_url: str | None = None,
        models: Sequence[str] | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ):
        super().__init__(models=models, startup_timeout_s=startup_timeout_s)
        host, port = parse_url(http_url, option="--triton-url")
        self.http_url = host_port(host, port)
        if grpc_url:
            ghost, gport = parse_url(grpc_url, option="--triton-grpc-url")
            self.grpc_url = host_port(ghost, gport)
        else:
            self.grpc_url = host_port(host, port + 1)
        self._metrics_guess = f"http://{host_port(host, port + 2)}/metrics"

    def start(self) -> RemoteTritonServer:
        """Wait until the server is live; check the requested models are ready."""
        self._wait_until_ready(alive=lambda: None, expected_id=None)
        try:
            status, _ = get_json(self._metrics_guess, timeout=2.0)
            self.metrics_url = self._metrics_guess if status == 200 else None
        except ProbeError:
            self.metrics_url = None
        return self

    def _not_live_text(self, last_problem: str) -> str:
        """Nothing answered as a live server at the address: the address, the wait and
        what to check."""
        return (
            f"no live KServe V2 server answered at {self.base_url} within "
            f"{self.startup_timeout_s:g} s (--triton-startup-timeout; probed /v2 and "
            f"/v2/health/live every 0.2 s; last: {last_problem}). Check --triton-url (and "
            f"that the server runs and listens there), or wait longer for a server that is "
            f"still loading its models with --triton-startup-timeout=SECONDS."
        )

    def stop(self) -> None:
        """Nothing to stop: the server belongs to someone else."""

    def check_alive(self) -> None:
        """Raise :class:`ServerDiedError` when the server no longer answers."""
        try:
            status, _ = get_json(f"{self.base_url}/v2/health/live", timeout=2.0)
        except ProbeError as e:
            raise ServerDiedError(f"{self.describe()} stopped answering: {e}") from None
        if status != 200:
            raise ServerDiedError(f"{self.describe()} is not live (HTTP {status}).")
