"""The container launcher: ``tritonserver`` in a Docker container (``--triton-image``).

The way teams run the gate on a GPU runner::

    pytest --triton-image=nvcr.io/nvidia/tritonserver:24.08-py3 --gpus=all

Docker SDK (docker-py), imported lazily. The container runs the same command line as the
local launcher (:func:`~pytest_triton_perf.server.command.triton_args`) over the model
repositories mounted read-only, and readiness, identity, fail-fast and log excerpts come from
:class:`~pytest_triton_perf.server.base.TritonServer`: the container's log is copied to
``log_path`` whenever it is read.

Lifecycle: the image is got by policy and stale containers of killed sessions are removed
(:mod:`~pytest_triton_perf.server.docker_engine`); the container is created, then started,
and removed when the start fails (docker-py's ``containers.run`` leaves it behind in
``created``). The option values it takes are parsed in
:mod:`pytest_triton_perf.options.container`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.errors import ServerDiedError, ServerStartError
from pytest_triton_perf.options import STARTUP_TIMEOUT_S
from pytest_triton_perf.options.container import (
    IPC_MODE,
    NETWORK_MODE,
    PULL_POLICY,
    SHM_SIZE,
    ULIMIT_MEMLOCK,
    ULIMIT_STACK,
    GpuRequest,
    limit_text,
    parse_image,
    parse_ipc,
    parse_network,
    parse_pull,
)
from pytest_triton_perf.server.base import TritonServer, checked_repositories
from pytest_triton_perf.server.command import (
    EXIT_TIMEOUT_S,
    Ports,
    new_server_id,
    triton_args,
)
from pytest_triton_perf.server.docker_engine import (
    Notify,
    connect,
    engine_location,
    ensure_image,
    owner_labels,
    remove_stale_containers,
    stderr_line,
)

if TYPE_CHECKING:
    import docker.errors
    from docker.models.containers import Container

    import docker

# Triton waits EXIT_TIMEOUT_S for in-flight requests on SIGTERM; Docker kills after this.
STOP_TIMEOUT_S = EXIT_TIMEOUT_S + 10
PORT_ATTEMPTS = 3
MODEL_MOUNT = "/models"
#: Where the container sees the variant repository (TritonServer.variant_repository).
VARIANT_MOUNT = "/triton-perf-variants"
# Triton's default ports inside the container's own network namespace (``ports`` mode).
CONTAINER_PORTS = Ports(http=8000, grpc=8001, metrics=8002)

_running: weakref.WeakSet[ContainerTritonServer] = weakref.WeakSet()


def device_request(gpus: GpuRequest) -> Any:
    """The docker-py ``DeviceRequest`` of a GPU request (``count`` or ``device_ids``,
    never both)."""
    from docker.types import DeviceRequest

    if gpus.device_ids:
        return DeviceRequest(device_ids=list(gpus.device_ids), capabilities=[["gpu"]])
    return DeviceRequest(count=gpus.count, capabilities=[["gpu"]])


# -- the launcher ------------------------------------------------------------------------------


class ContainerTritonServer(TritonServer):
    """Triton in a Docker container over read-only model repositories.

    ``network="host"``: the container shares the host's network and Triton binds free
    loopback ports (as the local launcher). ``network="ports"``: Triton listens on its
    default ports inside the container, published on 127.0.0.1 on ports the engine picks;
    the mapping is checked after the start.

    ``ipc="host"`` shares the host's IPC namespace (``docker run --ipc=host``): Triton then
    maps this host's ``/dev/shm`` (and CUDA IPC handles), which ``measure(shared_memory=...)``
    needs; ``shm_size`` does not apply, the host's ``/dev/shm`` is used. ``"private"`` keeps
    Docker's default: the container's own namespace, with a ``/dev/shm`` of ``shm_size``.

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
        pull: str = PULL_POLICY,
        network: str = NETWORK_MODE,
        shm_size: str = SHM_SIZE,
        ipc: str = IPC_MODE,
        ulimit_memlock: int | None = ULIMIT_MEMLOCK,
        ulimit_stack: int | None = ULIMIT_STACK,
        docker_kwargs: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        notify: Notify | None = None,
    ):
        super().__init__(models=models, startup_timeout_s=startup_timeout_s)
        self.model_repositories = checked_repositories(model_repositories)
        self.image = parse_image("image", image)
        self.gpus = gpus
        self.pull = parse_pull("pull", pull)
        self.network = parse_network("network", network)
        self.shm_size = shm_size
        self.ipc = parse_ipc("ipc", ipc)
        self.ulimit_memlock = ulimit_memlock
        self.ulimit_stack = ulimit_stack
        self.docker_kwargs = dict(docker_kwargs or {})
        self.extra_args = tuple(extra_args)
        self.notify: Notify = notify or stderr_line
        self._log_dir = Path(log_dir) if log_dir else None
        self._client: docker.DockerClient | None = None
        self._container: Container | None = None
        self._tempdir: Path | None = None

    @property
    def container_name(self) -> str | None:
        """The running container's name (its ``--id`` as well), None when there is none."""
        return self._container.name if self._container is not None else None

    def shared_memory_refusal(self, kind: str) -> str | None:
        """Why this server cannot map this host's shared-memory regions of ``kind``: a
        container with its own IPC namespace has its own /dev/shm. None with ``ipc="host"``."""
        if self.ipc == "host":
            return None
        return (
            f"the server runs in container {self.container_name or '?'} with its own IPC"
            f" namespace and /dev/shm (--triton-ipc={self.ipc}), where this host's regions do"
            f" not exist: start it with --triton-ipc=host (docker run --ipc=host)"
        )

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
            ensure_image(self._client, self.image, self.pull, self.notify)
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
        variants = self._variants_dir()
        command = [
            "tritonserver",
            *triton_args(
                model_repositories=[*mounts.values(), VARIANT_MOUNT],
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
            "volumes": {
                **{str(src): {"bind": dst, "mode": "ro"} for src, dst in mounts.items()},
                str(variants): {"bind": VARIANT_MOUNT, "mode": "ro"},
            },
            "ulimits": ulimits,
            # tini reaps the Python backend's stub processes and forwards SIGTERM.
            "init": True,
            **net,
        }
        if self.ipc == "host":
            # The host's /dev/shm: the size is the host's, Docker takes no shm_size here.
            kwargs["ipc_mode"] = "host"
        else:
            kwargs["shm_size"] = self.shm_size
        if self.gpus is not None:
            kwargs["device_requests"] = [device_request(self.gpus)]
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

    def _variants_dir(self) -> Path:
        """The host side of the variant repository (see TritonServer.variant_repository),
        in this launcher's temporary directory, mounted read-only at VARIANT_MOUNT."""
        import tempfile

        if self._tempdir is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="triton-perf-container-"))
        variants = self._tempdir / "variants"
        variants.mkdir(exist_ok=True)
        # The server in the container may run as another user: it only reads.
        variants.chmod(0o755)
        self._tempdir.chmod(0o755)
        self.variant_repository = variants
        return variants

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
                f"{limit_text(self.ulimit_memlock)}, stack={limit_text(self.ulimit_stack)}): "
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
        """Stop (the models unloaded first, then SIGTERM, SIGKILL after STOP_TIMEOUT_S) and
        remove the container; its log stays in ``log_path``."""
        import docker.errors

        container = self._container
        if container is None:
            return
        self.unload_before_stop()
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
                self.variant_repository = None


@atexit.register
def _stop_all() -> None:
    """Last line of defence when the interpreter exits without the fixtures' teardown."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
