"""The local launcher against the real embedded tritonserver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_triton_perf.errors import ModelNotReadyError, ServerDiedError, ServerStartError
from pytest_triton_perf.server import _pdeathsig
from pytest_triton_perf.server.http import get_json
from pytest_triton_perf.server.local import LocalTritonServer, find_tritonserver
from tests.conftest import BROKEN_MODELS, EXAMPLE_MODELS


def test_server_answers_with_its_unique_id_on_loopback(server: LocalTritonServer) -> None:
    status, meta = get_json(f"{server.base_url}/v2")
    assert status == 200
    assert meta["name"] == server.server_id
    assert server.server_id.startswith("triton-perf-")
    assert server.version == meta["version"]
    for url in (server.http_url, server.grpc_url, server.metrics_url or ""):
        assert "127.0.0.1:" in url
    assert {"simple", "sleepy", "mlp", "flaky"} <= set(server.models)
    assert server.log_path is not None and "Started HTTPService" in server.log_path.read_text()


def test_stop_ends_the_process_group_and_is_idempotent(tmp_path: Path) -> None:
    srv = LocalTritonServer([EXAMPLE_MODELS], models=["simple"], log_dir=tmp_path)
    with srv:
        pid = srv.pid
        assert pid is not None and psutil.pid_exists(pid)
        assert srv.models == ("simple",)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    srv.stop()  # a second stop is harmless
    assert (tmp_path / f"{srv.server_id}.log").exists(), "the log survives in the caller's dir"


def test_stop_unloads_the_models_before_the_signal(tmp_path: Path) -> None:
    """Triton checks its live models once a second after a SIGTERM: stop() unloads them
    first (server.base.UNLOAD_BEFORE_STOP_S), so that the exit does not wait for the next check."""
    srv = LocalTritonServer([EXAMPLE_MODELS], models=["simple", "sleepy"], log_dir=tmp_path)
    with srv:
        pass
    log = (tmp_path / f"{srv.server_id}.log").read_text()
    signal_at = log.index("Signal (15) received")
    for model in ("simple", "sleepy"):
        assert -1 < log.find(f"successfully unloaded '{model}'") < signal_at, log[-3000:]
    # Nothing was live when the signal came.
    assert "Found 0 live models" in log[signal_at:], log[signal_at:]


def test_model_that_fails_to_load_fails_fast_with_name_reason_and_log() -> None:
    srv = LocalTritonServer([BROKEN_MODELS], models=["init_error"])
    started = time.monotonic()
    with pytest.raises(ModelNotReadyError) as info:
        srv.start()
    assert time.monotonic() - started < 30
    text = str(info.value)
    assert "model 'init_error' failed to load" in text
    assert "deliberate init failure" in text
    assert "--- server log tail" in text
    assert srv.pid is None


def test_loading_all_models_keeps_serving_and_records_failures(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(
        EXAMPLE_MODELS / "simple", repo / "simple", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(BROKEN_MODELS / "init_error", repo / "init_error")
    with LocalTritonServer([repo]) as srv:
        assert srv.models == ("simple",)
        assert "deliberate init failure" in srv.failed_models["init_error"]
        srv.require_model("simple")
        with pytest.raises(ModelNotReadyError, match="model 'init_error' failed to load"):
            srv.require_model("init_error")
        with pytest.raises(ModelNotReadyError) as info:
            srv.require_model("simpel")
        assert str(info.value) == (
            f"model 'simpel' is not in the repository {repo}; closest: simple. Models there: "
            f"init_error, simple. Check the model name, or point --triton-model-repository at "
            f"the repository that holds it."
        )


def test_requested_model_missing_from_repository_lists_what_is_there() -> None:
    with pytest.raises(ModelNotReadyError) as info:
        LocalTritonServer([EXAMPLE_MODELS], models=["simple", "no_such_model"]).start()
    assert "model 'no_such_model'" in str(info.value)


def test_server_that_exits_at_start_fails_fast_with_exit_status() -> None:
    srv = LocalTritonServer([EXAMPLE_MODELS], extra_args=["--no-such-flag"])
    started = time.monotonic()
    with pytest.raises(ServerDiedError, match=r"Triton exited \d+") as info:
        srv.start()
    assert time.monotonic() - started < 10
    assert "no-such-flag" in str(info.value)


def test_slow_model_load_times_out_saying_what_was_probed() -> None:
    srv = LocalTritonServer([BROKEN_MODELS], models=["slow_load"], startup_timeout_s=2)
    with pytest.raises(ServerStartError, match=r"did not become live within 2 s .*probed") as info:
        srv.start()
    assert "--triton-startup-timeout" in str(info.value)
    assert srv.pid is None


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="does not exist"):
        LocalTritonServer([tmp_path / "nope"])


def test_explicit_server_path_must_be_a_binary(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="no executable tritonserver there"):
        find_tritonserver(tmp_path)


def test_shipped_binary_is_found_with_the_stub_of_this_python() -> None:
    install = find_tritonserver()
    if install.origin == "PATH":
        pytest.skip("a tritonserver on PATH takes precedence here")
    assert install.origin == "nvidia-pytriton"
    assert install.stub is not None and install.stub.exists()
    import sys

    assert install.stub.parent.name == f"{sys.version_info.major}.{sys.version_info.minor}"


def _gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:  # it may vanish between any two calls
            return True
        time.sleep(0.05)
    return False


PARENT = """
import subprocess, sys
from pytest_triton_perf.server.local import _with_parent_death_signal

child = subprocess.Popen(_with_parent_death_signal(["/bin/sleep", "60"]), start_new_session=True)
print(child.pid, flush=True)
child.wait()
"""


def test_the_exec_shim_ties_its_program_to_the_parent() -> None:
    """What keeps a SIGKILLed pytest from leaving tritonserver behind, without a
    preexec_fn: the shim sets the parent-death signal and execs the program in place."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while psutil.Process(pid).name() != "sleep":  # the shim has exec'd the program
        assert time.monotonic() < deadline, "the shim never exec'd its program"
        time.sleep(0.02)
    assert psutil.Process(pid).ppid() == parent.pid  # exec in place: no extra process
    parent.kill()
    parent.wait(timeout=10)
    assert _gone(pid, 5), "the program outlived its SIGKILLed parent"


def test_the_exec_shim_refuses_when_its_parent_is_already_gone() -> None:
    """A parent that died before the signal was set would never send it: do not start."""
    assert _pdeathsig.main(["--parent", str(os.getppid() + 10**7), "--", "/bin/true"]) == 1
    assert _pdeathsig.main(["/bin/true"]) == 2
