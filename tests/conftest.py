"""Shared fixtures of the suite: one real embedded Triton server per session, and a check
that the suite leaves no server process or temporary directory behind."""

from __future__ import annotations

import os
import shutil
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


_TEMP_ROOT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Give this run (and every process it starts) a private temporary directory, so the
    leak check sees only what this run left, not other runs on the machine."""
    if hasattr(config, "workerinput"):
        return  # xdist workers inherit the controller's TMPDIR
    # pytest's own tmp_path directories stay where they always are.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="triton-perf-suite-"))
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None  # forget the cached value: re-read TMPDIR
    config.stash[_TEMP_ROOT] = root


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a server process or a temporary directory outlived the tests."""
    leaks = [f"{p.name()} (pid {p.pid})" for p in server_processes()]
    root = session.config.stash.get(_TEMP_ROOT, None)
    if root is not None:
        leaks += [f"temporary directory {d.name}" for d in root.glob(f"{WORKDIR_PREFIX}*")]
        shutil.rmtree(root, ignore_errors=True)
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEAK CHECK FAILED: left behind: {', '.join(leaks)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
