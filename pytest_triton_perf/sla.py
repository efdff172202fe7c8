"""The ``sla`` marker: parsing, validation and evaluation. Pure: no pytest import.

Bounds are absolute: the measured point estimate decides. Latency keys are upper bounds in
milliseconds, ``min_throughput`` a lower bound in inferences per second, memory keys upper
bounds in MB (10^6 bytes, as Model Analyzer counts), ``max_error_rate`` an upper bound on
failed / completed requests (default 0: any failed request fails the test).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.numbers import fmt, fmt_interval, shown


@dataclass(frozen=True)
class Bound:
    """One SLA key: which figure it bounds, in which direction, in which unit."""

    key: str
    metric: str
    upper: bool
    unit: str


#: Marker keys that are not bounds on a figure: per-test minimum effects of comparisons, and
#: the configuration drift gate.
NOT_BOUNDS = ("regression", "max_config_gap", "models")

#: SLA key -> what it bounds, from the metric catalogue.
BOUNDS: dict[str, Bound] = {
    key: Bound(key, m.name, m.upper, m.unit) for key, m in metrics.BY_SLA_KEY.items()
}


@dataclass(frozen=True)
class SlaSpec:
    """The merged bounds that apply to one test (closest marker wins per key).

    ``regression`` holds per-test minimum effects for baseline comparisons
    (``sla(regression={"p99": "15%"})``; None for a metric switches its comparison off).
    """

    bounds: tuple[tuple[str, float], ...]
    regression: dict[str, float | None] | None = None
    #: ``sla(max_config_gap=0.15)``: the configuration drift gate of ``triton_perf.search``.
    max_config_gap: float | None = None
    #: ``sla(models={"a": {"p99_ms": 30}})``: bounds of one model's results (co-location),
    #: model -> ((key, bound), ...); they add to the test's bounds and win over them.
    models: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()

    @property
    def as_dict(self) -> dict[str, float]:
        """key -> bound."""
        return dict(self.bounds)

    def with_defaults(self) -> dict[str, float]:
        """The bounds to evaluate: the given ones plus ``max_error_rate=0`` unless set."""
        d = metrics.default_bounds()
        d.update(self.bounds)
        return d

    def bounds_for(self, model: str) -> dict[str, float]:
        """The bounds of ``model``'s results: the test's (with the defaults) and, over them,
        the model's own from ``sla(models={...})``."""
        d = self.with_defaults()
        d.update(dict(self.models).get(model, ()))
        return d


def _check_value(test: str, written: str, key: str, value: Any) -> float:
    """``value`` as the bound of SLA key ``key``, written by the user as ``written``."""
    meta = metrics.BY_SLA_KEY[key]
    try:
        number = float(value) if not isinstance(value, (bool, str)) else math.nan
    except (TypeError, ValueError, OverflowError):  # not a number, or too big for a float
        number = math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(number):
        raise ConfigError(
            f"{test}: sla({written}={shown(value)}): the bound must be a number, "
            f"e.g. sla({written}={meta.example})."
        )
    if meta.fraction:
        if not 0 <= number <= 1:
            raise ConfigError(
                f"{test}: sla({written}={shown(value)}): a rate between 0 and 1 is accepted, "
                f"e.g. sla({written}={meta.example}) for {float(meta.example):.0%}."
            )
    elif number <= 0 or math.isinf(number):
        raise ConfigError(
            f"{test}: sla({written}={shown(value)}): the bound must be a positive finite number "
            f"({meta.unit}), e.g. sla({written}={meta.example})."
        )
    return number


def parse_marker(test: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, float]:
    """Validate one ``sla(...)`` marker's arguments; errors name the test, key and value.

    Model Analyzer's names are accepted for our keys (``perf_latency_p99=30`` is
    ``p99_ms=30``) and returned under our key; one marker naming a bound twice is an error.
    """
    if args:
        raise ConfigError(
            f"{test}: sla() takes keyword arguments only, got positional {list(args)!r}; "
            f"write e.g. sla(p99_ms=30, min_throughput=50)."
        )
    bounds: dict[str, float] = {}
    written: dict[str, str] = {}
    for name, value in kwargs.items():
        if name in NOT_BOUNDS:
            continue  # parsed by parse_regression / parse_config_gap: not a bound
        key = metrics.MARKER_KEYS.get(name)
        if key is None:
            close = difflib.get_close_matches(name, list(metrics.MARKER_KEYS), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            aliases = [a for a in metrics.MARKER_KEYS if a not in BOUNDS]
            raise ConfigError(
                f"{test}: unknown sla key {name!r}.{hint} Valid keys: {', '.join(BOUNDS)}, "
                f"{', '.join(NOT_BOUNDS)} (Model Analyzer's {', '.join(aliases)} are accepted "
                f"too)."
            )
        if key in written:
            first = written[key]
            raise ConfigError(
                f"{test}: sla({first}={shown(kwargs[first])}, {name}={shown(value)}) bounds "
                f"{key} twice ({first} and {name} are the same bound); keep one of them."
            )
        written[key] = name
        bounds[key] = _check_value(test, name, key, value)
    return bounds


def parse_config_gap(test: str, value: Any) -> float:
    """``max_config_gap=0.15`` or ``"15%"``: how far the best configuration a search finds
    may beat the committed one on the objective before the test fails."""
    return metrics.parse_relative(
        value,
        where=f"{test}: sla(max_config_gap={shown(value)})",
        what="a configuration gap (how much better than the committed configuration the "
        "best found may be)",
        example=0.15,
    )


def parse_regression(test: str, value: Any) -> dict[str, float | None]:
    """``regression={"p99": "15%", "p50": None}`` or ``regression=False`` (no comparison)."""
    where = f"{test}: sla(regression={shown(value)})"
    if value is False:
        return {m.name: None for m in metrics.GATED}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: a dict of metric -> minimum effect is accepted, e.g. "
            f'regression={{"p99": "15%"}}, or regression=False to skip the comparison.'
        )
    return metrics.parse_metric_map(value, where=where)


def parse_models(test: str, value: Any) -> dict[str, dict[str, float]]:
    """``models={"a": {"p99_ms": 30}, "b": {"min_throughput": 100}}``: bounds per model, each
    validated as a marker's (errors name the test, the model and the key)."""
    where = f"{test}: sla(models={shown(value)})"
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            f"{where}: a dict of model name -> bounds is accepted, e.g. "
            f'sla(models={{"a": {{"p99_ms": 30}}, "b": {{"min_throughput": 100}}}}).'
        )
    out: dict[str, dict[str, float]] = {}
    for model, bounds in value.items():
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where}: {shown(model)} is not a model name (a string).")
        inner = f'{test}: sla(models={{"{model}": ...}})'
        if not isinstance(bounds, Mapping):
            raise ConfigError(
                f"{inner}: the bounds of model '{model}' must be a dict, got {shown(bounds)}; "
                f'write e.g. models={{"{model}": {{"p99_ms": 30}}}}.'
            )
        for key in bounds:
            if key in NOT_BOUNDS:
                raise ConfigError(
                    f"{inner}: {key} applies to the whole test, not to one model; move it out "
                    f"of models={{...}} into the sla marker itself."
                )
        out[model] = parse_marker(inner, (), dict(bounds))
    return out


def merge_markers(
    test: str, markers: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
) -> SlaSpec | None:
    """Merge markers given closest first (function, class, module): closest wins per key."""
    merged: dict[str, float] = {}
    regression: dict[str, float | None] = {}
    gap: float | None = None
    per_model: dict[str, dict[str, float]] = {}
    seen = False
    for args, kwargs in markers:
        seen = True
        if "models" in kwargs:
            for model, bounds in parse_models(test, kwargs["models"]).items():
                for key, value in bounds.items():
                    per_model.setdefault(model, {}).setdefault(key, value)
        for key, value in parse_marker(test, args, kwargs).items():
            merged.setdefault(key, value)
        if "regression" in kwargs:
            for metric, effect in parse_regression(test, kwargs["regression"]).items():
                regression.setdefault(metric, effect)
        if "max_config_gap" in kwargs and gap is None:
            gap = parse_config_gap(test, kwargs["max_config_gap"])
    if not seen:
        return None
    for bounds in (merged, *({**merged, **b} for b in per_model.values())):
        needs_latency = [k for k in bounds if metrics.BY_SLA_KEY[k].search_only]
        # A capacity by goodput is searched under min_slo_attainment instead.
        searched_under = [k for k in bounds if BOUNDS[k].unit == "ms" or k == "min_slo_attainment"]
        if needs_latency and not searched_under:
            key = needs_latency[0]
            raise ConfigError(
                f"{test}: sla({key}={bounds[key]:g}) without a latency bound: a capacity is "
                f"the load sustained while latency bounds hold, so give one too, e.g. "
                f"sla({key}={bounds[key]:g}, p99_ms=30) (or, by goodput, "
                f"min_slo_attainment=0.9 with capacity(..., slo={{...}}))."
            )
    return SlaSpec(
        bounds=tuple(sorted(merged.items())),
        regression=regression or None,
        max_config_gap=gap,
        models=tuple((m, tuple(sorted(b.items()))) for m, b in sorted(per_model.items())),
    )


@dataclass(frozen=True)
class Check:
    """One bound checked against one measurement."""

    measurement: str
    key: str
    bound: float
    value: float | None
    passed: bool
    note: str = ""
    interval: tuple[float, float] | None = None
    marginal: bool = False

    @property
    def metric(self) -> str:
        """The figure's name as results and reports call it."""
        return BOUNDS[self.key].metric


@dataclass(frozen=True)
class Breach:
    """One bound that a result's figures break, and the figure's value (None: missing)."""

    key: str
    bound: float
    value: float | None

    def __str__(self) -> str:
        """``p99_ms 43.1 > 30``, ``min_throughput 90.00 < 100.0``, ``p99_ms unavailable``."""
        if self.value is None:
            return f"{self.key} unavailable"
        op = ">" if BOUNDS[self.key].upper else "<"
        return f"{self.key} {fmt(self.value)} {op} {fmt(self.bound)}"


def breaches(
    figures: Mapping[str, Any], bounds: Mapping[str, float], *, tolerance: float = 0.0
) -> tuple[Breach, ...]:
    """The bounds (SLA key -> bound, in their order) that ``figures`` (named as
    ``PerfResult.summary()`` names them) break: a figure beyond its bound, or missing. With
    ``tolerance`` (0.2: 20%) only a figure beyond ``bound * (1 + tolerance)`` (an upper bound)
    or ``bound * (1 - tolerance)`` (a lower one) counts. The point estimate decides; a figure
    that is not a number (NaN) is not within its bound."""
    out = []
    for key, bound in bounds.items():
        raw = figures.get(BOUNDS[key].metric)
        if raw is None:
            out.append(Breach(key, bound, None))
            continue
        value = float(raw)
        if BOUNDS[key].upper:
            held = value <= bound * (1 + tolerance)
        else:
            held = value >= bound * (1 - tolerance)
        if not held:
            out.append(Breach(key, bound, value))
    return tuple(out)


def applicable(
    bounds: Mapping[str, float], result: PerfResult, figures: Mapping[str, Any]
) -> dict[str, float]:
    """``bounds`` without those that are not about ``result`` (its ``figures``): a capacity's
    bound beside a plain measurement, a streaming figure's beside a request/response model."""
    out = {}
    for key, bound in bounds.items():
        meta = metrics.BY_SLA_KEY[key]
        if meta.search_only and figures.get(meta.name) is None:
            continue  # a plain measurement beside a capacity search: not its figure
        if meta.streaming_only and result.stream is None:
            continue  # a request/response model beside a streaming one: not its figure
        out[key] = bound
    return out


def label(result: PerfResult) -> str:
    """How a measurement is named in tables: ``model[:version] workload``."""
    version = f":{result.version}" if result.version else ""
    if result.capacity is not None:
        # Named by its search, not its level: the level found may differ from run to run.
        w = result.workload
        axis = "concurrency" if w.arrival == "closed" else f"request_rate {w.arrival}"
        return f"{result.model}{version} capacity over {axis} batch={w.batch_size} {w.protocol}"
    if result.footprint:
        return f"{result.model}{version} footprint"
    text = f"{result.model}{version} {result.workload.describe()}"
    if result.together_with:
        # A model measured beside others: its own baseline, not its solo measurement's.
        text += f" with {'+'.join(result.together_with)}"
    return text


def interval(result: PerfResult, metric: str) -> tuple[float, float] | None:
    """95% interval of a figure that windows carry (latency, throughput), from the spread
    of its windows.

    Windows, not requests, are the unit: requests within a window are correlated, so an
    interval over pooled requests would be far too narrow. The interval always contains
    the point estimate (pooled over all requests), which is what decides.
    """
    meta = metrics.BY_NAME[metric]
    if not meta.per_window:
        return None
    values = [float(v) for w in result.windows if (v := meta.read(w)) is not None]
    ci = median_ci(values) if values else None
    point = meta.read(result)
    if ci is None or point is None:
        return None
    return min(ci[0], point), max(ci[1], point)


def evaluate(
    spec: SlaSpec | None, results: Sequence[PerfResult], *, strict: bool = False
) -> list[Check]:
    """Check every result against every bound (and the default error-rate bound).

    The point estimate decides; a bound inside the 95% interval makes the check
    ``marginal``, which fails in ``strict`` mode.
    """
    bounds = spec.with_defaults() if spec else metrics.default_bounds()
    checks: list[Check] = []
    measured = {r.model for r in results}
    for model, own in spec.models if spec else ():
        if model not in measured:
            for key, bound in own:
                checks.append(
                    Check(
                        f"(model {model} not measured)",
                        key,
                        bound,
                        None,
                        False,
                        f"sla(models=...) bounds model '{model}' but the test measured no "
                        f"result of it (measured: {', '.join(sorted(measured)) or 'none'})",
                    )
                )
    for key, bound in bounds.items():
        searched = metrics.BY_SLA_KEY[key].search_only
        if searched and not any(r.capacity is not None for r in results):
            checks.append(
                Check(
                    "(no capacity search)",
                    key,
                    bound,
                    None,
                    False,
                    f"the sla bounds {key} but the test ran no triton_perf.capacity() search",
                )
            )
        streamed = metrics.BY_SLA_KEY[key].streaming_only
        if streamed and results and not any(r.stream is not None for r in results):
            models = ", ".join(sorted({r.model for r in results}))
            checks.append(
                Check(
                    "(no streaming model)",
                    key,
                    bound,
                    None,
                    False,
                    f"the sla bounds {key}, a figure of streaming (decoupled) models, but the "
                    f"test measured none ({models}: one response per request)",
                )
            )
    for result in results:
        figures = result.summary()
        about = applicable(spec.bounds_for(result.model) if spec else bounds, result, figures)
        broken = {b.key for b in breaches(figures, about)}
        for key, bound in about.items():
            meta = BOUNDS[key]
            value = figures[meta.metric]
            if value is None:
                reason = result.unavailable_reason(meta.metric)
                if reason is None and meta.metric.endswith("_ms"):
                    reason = "no request succeeded, so there is no latency"
                note = f"unavailable: {reason or 'no source measured it'}"
                checks.append(Check(label(result), key, bound, None, False, note))
                continue
            passed = key not in broken
            note = ""
            if key == "max_error_rate" and result.errors:
                note = f"{result.errors} of {result.requests} requests failed"
                if result.first_error:
                    note += f"; first error: {result.first_error}"
            if not passed and metrics.BY_SLA_KEY[key].slo_only and result.slo is not None:
                note = f"SLOs missed most: {result.slo.most_missed()}"
            ci = interval(result, meta.metric)
            marginal = ci is not None and ci[0] <= bound <= ci[1]
            if marginal:
                note = f"marginal: the bound lies inside the 95% interval {fmt_interval(ci)}"
                if strict:
                    passed = False
                    note += " (--triton-perf-sla-mode=strict fails marginal results)"
            checks.append(Check(label(result), key, bound, value, passed, note, ci, marginal))
    return checks


def failure_text(test: str, checks: Sequence[Check]) -> str:
    """The one screen shown when a test breaches its SLA."""
    failed = [c for c in checks if not c.passed]
    lines = [f"SLA breached in {test}: {len(failed)} of {len(checks)} checks failed"]
    width = max([len(c.measurement) for c in checks] + [len("measurement")])
    lines.append(
        f"  {'measurement':<{width}}  {'metric':<17} {'bound':>12} {'measured':>10} "
        f"{'95% interval':>19}  verdict"
    )
    for c in checks:
        meta = BOUNDS[c.key]
        op = "<=" if meta.upper else ">="
        bound = f"{op} {fmt(c.bound)}"
        verdict = ("ok" if c.passed else "FAIL") + (" (marginal)" if c.marginal else "")
        ci = fmt_interval(c.interval)
        lines.append(
            f"  {c.measurement:<{width}}  {c.key:<17} {bound:>12} {fmt(c.value):>10} "
            f"{ci:>19}  {verdict}"
        )
        if c.note and not c.passed:
            lines.append(f"  {'':<{width}}    -> {c.note}")
    return "\n".join(lines)
