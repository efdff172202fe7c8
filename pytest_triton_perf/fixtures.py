"""The fixtures users write: ``triton_server``, ``triton_client``, ``triton_grpc_client``,
``triton_perf``. Thin wrappers over the server and measurement layers."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pytest
from typing_extensions import Unpack

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.ab import ABPlan, run_ab
from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.baseline.key import environment_key, git_commit, soft_environment
from pytest_triton_perf.baseline.reference import ReferenceModels
from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.errors import ArgumentError, ConfigError, TritonPerfError
from pytest_triton_perf.gate import GateContext, Measured
from pytest_triton_perf.measure.host import HostLoad
from pytest_triton_perf.measure.options import LOAD_DEFAULTS, CallOptions, split_windows
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.options import SMOKE_WINDOW_S
from pytest_triton_perf.report.summary import properties_for
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.http import ProbeError, get_json
from pytest_triton_perf.settings import Settings
from pytest_triton_perf.sla import SlaSpec, parse_marker

if TYPE_CHECKING:
    import tritonclient.grpc
    import tritonclient.http

    from pytest_triton_perf.capacity import CapacityResult
    from pytest_triton_perf.footprint import Footprint
    from pytest_triton_perf.measure.engine import MeasureSettings
    from pytest_triton_perf.search import SearchResult

SETTINGS_KEY = pytest.StashKey[Settings]()
MEASURED_KEY = pytest.StashKey[list[Measured]]()
#: A/B mode's reference repository and its description, prepared at configure time.
REFERENCE_KEY = pytest.StashKey[tuple[Path, str]]()
PERF_SESSION_KEY = pytest.StashKey["PerfSession"]()
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
    """The launcher the settings ask for: remote with ``--triton-url`` (it wins: a running
    server is the most specific target), a container with ``--triton-image``, else local.

    ``notify`` shows a line to the user at once (image pull progress, stale containers).
    """
    if settings.url:
        from pytest_triton_perf.server import remote

        return remote.RemoteTritonServer(
            settings.url,
            grpc_url=settings.grpc_url,
            models=settings.models,
            startup_timeout_s=min(settings.startup_timeout_s, remote.STARTUP_TIMEOUT_S),
        )
    from pytest_triton_perf.server.local import LocalTritonServer

    if settings.model_repository is None:
        raise ConfigError(
            "no model repository: set --triton-model-repository=DIR or the ini key "
            "triton_model_repository (relative to the ini file), or measure a running "
            "server with --triton-url=HOST:PORT."
        )
    if settings.image:
        from pytest_triton_perf.options.container import split_for_worker, ulimit_value
        from pytest_triton_perf.server.container import ContainerTritonServer

        gpus = settings.gpus
        if gpus is not None and worker is not None:
            from pytest_triton_perf.baseline.key import gpu_facts

            host_gpus = int(gpu_facts().get("gpu_count", 0))
            gpus, warning = split_for_worker(gpus, worker[0], worker[1], host_gpus)
            if warning and notify is not None:
                notify(f"triton-perf: {warning}")

        return ContainerTritonServer(
            [settings.model_repository],
            image=settings.image,
            models=settings.models,
            gpus=gpus,
            pull=settings.pull,
            network=settings.network,
            shm_size=settings.shm_size,
            ipc=settings.ipc,
            ulimit_memlock=ulimit_value(settings.ulimit_memlock),
            ulimit_stack=ulimit_value(settings.ulimit_stack),
            docker_kwargs=settings.docker_kwargs,
            log_dir=log_dir,
            startup_timeout_s=settings.startup_timeout_s,
            notify=notify,
        )
    return LocalTritonServer(
        [settings.model_repository],
        notify=notify,
        models=settings.models,
        server_path=settings.server_path,
        log_dir=log_dir,
        startup_timeout_s=settings.startup_timeout_s,
    )


def gate_settings(settings: Settings) -> GateSettings:
    """The decision rule with the session's alpha, minimum effects and floors."""
    base = GateSettings(alpha=settings.alpha)
    effects = dict(base.min_effect)
    disabled = set()
    for metric, value in (settings.min_effect or {}).items():
        if value is None:
            disabled.add(metric)
        else:
            effects[metric] = value
    floors = dict(base.floor)
    floors.update({k: v or 0.0 for k, v in (settings.floor or {}).items()})
    return GateSettings(settings.alpha, effects, floors, frozenset(disabled))


def measure_settings(settings: Settings, **overrides: Any) -> MeasureSettings:
    """The engine's settings: the session's with a test's per-call ``overrides``."""
    # Imported here: the engine pulls in the protocol clients, which plain option
    # parsing (and `pytest --help`) should not pay for.
    from pytest_triton_perf.measure.engine import MeasureSettings

    values: dict[str, Any] = {
        "warmup_s": settings.warmup_s,
        "windows": settings.windows,
        "window_s": settings.window_s,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    # Stability may extend a measurement; never below the windows asked for. A value of the
    # wrong type is left to MeasureSettings, whose ArgumentError names it.
    windows = values["windows"]
    if isinstance(windows, int) and not isinstance(windows, bool):
        values.setdefault("max_windows", max(MeasureSettings.max_windows, windows))
    measured = MeasureSettings(**values)  # validated even when the smoke check replaces it
    if settings.disable:
        return dataclasses.replace(
            measured, warmup_s=0.0, windows=1, window_s=SMOKE_WINDOW_S, max_windows=1
        )
    return measured


def _xdist_worker(config: pytest.Config) -> tuple[int, int] | None:
    """(index, count) of this pytest-xdist worker, or None outside xdist."""
    info = getattr(config, "workerinput", None)
    if not info:
        return None
    return int(str(info["workerid"]).removeprefix("gw")), int(info["workercount"])


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


@dataclass
class PerfSession:
    """Session-wide gating state: the environment key, the baseline store, A/B references."""

    context: GateContext
    references: ReferenceModels | None
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def model_config(self, server: TritonServer, model: str) -> dict[str, Any] | None:
        """The model's configuration as the server reports it (hashed into revisions)."""
        if model not in self.configs:
            try:
                status, payload = get_json(f"{server.base_url}/v2/models/{model}/config")
            except ProbeError:
                return None
            if status != 200 or not isinstance(payload, dict):
                return None
            self.configs[model] = payload
        return self.configs[model]


@pytest.fixture(scope="session")
def triton_perf_session(
    triton_server: TritonServer, pytestconfig: pytest.Config
) -> Iterator[PerfSession]:
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
        revision={"git_commit": git_commit(pytestconfig.rootpath)},
        root=pytestconfig.rootpath,
    )
    reference = pytestconfig.stash.get(REFERENCE_KEY, None)
    refs = (
        ReferenceModels(
            triton_server,
            reference[0],
            origin=reference[1],
            candidates=getattr(triton_server, "model_repositories", ()),
        )
        if reference
        else None
    )
    session = PerfSession(context, refs)
    pytestconfig.stash[PERF_SESSION_KEY] = session
    yield session
    if refs is not None:
        refs.unload_all()


class TritonPerf:
    """Measures models on the session's server; every result is checked against the test's
    ``sla`` marker (and its baseline, when comparing) after the test body."""

    def __init__(
        self, server: TritonServer, settings: Settings, item: pytest.Item, session: PerfSession
    ):
        self.server = server
        self.settings = settings
        self.session = session
        self._item = item
        self.measured: list[Measured] = item.stash.setdefault(MEASURED_KEY, [])
        item.stash.setdefault(EXTRA_INFO_KEY, {})

    @property
    def results(self) -> list[PerfResult]:
        """Every result this test measured so far."""
        return [m.result for m in self.measured]

    @property
    def extra_info(self) -> dict[str, Any]:
        """Free-form metadata of this test, stored with each of its measurements (the JSON
        results, the baselines) and shown in the reports, as pytest-benchmark's
        ``benchmark.extra_info``: ``triton_perf.extra_info["model_sha"] = "4f2a..."``. Set
        it at any point of the test; what it holds when the test body ends is recorded.
        Values must be JSON-ready (strings, numbers, booleans, None, lists, dicts)."""
        return self._item.stash[EXTRA_INFO_KEY]

    @extra_info.setter
    def extra_info(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise ArgumentError(
                f"triton_perf.extra_info must be a mapping (a dict), got "
                f"{type(value).__name__} {value!r}"
            )
        self._item.stash[EXTRA_INFO_KEY] = dict(value)

    @overload
    def measure(
        self,
        model: str,
        *,
        concurrency: int = ...,
        request_rate: float | None = ...,
        **options: Unpack[CallOptions],
    ) -> PerfResult: ...
    @overload
    def measure(
        self, model: str, *, concurrency: Sequence[int], **options: Unpack[CallOptions]
    ) -> list[PerfResult]: ...
    @overload
    def measure(
        self, model: str, *, request_rate: Sequence[float], **options: Unpack[CallOptions]
    ) -> list[PerfResult]: ...
    def measure(
        self,
        model: str,
        *,
        concurrency: int | Sequence[int] = LOAD_DEFAULTS["concurrency"],
        request_rate: float | Sequence[float] | None = LOAD_DEFAULTS["request_rate"],
        **options: Unpack[CallOptions],
    ) -> PerfResult | list[PerfResult]:
        """Drive load against ``model`` and return a :class:`PerfResult`.

        ``concurrency`` (closed loop) or ``request_rate`` (open loop, requests/s; with
        ``arrival="constant"|"poisson"`` and ``seed``) as a list measures each level in turn
        and returns a list of results: a latency-throughput sweep in one call.
        ``warmup_s``, ``windows`` and ``window_s`` override the session's
        ``--triton-perf-*`` defaults for this call. A decoupled model is streamed over
        gRPC, every response timed (``ttft_ms``, ``itl_ms``, ... on the result; engine
        options ``token_output``, ``stream_timeout_s``); ``prompt_length`` sets the length
        of prompt inputs in tokens. When comparing or saving, at least
        ``--triton-perf-compare-windows`` windows are measured (per arm in A/B mode).

        Raises the package's errors, for ``pytest.raises`` to catch: InputSpecError (also a
        ValueError) for arguments the model or the engine does not accept, ArgumentError for
        bad window settings, ModelNotReadyError, ServerDiedError, MeasurementError.
        """
        from pytest_triton_perf.measure.engine import measure as measure_engine

        windows, engine_options = split_windows(options)
        settings = self._call_settings(
            windows.get("warmup_s"), windows.get("windows"), windows.get("window_s")
        )
        # Validated by the engine, which names the model and the bad value.
        sweep = isinstance(concurrency, Sequence) or isinstance(request_rate, Sequence)
        levels: list[dict[str, Any]]
        if request_rate is not None:
            rates = list(request_rate) if isinstance(request_rate, Sequence) else [request_rate]
            levels = [{"request_rate": r} for r in rates]
        else:
            conc = list(concurrency) if isinstance(concurrency, Sequence) else [concurrency]
            levels = [{"concurrency": c} for c in conc]
        # Errors propagate for pytest.raises to catch; the plugin reports an uncaught one in
        # one line (see plugin.short_failure).
        results = []
        self.server.check_alive()
        self.server.require_model(model, engine_options.get("version"))
        for level in levels:
            run = functools.partial(measure_engine, self.server, **level, **engine_options)
            host = HostLoad()
            measured = self._measure_one(run, model, settings)
            measured.host_load = host.finish()
            self._record(measured)
            results.append(measured.result)
        return results if sweep else results[0]

    def capacity(
        self,
        model: str,
        *,
        over: str = "concurrency",
        start: float | None = None,
        limit: float | None = None,
        resolution: float | None = None,
        bounds: Mapping[str, float] | None = None,
        **load: Unpack[CallOptions],
    ) -> CapacityResult:
        """The highest load ``model`` sustains while every latency bound of the test's
        ``sla`` marker holds (and ``max_error_rate``, 0 unless given): a
        :class:`~pytest_triton_perf.capacity.CapacityResult` with ``capacity``
        (inferences/s), ``load``, the step table, the bound that limited it and the knee.

        ``over="concurrency"`` (closed loop) or ``"request_rate"`` (open loop, latency from
        the schedule; ``arrival=`` and ``seed=`` as for :meth:`measure`). ``start``,
        ``limit`` and ``resolution`` bound the search (defaults: 1 or half the closed-loop
        throughput at concurrency 1; 1024 or 10^6/s; 1 or 5%). ``bounds`` adds to or
        overrides the marker's, e.g. ``bounds={"p99_ms": 30}`` (Model Analyzer's names
        accepted). The result is recorded: ``min_capacity`` is checked against it, and it
        is compared with its baseline in history and A/B modes.
        """
        from pytest_triton_perf.capacity import breaches, find_capacity, level_settings
        from pytest_triton_perf.measure.engine import measure as measure_engine

        spec = self._item.stash.get(SPEC_KEY, None)
        limits = spec.bounds_for(model) if spec else {}
        if bounds:
            limits.update(parse_marker(f"capacity({model!r}, bounds=...)", (), dict(bounds)))
        windows, options = split_windows(load)
        settings = measure_settings(self.settings, **windows)
        self.server.check_alive()
        self.server.require_model(model, options.get("version"))
        # The server is warm after the first level: later levels only let the queue settle.
        later = level_settings(settings, 1)

        def level_runner(name: str) -> Callable[[Mapping[str, Any]], PerfResult]:
            calls = [0]

            def run(level: Mapping[str, Any]) -> PerfResult:
                use = level_settings(settings, calls[0])
                calls[0] += 1
                return measure_engine(self.server, name, settings=use, **level, **options)

            return run

        def search(name: str) -> CapacityResult:
            return find_capacity(
                level_runner(name),
                limits,
                over=over,
                start=start,
                limit=limit,
                resolution=resolution,
                model=model,
            )

        def settle(found: CapacityResult) -> PerfResult:
            """The record of a search: the level it settled on. When comparing or saving,
            that level is measured again with the comparison's windows (the search's own
            levels are short); should it break a bound now, the next passing level below
            is taken. With no capacity at all, the first level, whose breach fails the test."""
            if found.result is None or found.capacity is None:
                return found.steps[-1].result.as_capacity(0.0)
            if not (self.settings.compare or self.settings.save):
                return found.result.as_capacity(found.capacity)
            least = max(settings.windows, self.settings.compare_windows)
            full = dataclasses.replace(
                later, windows=least, max_windows=max(settings.max_windows, least)
            )
            passing = sorted({s.load for s in found.steps if s.passed and s.phase != "probe"})
            candidates = [x for x in reversed(passing) if x <= (found.load or 0)][:2]
            result = found.result
            for load in candidates:
                level: dict[str, Any] = {
                    found.over: int(load) if found.over == "concurrency" else load
                }
                result = measure_engine(self.server, model, settings=full, **level, **options)
                if not breaches(result, found.bounds):
                    break
            return result.as_capacity(result.throughput)

        host = HostLoad()
        refs = self.session.references
        arms = refs.arms(model) if refs is not None else None
        if refs is not None and arms is not None:
            measured, found = self._capacity_ab(
                model, arms, search, settle, dict(options), settings
            )
        else:
            found = search(model)
            measured = self._capacity_measured(found, model, search, settle)
            if refs is not None:
                measured.mode = "ab"
                measured.reference_note = (
                    f"model '{model}' does not exist in the reference ({refs.origin})"
                )
        measured.host_load = host.finish()
        measured.analysis = {"capacity": found.to_dict()}
        self._record(measured)
        return found

    def search(
        self,
        model: str,
        space: Mapping[str, Any],
        *,
        objective: str = "capacity",
        sla: Mapping[str, Any] | None = None,
        strategy: str = "halving",
        over: str | None = None,
        start: float | None = None,
        limit: float | None = None,
        model_repository: str | Path | None = None,
        warmup_s: float | None = None,
        windows: int | None = None,
        window_s: float | None = None,
        **measure_kwargs: Any,
    ) -> SearchResult:
        """Search the configurations of ``model`` in ``space`` for the best on
        ``objective`` within the SLA: a :class:`~pytest_triton_perf.search.SearchResult`
        with every candidate ranked and ``best`` (``best.values``, ``best.config_pbtxt``).

        ``space`` maps instance_count, instance_kind, max_batch_size, dynamic_batching,
        preferred_batch_size, max_queue_delay_us and parameters.<key> to lists of values.
        ``objective``: "capacity" (needs a latency bound), "throughput", "p99_ms" or
        "gpu_memory_mb" (Model Analyzer's names accepted). ``sla``: the constraints
        (default: the test's marker bounds). ``strategy``: "halving" (successive halving:
        short measurements first) or "grid". Each candidate is the model's files with an
        edited config.pbtxt, loaded as ``<model>__cfg<N>`` and unloaded afterwards. The
        marker's ``max_config_gap`` fails the test when the best beats the committed
        configuration by more than that on the objective.
        """
        from pytest_triton_perf.search import run_search

        spec = self._item.stash.get(SPEC_KEY, None)
        if sla is None and spec is not None:
            sla = {k: v for k, v in spec.bounds if not metrics.BY_SLA_KEY[k].search_only}
        settings = measure_settings(
            self.settings, warmup_s=warmup_s, windows=windows, window_s=window_s
        )
        if model_repository is None and self.settings.url and self.settings.model_repository:
            # A remote server: the candidates' files come from the local model repository.
            model_repository = self.settings.model_repository
        self.server.check_alive()
        self.server.require_model(model)
        host = HostLoad()
        found = run_search(
            self.server,
            model,
            space,
            objective=objective,
            sla=sla,
            strategy=strategy,
            settings=settings,
            model_repository=model_repository,
            max_config_gap=spec.max_config_gap if spec else None,
            over=over,
            start=start,
            limit=limit,
            **measure_kwargs,
        )
        # The record: the best candidate's measurement (or, with none within the SLA, the
        # committed one's, whose breach then fails the test).
        chosen = found.best or found.committed
        result = chosen.result if chosen is not None else None
        if result is not None:
            if chosen is not None and chosen.capacity is not None:
                result = result.as_capacity(chosen.capacity)
            measured = Measured(result, config=self.session.model_config(self.server, model))
            measured.host_load = host.finish()
            measured.analysis = {"search": found.to_dict()}
            self._record(measured)
        return found

    def measure_together(
        self,
        loads: Mapping[str, Mapping[str, Any]],
        *,
        interference: bool = True,
        rounds: int | None = None,
        warmup_s: float | None = None,
        windows: int | None = None,
        window_s: float | None = None,
    ) -> dict[str, PerfResult]:
        """Measure several models at the same time, in the same windows, each under its own
        workload: ``{"a": dict(concurrency=4), "b": dict(request_rate=200)}`` (any
        :meth:`measure` keyword per model; ``warmup_s``, ``windows`` and ``window_s`` are the
        group's). Returns a :class:`PerfResult` per model, each naming the others in
        ``together_with``; the reports show one record for the group.

        ``interference`` (default on): the models are then measured alone and together in
        ``rounds`` interleaved rounds (default 6; in A/B mode, where the reference group and
        the candidate group alternate, ``--triton-perf-compare-windows`` pairs, 10, when at
        least 6 and not given) of short blocks
        (``--triton-perf-block-s``), and each result's ``interference`` holds its
        co-location cost: p99 and throughput together / alone with 95% intervals. The
        cost is a metric like the others (``colocation_p99``, ``colocation_throughput``):
        stored with the record and compared with its baseline in history and A/B modes.
        The test's ``sla`` bounds apply to every model; ``sla(models={"a": {...}})`` adds a
        model's own.
        """
        from pytest_triton_perf import colocation
        from pytest_triton_perf.measure.engine import measure_group

        groups = colocation.check_loads(loads)
        if rounds is not None:
            colocation.check_rounds(rounds)
        settings = self._call_settings(warmup_s, windows, window_s)
        self.server.check_alive()
        for model, options in groups.items():
            self.server.require_model(model, options.get("version"))

        def run(
            group: Mapping[str, Mapping[str, Any]], s: MeasureSettings
        ) -> dict[str, PerfResult]:
            return measure_group(self.server, group, settings=s)

        host = HostLoad()
        block_s = self.settings.block_s
        refs = self.session.references
        arms = {m: refs.arms(m) for m in groups} if refs is not None else {}
        missing = [m for m, a in arms.items() if a is None]
        measured: list[Measured]
        if refs is not None and not missing:
            n = rounds or max(colocation.INTERFERENCE_ROUNDS, self.settings.compare_windows)
            outcome = colocation.measure_together_ab(
                run,
                groups,
                settings,
                arms={m: (a[0], a[1]) for m, a in arms.items() if a is not None},
                rounds=n + n % 2,  # whole quads: half the pairs with the candidate first
                interference=interference,
                block_s=block_s,
                gate=self._test_gate(),
            )
            assert outcome.references is not None and outcome.comparisons is not None
            setup = "; ".join(
                f"'{a[0]}' = '{m}' from {refs.origin}" for m, a in arms.items() if a is not None
            )
            design = {
                "method": "paired, fixed design (group)",
                "pairs": outcome.rounds,
                "elapsed_s": round(outcome.elapsed_s, 2),
                "stopped": "fixed",
                "confirmed": False,
            }
            measured = [
                Measured(
                    outcome.results[m],
                    "ab",
                    reference=outcome.references[m],
                    reference_note=f"{setup}; the reference group and the candidate group "
                    f"alternated",
                    config=self.session.model_config(self.server, m),
                    comparisons=outcome.comparisons[m],
                    ab_design=design,
                )
                for m in groups
            ]
        else:

            def full() -> colocation.GroupOutcome:
                return colocation.measure_together(
                    run,
                    groups,
                    settings,
                    interference_rounds=(rounds or colocation.INTERFERENCE_ROUNDS)
                    if interference
                    else None,
                    block_s=block_s,
                )

            outcome = full()
            mode = "history" if self.settings.compare else None
            again: dict[str, PerfResult] = {}

            def remeasure(model: str) -> PerfResult:
                # One re-run of the whole group confirms every model's comparison.
                if not again:
                    again.update(full().results)
                return again[model]

            measured = [
                Measured(
                    outcome.results[m],
                    mode,
                    remeasure=functools.partial(remeasure, m) if mode else None,
                    config=self.session.model_config(self.server, m),
                )
                for m in groups
            ]
            if refs is not None:
                for m in measured:
                    m.mode = "ab"
                    m.reference_note = (
                        f"model(s) {', '.join(missing)} do not exist in the reference "
                        f"({refs.origin}): the group is not compared"
                    )
        load = host.finish()
        for i, m in enumerate(measured):
            m.host_load = load
            if i == 0:  # the group's one record
                m.analysis = {"group": outcome.analysis(block_s if outcome.rounds else None)}
            self._record(m)
        return dict(outcome.results)

    def footprint(
        self,
        model: str,
        *,
        model_repository: str | Path | None = None,
        **load: Any,
    ) -> Footprint:
        """The memory footprint of ``model``: a
        :class:`~pytest_triton_perf.footprint.Footprint` with ``cpu_memory_mb`` and
        ``gpu_memory_mb`` (deltas in MB; None with the reason where no source exists),
        per-device GPU deltas, the samples and a placement snippet (``placement()``: a
        Kubernetes resource request and the TMS lease quota).

        The model is loaded alone into the running server (as itself when not loaded, else
        as a fresh copy ``<model>__fp``), memory is sampled before the load, after it and
        under load (``load``: :meth:`measure` keywords of a short measurement, e.g.
        ``concurrency=4``), and it is unloaded again. The result is recorded:
        ``max_cpu_memory_mb`` and ``max_gpu_memory_mb`` of the test's ``sla`` bound the
        footprint's deltas. ``model_repository``: the model's files, for a copy on a
        remote server.
        """
        from pytest_triton_perf.footprint import measure_footprint
        from pytest_triton_perf.measure.engine import measure as measure_engine

        if model_repository is None and self.settings.url and self.settings.model_repository:
            model_repository = self.settings.model_repository
        host = HostLoad()
        found = measure_footprint(
            self.server,
            model,
            measure=measure_engine,
            model_repository=model_repository,
            **load,
        )
        record = found.record()
        if record is not None:
            measured = Measured(record, config=self.session.model_config(self.server, model))
            measured.host_load = host.finish()
            measured.analysis = {"footprint": found.to_dict()}
            self._record(measured)
        return found

    def _capacity_measured(
        self,
        found: CapacityResult,
        model: str,
        search: Callable[[str], CapacityResult],
        settle: Callable[[CapacityResult], PerfResult],
    ) -> Measured:
        """The record of a capacity search outside A/B mode; in history mode a regression
        is confirmed by a second search."""
        config = self.session.model_config(self.server, model)
        mode = "history" if self.settings.compare else None
        return Measured(
            settle(found),
            mode=mode,
            remeasure=(lambda: settle(search(model))) if mode else None,
            config=config,
        )

    def _capacity_ab(
        self,
        model: str,
        arms: tuple[str, str, str],
        search: Callable[[str], CapacityResult],
        settle: Callable[[CapacityResult], PerfResult],
        options: dict[str, Any],
        settings: MeasureSettings,
    ) -> tuple[Measured, CapacityResult]:
        """A/B mode: search once on the reference, compare both arms at its capacity load
        and one level up (``baseline/capacity_ab.py``)."""
        from pytest_triton_perf.baseline.capacity_ab import compare_capacity
        from pytest_triton_perf.measure.engine import measure as measure_engine

        refs = self.session.references
        assert refs is not None
        reference, candidate, setup = arms
        config = self.session.model_config(self.server, model)

        def measure(name: str, level: Mapping[str, Any], **kwargs: Any) -> PerfResult:
            return measure_engine(self.server, name, **level, **options, **kwargs)

        symmetric = candidate != model
        outcome = compare_capacity(
            measure,
            search,
            reference=reference,
            candidate=candidate,
            model=model,
            plan=self._ab_plan(settings),
            gate=self._test_gate(),
            refresh=functools.partial(refs.reload, model) if symmetric else None,
        )
        note = f"'{reference}' = '{model}' from {refs.origin}; {setup}"
        if outcome is None:
            found = search(model)
            measured = self._capacity_measured(found, model, search, settle)
            measured.mode = "ab"
            measured.reference_note = (
                f"the reference has no capacity within the bounds: nothing to compare ({note})"
            )
            return measured, found
        return (
            Measured(
                outcome.candidate,
                "ab",
                reference=outcome.reference,
                reference_note=note + "; capacity searched on the reference, both arms "
                "compared at its load and one level up",
                config=config,
                comparisons=outcome.comparisons,
                ab_design=outcome.info(),
            ),
            outcome.search,
        )

    def _call_settings(
        self, warmup_s: float | None, windows: int | None, window_s: float | None
    ) -> MeasureSettings:
        """A measurement's settings: the session's with the call's overrides, validated first
        (ArgumentError naming a bad value), then raised to the comparison's windows when
        comparing or saving: a comparison needs enough windows per arm to reach
        significance."""
        settings = measure_settings(
            self.settings, warmup_s=warmup_s, windows=windows, window_s=window_s
        )
        if self.settings.compare or self.settings.save or self.settings.ab_mode:
            least = max(settings.windows, self.settings.compare_windows)
            settings = dataclasses.replace(
                settings, windows=least, max_windows=max(settings.max_windows, least)
            )
        return settings

    def _test_gate(self) -> GateSettings:
        """The session's decision rule with the test's own minimum effects."""
        spec = self._item.stash.get(SPEC_KEY, None)
        return self.session.context.gate.with_overrides((spec.regression if spec else None) or {})

    def _ab_plan(self, settings: MeasureSettings) -> ABPlan:
        """The A/B design of the session's options, with this call's windows."""
        return ABPlan(
            method=self.settings.ab_method,
            budget_s=self.settings.compare_budget_s,
            blocks=settings.windows,
            block_s=self.settings.block_s,
            warmup_s=settings.warmup_s,
            window_s=settings.window_s,
            confirm=self.settings.ab_confirm,
        )

    def _measure_one(
        self, run: Callable[..., PerfResult], model: str, settings: MeasureSettings
    ) -> Measured:
        config = self.session.model_config(self.server, model)
        refs = self.session.references
        if refs is None:
            mode = "history" if self.settings.compare else None
            result = run(model, settings=settings)
            return Measured(
                result, mode=mode, remeasure=lambda: run(model, settings=settings), config=config
            )
        arms = refs.arms(model)
        if arms is None:
            note = f"model '{model}' does not exist in the reference ({refs.origin})"
            return Measured(run(model, settings=settings), "ab", reference_note=note, config=config)
        reference, candidate, setup = arms
        # The test's own minimum effects decide when the paired analysis may stop.
        gate = self._test_gate()
        plan = self._ab_plan(settings)
        symmetric = candidate != model  # fresh instances only where both arms are copies
        outcome = run_ab(
            run,
            reference=reference,
            candidate=candidate,
            plan=plan,
            gate=gate,
            model=model,
            refresh=functools.partial(refs.reload, model) if symmetric else None,
        )
        note = f"'{reference}' = '{model}' from {refs.origin}; {setup}"
        return Measured(
            outcome.candidate,
            "ab",
            reference=outcome.reference,
            reference_note=note,
            config=config,
            comparisons=outcome.comparisons,
            ab_design=outcome.info(),
        )

    def _record(self, measured: Measured) -> None:
        index = len(self.measured)
        self.measured.append(measured)
        self._item.user_properties.extend(properties_for(index, measured.result))


@pytest.fixture
def triton_perf(
    request: pytest.FixtureRequest,
    triton_server: TritonServer,
    triton_perf_session: PerfSession,
    pytestconfig: pytest.Config,
) -> TritonPerf:
    """Measure models on the session's Triton server: ``triton_perf.measure(model, ...)``.

    Results are evaluated against the test's ``sla`` marker after the test body, and
    compared with their baseline when ``--triton-perf-compare`` or A/B mode is on.
    """
    try:
        triton_server.check_alive()
    except TritonPerfError as e:
        problem = str(e)
    else:
        problem = ""
    if problem:
        pytest.fail(f"the session's Triton server is gone: {problem}", pytrace=False)
    return TritonPerf(
        triton_server, pytestconfig.stash[SETTINGS_KEY], request.node, triton_perf_session
    )
