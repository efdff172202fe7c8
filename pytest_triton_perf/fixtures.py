"""The fixtures users write: ``triton_server``, ``triton_client``, ``triton_grpc_client``,
``triton_perf``. Thin wrappers over the server and measurement layers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_triton_perf.errors import ConfigError, TritonPerfError
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.report.summary import properties_for
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import tritonclient.grpc
    import tritonclient.http

SETTINGS_KEY = pytest.StashKey[Settings]()
RESULTS_KEY = pytest.StashKey[list[PerfResult]]()


def make_server(settings: Settings, *, log_dir: str | None = None) -> TritonServer:
    """The launcher the settings ask for: remote with ``--triton-url``, else local."""
    if settings.url:
        from pytest_triton_perf.server.remote import RemoteTritonServer

        return RemoteTritonServer(
            settings.url,
            grpc_url=settings.grpc_url,
            models=settings.models,
            startup_timeout_s=min(settings.startup_timeout_s, 30.0),
        )
    from pytest_triton_perf.server.local import LocalTritonServer

    if settings.model_repository is None:
        raise ConfigError(
            "no model repository: set --triton-model-repository=DIR or the ini key "
            "triton_model_repository (relative to the ini file), or measure a running "
            "server with --triton-url=HOST:PORT."
        )
    return LocalTritonServer(
        [settings.model_repository],
        models=settings.models,
        server_path=settings.server_path,
        log_dir=log_dir,
        startup_timeout_s=settings.startup_timeout_s,
    )


@pytest.fixture(scope="session")
def triton_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """The Triton server of this session, started once and stopped at the end.

    Local by default (the model repository of ``--triton-model-repository``), or the running
    server of ``--triton-url``. A start failure fails every test that uses it, with the
    reason and the server log tail.
    """
    settings = pytestconfig.stash[SETTINGS_KEY]
    try:
        server = make_server(settings, log_dir=str(tmp_path_factory.mktemp("triton-logs")))
        server.start()
    except TritonPerfError as e:
        problem = str(e)
    else:
        problem = ""
    if problem:  # failed outside the except block: no chained traceback in the report
        pytest.fail(f"Triton server could not start: {problem}", pytrace=False)
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


class TritonPerf:
    """Measures models on the session's server; every result is checked against the test's
    ``sla`` marker after the test body and listed in the terminal summary."""

    def __init__(self, server: TritonServer, settings: Settings, item: pytest.Item):
        self.server = server
        self.settings = settings
        self._item = item
        self.results: list[PerfResult] = item.stash.setdefault(RESULTS_KEY, [])

    def measure(
        self,
        model: str,
        *,
        version: str | None = None,
        concurrency: int | Sequence[int] = 1,
        batch_size: int = 1,
        protocol: str = "grpc",
        inputs: str | Mapping[str, np.ndarray] = "random",
        shapes: Mapping[str, Sequence[int]] | None = None,
        warmup_s: float | None = None,
        windows: int | None = None,
        window_s: float | None = None,
        **engine_options: Any,
    ) -> Any:
        """Drive load against ``model`` and return a :class:`PerfResult`.

        ``concurrency`` as a list measures each level in turn and returns a list of results.
        ``warmup_s``, ``windows`` and ``window_s`` override the session's
        ``--triton-perf-*`` defaults for this call.
        """
        from pytest_triton_perf.measure.engine import measure as run

        settings = self.settings.measure_settings(
            warmup_s=warmup_s, windows=windows, window_s=window_s
        )
        # Validated by the engine, which names the model and the bad value.
        levels: list[Any] = (
            list(concurrency) if isinstance(concurrency, (list, tuple)) else [concurrency]
        )
        results = []
        try:
            self.server.check_alive()
            self.server.require_model(model, version)
            for level in levels:
                result = run(
                    self.server,
                    model,
                    version=version,
                    concurrency=level,
                    batch_size=batch_size,
                    protocol=protocol,
                    inputs=inputs,
                    shapes=shapes,
                    settings=settings,
                    **engine_options,
                )
                self._record(result)
                results.append(result)
        except TritonPerfError as e:
            problem = str(e)
        else:
            problem = ""
        if problem:
            pytest.fail(problem, pytrace=False)
        return results if isinstance(concurrency, (list, tuple)) else results[0]

    def _record(self, result: PerfResult) -> None:
        index = len(self.results)
        self.results.append(result)
        self._item.user_properties.extend(properties_for(index, result))


@pytest.fixture
def triton_perf(
    request: pytest.FixtureRequest, triton_server: TritonServer, pytestconfig: pytest.Config
) -> TritonPerf:
    """Measure models on the session's Triton server: ``triton_perf.measure(model, ...)``.

    Results are evaluated against the test's ``sla`` marker after the test body.
    """
    try:
        triton_server.check_alive()
    except TritonPerfError as e:
        problem = str(e)
    else:
        problem = ""
    if problem:
        pytest.fail(f"the session's Triton server is gone: {problem}", pytrace=False)
    return TritonPerf(triton_server, pytestconfig.stash[SETTINGS_KEY], request.node)
