"""Measurement figures as pytest user properties, so that pytest's own ``--junitxml``
carries them (``triton_perf.<n>.p99_ms`` ...). The reports are rendered from the records
(``verdicts.py``), not from these."""

from __future__ import annotations

from pytest_triton_perf import metrics
from pytest_triton_perf.measure.result import PerfResult

PREFIX = "triton_perf"


def _key(index: int, name: str) -> str:
    return f"{PREFIX}.{index}.{name}"


def properties_for(index: int, result: PerfResult) -> list[tuple[str, object]]:
    """User properties describing measurement number ``index`` of a test."""
    props: list[tuple[str, object]] = [
        (_key(index, "model"), result.model + (f":{result.version}" if result.version else "")),
        (_key(index, "workload"), result.workload.describe()),
        (_key(index, "requests"), result.requests),
        (_key(index, "errors"), result.errors),
        (_key(index, "stable"), result.stable),
    ]
    for name, value in result.summary().items():
        if result.stream is None and metrics.BY_NAME[name].streaming_only:
            continue  # not a figure of a request/response model
        props.append((_key(index, name), "unavailable" if value is None else round(value, 4)))
    return props


def sla_property(index: int, verdict: str) -> tuple[str, object]:
    """The SLA verdict of measurement ``index``: pass, FAIL or none."""
    return (_key(index, "sla"), verdict)
