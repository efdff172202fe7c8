"""What the gate pipeline passes between its parts: one measurement with what its
comparison needs (:class:`Measured`), and what the session knows (:class:`GateContext`).
Data only: no engine, no pytest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.verdicts import Comparison

#: The comparison modes: None (no comparison), "history", "ab".
Mode = Literal["history", "ab"] | None


@dataclass
class Measured:
    """One measurement of a test, with what its comparison needs."""

    result: PerfResult
    mode: Mode = None  # the strategy it was measured under
    reference: PerfResult | None = None  # A/B: the reference arm
    reference_note: str = ""  # A/B: why there is no reference
    config: dict[str, Any] | None = None  # the model configuration, for its hash
    host_load: dict[str, float | None] | None = None  # load average and CPU steal share
    #: A/B paired analysis: the comparisons decided while measuring (None: compared here).
    comparisons: list[Comparison] | None = None
    ab_design: dict[str, Any] | None = None  # A/B: method, pairs, time to verdict, stop
    #: A capacity search or a configuration search behind this measurement (its to_dict()
    #: under "capacity" or "search"); shown by the reports.
    analysis: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateContext:
    """What the session knows: where baselines are, the key, the rules."""

    key: dict[str, Any]
    environment: dict[str, Any]
    store: BaselineStore | None
    gate: GateSettings = field(default_factory=GateSettings)
    strict_sla: bool = False
    #: What an inconclusive comparison does: "pass", "warn" (neither fails the test) or
    #: "fail" (the test fails, as for a regression).
    inconclusive: str = "warn"
    #: What a compared measurement without a baseline does: the same three policies.
    no_baseline: str = "warn"
    revision: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None  # for baseline paths shown relative to the rootdir
