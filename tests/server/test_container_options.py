"""The container launcher's option parsing, labels and messages that need no Docker engine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_triton_perf.errors import ConfigError, ServerStartError
from pytest_triton_perf.options.container import (
    GpuRequest,
    parse_docker_kwargs,
    parse_gpus,
    parse_image,
    parse_ipc,
    parse_shm_size,
    parse_ulimit,
)
from pytest_triton_perf.server.container import ContainerTritonServer, device_request
from pytest_triton_perf.server.docker_engine import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    owner_alive,
    owner_labels,
    pull_progress,
    split_reference,
)
from pytest_triton_perf.server.remote import RemoteTritonServer
from pytest_triton_perf.server_fixtures import make_server
from pytest_triton_perf.settings import Settings, build_settings
from tests.conftest import EXAMPLE_MODELS


@pytest.mark.parametrize(
    ("text", "count", "ids"),
    [
        ("all", -1, ()),
        ("ALL", -1, ()),
        ("2", 2, ()),
        ("count=3", 3, ()),
        ("count=all", -1, ()),
        ("device=0,2", None, ("0", "2")),
        ('"device=0,2"', None, ("0", "2")),
        ("device=GPU-3a1b-44", None, ("GPU-3a1b-44",)),
        ("GPU-aaaa-1,GPU-bbbb-2", None, ("GPU-aaaa-1", "GPU-bbbb-2")),
        ("MIG-7d2f/1/0", None, ("MIG-7d2f/1/0",)),
    ],
)
def test_gpus_takes_dockers_forms(text: str, count: int | None, ids: tuple[str, ...]) -> None:
    request = parse_gpus("--gpus", text)
    assert request is not None
    assert (request.count, request.device_ids) == (count, ids)


def test_gpus_none_is_no_request() -> None:
    assert parse_gpus("--gpus", "none") is None


@pytest.mark.parametrize("text", ["", "some", "device=", "device=0;1", "gpu0", "-1", "count=x"])
def test_bad_gpus_names_the_value_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gpus("--gpus", text)
    assert f"--gpus={text!r}" in str(info.value)
    assert "all, a count (e.g. 2), count=N, device=0,2" in str(info.value)


def test_zero_gpus_points_at_none() -> None:
    with pytest.raises(ConfigError, match="must be >= 1 \\(use 'none' for no GPU\\)"):
        parse_gpus("--gpus", "0")


def test_device_requests_use_count_or_ids_never_both() -> None:
    by_count = device_request(GpuRequest("all", count=-1))
    assert (by_count["Count"], by_count.get("DeviceIDs")) == (-1, [])
    assert by_count["Capabilities"] == [["gpu"]]
    by_id = device_request(GpuRequest("device=1", device_ids=("1",)))
    assert (by_id["Count"], by_id["DeviceIDs"]) == (0, ["1"])
    assert GpuRequest("2", count=2).fallback_devices() == ("0", "1")
    assert GpuRequest("all", count=-1).fallback_devices() is None


def test_image_needs_a_tag_or_digest() -> None:
    assert parse_image("--triton-image", "nvcr.io/nvidia/tritonserver:24.08-py3")
    assert parse_image("--triton-image", "localhost:5000/triton@sha256:" + "a" * 64)
    with pytest.raises(ConfigError) as info:
        parse_image("--triton-image", "localhost:5000/nvidia/tritonserver")
    assert "has no tag" in str(info.value) and "NGC does not publish" in str(info.value)


def test_split_reference() -> None:
    assert split_reference("nvcr.io/nvidia/tritonserver:24.08-py3") == (
        "nvcr.io/nvidia/tritonserver",
        "24.08-py3",
    )
    assert split_reference("h:5000/t@sha256:ab") == ("h:5000/t@sha256:ab", None)


@pytest.mark.parametrize(
    ("text", "value"),
    [("unlimited", -1), ("-1", -1), ("off", "off"), ("67108864", 67108864), ("64m", 64 << 20)],
)
def test_ulimit_values(text: str, value: int | str) -> None:
    assert parse_ulimit("--triton-ulimit-stack", text) == value


def test_bad_ulimit_and_shm_size_name_the_accepted_forms() -> None:
    with pytest.raises(ConfigError, match="accepted are unlimited, a number of bytes"):
        parse_ulimit("--triton-ulimit-memlock", "lots")
    with pytest.raises(ConfigError, match="a size such as 1g, 512m"):
        parse_shm_size("--triton-shm-size", "1 GB")
    assert parse_shm_size("--triton-shm-size", "2G") == "2g"


def test_docker_kwargs_are_checked_against_docker_py() -> None:
    assert parse_docker_kwargs("--triton-docker-kwargs", '{"cpuset_cpus": "0-3"}') == {
        "cpuset_cpus": "0-3"
    }
    with pytest.raises(ConfigError, match="Did you mean 'cpuset_cpus'"):
        parse_docker_kwargs("--triton-docker-kwargs", '{"cpuset_cpu": "0"}')
    with pytest.raises(ConfigError, match="'shm_size' is set by the launcher; use --triton-shm"):
        parse_docker_kwargs("--triton-docker-kwargs", '{"shm_size": "2g"}')
    with pytest.raises(ConfigError, match="is not JSON"):
        parse_docker_kwargs("--triton-docker-kwargs", "cpuset_cpus=0")


def test_pull_progress_line() -> None:
    layers = {
        "a": {"status": "Pull complete"},
        "b": {"status": "Downloading", "progressDetail": {"current": 5e8, "total": 2e9}},
        "c": {"status": "Already exists"},
    }
    assert pull_progress("img:1", layers) == (
        "pulling img:1: 2/3 layers complete, downloading 0.50 of 2.00 GB"
    )


def test_owner_of_a_container_alive_or_gone() -> None:
    mine = owner_labels()
    assert mine[LABEL_OWNER_PID] == str(os.getpid())
    assert owner_alive(mine)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not owner_alive({**mine, LABEL_OWNER_PID: str(proc.pid)})
    # Our pid, another start time: the pid was reused, the owner is gone.
    assert not owner_alive({**mine, LABEL_OWNER_START: "1.00"})
    # Another host's container cannot be judged here: left alone.
    assert owner_alive({**mine, LABEL_OWNER_HOST: "elsewhere", LABEL_OWNER_PID: "1"})


def test_no_engine_is_one_error_with_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    srv = ContainerTritonServer([EXAMPLE_MODELS], image="triton:1")
    with pytest.raises(ServerStartError) as info:
        srv.start()
    text = str(info.value)
    assert "no Docker engine reachable at DOCKER_HOST=unix:///nonexistent/docker.sock" in text
    assert "run without --triton-image" in text and "--triton-url" in text


def settings(**cli: object) -> Settings:
    return build_settings(lambda dest: cli.get(dest), lambda name: "", None)


def test_image_selects_the_container_launcher_and_url_wins_over_it() -> None:
    s = settings(image="triton:1", model_repository=str(EXAMPLE_MODELS), shm_size="2g")
    server = make_server(s)
    assert isinstance(server, ContainerTritonServer)
    assert (server.shm_size, server.ulimit_memlock, server.ulimit_stack) == ("2g", -1, 67108864)
    s = settings(image="triton:1", url="127.0.0.1:8000")
    assert isinstance(make_server(s), RemoteTritonServer)
    s = settings(image="triton:1", model_repository=str(EXAMPLE_MODELS), ulimit_memlock="off")
    assert make_server(s).ulimit_memlock is None  # type: ignore[attr-defined]


def test_ipc_host_shares_the_hosts_shared_memory_and_private_refuses_it() -> None:
    s = settings(image="triton:1", model_repository=str(EXAMPLE_MODELS), ipc="host")
    server = make_server(s)
    assert isinstance(server, ContainerTritonServer)
    assert server.ipc == "host" and server.shared_memory_refusal("system") is None
    private = make_server(settings(image="triton:1", model_repository=str(EXAMPLE_MODELS)))
    assert isinstance(private, ContainerTritonServer) and private.ipc == "private"
    why = private.shared_memory_refusal("system")
    assert why is not None and "start it with --triton-ipc=host (docker run --ipc=host)" in why
    with pytest.raises(ConfigError, match="--triton-ipc='shareable': accepted are private"):
        parse_ipc("--triton-ipc", "shareable")
    with pytest.raises(ConfigError, match="'ipc_mode' is set by the launcher; use --triton-ipc"):
        parse_docker_kwargs("--triton-docker-kwargs", '{"ipc_mode": "host"}')


def test_gpus_without_image_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="--triton-gpus/--gpus=all applies to a container: add"):
        settings(gpus=GpuRequest("all", count=-1))


def test_gpus_ini_twin_is_prefixed() -> None:
    s = build_settings(
        lambda dest: None,
        lambda name: {"triton_gpus": "device=1", "triton_image": "t:1"}.get(name, ""),
        None,
    )
    assert s.gpus == GpuRequest("device=1", device_ids=("1",))


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--gpus=some", "*--gpus='some' is not a GPU request; accepted: all, a count*"),
        ("--triton-gpus=0", "*--triton-gpus='0': a count of GPUs must be >= 1*"),
        ("--triton-pull=sometimes", "*--triton-pull='sometimes': accepted are missing, always*"),
        ("--triton-image=nvcr.io/nvidia/tritonserver", "*has no tag: name one*"),
        ("--triton-network=bridge", "*--triton-network='bridge': accepted are host*"),
    ],
)
def test_bad_container_option_is_a_usage_error(
    pytester: pytest.Pytester, option: str, expected: str
) -> None:
    pytester.makepyfile("def test_a(triton_perf): pass")
    result = pytester.runpytest_subprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


@pytest.mark.parametrize(
    ("spec", "host_gpus", "worker", "workers", "expected", "warns"),
    [
        ("all", 4, 0, 2, ("0", "2"), False),
        ("all", 4, 1, 2, ("1", "3"), False),
        ("device=1,3", 8, 1, 2, ("3",), False),
        ("2", 8, 1, 2, ("1",), False),
        ("all", 1, 1, 2, None, True),  # fewer GPUs than workers: shared, and said
    ],
)
def test_each_xdist_worker_gets_its_own_gpus_when_there_are_enough(
    spec: str,
    host_gpus: int,
    worker: int,
    workers: int,
    expected: tuple[str, ...] | None,
    warns: bool,
) -> None:
    from pytest_triton_perf.options.container import split_for_worker

    gpus = parse_gpus("--gpus", spec)
    assert gpus is not None
    mine, warning = split_for_worker(gpus, worker, workers, host_gpus)
    if expected is None:
        assert mine == gpus
    else:
        assert mine.device_ids == expected
    assert (warning is not None) == warns
    if warning:
        assert "the workers share them" in warning


CONFTEST_WITH_GPUS = """
def pytest_addoption(parser):
    parser.addoption("--gpus", action="store", default="cuda-none", help="the suite's own GPUs")

def pytest_report_header(config):
    return [f"conftest gpus: {config.getoption('--gpus')}"]
"""
GPUS_NOTICE = "triton-perf: --gpus is defined by another plugin or conftest; use --triton-gpus*"


def test_a_conftest_defining_gpus_leaves_us_triton_gpus_and_says_so_once(
    pytester: pytest.Pytester,
) -> None:
    """An ML repository's conftest with its own --gpus: pytest starts, the conftest keeps
    --gpus, ours is --triton-gpus (parsed and validated), and the header says so once."""
    pytester.makeconftest(CONFTEST_WITH_GPUS)
    pytester.makepyfile(
        """
        def test_settings(pytestconfig):
            from pytest_triton_perf.server_fixtures import SETTINGS_KEY

            assert pytestconfig.stash[SETTINGS_KEY].gpus is None
            assert pytestconfig.getoption("--gpus") == "2"
        """
    )
    result = pytester.runpytest_subprocess(
        "--gpus=2", "--triton-gpus=none", "--triton-image=triton:1"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["conftest gpus: 2"])
    result.stdout.fnmatch_lines([GPUS_NOTICE])
    assert result.stdout.str().count("--gpus is defined by another plugin") == 1
    bad = pytester.runpytest_subprocess("--triton-gpus=some", "--triton-image=triton:1")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--triton-gpus='some' is not a GPU request*"])


def test_without_a_clash_gpus_and_triton_gpus_are_twins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_settings(pytestconfig):
            from pytest_triton_perf.server_fixtures import SETTINGS_KEY

            assert pytestconfig.stash[SETTINGS_KEY].gpus.count == 2
        """
    )
    for flag in ("--gpus", "--triton-gpus"):
        result = pytester.runpytest_subprocess(f"{flag}=2", "--triton-image=triton:1")
        result.assert_outcomes(passed=1)
        assert "is defined by another plugin" not in result.stdout.str()
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "--gpus=GPUS" in help_text and "--triton-gpus=GPUS" in help_text
