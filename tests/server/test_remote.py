"""The remote launcher against the suite's real server (started by another launcher)."""

from __future__ import annotations

import pytest

from pytest_triton_perf.errors import ConfigError, ModelNotReadyError, ServerDiedError
from pytest_triton_perf.server.local import LocalTritonServer, free_port
from pytest_triton_perf.server.remote import RemoteTritonServer
from pytest_triton_perf.urls import parse_url


def test_remote_finds_version_models_and_metrics(server: LocalTritonServer) -> None:
    remote = RemoteTritonServer(f"http://{server.http_url}", grpc_url=server.grpc_url).start()
    assert remote.version == server.version
    assert set(server.models) == set(remote.models)
    assert remote.grpc_url == server.grpc_url
    remote.check_alive()
    remote.stop()  # never stops a server it did not start
    server.check_alive()


def test_missing_model_lists_the_available_ones(server: LocalTritonServer) -> None:
    with pytest.raises(ModelNotReadyError) as info:
        RemoteTritonServer(server.http_url, models=["sleepy", "bert"]).start()
    assert f"model 'bert' is not in the repository of Triton {server.version} (remote)" in str(
        info.value
    )
    assert "sleepy" in str(info.value)


def test_a_misspelt_model_is_not_in_the_repository_with_the_closest_names(
    server: LocalTritonServer,
) -> None:
    """The remote server's repository index, and the directories of a local server's
    repositories, give the closest names."""
    remote = RemoteTritonServer(server.http_url, grpc_url=server.grpc_url).start()
    with pytest.raises(ModelNotReadyError) as info:
        remote.require_model("sleepi")
    assert str(info.value).startswith(
        f"model 'sleepi' is not in the repository of Triton {server.version} (remote) at "
        f"{server.http_url}; closest: sleepy"
    )
    assert str(info.value).endswith(
        "Check the model name, or point --triton-url at the server that serves it."
    )
    with pytest.raises(ModelNotReadyError) as info:
        server.require_model("simpel")
    repos = ", ".join(str(p) for p in server.model_repositories)
    assert str(info.value).startswith(
        f"model 'simpel' is not in the repository {repos}; closest: simple"
    )
    assert "point --triton-model-repository at the repository that holds it" in str(info.value)


def test_the_wait_for_a_running_server_is_the_startup_timeout_given() -> None:
    """--triton-startup-timeout applies to --triton-url unbounded; without it, 30 s."""
    from pytest_triton_perf.server.factory import make_server
    from pytest_triton_perf.settings import Settings

    url = "127.0.0.1:8000"
    assert make_server(Settings(url=url, startup_timeout_s=300.0)).startup_timeout_s == 300.0
    assert make_server(Settings(url=url)).startup_timeout_s == 30.0


def test_grpc_defaults_to_http_port_plus_one() -> None:
    assert RemoteTritonServer("triton.example:8000").grpc_url == "triton.example:8001"
    assert RemoteTritonServer("http://[::1]:8000").grpc_url == "[::1]:8001"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("localhost:8000", ("localhost", 8000)), ("http://127.0.0.1:9000/", ("127.0.0.1", 9000))],
)
def test_parse_url_accepts_host_port_forms(value: str, expected: tuple[str, int]) -> None:
    assert parse_url(value, option="--triton-url") == expected


@pytest.mark.parametrize("value", ["localhost", "https://h:1", "h:99999", "h:8000/v2", "ftp://h:1"])
def test_parse_url_rejects_other_forms_naming_the_option(value: str) -> None:
    with pytest.raises(ConfigError, match=r"--triton-url="):
        parse_url(value, option="--triton-url")


def test_nothing_listening_fails_within_the_timeout() -> None:
    port = free_port()
    remote = RemoteTritonServer(f"127.0.0.1:{port}", startup_timeout_s=1)
    with pytest.raises(Exception) as info:
        remote.start()
    assert str(info.value).startswith(
        f"no live KServe V2 server answered at http://127.0.0.1:{port} within 1 s "
        f"(--triton-startup-timeout; probed /v2 and /v2/health/live every 0.2 s; last: "
    )
    with pytest.raises(ServerDiedError, match="stopped answering"):
        remote.check_alive()
