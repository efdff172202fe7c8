"""Shared fixtures of the suite: one real embedded Triton server per session, and a check
that the suite leaves no server process, temporary directory or container behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_triton_perf.errors import ServerDiedError
from pytest_triton_perf.server.docker_engine import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PARENT_PID,
    LABEL_OWNER_PID,
    LABEL_SESSION,
)
from pytest_triton_perf.server.local import WORKDIR_PREFIX, LocalTritonServer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_MODELS = REPO / "example_repo" / "models"
TEST_MODELS = REPO / "tests" / "models"
BROKEN_MODELS = REPO / "tests" / "broken_models"

# Short measurement windows for the suite's inner pytest runs.
FAST_OPTIONS = (
    "--triton-perf-warmup-s=0.2",
    "--triton-perf-windows=2",
    "--triton-perf-window-s=0.3",
)
SERVER_PROCESS_NAMES = ("tritonserver", "triton_python_backend_stub")
CONTAINER_TEMPDIR_PREFIX = "triton-perf-container-"
# The private engine of docker/start-dockerd.sh (what .ci/run starts): found without
# DOCKER_HOST, so `.venv/bin/pytest` alone runs the container tests once it is up.
PRIVATE_DOCKER_SOCKET = Path("/tmp/triton-perf-docker/docker.sock")


_SUITE_SERVER = pytest.StashKey[LocalTritonServer]()


@pytest.fixture(scope="session")
def server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTritonServer]:
    """The suite's embedded server: the example models plus the test-only models."""
    with LocalTritonServer(
        [EXAMPLE_MODELS, TEST_MODELS], log_dir=tmp_path_factory.mktemp("server-log")
    ) as s:
        pytestconfig.stash[_SUITE_SERVER] = s
        try:
            yield s
        finally:
            del pytestconfig.stash[_SUITE_SERVER]


@pytest.fixture(autouse=True)
def _server_survives(pytestconfig: pytest.Config) -> Iterator[None]:
    """After every test, a check that the shared server still runs. A crash (Triton once
    died of signal 11 when a test closed connections with requests in flight) fails the
    test it happened in, with the exit status and the log's tail, and the server is started
    again in place (new ports, the same object), so the worker's later tests do not fail
    with it."""
    yield
    s = pytestconfig.stash.get(_SUITE_SERVER, None)
    if s is None:
        return
    try:
        s.check_alive()
    except ServerDiedError as e:
        s.stop()
        s.start()
        pytest.fail(
            f"the suite's shared Triton server died during this test; it was started again "
            f"for the tests after it. {e}",
            pytrace=False,
        )


def running_servers(temp_root: Path | None = None) -> list[str]:
    """Running Triton processes (``"name (pid N)"``) descending from this pytest process, and
    orphans (reparented to init) that run from this run's private temporary directory.

    Zombies are left out: they have ended, and only their parent can clear them. Under
    pytest as a container's main process (pid 1) every orphan of a killed inner run becomes
    a child of this process and stays a zombie until reaped (see :func:`ended`).
    """
    found: dict[int, str] = {}
    for proc in psutil.Process().children(recursive=True):
        # Any of them may end between the listing and the questions.
        with contextlib.suppress(psutil.NoSuchProcess):
            name = proc.name()
            if name in SERVER_PROCESS_NAMES and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = name
    if temp_root is not None:
        for proc in psutil.process_iter(["name", "cmdline", "status"]):
            ours = str(temp_root) in " ".join(proc.info["cmdline"] or [])
            running = proc.info["status"] not in (psutil.STATUS_ZOMBIE, None)
            if proc.info["name"] in SERVER_PROCESS_NAMES and ours and running:
                found[proc.pid] = proc.info["name"]
    return [f"{name} (pid {pid})" for pid, name in found.items()]


def ended(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` ends within ``timeout`` seconds.

    Ended means gone or a zombie (ended, not yet reaped by its parent); either may turn into
    the other at any moment, so each look tolerates the process vanishing. A zombie that is
    a child of this process was adopted (this pytest is a container's pid 1, or a
    subreaper): nothing else will reap it, so it is reaped here. Never call this for a child
    started here with ``subprocess``: its ``Popen`` would lose the exit status.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                if proc.ppid() == os.getpid():
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


_TEMP_ROOT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Give this run (and every process it starts) a private temporary directory, so the
    leak check sees only what this run left, not other runs on the machine."""
    info = getattr(config, "workerinput", None)
    if info is not None:
        # An xdist worker: a directory of its own inside the controller's, so that one
        # worker's tests never clean up (or count) what another's left on purpose.
        own = Path(os.environ["TMPDIR"]) / str(info["workerid"])
        own.mkdir(exist_ok=True)
        os.environ["TMPDIR"] = str(own)
        tempfile.tempdir = None
        return
    # pytest's own tmp_path directories stay where they always are.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="triton-perf-suite-"))
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None  # forget the cached value: re-read TMPDIR
    config.stash[_TEMP_ROOT] = root
    if not os.environ.get("DOCKER_HOST") and PRIVATE_DOCKER_SOCKET.is_socket():
        # Inner pytest runs and the launcher (docker-py reads DOCKER_HOST) inherit it.
        os.environ["DOCKER_HOST"] = f"unix://{PRIVATE_DOCKER_SOCKET}"


def docker_engine() -> Any:
    """A docker-py client on the engine of DOCKER_HOST (or the default socket), or None."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return None
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return None
    return client


def leftover_containers() -> list[str]:
    """Containers of this run still on the engine: started by this process or by the inner
    pytest runs it spawned (their owner's parent is this process)."""
    client = docker_engine()
    if client is None:
        return []
    me, host = str(os.getpid()), socket.gethostname()
    try:
        found = client.containers.list(all=True, filters={"label": LABEL_SESSION})
        return [
            f"container {c.name} ({c.status})"
            for c in found
            if c.labels.get(LABEL_OWNER_HOST) == host
            and me in (c.labels.get(LABEL_OWNER_PID), c.labels.get(LABEL_OWNER_PARENT_PID))
        ]
    finally:
        client.close()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a server process or a temporary directory outlived the tests.

    Checked once, by the process that made the run's temporary directory: under xdist the
    controller, after every worker has ended (a worker that finishes first would see the
    others' live servers)."""
    if hasattr(session.config, "workerinput"):
        return
    root = session.config.stash.get(_TEMP_ROOT, None)
    leaks = running_servers(root)
    if root is not None:
        for prefix in (WORKDIR_PREFIX, CONTAINER_TEMPDIR_PREFIX):
            # The run's own directory, and each xdist worker's inside it.
            for found in (*root.glob(f"{prefix}*"), *root.glob(f"*/{prefix}*")):
                leaks.append(f"temporary directory {found.name}")
    leaks += leftover_containers()
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEAK CHECK FAILED: left behind: {', '.join(leaks)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: The suite's longest files (minutes each on two cores), longest first. Two xdist workers
#: take files in collection order (``--dist=loadfile``): started first, they run beside the
#: many short files instead of after them, so that neither worker is left alone at the end
#: with a long file (longest processing time first, Graham 1969). Measured with
#: ``--durations`` in ``.ci/run``; a file left out of the list only runs later.
#: Ahead of them, the stale-container test (seconds): the sweep of a killed run's
#: containers is machine-wide, so its inner session must sweep before any other session of
#: the suite starts a container (the rehearsal beside it builds images first).
LONGEST_FIRST = (
    "tests/container/test_plugin_container.py",
    "tests/container/test_workflow_rehearsal.py",
    "tests/example/test_example_gate.py",
    "tests/test_gating.py",
    "tests/test_capacity_gate.py",
    "tests/test_pipelines.py",
    "tests/container/test_workflow_rehearsal_single.py",
    "tests/streaming/test_stream_gate.py",
    "tests/search/test_search.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of :data:`LONGEST_FIRST` first, in that order; the rest as collected (a
    stable sort: the tests of a file keep their order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(rank))

    items.sort(key=key)
