"""Verdicts and the record of one measurement: SLA checks and baseline comparisons, rendered
by every report.

A record is built in the process that ran the test (an xdist worker, or the only process),
travels to the controller as a plain JSON-ready dict on the test report, and is rendered
there: terminal summary, JSON, JUnit, Markdown, plots. One model, several renderings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Verdicts of a baseline comparison, per metric and per measurement.
PASS = "pass"
REGRESSION = "regression"
IMPROVEMENT = "improvement"
INCONCLUSIVE = "inconclusive"
NO_BASELINE = "no baseline"
NOT_COMPARED = "not compared"  # no comparison mode was on for this run
VERDICTS = (PASS, REGRESSION, IMPROVEMENT, INCONCLUSIVE, NO_BASELINE, NOT_COMPARED)


@dataclass(frozen=True)
class Comparison:
    """One metric of one measurement compared with its baseline."""

    metric: str  # p50_ms | p99_ms | throughput | error_rate
    verdict: str  # one of VERDICTS
    mode: str  # "ab" (reference in the same server) or "history" (stored runs)
    baseline: float | None = None
    baseline_ci: tuple[float, float] | None = None
    current: float | None = None
    current_ci: tuple[float, float] | None = None
    change_pct: float | None = None
    p_value: float | None = None
    note: str = ""
    #: Minimum detectable effect in percent: the smallest change this comparison would have
    #: flagged with power 0.8 at the session's alpha. Infinite when it could see no change
    #: at all (JSON has no infinity: the results file writes null, the note says why);
    #: None where none is derived (the error rate, a p99 of too few requests).
    mde_pct: float | None = None
    #: Interval of ``change_pct`` (percent) where the method gives one: A/B mode's paired
    #: analysis reports its repeated confidence interval (valid at whichever look it stopped).
    change_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        for k in ("baseline_ci", "current_ci", "change_ci"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for k in ("baseline_ci", "current_ci", "change_ci"):
            d[k] = tuple(d[k]) if d.get(k) is not None else None
        return cls(**d)


@dataclass(frozen=True)
class SlaRecord:
    """One SLA bound checked against one measurement, with the 95% interval."""

    key: str
    bound: float
    value: float | None
    passed: bool
    marginal: bool = False
    interval: tuple[float, float] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        d["interval"] = list(self.interval) if self.interval else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlaRecord:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["interval"] = tuple(d["interval"]) if d.get("interval") else None
        return cls(**d)


@dataclass(frozen=True)
class MeasurementRecord:
    """Everything the reports show about one measurement.

    ``result`` is ``PerfResult.to_dict()``; ``histogram`` the pooled latencies in log-spaced
    buckets (``{"edges_ms": [...], "counts": [...]}``); ``baseline`` describes what it was
    compared with: ``{"mode", "status", "file", "revision", "histogram", "reference"}``
    (``reference`` is the A/B reference's ``PerfResult.to_dict()``).
    """

    test: str
    index: int
    label: str
    result: dict[str, Any]
    environment: dict[str, Any]
    histogram: dict[str, list[float]] = field(default_factory=dict)
    sla: tuple[SlaRecord, ...] = ()
    sla_verdict: str = "none"  # pass | FAIL | marginal | none
    comparisons: tuple[Comparison, ...] = ()
    baseline: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # the test's outcome, set on the controller: passed | failed | ...
    #: What a search made of measurements found: ``{"capacity": CapacityResult.to_dict()}``
    #: or ``{"search": SearchResult.to_dict()}`` (empty for a plain measurement).
    analysis: dict[str, Any] = field(default_factory=dict)
    #: Streaming models: the pooled TTFTs and gaps between responses in log-spaced buckets,
    #: ``{"ttft_ms": {...}, "itl_ms": {...}}`` (empty for a request/response model).
    stream_histograms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: The test's ``triton_perf.extra_info``: free-form JSON-ready metadata, stored with
    #: every measurement of the test and shown by the reports.
    extra_info: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """The measurement's baseline verdict: the worst of its metrics'."""
        order = (REGRESSION, INCONCLUSIVE, IMPROVEMENT, PASS, NO_BASELINE)
        found = {c.verdict for c in self.comparisons}
        for v in order:
            if v in found:
                return v
        if not self.baseline.get("mode"):
            return NOT_COMPARED
        status = str(self.baseline.get("status", NO_BASELINE))
        return NO_BASELINE if status == "compared" else status

    def comparison(self, metric: str) -> Comparison | None:
        """The comparison of ``metric``, if there is one."""
        return next((c for c in self.comparisons if c.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "test": self.test,
            "index": self.index,
            "label": self.label,
            "outcome": self.outcome,
            "result": self.result,
            "environment": self.environment,
            "histogram": self.histogram,
            "sla": [s.to_dict() for s in self.sla],
            "sla_verdict": self.sla_verdict,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "verdict": self.verdict,
            "baseline": self.baseline,
            "analysis": self.analysis,
            "stream_histograms": self.stream_histograms,
            "extra_info": self.extra_info,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasurementRecord:
        """Inverse of :meth:`to_dict` (the derived ``verdict`` is recomputed)."""
        return cls(
            test=d["test"],
            index=int(d["index"]),
            label=d["label"],
            result=d["result"],
            environment=d.get("environment", {}),
            histogram=d.get("histogram", {}),
            sla=tuple(SlaRecord.from_dict(s) for s in d.get("sla", [])),
            sla_verdict=d.get("sla_verdict", "none"),
            comparisons=tuple(Comparison.from_dict(c) for c in d.get("comparisons", [])),
            baseline=d.get("baseline", {}),
            outcome=d.get("outcome", ""),
            analysis=d.get("analysis") or {},
            stream_histograms=d.get("stream_histograms") or {},
            extra_info=d.get("extra_info") or {},
        )


def latency_histogram(latencies_ms: np.ndarray, buckets: int = 40) -> dict[str, list[float]]:
    """Pooled latencies in log-spaced buckets: small to store, enough to plot a distribution."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    values = values[values > 0]
    if len(values) == 0:
        return {"edges_ms": [], "counts": []}
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo * 1.01 + 1e-6
    edges = np.geomspace(lo, hi, buckets + 1)
    counts, _ = np.histogram(values, bins=edges)
    return {
        "edges_ms": [round(float(e), 6) for e in edges],
        "counts": [int(c) for c in counts],
    }


def stream_histograms(stream: Any) -> dict[str, dict[str, list[float]]]:
    """The TTFT and inter-response histograms of a ``PerfResult.stream`` (None: ``{}``)."""
    if stream is None:
        return {}
    return {
        "ttft_ms": latency_histogram(stream.ttft_samples_ms),
        "itl_ms": latency_histogram(stream.itl_samples_ms),
    }
