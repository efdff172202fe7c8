"""The metric catalogue: every figure a measurement yields, described once.

Each :class:`Metric` row says what the figure is called (``PerfResult.summary()`` names it
so), its unit and direction, where it is read from, the ``sla`` marker key that bounds it,
the other names it answers to (Model Analyzer's constraint and objective names, the short
forms of ``regression={"p99": ...}`` and ``--triton-perf-min-effect``) and whether baseline
comparisons gate it by default. The SLA bounds, the marker help, ``PerfResult.summary()``,
the report's units and short names and the comparison defaults are all generated from this
table: a new metric is one row here plus the code that computes its figure.

Model Analyzer names map to the same bound as ours: ``perf_latency_p99=30`` is
``p99_ms=30``, ``perf_throughput=100`` is ``min_throughput=100`` (Model Analyzer constrains
throughput with a ``min`` as well), ``gpu_used_memory`` and ``cpu_used_ram`` are
``max_gpu_memory_mb`` and ``max_cpu_memory_mb`` (MB in both tools). Model Analyzer has no
p50 latency record, so ``p50_ms`` has no such alias.

Level 0 of the package: imports nothing of it but ``errors`` and ``numbers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.numbers import shown


@dataclass(frozen=True)
class Gate:
    """How baseline comparisons treat a metric unless told otherwise.

    A change is a regression only when it is significant, at least ``min_effect`` and at
    least ``floor``. ``min_effect`` is relative (0.05 = 5%) for metrics compared window by
    window and an absolute difference of rates for metrics compared as counts; ``floor`` is
    absolute, in the metric's unit (0: none).
    """

    min_effect: float
    floor: float = 0.0


@dataclass(frozen=True)
class Metric:
    """One figure of a measurement, and every name and rule attached to it."""

    #: The figure's name: the key of ``PerfResult.summary()`` and of comparisons.
    name: str
    #: Unit as tables show it (``ms``, ``infer/s``, ``MB``; empty for a 0-1 rate).
    unit: str
    #: True when a larger value is worse (latency), False when it is better (throughput).
    higher_is_worse: bool
    #: Where the figure is read from: attribute (or key) path into a ``PerfResult``, its
    #: ``to_dict()``, and, for ``per_window`` metrics, into each of its windows.
    source: tuple[str, ...]
    #: Short name for table cells (``p99``).
    short: str
    #: What the figure is, with its unit: the documentation's ``sla`` table shows this text.
    help: str
    #: The ``sla`` marker key that bounds it (None: not bounded by the marker).
    sla_key: str | None = None
    #: A typical bound, for error messages and help: ``sla(p99_ms=30)``.
    example: str = ""
    #: Other names accepted wherever the figure's own name or SLA key is.
    aliases: tuple[str, ...] = ()
    #: Windows carry this figure: it has a 95% interval and is compared window by window.
    per_window: bool = False
    #: Compared as a proportion of counts (numerator, denominator fields) instead.
    counts: tuple[str, str] | None = None
    #: Default rule of baseline comparisons; None: not compared by default.
    gate: Gate | None = None
    #: A bound that applies without a marker (None: none).
    default_bound: float | None = None
    #: A 0-1 rate: bounds lie between 0 and 1 inclusive.
    fraction: bool = False
    #: Only a capacity search yields it (``triton_perf.capacity``): a plain measurement has
    #: no value and is neither checked nor compared on it.
    search_only: bool = False
    #: Only a streaming (decoupled) model yields it: a request/response measurement has no
    #: value and is neither checked nor compared on it.
    streaming_only: bool = False
    #: Only a measurement with per-request SLOs (``measure(slo=...)``) yields it: others
    #: have no value and are not compared on it (a bound on it fails: no SLO was stated).
    slo_only: bool = False
    #: Only a co-location measurement with its interference rounds yields it
    #: (``triton_perf.measure_together``): other results have no value and are neither
    #: checked nor compared on it.
    colocation_only: bool = False
    #: Where the figure's samples are (one per round), for metrics that windows do not
    #: carry: a path into the result's ``to_dict()``, as ``source``.
    samples: tuple[str, ...] = ()

    @property
    def upper(self) -> bool:
        """Whether the SLA bound is an upper bound (it is exactly when higher is worse)."""
        return self.higher_is_worse

    def read(self, source: Any) -> Any:
        """The figure from a ``PerfResult``, a window, or their ``to_dict()`` (None if absent)."""
        value = source
        for part in self.source:
            if value is None:
                return None
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        return value

    def read_samples(self, source: Any) -> list[float]:
        """The figure's per-round samples (``samples``) from a ``PerfResult`` or its
        ``to_dict()``; empty when it has none."""
        value = source
        for part in self.samples:
            if value is None:
                return []
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        return [float(v) for v in value or () if v is not None]


def _latency(q: str, what: str, alias: str | None, gate: Gate | None = None) -> Metric:
    return Metric(
        name=f"{q}_ms",
        unit="ms",
        higher_is_worse=True,
        source=("latency_ms", q),
        short=q,
        help=f"milliseconds, client-side latency, {what}",
        sla_key=f"{q}_ms",
        example="30",
        aliases=(alias,) if alias else (),
        per_window=True,
        gate=gate,
    )


def _stream_latency(figure: str, q: str, what: str, gate: Gate | None) -> Metric:
    return Metric(
        name=f"{figure}_{q}_ms",
        unit="ms",
        higher_is_worse=True,
        source=(f"{figure}_ms", q),
        short=f"{figure}_{q}",
        help=f"milliseconds, {what}, {_QUANTILE[q]} by nearest rank",
        sla_key=f"{figure}_{q}_ms",
        example={"ttft": "200", "e2e": "2000"}.get(figure, "50"),
        per_window=True,
        gate=gate,
        streaming_only=True,
    )


_QUANTILE = {"p50": "median", "p99": "99th percentile"}
_TTFT = (
    "time to first response (TTFT) of a streaming model, from the request's send (open loop: "
    "its scheduled time)"
)
_ITL = (
    "inter-response latency (ITL) of a streaming model: the gaps between consecutive "
    "responses of a request, pooled over requests"
)
_TPOT = (
    "time per output token (vLLM's TPOT, AIPerf's inter-token latency) of a streaming "
    "model: per request (end-to-end - TTFT) / (output tokens - 1), over requests of two or "
    "more tokens"
)
_E2E = "end-to-end latency of a streaming model's requests: start to last response"


def _stream_rate(name: str, unit: str, what: str, example: str) -> Metric:
    return Metric(
        name=name,
        unit=unit,
        higher_is_worse=False,
        source=(name,),
        short=name.removesuffix("_per_s"),
        help=what,
        sla_key=f"min_{name}",
        example=example,
        per_window=True,
        streaming_only=True,
    )


def _memory(device: str, what: str, alias: str) -> Metric:
    return Metric(
        name=f"{device}_memory_mb",
        unit="MB",
        higher_is_worse=True,
        source=(f"{device}_memory_mb",),
        short=f"{device}_memory",
        help=what,
        sla_key=f"max_{device}_memory_mb",
        example="5000",
        aliases=(alias,),
    )


#: The catalogue, in the order tables list the figures.
CATALOGUE: tuple[Metric, ...] = (
    _latency("p50", "median by nearest rank", None, Gate(0.05, floor=0.2)),
    _latency("p90", "90th percentile by nearest rank", "perf_latency_p90"),
    _latency("p95", "95th percentile by nearest rank", "perf_latency_p95", Gate(0.10, floor=0.5)),
    # p99 is decided one-sided (non-inferiority) at its own, wider margin: on shared cores
    # it sits between the fast body and a mode of scheduling stalls (baseline/paired.py).
    _latency("p99", "99th percentile by nearest rank", "perf_latency_p99", Gate(0.20, floor=0.5)),
    _latency("avg", "mean", "perf_latency_avg"),
    Metric(
        name="throughput",
        unit="infer/s",
        higher_is_worse=False,
        source=("throughput",),
        short="throughput",
        help="inferences per second (requests x batch size)",
        sla_key="min_throughput",
        example="100",
        aliases=("perf_throughput",),
        per_window=True,
        gate=Gate(0.05),
    ),
    Metric(
        name="capacity",
        unit="infer/s",
        higher_is_worse=False,
        source=("capacity",),
        short="capacity",
        help="inferences per second sustained while every latency bound of the test holds "
        "(triton_perf.capacity; needs a latency bound)",
        sla_key="min_capacity",
        example="100",
        per_window=True,
        gate=Gate(0.10),
        search_only=True,
    ),
    _stream_latency("ttft", "p50", _TTFT, Gate(0.05, floor=0.2)),
    _stream_latency("ttft", "p99", _TTFT, Gate(0.20, floor=0.5)),
    _stream_latency("itl", "p50", _ITL, Gate(0.05, floor=0.2)),
    _stream_latency("itl", "p99", _ITL, Gate(0.20, floor=0.5)),
    _stream_latency("tpot", "p50", _TPOT, None),
    _stream_latency("tpot", "p99", _TPOT, Gate(0.20, floor=0.5)),
    _stream_latency("e2e", "p50", _E2E, None),
    _stream_latency("e2e", "p99", _E2E, Gate(0.20, floor=0.5)),
    Metric(
        name="goodput",
        unit="requests/s",
        higher_is_worse=False,
        source=("goodput",),
        short="goodput",
        help="requests per second of a streaming model that met every per-request SLO of "
        "measure(slo=...) (failed requests never do)",
        sla_key="min_goodput",
        example="20",
        per_window=True,
        gate=Gate(0.10),
        streaming_only=True,
        slo_only=True,
    ),
    Metric(
        name="slo_attainment",
        unit="",
        higher_is_worse=False,
        source=("slo_attainment",),
        short="slo_attainment",
        help="share of a streaming model's completed requests that met every per-request "
        "SLO of measure(slo=...), 0 to 1 (failed requests count as missing them)",
        sla_key="min_slo_attainment",
        example="0.9",
        per_window=True,
        gate=Gate(0.05),
        fraction=True,
        streaming_only=True,
        slo_only=True,
    ),
    _stream_rate(
        "responses_per_s",
        "responses/s",
        "responses per second of a streaming model (of its successful requests)",
        "100",
    ),
    _stream_rate(
        "output_tokens_per_s",
        "tokens/s",
        "output tokens per second of a streaming model: elements of the output named by "
        "measure(token_output=...) in its responses",
        "100",
    ),
    Metric(
        name="tokens_per_joule",
        unit="tokens/J",
        higher_is_worse=False,
        source=("tokens_per_joule",),
        short="tokens/J",
        help="output tokens of a streaming model per joule of GPU energy over the windows "
        "(NVML's energy counter of the server's GPUs; unavailable without an NVIDIA GPU)",
        sla_key="min_tokens_per_joule",
        example="20",
        streaming_only=True,
    ),
    Metric(
        name="inferences_per_joule",
        unit="infer/J",
        higher_is_worse=False,
        source=("inferences_per_joule",),
        short="infer/J",
        help="inferences per joule of GPU energy over the windows (NVML's energy counter of "
        "the server's GPUs; unavailable without an NVIDIA GPU)",
    ),
    Metric(
        name="colocation_p99",
        unit="x",
        higher_is_worse=True,
        source=("interference", "p99_ratio"),
        short="coloc_p99",
        help="p99 latency together / alone (triton_perf.measure_together; 1.0: no "
        "co-location cost)",
        per_window=True,
        gate=Gate(0.10),
        colocation_only=True,
        samples=("interference", "p99_rounds"),
    ),
    Metric(
        name="colocation_throughput",
        unit="x",
        higher_is_worse=False,
        source=("interference", "throughput_ratio"),
        short="coloc_throughput",
        help="throughput together / alone (triton_perf.measure_together; 1.0: no co-location cost)",
        per_window=True,
        gate=Gate(0.05),
        colocation_only=True,
        samples=("interference", "throughput_rounds"),
    ),
    _memory("gpu", "MB = 10^6 bytes (as Model Analyzer), GPU memory used", "gpu_used_memory"),
    _memory("cpu", "MB = 10^6 bytes, Triton's nv_cpu_memory_used_bytes", "cpu_used_ram"),
    Metric(
        name="error_rate",
        unit="",
        higher_is_worse=True,
        source=("error_rate",),
        short="errors",
        help="failed / completed requests, 0 to 1; default 0",
        sla_key="max_error_rate",
        example="0.01",
        counts=("errors", "requests"),
        gate=Gate(0.001),
        default_bound=0.0,
        fraction=True,
    ),
)

#: Figure name -> row.
BY_NAME: dict[str, Metric] = {m.name: m for m in CATALOGUE}
#: SLA key -> row, for the metrics the marker bounds.
BY_SLA_KEY: dict[str, Metric] = {m.sla_key: m for m in CATALOGUE if m.sla_key}
#: Every name the marker accepts (its keys and their aliases) -> the SLA key.
MARKER_KEYS: dict[str, str] = {
    name: key for key, m in BY_SLA_KEY.items() for name in (key, *m.aliases)
}
#: The metrics baseline comparisons gate by default, in table order.
GATED: tuple[Metric, ...] = tuple(m for m in CATALOGUE if m.gate is not None)
#: Names accepted in metric maps (``regression={"p99": "15%"}``, ``--triton-perf-min-effect``)
#: -> the figure's name: its own name, short form and aliases, for the gated metrics.
METRIC_ALIASES: dict[str, str] = {
    name: m.name for m in GATED for name in dict.fromkeys((m.short, m.name, *m.aliases))
}

#: How the marker help spells units out.
_UNIT_WORDS = {
    "ms": "ms",
    "infer/s": "inferences/s",
    "responses/s": "responses/s",
    "requests/s": "requests/s",
    "tokens/s": "tokens/s",
    "tokens/J": "tokens per joule",
    "MB": "MB = 10^6 bytes",
    "": "a 0-1 rate",
}


def default_bounds() -> dict[str, float]:
    """The bounds that apply to every measurement, marker or not: ``{"max_error_rate": 0}``."""
    return {
        m.sla_key: m.default_bound
        for m in CATALOGUE
        if m.sla_key is not None and m.default_bound is not None
    }


def marker_help() -> str:
    """The ``sla`` marker's line in ``pytest --markers``."""
    keys = ", ".join(f"{key}=" for key in (*BY_SLA_KEY, "regression", "max_config_gap", "models"))
    units = ", ".join(dict.fromkeys(_UNIT_WORDS.get(m.unit, m.unit) for m in BY_SLA_KEY.values()))
    aliases = ", ".join(f"{a}=" for m in BY_SLA_KEY.values() for a in m.aliases)
    return (
        f"sla({keys}): service-level agreement checked against every "
        f"triton_perf.measure() result of the test ({units}); Model Analyzer's names "
        f"({aliases}) mean the same bounds; regression={{'p99': '15%'}} overrides minimum "
        f"effects of baseline comparisons; min_capacity= checks triton_perf.capacity(); "
        f"max_config_gap=0.15 fails when triton_perf.search() finds a configuration that "
        f"beats the committed one by more; models={{'a': {{'p99_ms': 30}}}} bounds one "
        f"model's results (triton_perf.measure_together)."
    )


def parse_relative(
    value: Any, *, where: str, what: str, example: float = 0.1, below: float = math.inf
) -> float:
    """A relative amount: ``"15%"``, ``"0.15"`` or ``0.15`` -> 0.15, at least 0 and less
    than ``below``. Otherwise a ConfigError starting with ``where``, naming the value as
    ``what`` and the accepted forms (a percentage or a fraction like ``example``)."""
    number = math.nan
    if isinstance(value, str):
        raw = value.strip()
        try:
            number = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except (ValueError, OverflowError):
            number = math.nan
    elif isinstance(value, Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.nan
    if not (0 <= number < below):
        raise ConfigError(
            f"{where}: {shown(value)} is not {what}; write a percentage like "
            f"'{example:.0%}' or a fraction like {example:g}."
        )
    return number


def parse_effect(value: Any, *, where: str) -> float:
    """A minimum effect: ``"15%"``, ``"0.15"`` or ``0.15`` -> 0.15 (below 10, i.e. 1000%);
    errors name ``where``, the value and the accepted forms."""
    return parse_relative(value, where=where, what="a minimum effect", below=10)


def _accepted_metrics() -> str:
    first = [m.short for m in GATED]
    more = [name for name in METRIC_ALIASES if name not in first]
    return f"{', '.join(first)} (or {', '.join(more)})"


def parse_metric_map(
    text: str | Mapping[str, Any], *, where: str, unit: str = "%"
) -> dict[str, float | None]:
    """``"p50=5%,p99=10%"`` (or a mapping) -> ``{"p50_ms": 0.05, "p99_ms": 0.1}``.

    Keys are any name of a gated metric (:data:`METRIC_ALIASES`). With ``unit="ms"`` values
    are milliseconds (``"p50=0.2ms"``). ``off`` switches a metric off (None).
    """
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ConfigError(
                    f"{where}: {part.strip()!r} is not metric=value; write e.g. "
                    f"'p50=5%,p99=10%,throughput=5%'."
                )
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out: dict[str, float | None] = {}
    for key, value in items:
        metric = METRIC_ALIASES.get(key)
        if metric is None:
            raise ConfigError(f"{where}: unknown metric {key!r}; accepted: {_accepted_metrics()}.")
        if value is None or value is False or (isinstance(value, str) and value.lower() == "off"):
            out[metric] = None
        elif unit == "ms":
            try:
                ms = float(str(value).strip().removesuffix("ms"))
            except (ValueError, OverflowError):
                ms = math.nan
            if not (0 <= ms < math.inf):
                raise ConfigError(
                    f"{where}: {shown(value)} is not a number of milliseconds >= 0 (e.g. 0.5ms)."
                )
            out[metric] = ms
        else:
            out[metric] = parse_effect(value, where=where)
    return out
