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

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.result import PerfResult


@dataclass(frozen=True)
class Bound:
    """One SLA key: which figure it bounds, in which direction, in which unit."""

    key: str
    metric: str
    upper: bool
    unit: str


BOUNDS: dict[str, Bound] = {
    b.key: b
    for b in (
        Bound("p50_ms", "p50_ms", True, "ms"),
        Bound("p90_ms", "p90_ms", True, "ms"),
        Bound("p95_ms", "p95_ms", True, "ms"),
        Bound("p99_ms", "p99_ms", True, "ms"),
        Bound("avg_ms", "avg_ms", True, "ms"),
        Bound("min_throughput", "throughput", False, "infer/s"),
        Bound("max_gpu_memory_mb", "gpu_memory_mb", True, "MB"),
        Bound("max_cpu_memory_mb", "cpu_memory_mb", True, "MB"),
        Bound("max_error_rate", "error_rate", True, ""),
    )
}
DEFAULT_MAX_ERROR_RATE = 0.0


@dataclass(frozen=True)
class SlaSpec:
    """The merged bounds that apply to one test (closest marker wins per key).

    ``regression`` holds per-test minimum effects for baseline comparisons
    (``sla(regression={"p99": "15%"})``; None for a metric switches its comparison off).
    """

    bounds: tuple[tuple[str, float], ...]
    regression: dict[str, float | None] | None = None

    @property
    def as_dict(self) -> dict[str, float]:
        """key -> bound."""
        return dict(self.bounds)

    def with_defaults(self) -> dict[str, float]:
        """The bounds to evaluate: the given ones plus ``max_error_rate=0`` unless set."""
        d = {"max_error_rate": DEFAULT_MAX_ERROR_RATE}
        d.update(self.bounds)
        return d


def shown(value: Any) -> str:
    """``repr`` for messages, safe for values Python refuses to print (integers of
    thousands of digits)."""
    try:
        return repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to print>"


def _check_value(test: str, key: str, value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, (bool, str)) else math.nan
    except (TypeError, ValueError, OverflowError):  # not a number, or too big for a float
        number = math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(number):
        raise ConfigError(
            f"{test}: sla({key}={shown(value)}): the bound must be a number, "
            f"e.g. sla({key}={_example(key)})."
        )
    if key == "max_error_rate":
        if not 0 <= number <= 1:
            raise ConfigError(
                f"{test}: sla(max_error_rate={shown(value)}): a rate between 0 and 1 is accepted "
                f"(0.01 allows 1% failed requests)."
            )
    elif number <= 0 or math.isinf(number):
        raise ConfigError(
            f"{test}: sla({key}={shown(value)}): the bound must be a positive finite number "
            f"({BOUNDS[key].unit}), e.g. sla({key}={_example(key)})."
        )
    return number


def _example(key: str) -> str:
    return {"min_throughput": "100", "max_error_rate": "0.01"}.get(
        key, "5000" if key.endswith("_mb") else "30"
    )


def parse_marker(test: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, float]:
    """Validate one ``sla(...)`` marker's arguments; errors name the test, key and value."""
    if args:
        raise ConfigError(
            f"{test}: sla() takes keyword arguments only, got positional {list(args)!r}; "
            f"write e.g. sla(p99_ms=30, min_throughput=50)."
        )
    bounds: dict[str, float] = {}
    for key, value in kwargs.items():
        if key == "regression":
            continue  # parsed by parse_regression: not a bound
        if key not in BOUNDS:
            close = difflib.get_close_matches(key, list(BOUNDS), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{test}: unknown sla key {key!r}.{hint} Valid keys: {', '.join(BOUNDS)}, "
                f"regression."
            )
        bounds[key] = _check_value(test, key, value)
    return bounds


def parse_regression(test: str, value: Any) -> dict[str, float | None]:
    """``regression={"p99": "15%", "p50": None}`` or ``regression=False`` (no comparison)."""
    from pytest_triton_perf.baseline.compare import METRIC_ALIASES, parse_metric_map

    where = f"{test}: sla(regression={shown(value)})"
    if value is False:
        return {m: None for m in set(METRIC_ALIASES.values())}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: a dict of metric -> minimum effect is accepted, e.g. "
            f'regression={{"p99": "15%"}}, or regression=False to skip the comparison.'
        )
    return parse_metric_map(value, where=where)


def merge_markers(
    test: str, markers: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
) -> SlaSpec | None:
    """Merge markers given closest first (function, class, module): closest wins per key."""
    merged: dict[str, float] = {}
    regression: dict[str, float | None] = {}
    seen = False
    for args, kwargs in markers:
        seen = True
        for key, value in parse_marker(test, args, kwargs).items():
            merged.setdefault(key, value)
        if "regression" in kwargs:
            for metric, effect in parse_regression(test, kwargs["regression"]).items():
                regression.setdefault(metric, effect)
    if not seen:
        return None
    return SlaSpec(bounds=tuple(sorted(merged.items())), regression=regression or None)


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


def label(result: PerfResult) -> str:
    """How a measurement is named in tables: ``model[:version] workload``."""
    version = f":{result.version}" if result.version else ""
    return f"{result.model}{version} {result.workload.describe()}"


def interval(result: PerfResult, metric: str) -> tuple[float, float] | None:
    """95% interval of a latency or throughput figure, from the spread of its windows.

    Windows, not requests, are the unit: requests within a window are correlated, so an
    interval over pooled requests would be far too narrow. The interval always contains
    the point estimate (pooled over all requests), which is what decides.
    """
    from pytest_triton_perf.baseline.compare import median_ci

    if metric not in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms", "throughput"):
        return None
    values = []
    for w in result.windows:
        if metric == "throughput":
            values.append(w.throughput)
        elif w.latency_ms is not None:
            values.append(getattr(w.latency_ms, metric.removesuffix("_ms")))
    ci = median_ci(values) if values else None
    point = result.summary()[metric]
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
    bounds = spec.with_defaults() if spec else {"max_error_rate": DEFAULT_MAX_ERROR_RATE}
    checks: list[Check] = []
    for result in results:
        figures = result.summary()
        for key, bound in bounds.items():
            meta = BOUNDS[key]
            value = figures[meta.metric]
            if value is None:
                reason = result.unavailable_reason(meta.metric)
                if reason is None and meta.metric.endswith("_ms"):
                    reason = "no request succeeded, so there is no latency"
                note = f"unavailable: {reason or 'no source measured it'}"
                checks.append(Check(label(result), key, bound, None, False, note))
                continue
            passed = value <= bound if meta.upper else value >= bound
            note = ""
            if key == "max_error_rate" and result.errors:
                note = f"{result.errors} of {result.requests} requests failed"
                if result.first_error:
                    note += f"; first error: {result.first_error}"
            ci = interval(result, meta.metric)
            marginal = ci is not None and ci[0] <= bound <= ci[1]
            if marginal:
                note = (
                    f"marginal: the bound lies inside the 95% interval "
                    f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
                    if ci
                    else ""
                )
                if strict:
                    passed = False
                    note += " (--triton-perf-sla-mode=strict fails marginal results)"
            checks.append(Check(label(result), key, bound, value, passed, note, ci, marginal))
    return checks


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


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
        bound = f"{op} {_fmt(c.bound)}"
        verdict = ("ok" if c.passed else "FAIL") + (" (marginal)" if c.marginal else "")
        ci = f"[{_fmt(c.interval[0])}, {_fmt(c.interval[1])}]" if c.interval else "-"
        lines.append(
            f"  {c.measurement:<{width}}  {c.key:<17} {bound:>12} {_fmt(c.value):>10} "
            f"{ci:>19}  {verdict}"
        )
        if c.note and not c.passed:
            lines.append(f"  {'':<{width}}    -> {c.note}")
    return "\n".join(lines)
