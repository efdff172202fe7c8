"""The fixtures users write: ``triton_server``, ``triton_client``, ``triton_grpc_client``,
``triton_perf``. Argument normalisation and recording only: every measurement runs through
the gate pipeline (:mod:`pytest_triton_perf.gate`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pytest
from typing_extensions import Unpack

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.errors import ArgumentError, TritonPerfError
from pytest_triton_perf.gate import Measured
from pytest_triton_perf.gate.session import (
    GateSession,
    ab_plan,
    call_settings,
    measure_settings,
)
from pytest_triton_perf.gate.subjects import Measurement, Recorded, Together, capacity_subject
from pytest_triton_perf.measure.host import HostLoad
from pytest_triton_perf.measure.options import LOAD_DEFAULTS, CallOptions, split_windows
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.report.summary import properties_for
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server_fixtures import EXTRA_INFO_KEY, MEASURED_KEY, SETTINGS_KEY, SPEC_KEY
from pytest_triton_perf.settings import Settings
from pytest_triton_perf.sla import parse_marker

if TYPE_CHECKING:
    from pytest_triton_perf.capacity import CapacityMethod, CapacityResult
    from pytest_triton_perf.footprint import Footprint
    from pytest_triton_perf.gate.strategies import Subject
    from pytest_triton_perf.measure.engine import MeasureSettings
    from pytest_triton_perf.search import SearchResult

__all__ = ["TritonPerf", "triton_perf"]


class TritonPerf:
    """Measures models on the session's server; every result is checked against the test's
    ``sla`` marker (and its baseline, when comparing) after the test body."""

    def __init__(
        self, server: TritonServer, settings: Settings, item: pytest.Item, session: GateSession
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
        options ``token_output``, ``stream_timeout_s``; ``slo={"ttft_ms": 200, "tpot_ms":
        50}`` gives ``slo_attainment`` and ``goodput``); ``prompt_length`` sets the length
        of prompt inputs in tokens. A text model (BYTES ``text_input``, the vLLM and
        TensorRT-LLM backends' names) takes ``prompts="prompts.jsonl"``, ``output_length``
        and ``tokenizer="tokenizer.json"`` (input and output tokens counted by it), over
        gRPC or ``protocol="generate"`` (Triton's HTTP generate extension). When comparing
        or saving, at least ``--triton-perf-compare-windows`` windows are measured (per arm
        in A/B mode).

        Raises the package's errors, for ``pytest.raises`` to catch: InputSpecError (also a
        ValueError) for arguments the model or the engine does not accept, ArgumentError for
        bad window settings, ModelNotReadyError, ServerDiedError, MeasurementError.
        """
        from pytest_triton_perf.measure.engine import measure as measure_engine

        windows, engine_options = split_windows(options)
        settings = call_settings(self.settings, **windows)
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
        self.server.check_alive()
        self.server.require_model(model, engine_options.get("version"))
        results = []
        for level in levels:
            run = functools.partial(measure_engine, self.server, **level, **engine_options)
            (measured,) = self._run(Measurement(model, run, settings), settings)
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
        attainment: float | None = None,
        method: CapacityMethod | None = None,
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

        Capacity by goodput (DistServe's): ``attainment=0.9`` with per-request SLOs
        (``slo={"ttft_ms": 200, "tpot_ms": 50, "e2e_ms": 2000}``, a streaming model) finds
        the highest load at which at least 90% of requests meet every SLO; the level holds
        on the point estimate of its ``slo_attainment`` (the marker's
        ``min_slo_attainment`` does the same; ``attainment`` overrides it).

        ``method``: ``"ramp"`` (over ``request_rate``, the default there: one open-loop pass
        of a rising rate finds the knee of latency against rate, then one steady level
        below it confirms it; should that level break a bound, bisection finishes) or
        ``"search"`` (doubling, then bisection; the default over concurrency).
        """
        from pytest_triton_perf.capacity import goodput_bounds
        from pytest_triton_perf.measure.engine import measure as measure_engine
        from pytest_triton_perf.measure.engine import measure_ramp

        spec = self._item.stash.get(SPEC_KEY, None)
        limits = spec.bounds_for(model) if spec else {}
        if bounds:
            limits.update(parse_marker(f"capacity({model!r}, bounds=...)", (), dict(bounds)))
        limits = goodput_bounds(limits, attainment=attainment, slo=load.get("slo"), model=model)
        windows, options = split_windows(load)
        settings = measure_settings(self.settings, **windows)
        self.server.check_alive()
        self.server.require_model(model, options.get("version"))
        engine = functools.partial(measure_engine, self.server, **options)
        comparing = self.settings.compare or self.settings.save
        subject = capacity_subject(
            engine,
            model,
            limits,
            settings,
            full_windows=self.settings.compare_windows if comparing else None,
            ramp_engine=functools.partial(measure_ramp, self.server, **options),
            over=over,
            start=start,
            limit=limit,
            resolution=resolution,
            method=method,
        )
        self._run(subject, settings)
        assert subject.found is not None
        return subject.found

    def search(
        self,
        model: str,
        space: Mapping[str, Any],
        *,
        objective: str = "capacity",
        sla: Mapping[str, Any] | None = None,
        strategy: str = "predict",
        over: str | None = None,
        start: float | None = None,
        limit: float | None = None,
        method: CapacityMethod | None = None,
        model_repository: str | Path | None = None,
        warmup_s: float | None = None,
        windows: int | None = None,
        window_s: float | None = None,
        **measure_kwargs: Any,
    ) -> SearchResult:
        """The record of a search: the level it settled on. When comparing or saving,
        that level is measured again with the comparison's windows (the search's own
        levels are short); should it break a bound now, the next passing level below
        is taken. With no capacity at all, the first level, whose breach fails the test.
        ``over``, ``start``, ``limit`` and ``method`` shape each candidate's capacity
        search, as :meth:`capacity`'s do (over a rate the ramp is the default)."""
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
            method=method,
            **measure_kwargs,
        )
        # The record: the best candidate's measurement (or, with none within the SLA, the
        # committed one's, whose breach then fails the test). The drift gate reads it.
        chosen = found.best or found.committed
        if chosen is not None and chosen.result is not None:
            result = chosen.result
            if chosen.capacity is not None:
                result = result.as_capacity(chosen.capacity)
            self._run(Recorded(model, result, {"search": found.to_dict()}, host.finish()), settings)
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
        settings = call_settings(self.settings, warmup_s, windows, window_s)
        self.server.check_alive()
        for model, options in groups.items():
            self.server.require_model(model, options.get("version"))
        subject = Together(
            groups,
            lambda group, s: measure_group(self.server, group, settings=s),
            settings,
            block_s=self.settings.block_s,
            rounds=rounds or colocation.INTERFERENCE_ROUNDS,
            ab_rounds=rounds or max(colocation.INTERFERENCE_ROUNDS, self.settings.compare_windows),
            interference=interference,
        )
        self._run(subject, settings)
        assert subject.outcome is not None
        return dict(subject.outcome.results)

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
            self._run(Recorded(model, record, {"footprint": found.to_dict()}, host.finish()), None)
        return found

    def _run(self, subject: Subject, settings: MeasureSettings | None) -> list[Measured]:
        """Measure ``subject`` through the session's gate pipeline and record it: the one
        path of every capability."""
        spec = self._item.stash.get(SPEC_KEY, None)
        # The test's own minimum effects decide when the paired analysis may stop.
        gate: GateSettings = self.session.context.gate.with_overrides(
            (spec.regression if spec else None) or {}
        )
        plan = ab_plan(self.settings, settings) if settings is not None else None
        measured = self.session.pipeline.run(subject, gate=gate, plan=plan)
        for m in measured:
            index = len(self.measured)
            self.measured.append(m)
            self._item.user_properties.extend(properties_for(index, m.result))
        return measured


@pytest.fixture
def triton_perf(
    request: pytest.FixtureRequest,
    triton_server: TritonServer,
    triton_perf_session: GateSession,
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
