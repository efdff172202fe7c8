"""The Docker engine as the container launcher uses it: connecting, labelling containers
with their owner, removing those of killed sessions, and getting the image.

Docker SDK (docker-py), imported lazily: plain option parsing and ``pytest --help`` never
pay for it. Every container of this package carries labels naming the session and the
owning pytest process, so that the next start removes those whose owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psutil

from pytest_triton_perf.errors import ServerStartError

if TYPE_CHECKING:
    import docker

LABEL_NS = "pytest-triton-perf"
LABEL_SESSION = f"{LABEL_NS}.session"
LABEL_OWNER_PID = f"{LABEL_NS}.owner-pid"
LABEL_OWNER_PARENT_PID = f"{LABEL_NS}.owner-parent-pid"
LABEL_OWNER_HOST = f"{LABEL_NS}.owner-host"
LABEL_OWNER_START = f"{LABEL_NS}.owner-start"
# One id per Python process: every container this process starts carries it.
SESSION_ID = uuid.uuid4().hex[:16]
PULL_PROGRESS_EVERY_S = 5.0

Notify = Callable[[str], None]


def stderr_line(line: str) -> None:
    """The default ``notify``: one line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


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


def remove_stale_containers(client: docker.DockerClient, notify: Notify = stderr_line) -> list[str]:
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


def ensure_image(
    client: docker.DockerClient, image: str, pull: str, notify: Notify = stderr_line
) -> None:
    """Make ``image`` available on the engine by the ``--triton-pull`` policy: ``missing``
    pulls when it is absent, ``always`` pulls, ``never`` refuses an absent image."""
    import docker.errors

    if pull != "always":
        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            if pull == "never":
                raise ServerStartError(
                    f"image {image} is not on the Docker engine ({engine_location()}) "
                    f"and --triton-pull=never forbids pulling it. Pull or build it first "
                    f"(docker pull {image}), check the name and tag, or use "
                    f"--triton-pull=missing."
                ) from None
        except docker.errors.DockerException as e:
            raise ServerStartError(f"cannot inspect image {image}: {e}") from None
    pull_image(client, image, notify)


def pull_image(client: docker.DockerClient, image: str, notify: Notify = stderr_line) -> None:
    """Pull with a progress line every few seconds (a Triton image is 10+ GB)."""
    import docker.errors

    repo, tag = split_reference(image)
    notify(f"pytest-triton-perf: pulling {image} ...")
    started = last = time.monotonic()
    layers: dict[str, dict[str, Any]] = {}
    try:
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise ServerStartError(_pull_error(image, str(event["error"])))
            if "id" in event and "status" in event:
                layers[str(event["id"])] = event
            now = time.monotonic()
            if layers and now - last >= PULL_PROGRESS_EVERY_S:
                notify(f"pytest-triton-perf: {pull_progress(image, layers)}")
                last = now
    except docker.errors.DockerException as e:
        explanation = getattr(e, "explanation", None) or str(e)
        raise ServerStartError(_pull_error(image, str(explanation))) from None
    notify(f"pytest-triton-perf: pulled {image} in {time.monotonic() - started:.0f} s")


def _pull_error(image: str, reason: str) -> str:
    hint = "check the name and tag"
    if "unauthorized" in reason.lower() or "denied" in reason.lower():
        registry = image.split("/", 1)[0] if "/" in image else "docker.io"
        hint = f"log in to the registry first (docker login {registry}), and check the name"
    return (
        f"the Docker engine ({engine_location()}) could not pull image {image}: "
        f"{reason}. {hint[0].upper() + hint[1:]}; or pull or build it yourself and use "
        f"--triton-pull=never."
    )
