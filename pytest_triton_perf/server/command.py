"""The ``tritonserver`` command line every owned server runs with (local and container).

One function, so that the local process and the container start Triton the same way: a
unique ``--id`` (checked through ``GET /v2``), explicit model control, keep serving when a
model fails to load, and the addresses and ports the launcher chose.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

# Triton's own exit timeout: it waits this long for in-flight requests on SIGTERM. Launchers
# wait longer than this before they kill.
EXIT_TIMEOUT_S = 5


def new_server_id() -> str:
    """A fresh ``--id``; a stale server on the same port answers with another one."""
    return f"triton-perf-{uuid.uuid4().hex[:12]}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the server may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: Picks of a port that came out equal to one picked before, at most.
PICK_TRIES = 10


@dataclass(frozen=True)
class Ports:
    """The HTTP, gRPC and metrics ports Triton listens on (inside its network namespace)."""

    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> Ports:
        """Three distinct ports free on ``host`` now. Each is picked by :func:`free_port`,
        whose socket is closed before the next pick, so the kernel may hand out the same
        port twice (seen once in CI: Triton exited, "cannot listen to GRPC requests and
        metrics requests at the same address and port"); a port already picked is picked
        again."""
        picked: list[int] = []
        for _ in range(3):
            port = free_port(host)
            for _ in range(PICK_TRIES):
                if port not in picked:
                    break
                port = free_port(host)
            picked.append(port)
        return cls(*picked)


def triton_args(
    *,
    model_repositories: Sequence[str],
    server_id: str,
    address: str,
    ports: Ports,
    models: Sequence[str] | None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Arguments after ``tritonserver``: repositories, identity, endpoints, model control.

    ``model_repositories`` are paths as the server sees them (inside a container: the mount
    points). ``models=None`` loads every model of the repositories.
    """
    args = [f"--model-repository={repo}" for repo in model_repositories]
    args += [
        f"--id={server_id}",
        f"--http-address={address}",
        f"--grpc-address={address}",
        f"--metrics-address={address}",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        # Explicit control lets anyone who reaches the port load code: hence loopback only.
        "--model-control-mode=explicit",
        # Keep serving when one model fails: its tests fail with the reason, the rest run.
        "--exit-on-error=false",
        "--strict-readiness=false",
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
    ]
    if models is None:
        args.append("--load-model=*")
    else:
        args += [f"--load-model={m}" for m in models]
    args += list(extra_args)
    return args
