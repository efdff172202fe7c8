"""The session fixtures: ``triton_server``, ``triton_client``, ``triton_grpc_client`` and
the gate session behind ``triton_perf``, with the plugin's stash keys."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_triton_perf.baseline.key import (
    environment_key,
    git_commit,
    session_id,
    soft_environment,
)
from pytest_triton_perf.baseline.reference import ReferenceModels
from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.errors import TritonPerfError
from pytest_triton_perf.gate import GateContext, Measured
from pytest_triton_perf.gate.session import GateSession, gate_settings
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.factory import make_server as _make_server
from pytest_triton_perf.settings import Settings
from pytest_triton_perf.sla import SlaSpec

if TYPE_CHECKING:
    import tritonclient.grpc
    import tritonclient.http

SETTINGS_KEY = pytest.StashKey[Settings]()
MEASURED_KEY = pytest.StashKey[list[Measured]]()
#: A/B mode's reference repository and its description, prepared at configure time.
REFERENCE_KEY = pytest.StashKey[tuple[Path, str]]()
PERF_SESSION_KEY = pytest.StashKey[GateSession]()
#: The test's parsed ``sla`` marker (set at collection by the plugin).
SPEC_KEY = pytest.StashKey[SlaSpec | None]()
#: The test's ``triton_perf.extra_info``, read by the plugin after the test body.
EXTRA_INFO_KEY = pytest.StashKey[dict[str, Any]]()


def make_server(
    settings: Settings,
    *,
    log_dir: str | None = None,
    notify: Callable[[str], None] | None = None,
    worker: tuple[int, int] | None = None,
) -> TritonServer:
    """The launcher the settings ask for (:func:`pytest_triton_perf.server.factory.make_server`),
    splitting ``--gpus`` between xdist workers by the host's GPU count."""

    def gpu_count() -> int:
        from pytest_triton_perf.baseline.key import gpu_facts

        return int(gpu_facts().get("gpu_count", 0))

    return _make_server(
        settings, log_dir=log_dir, notify=notify, worker=worker, gpu_count=gpu_count
    )


def _xdist_worker(config: pytest.Config) -> tuple[int, int] | None:
    """(index, count) of this pytest-xdist worker, or None outside xdist."""
    info = getattr(config, "workerinput", None)
    if not info:
        return None
    return int(str(info["workerid"]).removeprefix("gw")), int(info["workercount"])


def _run_uid(config: pytest.Config) -> str:
    """The pytest session's identity: xdist's ``testrunuid`` (the same on every worker),
    or one made for this process."""
    info = getattr(config, "workerinput", None)
    if info and info.get("testrunuid"):
        return str(info["testrunuid"])
    import uuid

    return uuid.uuid4().hex


def _terminal_line(config: pytest.Config) -> Callable[[str], None]:
    """Write a line to the terminal now, past output capturing (a pull takes minutes)."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:  # an xdist worker has no terminal: its stderr reaches the log
            print(line, file=sys.stderr, flush=True)
            return
        if capman is None:
            reporter.write_line(line)
            return
        with capman.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    return write


@pytest.fixture(scope="session")
def triton_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """The Triton server of this session, started once and stopped at the end.

    Local by default (the model repository of ``--triton-model-repository``), a container
    with ``--triton-image``, or the running server of ``--triton-url``. A start failure
    fails every test that uses it, with the reason and the server log tail.
    """
    settings = pytestconfig.stash[SETTINGS_KEY]
    try:
        server = make_server(
            settings,
            log_dir=str(tmp_path_factory.mktemp("triton-logs")),
            notify=_terminal_line(pytestconfig),
            worker=_xdist_worker(pytestconfig),
        )
        server.start()
    except TritonPerfError as e:
        problem = str(e)
    else:
        problem = ""
    if problem:  # failed outside the except block: no chained traceback in the report
        what = "could not be reached" if settings.url else "could not start"
        pytest.fail(f"Triton server {what}: {problem}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton_client(triton_server: TritonServer) -> Iterator[tritonclient.http.InferenceServerClient]:
    """A tritonclient HTTP client connected to ``triton_server``."""
    import tritonclient.http

    client = tritonclient.http.InferenceServerClient(triton_server.http_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def triton_grpc_client(
    triton_server: TritonServer,
) -> Iterator[tritonclient.grpc.InferenceServerClient]:
    """A tritonclient gRPC client connected to ``triton_server``."""
    import tritonclient.grpc

    client = tritonclient.grpc.InferenceServerClient(triton_server.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def triton_perf_session(
    triton_server: TritonServer, pytestconfig: pytest.Config
) -> Iterator[GateSession]:
    """Gating state shared by every ``triton_perf`` of the session (internal)."""
    settings = pytestconfig.stash[SETTINGS_KEY]
    store = None
    if settings.compare and settings.baseline_dir is not None:
        store = BaselineStore(settings.baseline_dir)
    context = GateContext(
        key=environment_key(triton_server.version, triton_server.gpu_devices),
        environment=soft_environment(),
        store=store,
        gate=gate_settings(settings),
        strict_sla=settings.sla_mode == "strict",
        inconclusive=settings.inconclusive,
        no_baseline=settings.no_baseline,
        revision={
            "git_commit": git_commit(pytestconfig.rootpath),
            "session": session_id(_run_uid(pytestconfig)),
        },
        root=pytestconfig.rootpath,
    )
    reference = pytestconfig.stash.get(REFERENCE_KEY, None)
    refs = (
        ReferenceModels(
            triton_server,
            reference[0],
            origin=reference[1],
            candidates=getattr(triton_server, "model_repositories", ()),
            pin=settings.ab_pin,
        )
        if reference
        else None
    )
    session = GateSession(triton_server, settings, context, refs)
    pytestconfig.stash[PERF_SESSION_KEY] = session
    yield session
    if refs is not None:
        refs.unload_all()
