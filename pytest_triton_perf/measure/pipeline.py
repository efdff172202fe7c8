"""Pipelines: the steps of an ensemble, or the models a BLS model calls, measured one by one.

Triton keeps statistics per model, so a pipeline's composing models have counters of their
own. The engine reads every model's counters in one statistics call at S0 and at S1 (the
same span as the measured model's breakdown, see :mod:`measure.engine`), and this module
turns the deltas into a :class:`~pytest_triton_perf.measure.result.Pipeline`: per step its
requests, queue, compute input / infer / output, and its share of one pipeline request.

Where the steps come from:

- an **ensemble** (``platform: "ensemble"``): its configuration's ``ensemble_scheduling``,
  nested ensembles expanded. Every request of the pipeline runs every step once, so a step
  that completed more requests than that served someone else too: the excess is reported as
  other traffic (the server was not idle), the rest is the pipeline's own.
- a **BLS model** (a Python model calling others): the models named by
  ``composing_models=`` (perf_analyzer's ``--bls-composing-models``). How often a BLS model
  calls them is its own business, so their whole traffic counts as the pipeline's.
- **inferred**: for a Python-backend model without ``composing_models``, the models whose
  requests grew by an exact whole multiple of the measured model's requests (at least
  :data:`MIN_REQUESTS_TO_INFER` of them) look like BLS steps: they are shown as steps, with a
  note, and stay in ``other_traffic``, since such a count may also be a coincidence of
  another client's load. Declaring them settles it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_triton_perf.errors import InputSpecError, MeasurementError
from pytest_triton_perf.load.model_info import model_path, request_json
from pytest_triton_perf.load.model_spec import ModelSpec, ensemble_steps
from pytest_triton_perf.measure.result import Pipeline, PipelineStep
from pytest_triton_perf.measure.server_stats import StatsSnapshot, breakdown, completed
from pytest_triton_perf.server.http import HttpStatusError

#: Nested ensembles deeper than this are refused (a cycle, or a configuration gone wrong).
MAX_DEPTH = 8
#: Fewest requests of the measured model for steps to be inferred from traffic: with few
#: requests a whole multiple is too easily a coincidence.
MIN_REQUESTS_TO_INFER = 10


@dataclass(frozen=True)
class StepPlan:
    """What is known about a pipeline's steps before the measurement."""

    kind: Literal["ensemble", "bls"]
    source: Literal["config", "declared"]
    steps: tuple[str, ...]  # composing models to report, in order, each once
    # Ensembles: requests each model receives per request of the pipeline (nested
    # ensembles included); None where the pipeline decides (BLS).
    per_request: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Assessment:
    """The pipeline's breakdown and what the deltas say about other traffic."""

    pipeline: Pipeline | None
    other_traffic: tuple[tuple[str, int], ...]
    notes: tuple[str, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)


def check_composing_models(model: str, value: Any) -> tuple[str, ...] | None:
    """``composing_models`` as a tuple of names (None when not given); InputSpecError for
    anything but a non-empty list of model names."""
    if value is None:
        return None
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) > 0
        and all(isinstance(v, str) and v for v in value)
    )
    if not ok:
        raise InputSpecError(
            f"model '{model}': composing_models must be a non-empty list of model names (the"
            f" models a BLS model calls), got {value!r}"
        )
    if model in value:
        raise InputSpecError(
            f"model '{model}': composing_models={list(value)!r} names the measured model itself"
        )
    return tuple(dict.fromkeys(value))


def plan_steps(http_url: str, spec: ModelSpec, declared: Sequence[str] | None) -> StepPlan | None:
    """The steps of ``spec``'s pipeline: its ensemble configuration, or the ``declared``
    composing models of a BLS model (each checked to be ready); None for any other model.

    Raises InputSpecError for ``composing_models`` on an ensemble or naming a model the
    server does not have ready, MeasurementError for nested ensembles deeper than
    :data:`MAX_DEPTH` or a composing configuration that cannot be read.
    """
    if spec.ensemble:
        if declared:
            raise InputSpecError(
                f"model '{spec.name}' is an ensemble: its steps come from its configuration"
                f" (ensemble_scheduling); composing_models={list(declared)!r} is for BLS"
                " models"
            )
        per_request: dict[str, int] = {}
        leaves: dict[str, None] = {}
        _expand(http_url, spec.name, spec.ensemble_steps, 1, 1, per_request, leaves)
        return StepPlan("ensemble", "config", tuple(leaves), per_request)
    if not declared:
        return None
    for name in declared:
        try:
            request_json(http_url, model_path(name, None) + "/ready")
        except HttpStatusError:
            raise InputSpecError(
                f"model '{spec.name}': composing model '{name}' is not ready on the server at"
                f" {http_url}; composing_models must name loaded models"
            ) from None
    return StepPlan("bls", "declared", tuple(declared))


def _expand(
    http_url: str,
    parent: str,
    steps: Sequence[str],
    times: int,
    depth: int,
    per_request: dict[str, int],
    leaves: dict[str, None],
) -> None:
    """Add each step's requests per pipeline request; nested ensembles are expanded into
    their own steps (and counted themselves, as they receive requests too)."""
    if depth > MAX_DEPTH:
        raise MeasurementError(
            f"ensemble '{parent}' nests ensembles more than {MAX_DEPTH} deep: a cycle in"
            " ensemble_scheduling?"
        )
    for name in steps:
        per_request[name] = per_request.get(name, 0) + times
        try:
            config = request_json(http_url, model_path(name, None) + "/config")
        except (HttpStatusError, OSError, ValueError) as e:
            raise MeasurementError(
                f"ensemble '{parent}': cannot read the configuration of its step '{name}': {e}"
            ) from None
        nested = ensemble_steps(config) if config.get("platform") == "ensemble" else ()
        if nested:
            _expand(http_url, name, nested, times, depth + 1, per_request, leaves)
        else:
            leaves[name] = None


def _growth(before: Mapping[str, StatsSnapshot], after: Mapping[str, StatsSnapshot]) -> dict:
    """Completed requests of every model seen before and after, where they grew."""
    out = {}
    for name, snap in after.items():
        if name in before:
            grew = completed(snap) - completed(before[name])
            if grew > 0:
                out[name] = grew
    return out


def assess(
    plan: StepPlan | None,
    spec: ModelSpec,
    before: Mapping[str, StatsSnapshot],
    after: Mapping[str, StatsSnapshot],
) -> Assessment:
    """The pipeline of the measured model (``spec``) and the other models' traffic, from
    every model's counters at S0 (``before``) and S1 (``after``).

    Without a plan, other traffic is every other model whose count grew, as before; a
    Python-backend model may still get steps inferred from traffic (see the module's
    docstring).
    """
    model = spec.name
    grown = _growth(before, after)
    requests = grown.get(model, 0)
    others = {name: n for name, n in grown.items() if name != model}
    if not after:
        missing = {"pipeline": "Triton statistics of all models not readable"} if plan else {}
        return Assessment(None, (), unavailable=missing)
    notes: list[str] = []
    if plan is None:
        pipeline = _inferred(spec, requests, others, before, after, notes)
        return Assessment(pipeline, tuple(sorted(others.items())), tuple(notes))

    traffic: dict[str, int] = {}
    for name, n in others.items():
        if plan.per_request is None:
            if name in plan.steps:
                continue  # a declared BLS step: all of its traffic is the pipeline's
        elif name in plan.per_request:
            excess = n - plan.per_request[name] * requests
            if excess > 0:
                traffic[name] = excess
                notes.append(
                    f"step '{name}' completed {excess} request(s) more than the pipeline sent"
                    f" it: other clients used it too, and its figures include their load"
                )
            continue
        traffic[name] = n
    steps = tuple(_step(name, requests, before, after) for name in plan.steps)
    return Assessment(
        Pipeline(plan.kind, plan.source, steps), tuple(sorted(traffic.items())), tuple(notes)
    )


def _step(
    name: str,
    requests: int,
    before: Mapping[str, StatsSnapshot],
    after: Mapping[str, StatsSnapshot],
) -> PipelineStep:
    start = before.get(name, StatsSnapshot())
    end = after.get(name, start)
    server = breakdown(start, end)
    count = server.requests + server.failures
    return PipelineStep(
        model=name, server=server, calls_per_request=count / requests if requests else 0.0
    )


def _inferred(
    spec: ModelSpec,
    requests: int,
    others: Mapping[str, int],
    before: Mapping[str, StatsSnapshot],
    after: Mapping[str, StatsSnapshot],
    notes: list[str],
) -> Pipeline | None:
    """Steps of a Python-backend model that calls others (BLS) without composing_models:
    the models whose requests grew by an exact whole multiple of the model's own."""
    if spec.backend != "python" or requests < MIN_REQUESTS_TO_INFER:
        return None
    found = sorted(name for name, n in others.items() if n % requests == 0)
    if not found:
        return None
    steps = tuple(_step(name, requests, before, after) for name in found)
    listed = ", ".join(f"'{s.model}' ({s.calls_per_request:g} per request)" for s in steps)
    notes.append(
        f"BLS steps inferred from traffic: {listed} completed an exact whole multiple of the"
        f" {requests} requests of '{spec.name}'; they still count as other traffic: declare"
        f" them with composing_models={[s.model for s in steps]!r} if '{spec.name}' calls them"
    )
    return Pipeline("bls", "traffic", steps)
