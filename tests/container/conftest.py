"""Fixtures of the container tests: the real Docker engine and the locally built CPU image.

The engine is the one of DOCKER_HOST (tests/conftest.py points it at the private engine of
docker/start-dockerd.sh when that runs), else the system socket. Without any engine the tests
skip, saying why; with TRITON_PERF_REQUIRE_DOCKER=1 (set by .ci/run) they fail instead, so
that CI never passes by skipping them. An engine without the image gets it built by
docker/build-cpu-image.sh (a failure there fails the tests: an engine that runs is no reason
to skip).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_triton_perf.errors import ServerStartError
from pytest_triton_perf.server.docker_engine import connect, engine_location, owner_labels
from tests.conftest import REPO

IMAGE = os.environ.get("TRITON_PERF_TEST_IMAGE", "triton-perf-cpu:2.51.0")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker-py client on a running engine that holds the test image."""
    try:
        client = connect()
    except ServerStartError as e:
        reason = (
            f"no Docker engine can run here ({e}). Start one with docker/start-dockerd.sh "
            f"(root, Debian's docker.io), as .ci/run does."
        )
        if os.environ.get("TRITON_PERF_REQUIRE_DOCKER"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    import docker.errors

    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        _build_image()
    yield client
    client.close()


def _build_image() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO / "docker" / "build-cpu-image.sh"), IMAGE],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"the engine at {engine_location()} runs but building {IMAGE} with "
            f"docker/build-cpu-image.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    print(f"built {IMAGE} in {time.monotonic() - started:.0f} s", file=sys.stderr)


@pytest.fixture(scope="session")
def memlock(docker_client: Any) -> str:
    """``unlimited`` where the engine may raise the memlock limit (a normal GPU runner),
    else ``off``: an engine without CAP_SYS_RESOURCE refuses ``memlock=-1`` at start."""
    import docker.errors
    from docker.types import Ulimit

    container = docker_client.containers.create(
        IMAGE,
        ["true"],
        labels=owner_labels(),
        network_mode="host",
        ulimits=[Ulimit(name="memlock", soft=-1, hard=-1)],
    )
    try:
        container.start()
    except docker.errors.APIError as e:
        if "rlimit" in str(e.explanation):
            return "off"
        raise
    finally:
        container.remove(force=True)
    return "unlimited"


@pytest.fixture(scope="session")
def container_options(memlock: str) -> list[str]:
    """Options that make an inner pytest run start its Triton in a container here."""
    return [f"--triton-image={IMAGE}", "--triton-pull=never", f"--triton-ulimit-memlock={memlock}"]
