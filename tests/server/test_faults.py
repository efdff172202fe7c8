"""Launcher faults provoked for real with the embedded tritonserver (issue 6, item 4).

Each test breaks one thing (a model that does not parse, a load that hangs, a port someone
else holds, a stale server on our port, metrics switched off) and checks that the launcher
says what went wrong, fast, and leaves no process of its own running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from pytest_triton_perf import sla
from pytest_triton_perf.errors import ModelNotReadyError, ServerStartError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.server import command, local
from pytest_triton_perf.server.base import StaleServerError
from pytest_triton_perf.server.http import ProbeError, get_json, post_json
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import BROKEN_MODELS, EXAMPLE_MODELS

TINY = MeasureSettings(warmup_s=0.1, windows=1, window_s=0.3, max_windows=1)


def _process_group(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of the process group ``pgid``: the server and its stubs."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Pids of every tritonserver the launcher starts in this test; at the end none of
    them, nor anything in their process groups, may still run."""
    pids: list[int] = []
    original = LocalTritonServer._launch

    def recording(self: LocalTritonServer) -> None:
        original(self)
        assert self.pid is not None
        pids.append(self.pid)

    monkeypatch.setattr(LocalTritonServer, "_launch", recording)
    yield pids
    left = [p for pid in pids for p in _process_group(pid)]
    assert not left, f"left running: {left}"


def _ports_with(monkeypatch: pytest.MonkeyPatch, port: int, slots: Callable[[int], bool]) -> None:
    """Make ``free_port`` return ``port`` on the calls where ``slots(n)`` is true (n from 0).

    ``Ports.free`` calls it three times per launch: http (n % 3 == 0), grpc, metrics.
    """
    real = command.free_port
    calls = [0]

    def fake(host: str = "127.0.0.1") -> int:
        n = calls[0]
        calls[0] += 1
        return port if slots(n) else real(host)

    monkeypatch.setattr(command, "free_port", fake)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port this test holds: bound and listening, never accepting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _repo(tmp_path: Path, *models: tuple[Path, str]) -> Path:
    repo = tmp_path / "repo"
    for root, name in models:
        shutil.copytree(root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


# -- model load faults ---------------------------------------------------------------------


def test_bad_config_fails_naming_the_model_and_the_parse_error(launched: list[int]) -> None:
    srv = LocalTritonServer([BROKEN_MODELS], models=["bad_config"], startup_timeout_s=20)
    started = time.monotonic()
    with pytest.raises(ModelNotReadyError) as info:
        srv.start()
    assert time.monotonic() - started < 15
    headline = str(info.value).splitlines()[0]
    assert "model 'bad_config' failed to load" in headline
    # The reason is the parser's own line:column, not "no reason given".
    assert (
        "its config.pbtxt does not parse: Error parsing text-format inference.ModelConfig: 8:1: "
        'Expected ",", found "output".' in headline
    )
    assert "bad_config/config.pbtxt" in headline
    assert srv.pid is None and len(launched) == 1


def test_bad_config_in_load_all_mode_is_recorded_and_the_rest_serves(
    tmp_path: Path, launched: list[int]
) -> None:
    repo = _repo(tmp_path, (EXAMPLE_MODELS, "simple"), (BROKEN_MODELS, "bad_config"))
    with LocalTritonServer([repo], startup_timeout_s=30) as srv:
        assert srv.models == ("simple",)
        reason = srv.failed_models["bad_config"]
        assert "Error parsing text-format inference.ModelConfig: 8:1" in reason
        srv.require_model("simple")
        with pytest.raises(ModelNotReadyError, match=r"model 'bad_config' failed to load .*8:1"):
            srv.require_model("bad_config")


def test_hanging_load_times_out_naming_what_was_probed_and_the_stub_error(
    launched: list[int],
) -> None:
    # Triton 2.51: the stub cannot find model.py and the load never returns, so the
    # endpoints never open. SIGTERM still kills the server while it loads at startup.
    srv = LocalTritonServer([BROKEN_MODELS], models=["missing_file"], startup_timeout_s=3)
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        srv.start()
    elapsed = time.monotonic() - started
    text = str(info.value)
    assert "did not become live within 3 s" in text
    assert f"probed http://{srv.http_url}/v2 and /v2/health/live" in text
    assert "Connection refused" in text
    assert (
        "Still loading per the server log: missing_file (log: Failed to preinitialize Python "
        "stub: Python model file not found in " in text
    )
    assert elapsed < 3 + 8, f"timeout plus stop took {elapsed:.1f} s"
    assert srv.pid is None and len(launched) == 1


def test_slow_startup_load_past_the_timeout_names_the_model(launched: list[int]) -> None:
    srv = LocalTritonServer([BROKEN_MODELS], models=["slow_load"], startup_timeout_s=2)
    with pytest.raises(ServerStartError, match="did not become live within 2 s") as info:
        srv.start()
    assert "Still loading per the server log: slow_load." in str(info.value)


def test_hung_load_ignores_sigterm_and_stop_escalates_to_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launched: list[int]
) -> None:
    monkeypatch.setattr(local, "STOP_GRACE_S", 2.0)
    repo = _repo(tmp_path, (EXAMPLE_MODELS, "simple"), (BROKEN_MODELS, "missing_file"))
    srv = LocalTritonServer([repo], models=["simple"], startup_timeout_s=30).start()
    try:
        # A load through the repository API never answers (and never fails) in 2.51.
        with pytest.raises(ProbeError, match="timed out"):
            post_json(f"{srv.base_url}/v2/repository/models/missing_file/load", timeout=3.0)
        pid = launched[0]
    finally:
        started = time.monotonic()
        srv.stop()
        elapsed = time.monotonic() - started
    # SIGTERM alone did not end it: stop waited the whole grace, then SIGKILLed the group.
    assert 2.0 <= elapsed < 2.0 + 5, f"stop took {elapsed:.1f} s"
    assert not _process_group(pid)


# -- port faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "slot"), [("HTTP", 0), ("Metrics", 2)])
def test_port_taken_meanwhile_is_retried_on_new_ports(
    service: str,
    slot: int,
    held_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    launched: list[int],
) -> None:
    # The metrics port is bound last, after HTTP already answers: without a check after
    # readiness the launcher would accept a server about to exit.
    _ports_with(monkeypatch, held_port, lambda n: n == slot)
    with LocalTritonServer([EXAMPLE_MODELS], models=[], log_dir=tmp_path) as srv:
        assert len(launched) == 2, "one clash, one retry"
        for url in (srv.http_url, srv.grpc_url, srv.metrics_url or ""):
            assert f":{held_port}" not in url
        assert srv.metrics_url is not None
        status, meta = get_json(f"{srv.base_url}/v2")
        assert status == 200 and meta["name"] == srv.server_id
        assert get_json(srv.metrics_url)[0] == 200
        srv.check_alive()
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert f"failed to start {service} service" in logs
    assert f"Socket '127.0.0.1:{held_port}' already in use" in logs


def test_port_taken_on_every_attempt_fails_naming_the_port(
    held_port: int, monkeypatch: pytest.MonkeyPatch, launched: list[int]
) -> None:
    _ports_with(monkeypatch, held_port, lambda n: n % 3 == 0)
    srv = LocalTritonServer([EXAMPLE_MODELS], models=[])
    with pytest.raises(ServerStartError) as info:
        srv.start()
    text = str(info.value)
    assert f"could not bind its HTTP port: 127.0.0.1:{held_port} is already in use" in text
    assert f"Tried {local.PORT_ATTEMPTS} sets of free ports" in text
    assert len(launched) == local.PORT_ATTEMPTS
    assert srv.pid is None


def test_stale_server_on_the_port_is_refused_and_never_measured(
    server: LocalTritonServer, monkeypatch: pytest.MonkeyPatch, launched: list[int]
) -> None:
    stale_port = int(server.http_url.rsplit(":", 1)[1])
    _ports_with(monkeypatch, stale_port, lambda n: n == 0)
    srv = LocalTritonServer([EXAMPLE_MODELS], models=["simple"])
    with pytest.raises(StaleServerError) as info:
        srv.start()
    assert (
        f"another server answers at http://127.0.0.1:{stale_port}: its id is "
        f"{server.server_id!r}, the one started here has id {srv.server_id!r}" in str(info.value)
    )
    assert len(launched) == 1, "no retry past a server that is not ours"
    assert srv.models == () and srv.pid is None
    # The stale server is someone else's: untouched, still live.
    server.check_alive()
    assert get_json(f"{server.base_url}/v2")[1]["name"] == server.server_id


# -- metrics switched off ------------------------------------------------------------------


def test_metrics_disabled_gives_no_metrics_url_and_measure_says_why(
    server: LocalTritonServer, launched: list[int]
) -> None:
    assert server.metrics_url is not None, "metrics enabled: the URL is kept"
    with LocalTritonServer(
        [EXAMPLE_MODELS], models=["simple"], extra_args=["--allow-metrics=false"]
    ) as srv:
        assert srv.metrics_url is None
        result = measure(srv, "simple", protocol="http", settings=TINY)
    assert result.requests > 0 and result.errors == 0
    assert result.cpu_memory_mb is None
    reason = result.unavailable_reason("cpu_memory_mb")
    assert reason is not None and "metrics disabled" in reason
    spec = sla.merge_markers("t", [((), {"max_cpu_memory_mb": 1000})])
    (check,) = [c for c in sla.evaluate(spec, [result]) if c.key == "max_cpu_memory_mb"]
    assert not check.passed and "metrics disabled" in check.note


def test_the_three_ports_picked_for_a_server_are_distinct() -> None:
    """Picked one after the other, each socket closed before the next, two of the three
    ports could coincide (a CI run saw Triton exit: gRPC and metrics on one port); a port
    already picked is picked again. 500 picks, and the last one's gRPC port is free."""
    for _ in range(500):
        ports = command.Ports.free()
        assert len({ports.http, ports.grpc, ports.metrics}) == 3, ports
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports.grpc))
