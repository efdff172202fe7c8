"""Room in ``/dev/shm`` for Triton's Python backend, checked before a local server starts.

Each instance of a Python-backend model runs in a stub process that exchanges tensors with
the server through a shared-memory region in ``/dev/shm``: ``shm-default-byte-size`` when the
model loads (1 MiB by default), grown by ``shm-growth-byte-size`` (1 MiB by default) while
requests need more (Triton's python_backend README, "Managing Shared Memory"). Docker gives a
container 64 MB of ``/dev/shm`` unless ``docker run --shm-size`` says otherwise; a region that
does not fit fails the model's load, or later a request, with "Failed to increase the shared
memory pool size". :func:`check_room` says so before the start, naming the sizes and the
remedy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pytest_triton_perf.errors import ServerStartError

SHM_DIR = Path("/dev/shm")
#: The Python backend's default ``shm-default-byte-size`` (and ``shm-growth-byte-size``).
DEFAULT_REGION_BYTES = 1 << 20
_REGION_ARG = re.compile(r"^--backend-config=python,shm-default-byte-size=(\d+)$")


@dataclass(frozen=True)
class ShmNeed:
    """What the Python backend takes from ``/dev/shm`` when the models load."""

    instances: int  # Python-backend model instances (one stub and one region each)
    region_bytes: int  # shm-default-byte-size

    @property
    def bytes(self) -> int:
        """Shared memory taken at load time, before any region grows."""
        return self.instances * self.region_bytes


def region_bytes(server_args: Iterable[str]) -> int:
    """``shm-default-byte-size`` as the server arguments set it, else the default."""
    size = DEFAULT_REGION_BYTES
    for arg in server_args:
        found = _REGION_ARG.match(arg)
        if found:
            size = int(found.group(1))  # the last one wins, as in Triton
    return size


def python_instances(repositories: Sequence[Path], models: Sequence[str] | None) -> int:
    """Instances of the Python-backend models among ``models`` (all models when None).

    A config that does not parse is left to Triton, which reports it at load time; a
    group without ``count`` is one instance (on a GPU machine, one per GPU: at least one).
    """
    total = 0
    for repo in repositories:
        for config_path in sorted(repo.glob("*/config.pbtxt")):
            if models is not None and config_path.parent.name not in models:
                continue
            config = model_config_pb2.ModelConfig()
            try:
                text_format.Parse(config_path.read_text(), config)
            except (OSError, UnicodeDecodeError, text_format.ParseError):
                continue
            if config.backend != "python":
                continue
            groups = config.instance_group
            total += sum(max(1, g.count) for g in groups) if groups else 1
    return total


def check_room(
    repositories: Sequence[Path],
    models: Sequence[str] | None,
    server_args: Iterable[str],
    shm_dir: Path = SHM_DIR,
) -> list[str]:
    """Check that ``/dev/shm`` can hold the Python backend's regions of these models.

    Raises :class:`ServerStartError` when the regions do not fit at all; returns a warning
    line when they fit but cannot grow to twice their size (large tensors, many requests in
    flight); returns nothing when there is room, or no ``/dev/shm`` (not Linux).
    """
    try:
        stat = os.statvfs(shm_dir)
    except OSError:
        return []
    need = ShmNeed(python_instances(repositories, models), region_bytes(server_args))
    if need.instances == 0:
        return []
    free = stat.f_bavail * stat.f_frsize
    total = stat.f_blocks * stat.f_frsize
    situation = (
        f"{shm_dir} has {_mib(free)} free of {_mib(total)}; Triton's Python backend takes "
        f"{_mib(need.region_bytes)} (shm-default-byte-size) per model instance when the models "
        f"load, {_mib(need.bytes)} for the {need.instances} Python model instance(s) here, and "
        f"grows each region while requests need it."
    )
    remedy = (
        f"Give {shm_dir} more room (in Docker: docker run --shm-size=1g; Docker's default is "
        f"64 MB), or start Triton with smaller regions "
        f"(--backend-config=python,shm-default-byte-size=BYTES, at least 1 MiB)."
    )
    if free < need.bytes:
        raise ServerStartError(f"not enough shared memory: {situation} {remedy}")
    if free < 2 * need.bytes:
        return [f"triton-perf: little shared memory: {situation} {remedy}"]
    return []


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
