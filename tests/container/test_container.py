"""The container launcher against a real Docker engine and the locally built CPU image."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf.errors import (
    InputSpecError,
    ModelNotReadyError,
    ServerDiedError,
    ServerStartError,
)
from pytest_triton_perf.load.shared_memory import region_names
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.options.container import parse_gpus, ulimit_value
from pytest_triton_perf.server import container as container_module
from pytest_triton_perf.server.command import Ports
from pytest_triton_perf.server.container import ContainerTritonServer
from pytest_triton_perf.server.docker_engine import LABEL_OWNER_PID, LABEL_SESSION, SESSION_ID
from pytest_triton_perf.server.http import get_json
from tests.conftest import BROKEN_MODELS, EXAMPLE_MODELS
from tests.container.conftest import IMAGE

FAST = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.3)


def launcher(memlock: str, repos: list[Path], **kwargs: Any) -> ContainerTritonServer:
    """A launcher for the test image with the memlock limit this engine accepts."""
    kwargs.setdefault("ulimit_memlock", ulimit_value(-1 if memlock == "unlimited" else "off"))
    return ContainerTritonServer(repos, image=IMAGE, pull="never", **kwargs)


def our_containers(client: Any) -> list[Any]:
    """Containers of this process still on the engine (any state)."""
    return client.containers.list(all=True, filters={"label": f"{LABEL_SESSION}={SESSION_ID}"})


@pytest.fixture(scope="module")
def container_server(
    docker_client: Any, memlock: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContainerTritonServer]:
    """One container for the module: every example model (mlp cannot load in the CPU image,
    which has no onnxruntime: a real load failure to inspect)."""
    started = time.monotonic()
    with launcher(memlock, [EXAMPLE_MODELS], log_dir=tmp_path_factory.mktemp("clog")) as s:
        print(f"container start-to-ready: {time.monotonic() - started:.1f} s")
        yield s


def test_serves_its_unique_id_on_loopback(container_server: ContainerTritonServer) -> None:
    status, meta = get_json(f"{container_server.base_url}/v2")
    assert status == 200
    assert meta["name"] == container_server.server_id == container_server.container_name
    assert container_server.version == "2.51.0"
    for url in (container_server.http_url, container_server.grpc_url):
        assert url.startswith("127.0.0.1:")
    assert container_server.describe().startswith(f"Triton 2.51.0 (container {IMAGE}) at ")
    assert {"simple", "sleepy"} <= set(container_server.models)
    assert container_server.gpu_devices is None


def test_container_runs_the_shared_command_line_with_our_settings(
    container_server: ContainerTritonServer, docker_client: Any
) -> None:
    attrs = docker_client.containers.get(container_server.container_name).attrs
    cmd = attrs["Config"]["Cmd"]
    assert cmd[0] == "tritonserver"
    for flag in (
        "--model-repository=/models",
        f"--id={container_server.server_id}",
        "--http-address=127.0.0.1",
        "--model-control-mode=explicit",
        "--exit-on-error=false",
        "--load-model=*",
    ):
        assert flag in cmd
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["Init"] is True
    assert host["ShmSize"] == 1024**3
    assert {"Name": "stack", "Soft": 67108864, "Hard": 67108864} in host["Ulimits"]
    mount = next(m for m in attrs["Mounts"] if m["Destination"] == "/models")
    assert mount["Source"] == str(EXAMPLE_MODELS) and mount["RW"] is False
    # The variant repository (an A/B arm's copies of an ensemble's steps): the launcher's
    # own directory, read-only to the server, a model repository of its own.
    variants = next(m for m in attrs["Mounts"] if m["Destination"] == "/triton-perf-variants")
    assert variants["Source"] == str(container_server.variant_repository)
    assert variants["RW"] is False and "--model-repository=/triton-perf-variants" in cmd
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_SESSION] == SESSION_ID
    assert labels[LABEL_OWNER_PID] == str(os.getpid())


def test_model_repository_is_read_only(
    container_server: ContainerTritonServer, docker_client: Any
) -> None:
    container = docker_client.containers.get(container_server.container_name)
    code, out = container.exec_run(["touch", "/models/written-by-test"])
    assert code != 0 and b"Read-only file system" in out
    assert not (EXAMPLE_MODELS / "written-by-test").exists()


def test_log_is_copied_to_log_path(container_server: ContainerTritonServer) -> None:
    assert "Started HTTPService" in container_server.log_tail(50)
    assert container_server.log_path is not None
    assert "Started GRPCInferenceService" in container_server.log_path.read_text()


def test_stop_unloads_the_models_before_the_signal(memlock: str, tmp_path: Path) -> None:
    """As a local server's stop (tests/server/test_local.py): unloaded first, so that
    Triton's exit does not wait for its once-a-second check of live models."""
    with launcher(memlock, [EXAMPLE_MODELS], models=["simple"], log_dir=tmp_path) as s:
        pass
    assert s.log_path is not None
    log = s.log_path.read_text()
    signal_at = log.index("Signal (15) received")
    # (What follows the signal line may be missing: the engine hands out the container's
    # last lines a moment after it has stopped.)
    assert -1 < log.find("successfully unloaded 'simple'") < signal_at, log[-3000:]


def test_model_that_failed_to_load_names_the_reason(
    container_server: ContainerTritonServer,
) -> None:
    assert "onnxruntime" in container_server.failed_models["mlp"]
    with pytest.raises(ModelNotReadyError) as info:
        container_server.require_model("mlp")
    text = str(info.value)
    assert "model 'mlp' failed to load on Triton 2.51.0 (container" in text
    assert "--- server log tail" in text


def test_measures_a_model_in_the_container(container_server: ContainerTritonServer) -> None:
    result = measure(container_server, "simple", concurrency=2, settings=FAST)
    assert result.errors == 0 and result.requests > 0
    assert result.throughput > 0
    assert 0 < result.latency_ms.p50 <= result.latency_ms.p99


def test_shared_memory_is_refused_in_a_container_with_its_own_ipc_namespace(
    container_server: ContainerTritonServer,
) -> None:
    with pytest.raises(InputSpecError) as info:
        measure(container_server, "simple", shared_memory="system", settings=FAST)
    text = str(info.value)
    assert "with its own IPC namespace and /dev/shm (--triton-ipc=private)" in text
    assert "start it with --triton-ipc=host (docker run --ipc=host)" in text
    assert region_names() == []


def test_shared_memory_through_a_container_on_the_hosts_ipc_namespace(
    docker_client: Any, memlock: str
) -> None:
    with launcher(memlock, [EXAMPLE_MODELS], models=["simple"], ipc="host") as srv:
        host = docker_client.containers.get(srv.container_name).attrs["HostConfig"]
        assert host["IpcMode"] == "host"
        result = measure(srv, "simple", concurrency=2, shared_memory="system", settings=FAST)
        assert result.errors == 0 and result.requests > 0, result.first_error
        assert result.outputs_verified is True
    assert region_names() == []


def test_killed_container_fails_fast_then_is_removed_and_its_log_kept(
    docker_client: Any, memlock: str, tmp_path: Path
) -> None:
    srv = launcher(memlock, [EXAMPLE_MODELS], models=["simple"], log_dir=tmp_path)
    with srv:
        name = srv.container_name
        docker_client.containers.get(name).kill()
        with pytest.raises(ServerDiedError) as info:
            srv.check_alive()
        assert f"Triton was killed by signal 9 in container {name}" in str(info.value)
    assert srv.container_name is None
    assert not [c for c in our_containers(docker_client) if c.name == name]
    assert "Started HTTPService" in (tmp_path / f"{name}.log").read_text()
    srv.stop()  # a second stop is harmless


def test_model_load_failure_fails_fast_and_removes_the_container(
    docker_client: Any, memlock: str
) -> None:
    srv = launcher(memlock, [BROKEN_MODELS], models=["init_error"])
    started = time.monotonic()
    with pytest.raises(ModelNotReadyError) as info:
        srv.start()
    assert time.monotonic() - started < 30
    text = str(info.value)
    assert "model 'init_error' failed to load" in text
    assert "deliberate init failure" in text
    assert "--- server log tail" in text
    assert all(c.name != srv.server_id for c in our_containers(docker_client))


def test_server_that_exits_at_start_fails_fast_with_exit_status(
    docker_client: Any, memlock: str
) -> None:
    srv = launcher(memlock, [EXAMPLE_MODELS], extra_args=["--no-such-flag"])
    started = time.monotonic()
    with pytest.raises(ServerDiedError) as info:
        srv.start()
    assert time.monotonic() - started < 20
    assert f"Triton exited 1 in container {srv.server_id}" in str(info.value)
    assert "no-such-flag" in str(info.value)
    assert all(c.name != srv.server_id for c in our_containers(docker_client))


def test_missing_image_with_pull_never_names_the_reference(docker_client: Any) -> None:
    srv = ContainerTritonServer([EXAMPLE_MODELS], image="triton-perf-cpu:no-such-tag", pull="never")
    with pytest.raises(ServerStartError) as info:
        srv.start()
    text = str(info.value)
    assert "image triton-perf-cpu:no-such-tag is not on the Docker engine" in text
    assert "--triton-pull=never forbids pulling it" in text
    assert srv.container_name is None


def test_failed_pull_names_the_image_and_the_alternative(docker_client: Any) -> None:
    """``always`` pulls even a local image: here no registry has it (or none is reachable)."""
    lines: list[str] = []
    srv = ContainerTritonServer([EXAMPLE_MODELS], image=IMAGE, pull="always", notify=lines.append)
    with pytest.raises(ServerStartError) as info:
        srv.start()
    assert f"could not pull image {IMAGE}: " in str(info.value)
    assert "use --triton-pull=never" in str(info.value)
    assert lines[0] == f"pytest-triton-perf: pulling {IMAGE} ..."
    assert srv.container_name is None
    docker_client.images.get(IMAGE)  # the local image is untouched


def test_gpu_request_without_nvidia_runtime_names_the_toolkit(
    docker_client: Any, memlock: str
) -> None:
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime: the missing-runtime path cannot occur")
    before = {c.name for c in our_containers(docker_client)}
    srv = launcher(memlock, [EXAMPLE_MODELS], gpus=parse_gpus("--gpus", "all"))
    with pytest.raises(ServerStartError) as info:
        srv.start()
    text = str(info.value)
    assert "cannot give the container GPUs (--gpus=all)" in text
    assert 'could not select device driver "" with capabilities: [[gpu]]' in text
    assert "NVIDIA Container Toolkit (nvidia-container-toolkit)" in text
    # docker-py's containers.run would leave it in "created": ours is removed.
    assert {c.name for c in our_containers(docker_client)} == before


def test_default_memlock_starts_or_names_the_option_to_switch_it_off(
    docker_client: Any, memlock: str
) -> None:
    srv = ContainerTritonServer([EXAMPLE_MODELS], image=IMAGE, pull="never", models=["simple"])
    assert srv.ulimit_memlock == -1  # NGC's recommendation is the default
    if memlock == "unlimited":
        with srv:
            assert srv.models == ("simple",)
        return
    with pytest.raises(ServerStartError) as info:
        srv.start()
    text = str(info.value)
    assert "may not set the container's ulimits (memlock=unlimited, stack=67108864)" in text
    assert "--triton-ulimit-memlock=off" in text
    assert all(c.name != srv.server_id for c in our_containers(docker_client))


def test_published_ports_serve_or_fail_clearly_without_a_bridge(
    docker_client: Any, memlock: str
) -> None:
    srv = launcher(memlock, [EXAMPLE_MODELS], models=["simple"], network="ports")
    if docker_client.networks.list(names=["bridge"]):
        with srv:
            host, port = srv.http_url.split(":")
            assert host == "127.0.0.1" and int(port) != 8000
            assert get_json(f"{srv.base_url}/v2")[1]["name"] == srv.server_id
        return
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        srv.start()
    assert time.monotonic() - started < 20
    text = str(info.value)
    assert "did not publish port 8000" in text
    assert "use --triton-network=host there" in text
    assert all(c.name != srv.server_id for c in our_containers(docker_client))


def test_port_taken_in_host_network_is_retried_on_other_ports(
    docker_client: Any, memlock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free = Ports.free
    picks: list[Ports] = []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]

        def first_pick_taken(host: str = "127.0.0.1") -> Ports:
            ports = real_free(host)
            picks.append(ports if picks else Ports(taken, ports.grpc, ports.metrics))
            return picks[-1]

        monkeypatch.setattr(container_module.Ports, "free", staticmethod(first_pick_taken))
        lines: list[str] = []
        with launcher(memlock, [EXAMPLE_MODELS], models=["simple"], notify=lines.append) as srv:
            assert len(picks) == 2
            assert srv.http_url == f"127.0.0.1:{picks[1].http}" != f"127.0.0.1:{taken}"
    assert lines == [
        "pytest-triton-perf: a port picked for Triton was taken meanwhile (attempt 1 of 3); "
        "retrying on other ports."
    ]
