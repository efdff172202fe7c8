"""Faults a CI gate meets, provoked for real: Ctrl-C and SIGTERM during load, pytest itself
SIGKILLed, the server killed during a measurement, a crashed xdist worker."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from pytest_triton_perf.server.local import WORKDIR_PREFIX, remove_leftovers
from tests.conftest import EXAMPLE_MODELS, ended

CONFTEST = """
import json, os, pathlib, threading, time
import pytest

@pytest.fixture(autouse=True)
def _announce(triton_server):
    # Tell the outer test which server runs, then let the measurement start.
    pathlib.Path("server.json").write_text(json.dumps({"pid": triton_server.pid}))
    yield
"""

LONG_MEASUREMENT = """
def test_long(triton_perf):
    triton_perf.measure("sleepy", warmup_s=0.2, windows=30, window_s=2)
"""


def project(tmp_path: Path, tests: str, conftest: str = CONFTEST) -> Path:
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\ntriton_model_repository = {EXAMPLE_MODELS}\ntriton_models = sleepy\n"
    )
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_inner.py").write_text(tests)
    return tmp_path


def start(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_server(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    marker = path / "server.json"
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the inner run never started its server"
        time.sleep(0.1)
    time.sleep(1.5)  # inside the measurement now
    return int(json.loads(marker.read_text())["pid"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_during_load_stops_everything(tmp_path: Path, sig: signal.Signals) -> None:
    path = project(tmp_path, LONG_MEASUREMENT)
    proc = start(path, "--triton-perf-save")
    pid = wait_for_server(path, proc)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert took < 30, f"stopping took {took:.1f} s"
    assert "baselines were NOT updated: the session was interrupted" in out
    assert ended(pid, 5), "the server outlived the interrupted session"
    assert not (path / ".triton-perf").exists()


def test_sigkilled_pytest_takes_its_server_along(tmp_path: Path) -> None:
    path = project(tmp_path, LONG_MEASUREMENT)
    proc = start(path)
    pid = wait_for_server(path, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert ended(pid, 10), "the server outlived a SIGKILLed pytest"
    # Its work directory is the leftover: the next start removes it and says so.
    leftover = [d for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{proc.pid}-*")]
    assert len(leftover) == 1
    stubs = [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "triton_python_backend_stub"
        and str(leftover[0]) in " ".join(p.info["cmdline"] or [])
    ]
    said = remove_leftovers()
    assert f"triton-perf: removed {leftover[0]}, left by an earlier run that was killed" in said
    assert not leftover[0].exists()
    # Orphaned stubs of the killed server are killed, unless they noticed and left first
    # (either may happen at any moment: test_orphans_of_a_gone_owner_are_removed covers
    # the killing without that race).
    for line in said:
        if "backend stub of an earlier run" in line:
            assert int(line.rsplit("pid ", 1)[1].rstrip(")")) in stubs, line
    for stub in stubs:
        assert ended(stub, 5), f"backend stub {stub} outlived its SIGKILLed server"


# Starts its arguments in a session of their own and exits without waiting: what it started
# is orphaned, as a server is when its pytest is SIGKILLed.
ORPHAN_STARTER = """
import subprocess, sys
out = subprocess.DEVNULL  # not our stdout: the caller reads it to its end
print(subprocess.Popen(sys.argv[1:], start_new_session=True, stdout=out, stderr=out).pid)
"""


def orphaned_stand_in(name: str, owner: int) -> tuple[int, Path]:
    """A stand-in for a Triton process of ours, orphaned: a sleeping Python under ``name``,
    run from a work directory of owner ``owner`` (cwd and executable there, as a server's
    and a backend stub's are). Returns its pid and the work directory."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{owner}-"))
    exe = workdir / "backends" / name
    exe.parent.mkdir()
    exe.symlink_to(sys.executable)  # the process is named after the link
    args = [str(exe), "-I", "-S", "-c", "import time; time.sleep(300)"]
    if name == "tritonserver":
        args.append("--id=triton-perf-stand-in")
    starter = subprocess.run(
        [sys.executable, "-c", ORPHAN_STARTER, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(starter.stdout), workdir


def test_orphans_of_a_gone_owner_are_removed_those_of_a_live_one_never() -> None:
    """Whose a Triton process is, is told by its work directory's owner, not by its parent:
    an orphan's parent is init or a subreaper whoever owned it, and under pytest as a
    container's main process (pid 1) every server of the live session has parent 1."""
    exited = subprocess.Popen(["true"])
    exited.wait()
    procs = {
        (name, owner): orphaned_stand_in(name, pid)
        for name in ("tritonserver", "triton_python_backend_stub")
        for owner, pid in (("gone", exited.pid), ("live", os.getpid()))
    }
    try:
        said = remove_leftovers()
        for (name, owner), (pid, workdir) in procs.items():
            what = "server" if name == "tritonserver" else "Python backend stub"
            line = f"triton-perf: killed a leftover {what} of an earlier run (pid {pid})"
            if owner == "gone":
                assert line in said
                assert ended(pid, 10), f"{name} of a gone owner still runs"
                assert not workdir.exists()
            else:
                assert line not in said
                assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                assert workdir.exists()
    finally:
        for pid, workdir in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            ended(pid, 10)
            shutil.rmtree(workdir, ignore_errors=True)


def test_processes_of_another_pid_namespace_are_never_judged() -> None:
    """A container's processes are visible from the host, but the pid in their work
    directory's name is one of the container's: here it may name nobody."""
    exited = subprocess.Popen(["true"])
    exited.wait()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{exited.pid}-"))
    exe = workdir / "tritonserver"
    exe.symlink_to(sys.executable)
    sleeper = [str(exe), "-I", "-S", "-c", "import time; time.sleep(300)", "--id=triton-perf-x"]
    unshare, setsid = shutil.which("unshare"), shutil.which("setsid")
    if unshare is None or setsid is None:
        pytest.skip("no unshare and setsid (util-linux) to start a pid namespace")
    # setsid: a session and group of its own, as a server has (leftovers are killed by group).
    outer = subprocess.Popen(
        [unshare, "--pid", "--fork", "--kill-child", setsid, *sleeper], cwd=workdir
    )
    try:
        deadline = time.monotonic() + 10
        inside: list[psutil.Process] = []
        while not inside and outer.poll() is None and time.monotonic() < deadline:
            inside = [p for p in psutil.Process(outer.pid).children() if p.name() == "tritonserver"]
            time.sleep(0.05)
        if not inside:
            pytest.skip(f"unshare --pid is not permitted here (exit {outer.poll()})")
        said = remove_leftovers()
        assert not [line for line in said if f"(pid {inside[0].pid})" in line]
        assert inside[0].status() != psutil.STATUS_ZOMBIE
    finally:
        outer.kill()
        outer.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


SERVER_KILLED = """
import os, signal, threading

def test_server_killed_during_measurement(triton_perf, triton_server):
    threading.Timer(1.0, os.kill, (triton_server.pid, signal.SIGKILL)).start()
    triton_perf.measure("sleepy", warmup_s=0.2, windows=10, window_s=1)

def test_later_test_fails_fast(triton_perf):
    triton_perf.measure("sleepy")
"""


def test_server_killed_during_measurement(tmp_path: Path) -> None:
    path = project(tmp_path, SERVER_KILLED, conftest="")
    started = time.monotonic()
    proc = start(path, "--triton-perf-save")
    out, _ = proc.communicate(timeout=120)
    assert time.monotonic() - started < 60
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert "Triton was killed by signal 9" in out
    assert "server log tail" in out
    assert "the session's Triton server is gone" in out
    assert "1 failed, 1 error" in out or "2 failed" in out
    assert not list((path / ".triton-perf").glob("*/*__*.json"))


CRASH = """
import os

def test_ok(triton_perf):
    triton_perf.measure("sleepy")

def test_crash(triton_perf):
    triton_perf.measure("sleepy")
    os._exit(3)
"""


def test_xdist_worker_crash_leaves_the_baseline_untouched(tmp_path: Path) -> None:
    path = project(tmp_path, CRASH, conftest="")
    proc = start(
        path,
        "-n",
        "2",
        "--triton-perf-save",
        "--triton-perf-warmup-s=0.2",
        "--triton-perf-window-s=0.2",
        "--triton-perf-compare-windows=3",
    )
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert "1 test(s) crashed with their worker (test_inner.py::test_crash)" in out
    saved = sorted(p.name for p in (path / ".triton-perf").glob("*/*__*.json"))
    assert saved == ["test_inner.py_test_ok__sleepy_conc=1_batch=1_grpc.json"]
    assert any("left by an earlier run" in line for line in remove_leftovers())


def test_previous_signal_handlers_are_restored_after_the_session(
    pytester: pytest.Pytester,
) -> None:
    def mine(signum: int, frame: object) -> None:  # pragma: no cover - never delivered
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        pytester.makepyfile(
            """
            import signal
            def test_inside():
                handler = signal.getsignal(signal.SIGTERM)
                assert getattr(handler, "__name__", "") == "on_sigterm"
            """
        )
        pytester.runpytest_inprocess().assert_outcomes(passed=1)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
