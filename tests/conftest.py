"""Shared fixtures of the suite: one real embedded Triton server per session, and a check
that the suite leaves no server process or temporary directory behind."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTritonServer]:
    """The suite's embedded server: the example models plus the test-only models."""
    with LocalTritonServer(
        [EXAMPLE_MODELS, TEST_MODELS], log_dir=tmp_path_factory.mktemp("server-log")
    ) as s:
        yield s


def server_processes() -> list[psutil.Process]:
    """Triton processes descending from this pytest process."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.name() in SERVER_PROCESS_NAMES:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def _triton_tempdirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")}


_TEMPDIRS = pytest.StashKey[set[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_TEMPDIRS] = _triton_tempdirs()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a server process or a temporary directory outlived the tests."""
    leaks = [f"{p.name()} (pid {p.pid})" for p in server_processes()]
    before = session.config.stash.get(_TEMPDIRS, set())
    leaks += [f"temporary directory {d}" for d in sorted(_triton_tempdirs() - before)]
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEAK CHECK FAILED: left behind: {', '.join(leaks)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
