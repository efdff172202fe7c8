"""Options of the container launcher (``--triton-image`` and its companions): their
parsers, their defaults, and the GPU request of ``--gpus`` / ``--triton-gpus``.

Pure: docker-py is imported only to list the arguments ``containers.create`` accepts, when
``--triton-docker-kwargs`` is given. The launcher itself is
:class:`pytest_triton_perf.server.container.ContainerTritonServer`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pytest_triton_perf.errors import ConfigError

NETWORK_MODES = ("host", "ports")
#: ``--triton-ipc``: the container's own IPC namespace and /dev/shm, or the host's.
IPC_MODES = ("private", "host")
IPC_MODE = "private"
PULL_POLICIES = ("missing", "always", "never")
PULL_POLICY = "missing"
NETWORK_MODE = "host"
# The Python backend takes a region of /dev/shm per model instance (1 MiB by default, growing
# with the tensors it passes); Docker gives 64 MB in all, NGC recommends 1g.
SHM_SIZE = "1g"
# NGC's recommendation for Triton: --ulimit memlock=-1 --ulimit stack=67108864.
ULIMIT_MEMLOCK = -1
ULIMIT_STACK = 67108864
OFF = "off"

GPUS_ACCEPTED = (
    "all, a count (e.g. 2), count=N, device=0,2 (indices), GPU UUIDs (GPU-..., MIG-...) "
    "or device=GPU-..., none"
)


@dataclass(frozen=True)
class GpuRequest:
    """GPUs to give the container, from ``--gpus``: a count (-1: all) or device ids."""

    spec: str
    count: int | None = None
    device_ids: tuple[str, ...] = ()

    def fallback_devices(self) -> tuple[str, ...] | None:
        """The devices as NVML names them, when the container cannot be asked: device ids
        as given, the first N indices for a count (the NVIDIA runtime's choice), else all."""
        if self.device_ids:
            return self.device_ids
        if self.count is not None and self.count > 0:
            return tuple(str(i) for i in range(self.count))
        return None


def split_for_worker(
    gpus: GpuRequest, worker: int, workers: int, host_gpus: int
) -> tuple[GpuRequest, str | None]:
    """The GPUs of pytest-xdist worker ``worker`` of ``workers``: when the pool (the device
    ids given, the first N for a count, every GPU of the host for ``all``) has at least one
    GPU per worker, each worker gets its own share (round robin), so that parallel servers
    never measure on the same GPU. Otherwise every worker gets the whole pool, and the
    second value says so."""
    if gpus.device_ids:
        pool = list(gpus.device_ids)
    elif gpus.count == -1:
        pool = [str(i) for i in range(host_gpus)]
    else:
        pool = [str(i) for i in range(gpus.count or 0)]
    if workers <= 1 or not pool:
        return gpus, None
    if len(pool) < workers:
        return gpus, (
            f"{len(pool)} GPU(s) for {workers} xdist workers: the workers share them, so "
            f"their measurements disturb each other; use -n {len(pool)} or more GPUs"
        )
    mine = tuple(pool[worker::workers])
    return GpuRequest(
        spec=f"{gpus.spec} (worker {worker}: {','.join(mine)})", device_ids=mine
    ), None


_DEVICE = re.compile(r"^([0-9]+|(GPU|MIG)-[0-9A-Za-z/._-]+)$")


def parse_gpus(flag: str, text: str) -> GpuRequest | None:
    """Docker's ``--gpus`` forms -> a request; ``none`` -> None (no GPU)."""
    value = text.strip().strip("'\"").strip()
    bad = ConfigError(f"{flag}={text!r} is not a GPU request; accepted: {GPUS_ACCEPTED}.")
    if not value:
        raise bad
    low = value.lower()
    if low == "none":
        return None
    if low in ("all", "count=all"):
        return GpuRequest(spec=value, count=-1)
    count_text = low.removeprefix("count=")
    if count_text.isascii() and count_text.isdecimal():  # not '²', which isdigit() accepts
        count = int(count_text)
        if count < 1:
            raise ConfigError(
                f"{flag}={text!r}: a count of GPUs must be >= 1 (use 'none' for no GPU); "
                f"accepted: {GPUS_ACCEPTED}."
            )
        return GpuRequest(spec=value, count=count)
    ids_text = value[len("device=") :] if low.startswith("device=") else value
    if not low.startswith("device=") and not ids_text.upper().startswith(("GPU-", "MIG-")):
        raise bad
    ids = tuple(i.strip() for i in ids_text.split(",") if i.strip())
    if not ids or not all(_DEVICE.match(i) for i in ids):
        raise bad
    return GpuRequest(spec=value, device_ids=ids)


def parse_image(flag: str, text: str) -> str:
    """An image reference with an explicit tag or digest."""
    ref = text.strip()
    if not ref or any(c.isspace() for c in ref):
        raise ConfigError(
            f"{flag}={text!r}: an image reference such as "
            f"nvcr.io/nvidia/tritonserver:24.08-py3 is accepted."
        )
    last = ref.rsplit("/", 1)[-1]
    if "@" not in ref and ":" not in last:
        raise ConfigError(
            f"{flag}={text!r} has no tag: name one (e.g. {ref}:24.08-py3) or a digest "
            f"(@sha256:...). Without it Docker would use ':latest', which NGC does not publish."
        )
    return ref


def parse_pull(flag: str, text: str) -> str:
    """``missing``, ``always`` or ``never``."""
    value = text.strip().lower()
    if value not in PULL_POLICIES:
        raise ConfigError(f"{flag}={text!r}: accepted are {', '.join(PULL_POLICIES)}.")
    return value


def parse_network(flag: str, text: str) -> str:
    """``host`` or ``ports``."""
    value = text.strip().lower()
    if value not in NETWORK_MODES:
        raise ConfigError(
            f"{flag}={text!r}: accepted are host (the container shares the host's network, "
            f"Triton binds 127.0.0.1) and ports (Triton's ports published on 127.0.0.1)."
        )
    return value


def parse_ipc(flag: str, text: str) -> str:
    """``private`` or ``host``."""
    value = text.strip().lower()
    if value not in IPC_MODES:
        raise ConfigError(
            f"{flag}={text!r}: accepted are private (the container's own IPC namespace and "
            f"/dev/shm, sized by --triton-shm-size) and host (docker run --ipc=host: the "
            f"host's, needed for measure(shared_memory='system'|'cuda'))."
        )
    return value


_SIZE = re.compile(r"^([0-9]+)([bkmg]?)$")  # ASCII digits: \d would pass '٣g' to Docker
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_shm_size(flag: str, text: str) -> str:
    """A size as Docker takes it: bytes, or a number with b, k, m or g."""
    value = text.strip().lower()
    match = _SIZE.match(value)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(
            f"{flag}={text!r}: a size such as 1g, 512m or a number of bytes is accepted."
        )
    return value


def parse_ulimit(flag: str, text: str) -> int | str:
    """``unlimited`` (-1), a number of bytes (k, m, g allowed) or ``off`` (not set)."""
    value = text.strip().lower()
    if value in ("unlimited", "-1"):
        return -1
    if value == OFF:
        return OFF
    match = _SIZE.match(value)
    if not match:
        raise ConfigError(
            f"{flag}={text!r}: accepted are unlimited, a number of bytes (e.g. 67108864 or "
            f"64m) and off (leave the Docker engine's default)."
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def ulimit_value(value: int | str) -> int | None:
    """A parsed ``--triton-ulimit-*`` value as the launcher takes it (None: not set)."""
    return None if value == OFF else int(value)


def limit_text(value: int | None) -> str:
    """A launcher's ulimit as the user writes it: ``off``, ``unlimited`` or bytes."""
    if value is None:
        return OFF
    return "unlimited" if value == -1 else str(value)


# Set by the launcher from its own options: a kwarg here would fight them.
RESERVED_KWARGS = {
    "image": "--triton-image",
    "command": "(the launcher's tritonserver command)",
    "name": "(the launcher's unique name)",
    "labels": "(the launcher's session labels)",
    "detach": "(always detached)",
    "auto_remove": "(the launcher removes the container; auto_remove would lose its log)",
    "network_mode": "--triton-network",
    "ports": "--triton-network=ports",
    "volumes": "(the model repositories are mounted by the launcher; use mounts)",
    "device_requests": "--gpus / --triton-gpus",
    "shm_size": "--triton-shm-size",
    "ipc_mode": "--triton-ipc",
    "ulimits": "--triton-ulimit-memlock / --triton-ulimit-stack",
}


def parse_docker_kwargs(flag: str, text: str) -> dict[str, Any]:
    """A JSON object of extra ``containers.create`` keyword arguments of docker-py."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        raise ConfigError(
            f"{flag}={text[:200]!r} is not JSON ({e}); accepted: a JSON object of docker-py "
            f'containers.create arguments, e.g. \'{{"cpuset_cpus": "0-3", '
            f'"environment": {{"TZ": "UTC"}}}}\'.'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"{flag}={text!r}: a JSON object is accepted, e.g. '{{\"init\": false}}'."
        )
    allowed = _sdk_create_kwargs()
    for key in value:
        if key in RESERVED_KWARGS:
            raise ConfigError(
                f"{flag}: {key!r} is set by the launcher; use {RESERVED_KWARGS[key]}."
            )
        if allowed is not None and key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{flag}: {key!r} is not an argument of docker-py's containers.create.{hint} "
                f"Accepted: {', '.join(sorted(allowed - RESERVED_KWARGS.keys()))}."
            )
    return value


def _sdk_create_kwargs() -> set[str] | None:
    try:
        from docker.models.containers import RUN_CREATE_KWARGS, RUN_HOST_CONFIG_KWARGS
    except ImportError:  # validated again by docker-py itself at create time
        return None
    return set(RUN_CREATE_KWARGS) | set(RUN_HOST_CONFIG_KWARGS)
