"""The gate: one pipeline from what to measure to the verdicts of a test.

- :mod:`.context`: the records passed along (:class:`Measured`, :class:`GateContext`).
- :mod:`.strategies`: how a measurement is judged (no comparison, history, A/B).
- :mod:`.subjects`: what is measured (a measurement, a capacity search, models together,
  a recorded result).
- :mod:`.pipeline`: :class:`GatePipeline`, the one mode dispatch, measuring a subject.
- :mod:`.verdict`: a test's verdict from its records (SLA checks, comparisons, screens).
"""

from __future__ import annotations

from pytest_triton_perf.gate.context import GateContext, Measured
from pytest_triton_perf.gate.pipeline import GatePipeline
from pytest_triton_perf.gate.verdict import (
    TestVerdict,
    baseline_run,
    drift_problems,
    evaluate_test,
    extra_info_problem,
    smoke_failure,
    summarize_improvements,
)

__all__ = [
    "GateContext",
    "GatePipeline",
    "Measured",
    "TestVerdict",
    "baseline_run",
    "drift_problems",
    "evaluate_test",
    "extra_info_problem",
    "smoke_failure",
    "summarize_improvements",
]
