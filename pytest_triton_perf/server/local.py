"""The local launcher: a ``tritonserver`` process on this machine (the embedded default).

The binary is found in this order: an explicit path, ``tritonserver`` on PATH (as inside an
NGC container), the binary shipped by the ``nvidia-pytriton`` wheel. For the shipped binary
the launcher prepares a private backend directory holding the Python backend and the stub
that matches the running interpreter, sets the library path, and gives the server an
environment whose PATH leads to this interpreter, so that model code imports the packages
of the current environment.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from pytest_triton_perf.errors import ServerDiedError, ServerStartError, StaleServerError
from pytest_triton_perf.options import STARTUP_TIMEOUT_S
from pytest_triton_perf.server.base import TritonServer, checked_repositories
from pytest_triton_perf.server.command import (
    EXIT_TIMEOUT_S,
    Ports,
    free_port,
    new_server_id,
    triton_args,
)
from pytest_triton_perf.server.http import ProbeError, get_json
from pytest_triton_perf.server.shm import check_room

__all__ = ["EXIT_TIMEOUT_S", "LocalTritonServer", "TritonInstall", "find_tritonserver", "free_port"]

STOP_GRACE_S = EXIT_TIMEOUT_S + 10
PDEATHSIG_SHIM = Path(__file__).with_name("_pdeathsig.py")
PORT_ATTEMPTS = 3
WORKDIR_PREFIX = "triton-perf-server-"
# Triton binds gRPC, HTTP, then metrics, and exits when a bind fails; it logs the metrics
# failure some 50 ms after HTTP answers. Wait this long for that line before trusting ports.
ENDPOINT_SETTLE_S = 1.0
# "failed to start HTTP service: Unavailable - Socket '127.0.0.1:8000' already in use"
_PORT_IN_USE = re.compile(
    r"failed to start (?P<service>\w+) service: .*Socket '(?P<address>[^']+)' already in use"
)

_running: weakref.WeakSet[LocalTritonServer] = weakref.WeakSet()


@dataclass(frozen=True)
class TritonInstall:
    """Where a ``tritonserver`` binary is and what it needs to run."""

    binary: Path
    origin: str  # "option", "PATH" or "nvidia-pytriton"
    library_dirs: tuple[Path, ...] = ()
    backend_dir: Path | None = None  # the wheel's backends (python backend inside)
    stub: Path | None = None  # the Python backend stub for this interpreter


def find_tritonserver(server_path: str | os.PathLike[str] | None = None) -> TritonInstall:
    """Locate ``tritonserver``: ``server_path``, then PATH, then the nvidia-pytriton wheel."""
    if server_path:
        path = Path(server_path).expanduser()
        if path.is_dir():
            path = path / "bin" / "tritonserver"
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerStartError(
                f"--triton-server-path={server_path!s}: no executable tritonserver there. "
                f"Give the path of the tritonserver binary or of a directory holding "
                f"bin/tritonserver."
            )
        return TritonInstall(binary=path, origin="option")
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(binary=Path(on_path), origin="PATH")
    try:
        import pytriton
    except ImportError:
        raise ServerStartError(
            "no tritonserver found: not given by --triton-server-path, not on PATH, and the "
            "nvidia-pytriton package (which ships one) is not installed. Install it with "
            "`pip install 'pytest-triton-perf[local]'`, or use --triton-url for a running "
            "server, or --triton-image for a container."
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.exists():
        raise ServerStartError(f"nvidia-pytriton is installed but {binary} is missing.")
    if not stub.exists():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir() if p.is_dir())
        raise ServerStartError(
            f"nvidia-pytriton ships no Python backend stub for Python {version} "
            f"(it has: {', '.join(have)}). Run pytest with one of those Python versions."
        )
    return TritonInstall(
        binary=binary,
        origin="nvidia-pytriton",
        library_dirs=(libs,) if libs.is_dir() else (),
        backend_dir=root / "backends",
        stub=stub,
    )


def _with_parent_death_signal(cmd: list[str]) -> list[str]:
    """``cmd`` started through the exec shim that asks Linux to SIGKILL it when this
    process dies (see :mod:`pytest_triton_perf.server._pdeathsig`)."""
    return [
        sys.executable,
        "-I",
        "-S",
        str(PDEATHSIG_SHIM),
        "--parent",
        str(os.getpid()),
        "--",
        *cmd,
    ]


class LocalTritonServer(TritonServer):
    """A ``tritonserver`` process started here, on free loopback ports.

    ``models=None`` loads every model of the repositories; models that fail to load are then
    recorded in ``failed_models`` (a test measuring one fails with the reason) while the
    others serve. An explicit ``models`` list must load completely or :meth:`start` raises.
    """

    kind = "local"

    def __init__(
        self,
        model_repositories: Sequence[str | os.PathLike[str]],
        *,
        models: Sequence[str] | None = None,
        server_path: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        host: str = "127.0.0.1",
        notify: Callable[[str], None] | None = None,
    ):
        super().__init__(models=models, startup_timeout_s=startup_timeout_s)
        self.model_repositories = checked_repositories(model_repositories)
        self.server_path = server_path
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.host = host
        self.notify = notify
        self._log_dir = Path(log_dir) if log_dir else None
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.install: TritonInstall | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc else None

    # -- start -----------------------------------------------------------------------------

    def start(self) -> LocalTritonServer:
        """Start the server; on any failure it is stopped again before the error propagates."""
        self.install = find_tritonserver(self.server_path)
        for line in [
            *remove_leftovers(),
            *check_room(self.model_repositories, self.requested_models, self.extra_args),
        ]:
            if self.notify is not None:
                self.notify(line)
        # The owner's pid in the name lets a later run tell a leftover from a live one.
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    self._launch()
                    self._wait_until_ready(alive=self._alive_or_raise, expected_id=self.server_id)
                    self._verify_endpoints()
                    return self
                except StaleServerError:
                    # Never retry past a server that is not ours: the user must know of it.
                    raise
                except (ServerStartError, ServerDiedError) as e:
                    # Another process took a port we picked (free_port cannot reserve it):
                    # Triton logs "Socket '127.0.0.1:P' already in use" and exits after
                    # loading its models. Pick new ports; name the port when out of tries.
                    clash = _PORT_IN_USE.search(self.log_tail(200))
                    self._terminate()
                    if clash is None:
                        raise e from None
                    if attempt == PORT_ATTEMPTS:
                        raise ServerStartError(
                            f"Triton could not bind its {clash['service']} port: "
                            f"{clash['address']} is already in use (the log says "
                            f"{clash.group(0)!r}). Tried {PORT_ATTEMPTS} sets of free "
                            f"ports; something on this machine keeps taking them."
                        ) from None
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        assert self.install is not None and self._workdir is not None
        self.server_id = new_server_id()
        ports = Ports.free(self.host)
        self.http_url = f"{self.host}:{ports.http}"
        self.grpc_url = f"{self.host}:{ports.grpc}"
        self.metrics_url = f"http://{self.host}:{ports.metrics}/metrics"
        log_dir = self._log_dir or self._workdir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.server_id}.log"
        backend_dir = self._prepare_backends()
        extra = [f"--backend-directory={backend_dir}"] if backend_dir is not None else []
        variants = self._workdir / "variants"
        variants.mkdir(exist_ok=True)
        self.variant_repository = variants
        cmd = [
            str(self.install.binary),
            *triton_args(
                model_repositories=[
                    *(str(repo) for repo in self.model_repositories),
                    str(variants),
                ],
                server_id=self.server_id,
                address=self.host,
                ports=ports,
                models=self.requested_models,
                extra_args=[*extra, *self.extra_args],
            ),
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                _with_parent_death_signal(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self._workdir,
                # Its own process group, so that stop() signals the backend stubs too.
                start_new_session=True,
            )
        _running.add(self)

    def _verify_endpoints(self) -> None:
        """After readiness: make sure every port is Triton's, and find out whether metrics
        answer (``metrics_url`` None when they do not, e.g. ``--allow-metrics=false``).

        HTTP answering does not prove the metrics port was free: Triton binds it last and
        exits if it cannot. A ``metrics_url`` pointing at a port Triton does not serve would
        make memory figures come from someone else, or fail as "unreadable".
        """
        deadline = time.monotonic() + ENDPOINT_SETTLE_S
        while time.monotonic() < deadline:
            text = "\n".join(self._log_lines()[-50:])
            if "Started Metrics Service" in text or _PORT_IN_USE.search(text):
                break
            time.sleep(0.05)
        time.sleep(0.1)  # the bind failure follows the "Started" line within milliseconds
        self._alive_or_raise()
        clash = _PORT_IN_USE.search(self.log_tail(50))
        if clash:
            raise ServerStartError(f"Triton logged {clash.group(0)!r}")
        if self.metrics_url is not None:
            try:
                status, _ = get_json(self.metrics_url, timeout=2.0)
            except ProbeError:
                status = 0
            if status != 200:
                self.metrics_url = None
            self._alive_or_raise()

    def _prepare_backends(self) -> Path | None:
        """A private backend directory with the stub for this interpreter (wheel only)."""
        inst = self.install
        if inst is None or inst.backend_dir is None or inst.stub is None:
            return None
        assert self._workdir is not None
        target = self._workdir / "backends"
        if not target.exists():
            self._check_stub_libraries(inst.stub)
            shutil.copytree(inst.backend_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy2(inst.stub, target / "python" / inst.stub.name)
        return target

    def _check_stub_libraries(self, stub: Path) -> None:
        """Fail before the start when the stub cannot load a library (usually libpython),
        instead of a model load error deep in the server log."""
        ldd = shutil.which("ldd")
        if ldd is None:
            return
        out = subprocess.run(
            [ldd, str(stub)], env=self._environment(), capture_output=True, text=True
        ).stdout
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
        if missing:
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            raise ServerStartError(
                f"the Python backend stub {stub} cannot load {', '.join(missing)}: it needs "
                f"the shared library of Python {version}. Install it (Debian, Ubuntu: "
                f"apt-get install libpython{version}; a Python built by pyenv: "
                f"PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {version}), or run "
                f"Triton in a container instead: --triton-image=nvcr.io/nvidia/tritonserver:"
                f"<tag>-py3."
            )

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The Python backend stub imports model dependencies from the python found on PATH:
        # lead it to this interpreter's environment.
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
        if sys.prefix != sys.base_prefix:
            env["VIRTUAL_ENV"] = sys.prefix
        if self.install and self.install.library_dirs:
            libs = [str(p) for p in self.install.library_dirs]
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")])
        env.update(self.extra_env)
        return env

    # -- health ----------------------------------------------------------------------------

    def _alive_or_raise(self) -> None:
        if self._proc is None:
            raise ServerStartError("the server was not started")
        code = self._proc.poll()
        if code is not None:
            raise self._died(code)

    def check_alive(self) -> None:
        """Raise :class:`ServerDiedError` with exit status and log tail if the process ended."""
        self._alive_or_raise()

    # -- stop ------------------------------------------------------------------------------

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.unload_before_stop()
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)
        # The group may hold backend stubs that outlived the server: kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _wait_group_gone(proc.pid, timeout_s=5.0)

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after a grace period, clean up.

        The log survives only when it was written to a caller's ``log_dir``.
        """
        self._terminate()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self.variant_repository = None


def _group_members(pgid: int) -> list[psutil.Process]:
    """Processes of process group ``pgid`` that have not exited (zombies excluded)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """Wait until every process of group ``pgid`` has exited. SIGKILL is delivered at
    once, but a backend stub takes a moment to tear down its shared memory and threads:
    without the wait, stop() could return while a stub of ours still runs (seen once in
    CI, a stub of a model killed in the middle of its initialize())."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        left = _group_members(pgid)
        if not left or time.monotonic() >= deadline:
            return
        for member in left:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                member.kill()
        psutil.wait_procs(left, timeout=0.2)


def _owner_alive(name: str) -> bool:
    """Whether the process that made ``triton-perf-server-<pid>-...`` still runs."""
    pid = name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
    return not pid.isdecimal() or psutil.pid_exists(int(pid))


def _in_this_pid_namespace(pid: int) -> bool:
    """Whether ``pid`` shares this process's pid namespace (True where there are none)."""
    try:
        mine = os.readlink("/proc/self/ns/pid")
    except OSError:
        return True
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == mine
    except OSError:
        return False  # not ours to look into, so not ours to judge


def _owner_gone(pid: int, cmdline: list[str], cwd: str | None) -> bool:
    """Whether process ``pid`` runs from a work directory of ours (the server runs in it,
    the stubs from its backend copy) whose owner is gone. Not its parent: a process whose
    owner still runs may have init for parent, e.g. under pytest as a container's pid 1.
    And only in this pid namespace: in a container's, the owner's pid means another
    process than here."""
    if not _in_this_pid_namespace(pid):
        return False
    for path in [*cmdline[:1], cwd or ""]:
        found = re.search(rf"/({re.escape(WORKDIR_PREFIX)}[^/]+)", path)
        if found:
            return not _owner_alive(found.group(1))
    return False


def remove_leftovers() -> list[str]:
    """Remove what a killed run left: servers and Python backend stubs of ours whose
    owner is gone (which happens only where the parent-death signal could not act, and to
    stubs whose server was SIGKILLed), and work directories whose owner is gone. Returns
    one line per thing removed, to be shown to the user."""
    said: list[str] = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if not _owner_gone(proc.pid, cmdline, proc.info["cwd"]):
                continue
            if proc.info["name"] == "tritonserver" and any(
                a.startswith("--id=triton-perf-") for a in cmdline
            ):
                os.killpg(proc.pid, signal.SIGKILL)
                said.append(
                    f"triton-perf: killed a leftover server of an earlier run (pid {proc.pid})"
                )
            elif proc.info["name"] == "triton_python_backend_stub":
                # A stub whose server was SIGKILLed (with pytest) does not always notice.
                proc.kill()
                said.append(
                    f"triton-perf: killed a leftover Python backend stub of an earlier run "
                    f"(pid {proc.pid})"
                )
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        if path.is_dir() and not _owner_alive(path.name):
            shutil.rmtree(path, ignore_errors=True)
            said.append(f"triton-perf: removed {path}, left by an earlier run that was killed")
    return said


@atexit.register
def _stop_all() -> None:
    """Last line of defence when the interpreter exits without the fixtures' teardown."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
