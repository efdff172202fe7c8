"""The remote launcher: a Triton server that is already running (``--triton-url``).

It never loads or unloads models there: it checks that the server is live and that the
models a test asks for are ready, and lists the available ones when one is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from pytest_triton_perf.errors import ConfigError, ServerDiedError
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.http import ProbeError, get_json


def parse_url(value: str, *, option: str) -> tuple[str, int]:
    """``host:port`` or ``http://host:port`` -> (host, port); errors name the option."""
    text = value.strip()
    accepted = "host:port or http://host:port, e.g. localhost:8000"
    try:
        parsed = urlsplit(text if "://" in text else f"http://{text}")
    except ValueError as e:  # e.g. an unbalanced IPv6 bracket
        raise ConfigError(
            f"{option}={value!r} is not a server address ({e}); use {accepted}."
        ) from None
    if parsed.scheme not in ("http", "grpc"):
        raise ConfigError(
            f"{option}={value!r}: scheme {parsed.scheme!r} is not supported; use {accepted}."
        )
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise ConfigError(f"{option}={value!r} is not a server address; use {accepted}.")
    return parsed.hostname, port


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 hosts bracketed, as tritonclient takes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        startup_timeout_s: float = 30.0,
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
