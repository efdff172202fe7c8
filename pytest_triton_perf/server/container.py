"""The container launcher: ``tritonserver`` in a Docker container (``--triton-image``).

The way teams run the gate on a GPU runner::

    pytest --triton-image=nvcr.io/nvidia/tritonserver:24.08-py3 --gpus=all

Docker SDK (docker-py), imported lazily. The container runs the same command line as the
local launcher (:func:`~pytest_triton_perf.server.command.triton_args`) over the model
repositories mounted read-only, and readiness, identity, fail-fast and log excerpts come from
:class:`~pytest_triton_perf.server.base.TritonServer`: the container's log is copied to
``log_path`` whenever it is read.

Lifecycle: the image is pulled by policy (``missing``, ``always``, ``never``) with progress
lines; the container is created, then started, and removed when the start fails (docker-py's
``containers.run`` leaves it behind in ``created``); containers carry labels naming the
session and the owning pytest process, and the next start removes those whose owner is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import socket
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from pytest_triton_perf.errors import ConfigError, ServerDiedError, ServerStartError
from pytest_triton_perf.server.base import TritonServer, checked_repositories
from pytest_triton_perf.server.command import (
    EXIT_TIMEOUT_S,
    Ports,
    new_server_id,
    triton_args,
)

if TYPE_CHECKING:
    import docker.errors
    from docker.models.containers import Container

    import docker

LABEL_NS = "pytest-triton-perf"
LABEL_SESSION = f"{LABEL_NS}.session"
LABEL_OWNER_PID = f"{LABEL_NS}.owner-pid"
LABEL_OWNER_PARENT_PID = f"{LABEL_NS}.owner-parent-pid"
LABEL_OWNER_HOST = f"{LABEL_NS}.owner-host"
LABEL_OWNER_START = f"{LABEL_NS}.owner-start"
# One id per Python process: every container this process starts carries it.
SESSION_ID = uuid.uuid4().hex[:16]

# Triton waits EXIT_TIMEOUT_S for in-flight requests on SIGTERM; Docker kills after this.
STOP_TIMEOUT_S = EXIT_TIMEOUT_S + 10
PORT_ATTEMPTS = 3
MODEL_MOUNT = "/models"
# Triton's default ports inside the container's own network namespace (``ports`` mode).
CONTAINER_PORTS = Ports(http=8000, grpc=8001, metrics=8002)
PULL_PROGRESS_EVERY_S = 5.0

NETWORK_MODES = ("host", "ports")
PULL_POLICIES = ("missing", "always", "never")
DEFAULT_SHM_SIZE = "1g"
# NGC's recommendation for Triton: --ulimit memlock=-1 --ulimit stack=67108864.
DEFAULT_MEMLOCK = -1
DEFAULT_STACK = 67108864
OFF = "off"

GPUS_ACCEPTED = (
    "all, a count (e.g. 2), count=N, device=0,2 (indices), GPU UUIDs (GPU-..., MIG-...) "
    "or device=GPU-..., none"
)

_running: weakref.WeakSet[ContainerTritonServer] = weakref.WeakSet()
Notify = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- option values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuRequest:
    """GPUs to give the container, from ``--gpus``: a count (-1: all) or device ids."""

    spec: str
    count: int | None = None
    device_ids: tuple[str, ...] = ()

    def device_request(self) -> Any:
        """The docker-py ``DeviceRequest`` (``count`` or ``device_ids``, never both)."""
        from docker.types import DeviceRequest

        if self.device_ids:
            return DeviceRequest(device_ids=list(self.device_ids), capabilities=[["gpu"]])
        return DeviceRequest(count=self.count, capabilities=[["gpu"]])

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


# Set by the launcher from its own options: a kwarg here would fight them.
_RESERVED_KWARGS = {
    "image": "--triton-image",
    "command": "(the launcher's tritonserver command)",
    "name": "(the launcher's unique name)",
    "labels": "(the launcher's session labels)",
    "detach": "(always detached)",
    "auto_remove": "(the launcher removes the container; auto_remove would lose its log)",
    "network_mode": "--triton-network",
    "ports": "--triton-network=ports",
    "volumes": "(the model repositories are mounted by the launcher; use mounts)",
    "device_requests": "--gpus",
    "shm_size": "--triton-shm-size",
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
        if key in _RESERVED_KWARGS:
            raise ConfigError(
                f"{flag}: {key!r} is set by the launcher; use {_RESERVED_KWARGS[key]}."
            )
        if allowed is not None and key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{flag}: {key!r} is not an argument of docker-py's containers.create.{hint} "
                f"Accepted: {', '.join(sorted(allowed - _RESERVED_KWARGS.keys()))}."
            )
    return value


def _sdk_create_kwargs() -> set[str] | None:
    try:
        from docker.models.containers import RUN_CREATE_KWARGS, RUN_HOST_CONFIG_KWARGS
    except ImportError:  # validated again by docker-py itself at create time
        return None
    return set(RUN_CREATE_KWARGS) | set(RUN_HOST_CONFIG_KWARGS)


# -- engine ------------------------------------------------------------------------------------


def engine_location() -> str:
    """Where docker-py will look for the engine, for messages."""
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={host}" if host else "the default socket unix:///var/run/docker.sock"


def connect() -> docker.DockerClient:
    """A docker-py client on the engine of the environment (``DOCKER_HOST``), checked alive."""
    try:
        import docker
    except ImportError:
        raise ServerStartError(
            "--triton-image needs the Docker SDK for Python (a dependency of "
            "pytest-triton-perf): pip install 'docker>=7'."
        ) from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        raise ServerStartError(
            f"no Docker engine reachable at {engine_location()}: {e}. Start Docker or point "
            f"DOCKER_HOST at a running engine; or run without --triton-image: the local "
            f"launcher starts tritonserver from PATH or nvidia-pytriton, and --triton-url "
            f"measures a server that is already running."
        ) from None
    return client


def owner_labels() -> dict[str, str]:
    """Labels naming this session and the process that owns its containers."""
    me = psutil.Process()
    return {
        LABEL_SESSION: SESSION_ID,
        LABEL_OWNER_PID: str(me.pid),
        LABEL_OWNER_PARENT_PID: str(os.getppid()),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_OWNER_START: f"{me.create_time():.2f}",
    }


def owner_alive(labels: Mapping[str, str]) -> bool:
    """True while the pytest process named in a container's labels still runs.

    A container from another host cannot be judged from here and counts as alive; a pid
    reused by another process (other start time) counts as gone.
    """
    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
        proc = psutil.Process(pid)
        started = proc.create_time()
    except (ValueError, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    try:
        return abs(started - float(labels.get(LABEL_OWNER_START, ""))) < 1.0
    except ValueError:
        return True


def remove_stale_containers(client: docker.DockerClient, notify: Notify = _stderr) -> list[str]:
    """Remove labelled containers whose owning pytest process is gone (a killed run).

    Returns their names; says so through ``notify``, one line per container.
    """
    import docker.errors

    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL_SESSION}):
        labels = container.labels
        if owner_alive(labels):
            continue
        with contextlib.suppress(docker.errors.NotFound):  # a concurrent sweep was faster
            container.remove(force=True, v=True)
            removed.append(container.name)
            notify(
                f"pytest-triton-perf: removed stale container {container.name} "
                f"({container.short_id}, session {labels.get(LABEL_SESSION)}): its owner, "
                f"pid {labels.get(LABEL_OWNER_PID)} on {labels.get(LABEL_OWNER_HOST)}, is gone."
            )
    return removed


def split_reference(ref: str) -> tuple[str, str | None]:
    """``repo:tag`` -> (repo, tag); a digest reference stays whole with no tag."""
    if "@" in ref:
        return ref, None
    repo, _, tag = ref.rpartition(":")
    if "/" in tag or not repo:
        return ref, None
    return repo, tag


def pull_progress(ref: str, layers: Mapping[str, Mapping[str, Any]]) -> str:
    """One line from the pull's per-layer events: layers done, bytes downloaded."""
    done = sum(1 for e in layers.values() if e.get("status") in ("Pull complete", "Already exists"))
    current = total = 0
    for event in layers.values():
        detail = event.get("progressDetail") or {}
        if event.get("status") == "Downloading" and detail.get("total"):
            current += int(detail.get("current", 0))
            total += int(detail["total"])
    text = f"pulling {ref}: {done}/{len(layers)} layers complete"
    if total:
        text += f", downloading {current / 1e9:.2f} of {total / 1e9:.2f} GB"
    return text


# -- the launcher ------------------------------------------------------------------------------


class ContainerTritonServer(TritonServer):
    """Triton in a Docker container over read-only model repositories.

    ``network="host"``: the container shares the host's network and Triton binds free
    loopback ports (as the local launcher). ``network="ports"``: Triton listens on its
    default ports inside the container, published on 127.0.0.1 on ports the engine picks;
    the mapping is checked after the start.

    ``ulimit_memlock`` / ``ulimit_stack``: bytes, -1 for unlimited, or None to leave the
    engine's default. ``docker_kwargs`` go to docker-py's ``containers.create`` as they are.
    ``notify`` receives the lines a user should see at once (pull progress, stale
    containers removed).
    """

    kind = "container"

    def __init__(
        self,
        model_repositories: Sequence[str | os.PathLike[str]],
        *,
        image: str,
        models: Sequence[str] | None = None,
        gpus: GpuRequest | None = None,
        pull: str = "missing",
        network: str = "host",
        shm_size: str = DEFAULT_SHM_SIZE,
        ulimit_memlock: int | None = DEFAULT_MEMLOCK,
        ulimit_stack: int | None = DEFAULT_STACK,
        docker_kwargs: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 120.0,
        notify: Notify | None = None,
    ):
        super().__init__(models=models, startup_timeout_s=startup_timeout_s)
        self.model_repositories = checked_repositories(model_repositories)
        self.image = parse_image("image", image)
        self.gpus = gpus
        self.pull = parse_pull("pull", pull)
        self.network = parse_network("network", network)
        self.shm_size = shm_size
        self.ulimit_memlock = ulimit_memlock
        self.ulimit_stack = ulimit_stack
        self.docker_kwargs = dict(docker_kwargs or {})
        self.extra_args = tuple(extra_args)
        self.notify: Notify = notify or _stderr
        self._log_dir = Path(log_dir) if log_dir else None
        self._client: docker.DockerClient | None = None
        self._container: Container | None = None
        self._tempdir: Path | None = None

    @property
    def container_name(self) -> str | None:
        """The running container's name (its ``--id`` as well), None when there is none."""
        return self._container.name if self._container is not None else None

    def describe(self) -> str:
        """One line: version, launcher, image and address."""
        return f"Triton {self.version or '?'} (container {self.image}) at {self.http_url}"

    # -- start -------------------------------------------------------------------------------

    def start(self) -> ContainerTritonServer:
        """Start the container and wait until Triton and its models are ready.

        On any failure the container is removed before the error propagates.
        """
        try:
            self._client = connect()
            remove_stale_containers(self._client, self.notify)
            self._ensure_image(self._client)
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    self._launch(self._client)
                    self._wait_until_ready(alive=self._alive_or_raise, expected_id=self.server_id)
                    self.gpu_devices = self._visible_gpus()
                    return self
                except (ServerStartError, ServerDiedError) as e:
                    log = self.log_tail(200)
                    self._remove()
                    # Host networking: another process took a port we picked. Triton binds
                    # after loading the models, logs "Socket '127.0.0.1:P' already in use"
                    # and exits: pick new ports.
                    if "already in use" not in log or attempt == PORT_ATTEMPTS:
                        raise e from None
                    self.notify(
                        f"pytest-triton-perf: a port picked for Triton was taken meanwhile "
                        f"(attempt {attempt} of {PORT_ATTEMPTS}); retrying on other ports."
                    )
        except BaseException as e:
            self.stop()
            if type(e).__module__.startswith("docker."):  # an engine error no step expected
                raise ServerStartError(
                    f"the Docker engine at {engine_location()} failed: {e}"
                ) from None
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_image(self, client: docker.DockerClient) -> None:
        import docker.errors

        if self.pull != "always":
            try:
                client.images.get(self.image)
                return
            except docker.errors.ImageNotFound:
                if self.pull == "never":
                    raise ServerStartError(
                        f"image {self.image} is not on the Docker engine ({engine_location()}) "
                        f"and --triton-pull=never forbids pulling it. Pull or build it first "
                        f"(docker pull {self.image}), check the name and tag, or use "
                        f"--triton-pull=missing."
                    ) from None
            except docker.errors.DockerException as e:
                raise ServerStartError(f"cannot inspect image {self.image}: {e}") from None
        self._pull(client)

    def _pull(self, client: docker.DockerClient) -> None:
        """Pull with a progress line every few seconds (a Triton image is 10+ GB)."""
        import docker.errors

        repo, tag = split_reference(self.image)
        self.notify(f"pytest-triton-perf: pulling {self.image} ...")
        started = last = time.monotonic()
        layers: dict[str, dict[str, Any]] = {}
        try:
            for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ServerStartError(self._pull_error(str(event["error"])))
                if "id" in event and "status" in event:
                    layers[str(event["id"])] = event
                now = time.monotonic()
                if layers and now - last >= PULL_PROGRESS_EVERY_S:
                    self.notify(f"pytest-triton-perf: {pull_progress(self.image, layers)}")
                    last = now
        except docker.errors.DockerException as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise ServerStartError(self._pull_error(str(explanation))) from None
        self.notify(
            f"pytest-triton-perf: pulled {self.image} in {time.monotonic() - started:.0f} s"
        )

    def _pull_error(self, reason: str) -> str:
        hint = "check the name and tag"
        if "unauthorized" in reason.lower() or "denied" in reason.lower():
            registry = self.image.split("/", 1)[0] if "/" in self.image else "docker.io"
            hint = f"log in to the registry first (docker login {registry}), and check the name"
        return (
            f"the Docker engine ({engine_location()}) could not pull image {self.image}: "
            f"{reason}. {hint[0].upper() + hint[1:]}; or pull or build it yourself and use "
            f"--triton-pull=never."
        )

    def _launch(self, client: docker.DockerClient) -> None:
        import docker.errors
        from docker.types import Ulimit

        self.server_id = new_server_id()
        if self.network == "host":
            ports, address = Ports.free("127.0.0.1"), "127.0.0.1"
            net: dict[str, Any] = {"network_mode": "host"}
        else:
            # Inside its own network namespace Triton must listen beyond loopback for the
            # published ports to reach it; the host side stays on 127.0.0.1.
            ports, address = CONTAINER_PORTS, "0.0.0.0"
            net = {
                "ports": {
                    f"{p}/tcp": ("127.0.0.1", None) for p in (ports.http, ports.grpc, ports.metrics)
                }
            }
        mounts = self._mount_points()
        self.log_path = self._log_file()
        command = [
            "tritonserver",
            *triton_args(
                model_repositories=list(mounts.values()),
                server_id=self.server_id,
                address=address,
                ports=ports,
                models=self.requested_models,
                extra_args=self.extra_args,
            ),
        ]
        ulimits = [
            Ulimit(name=name, soft=value, hard=value)
            for name, value in (("memlock", self.ulimit_memlock), ("stack", self.ulimit_stack))
            if value is not None
        ]
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": command,
            "name": self.server_id,
            "labels": owner_labels(),
            "detach": True,
            "volumes": {str(src): {"bind": dst, "mode": "ro"} for src, dst in mounts.items()},
            "shm_size": self.shm_size,
            "ulimits": ulimits,
            # tini reaps the Python backend's stub processes and forwards SIGTERM.
            "init": True,
            **net,
        }
        if self.gpus is not None:
            kwargs["device_requests"] = [self.gpus.device_request()]
        kwargs.update(self.docker_kwargs)
        try:
            self._container = client.containers.create(**kwargs)
        except (docker.errors.DockerException, TypeError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise ServerStartError(
                f"Docker could not create a container from {self.image}: {explanation}"
            ) from None
        _running.add(self)
        try:
            self._container.start()
        except docker.errors.APIError as e:
            self._remove()
            raise ServerStartError(self._start_error(str(e.explanation or e))) from None
        if self.network == "ports":
            self._read_published_ports(ports)
        else:
            self._set_urls(ports)

    def _mount_points(self) -> dict[Path, str]:
        if len(self.model_repositories) == 1:
            return {self.model_repositories[0]: MODEL_MOUNT}
        return {repo: f"{MODEL_MOUNT}/{i}" for i, repo in enumerate(self.model_repositories)}

    def _log_file(self) -> Path:
        if self._log_dir is None:
            import tempfile

            if self._tempdir is None:
                self._tempdir = Path(tempfile.mkdtemp(prefix="triton-perf-container-"))
            log_dir = self._tempdir
        else:
            log_dir = self._log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"{self.server_id}.log"
        path.write_bytes(b"")
        return path

    def _set_urls(self, ports: Ports, host: str = "127.0.0.1") -> None:
        self.http_url = f"{host}:{ports.http}"
        self.grpc_url = f"{host}:{ports.grpc}"
        self.metrics_url = f"http://{host}:{ports.metrics}/metrics"

    def _read_published_ports(self, inside: Ports) -> None:
        """Host ports the engine published; an engine that silently published none (no
        bridge network) is an error, not a timeout against ports nobody listens on."""
        assert self._container is not None
        self._container.reload()
        published = self._container.attrs.get("NetworkSettings", {}).get("Ports") or {}
        found: list[int] = []
        for port in (inside.http, inside.grpc, inside.metrics):
            bindings = published.get(f"{port}/tcp") or []
            host_ports = [int(b["HostPort"]) for b in bindings if b.get("HostPort")]
            if not host_ports:
                raise ServerStartError(
                    f"the Docker engine did not publish port {port} of container "
                    f"{self._container.name} on 127.0.0.1 (NetworkSettings.Ports = "
                    f"{json.dumps(published)}). An engine without a bridge network "
                    f"(dockerd --bridge=none) drops published ports silently; use "
                    f"--triton-network=host there."
                )
            found.append(host_ports[0])
        self._set_urls(Ports(*found))

    def _start_error(self, explanation: str) -> str:
        low = explanation.lower()
        if "could not select device driver" in low or "nvidia-container" in low:
            spec = self.gpus.spec if self.gpus else "?"
            return (
                f"the Docker engine at {engine_location()} cannot give the container GPUs "
                f"(--gpus={spec}): {explanation}. Install the NVIDIA Container Toolkit "
                f"(nvidia-container-toolkit), register it with Docker (nvidia-ctk runtime "
                f"configure --runtime=docker) and restart dockerd; or drop --gpus to run "
                f"without GPU."
            )
        if "rlimit" in low:
            return (
                f"the Docker engine may not set the container's ulimits (memlock="
                f"{_limit_text(self.ulimit_memlock)}, stack={_limit_text(self.ulimit_stack)}): "
                f"{explanation}. The engine lacks CAP_SYS_RESOURCE (rootless, or inside an "
                f"unprivileged container) or its own hard limit is lower. Lower the limit or "
                f"leave the engine's default: --triton-ulimit-memlock=off (and, if named, "
                f"--triton-ulimit-stack=off)."
            )
        if "port is already allocated" in low or "address already in use" in low:
            return (
                f"a port for the container is taken on this host: {explanation}. Stop what "
                f"holds it, or use --triton-network=host, where the plugin picks free ports."
            )
        return f"Docker could not start the container from {self.image}: {explanation}"

    def _visible_gpus(self) -> tuple[str, ...] | None:
        """The UUIDs of the GPUs the container got (asked from nvidia-smi inside it), so
        that NVML on the host measures those and no others."""
        if self.gpus is None or self._container is None:
            return None
        import docker.errors

        try:
            code, out = self._container.exec_run(
                ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"]
            )
        except docker.errors.DockerException:
            return self.gpus.fallback_devices()
        uuids = tuple(ln.strip() for ln in out.decode(errors="replace").splitlines() if ln.strip())
        if code == 0 and uuids and all(u.startswith(("GPU-", "MIG-")) for u in uuids):
            return uuids
        return self.gpus.fallback_devices()

    # -- health ------------------------------------------------------------------------------

    def _alive_or_raise(self) -> None:
        import docker.errors

        container = self._container
        if container is None:
            raise ServerStartError("the container was not started")
        try:
            container.reload()
        except docker.errors.NotFound:
            raise ServerDiedError(
                f"container {container.name} is gone: removed from the engine by someone "
                f"else ({self.describe()})."
            ) from None
        except docker.errors.DockerException as e:
            raise ServerDiedError(
                f"the Docker engine stopped answering about container {container.name}: {e}"
            ) from None
        state = container.attrs.get("State", {})
        if state.get("Status") in ("running", "restarting", "paused"):
            return
        code = int(state.get("ExitCode", -1))
        # An exit status above 128 from tini is 128 + the signal that killed the server.
        returncode = -(code - 128) if 128 < code < 128 + 65 else code
        detail = f" in container {container.name}"
        if state.get("OOMKilled"):
            detail += " (OOMKilled: out of memory)"
        if state.get("Error"):
            detail += f" (engine: {state['Error']})"
        raise self._died(returncode, detail)

    def check_alive(self) -> None:
        """Raise :class:`ServerDiedError` with exit status and log when the container ended."""
        self._alive_or_raise()

    def _sync_log(self) -> None:
        """Copy the container's log (stdout and stderr) to ``log_path``."""
        container, path = self._container, self.log_path
        if container is None or path is None:
            return
        import docker.errors

        try:
            data = container.logs(stdout=True, stderr=True)
        except docker.errors.DockerException:
            return  # keep the last copy
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    # -- stop --------------------------------------------------------------------------------

    def _remove(self) -> None:
        """Stop (SIGTERM, SIGKILL after STOP_TIMEOUT_S) and remove the container; its log
        stays in ``log_path``."""
        import docker.errors

        container = self._container
        if container is None:
            return
        with contextlib.suppress(docker.errors.DockerException):
            container.stop(timeout=STOP_TIMEOUT_S)
        self._sync_log()
        self._container = None
        _running.discard(self)
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)

    def stop(self) -> None:
        """Remove the container; safe to call twice and after a failed start.

        The log survives only when it was written to a caller's ``log_dir``.
        """
        try:
            self._remove()
        finally:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None
            if self._tempdir is not None:
                import shutil

                shutil.rmtree(self._tempdir, ignore_errors=True)
                self._tempdir = None


def _limit_text(value: int | None) -> str:
    if value is None:
        return OFF
    return "unlimited" if value == -1 else str(value)


def ulimit_value(value: int | str) -> int | None:
    """A parsed ``--triton-ulimit-*`` value as the launcher takes it (None: not set)."""
    return None if value == OFF else int(value)


@atexit.register
def _stop_all() -> None:
    """Last line of defence when the interpreter exits without the fixtures' teardown."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
