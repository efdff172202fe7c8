"""The perf JUnit file (``--triton-perf-junit``): one testcase per measurement and metric.

CI systems (GitLab, Jenkins, GitHub test reporters) list JUnit testcases one by one, so each
SLA bound and each baseline comparison is a testcase of its own: ``classname`` is the pytest
test id, ``name`` is ``<label> sla:<key>`` or ``<label> baseline:<metric>``.

Outcomes:

- a breached SLA bound, or a metric that regressed: ``<failure>`` whose message is the
  one-line reason (the full figures go into the failure text);
- "no baseline" and "inconclusive": ``<skipped>`` with the reason. Neither fails the build,
  and neither may read as a pass: a skipped testcase is the one JUnit outcome that says
  "not decided" in every CI viewer;
- pass and improvement: a plain testcase; the verdict is in its properties.

The figures are ``<properties>`` of each testcase (``measured``, ``bound``, ``interval_low``,
``interval_high``, ``baseline``, ``change_pct``, ``p_value``, ``mde_pct``, ...; a streaming
model's ``ttft_p50_ms`` ... ``output_tokens_per_s`` on each of its testcases), as pytest's own
``--junitxml`` writes user properties. The ``junit-xml`` package builds the document; it has
no testcase properties, so they are added to its element tree before writing.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.files import atomic_write_text
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.text import (
    comparison_reason,
    model_name,
    num,
    revision_text,
    sla_reason,
    was_compared,
    workload_text,
)
from pytest_triton_perf.verdicts import (
    INCONCLUSIVE,
    NO_BASELINE,
    REGRESSION,
    Comparison,
    MeasurementRecord,
    SlaRecord,
)

SUITE_NAME = "triton-perf"


@dataclass
class _Case:
    """A testcase before it becomes XML: junit-xml's fields plus our properties."""

    classname: str
    name: str
    properties: dict[str, str] = field(default_factory=dict)
    failure: tuple[str, str] | None = None  # (message, text)
    skipped: str | None = None
    elapsed_s: float | None = None


def _value(v: Any) -> str | None:
    """A property value: numbers rounded to 6 significant digits, None left out."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    f = num(v)
    if f is not None:
        return f"{f:.6g}"
    return str(v)


def _props(**items: Any) -> dict[str, str]:
    out = {}
    for k, v in items.items():
        text = _value(v)
        if text is not None:
            out[k] = text
    return out


def _interval(ci: Sequence[float] | None, prefix: str = "") -> dict[str, str]:
    if not ci or len(ci) != 2:
        return {}
    return _props(**{f"{prefix}interval_low": ci[0], f"{prefix}interval_high": ci[1]})


def _common(record: MeasurementRecord) -> dict[str, str]:
    props = _props(
        model=model_name(record),
        workload=workload_text(record),
        measurement_index=record.index,
        stable=record.result.get("stable"),
    )
    if record.result.get("streaming"):
        # A streaming model's per-response figures, on each of its testcases.
        props.update(
            _props(**{m.name: m.read(record.result) for m in metrics.CATALOGUE if m.streaming_only})
        )
    # The test's triton_perf.extra_info, one property per key; values other than text as JSON.
    for key, value in record.extra_info.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        props[f"extra_info.{key}"] = text
    return props


def _sla_case(record: MeasurementRecord, name: str, s: SlaRecord) -> _Case:
    props = _common(record)
    props.update(
        _props(
            check="sla",
            metric=s.key,
            measured=s.value,
            bound=s.bound,
            marginal=s.marginal,
            verdict="pass" if s.passed else "FAIL",
        )
    )
    props.update(_interval(s.interval))
    if s.note:
        props["note"] = s.note
    case = _Case(record.test, f"{name} sla:{s.key}", props)
    if not s.passed:
        reason = f"SLA breached: {sla_reason(s)}"
        case.failure = (reason, f"{record.test}\n{record.label}\n{reason}")
    return case


def _comparison_case(record: MeasurementRecord, name: str, c: Comparison) -> _Case:
    props = _common(record)
    props.update(
        _props(
            check="baseline",
            metric=c.metric,
            verdict=c.verdict,
            mode=c.mode,
            measured=c.current,
            baseline=c.baseline,
            change_pct=c.change_pct,
            p_value=c.p_value,
            mde_pct=c.mde_pct,
            baseline_file=record.baseline.get("file"),
            baseline_revision=revision_text(record.baseline.get("revision")) or None,
        )
    )
    props.update(_interval(c.current_ci))
    props.update(_interval(c.baseline_ci, "baseline_"))
    props.update(_interval(c.change_ci, "change_pct_"))
    if c.note:
        props["note"] = c.note
    case = _Case(record.test, f"{name} baseline:{c.metric}", props)
    reason = comparison_reason(record, c)
    if c.verdict == REGRESSION:
        case.failure = (f"regression: {reason}", f"{record.test}\n{record.label}\n{reason}")
    elif c.verdict == NO_BASELINE:
        case.skipped = f"no baseline: {c.note or 'run with --triton-perf-save to record one'}"
    elif c.verdict == INCONCLUSIVE:
        figures = comparison_reason(record, c, with_note=False)
        case.skipped = f"inconclusive: {c.note or 'measurement unstable'}; {figures}"
    return case


def _cases(records: Sequence[MeasurementRecord]) -> list[_Case]:
    # A label repeats within a test only when the same workload is measured twice; the
    # measurement index keeps those testcase names apart.
    labels = Counter((r.test, r.label) for r in records)
    cases: list[_Case] = []
    for record in records:
        name = record.label
        if labels[(record.test, record.label)] > 1:
            name += f" #{record.index}"
        mine = [_sla_case(record, name, s) for s in record.sla]
        mine += [_comparison_case(record, name, c) for c in record.comparisons]
        if not record.comparisons:
            # Every measurement gets a baseline testcase, so "not compared" is visible too.
            status = str(record.baseline.get("status") or NO_BASELINE)
            case = _Case(record.test, f"{name} baseline", _common(record))
            case.properties.update(_props(check="baseline", verdict=record.verdict))
            if was_compared(record):
                note = record.baseline.get("note")
                case.skipped = (
                    f"{status}: "
                    + (f"{note}; " if note else "")
                    + "run with --triton-perf-save to record one"
                )
            else:
                case.skipped = (
                    "not compared: no --triton-perf-compare or --triton-perf-baseline-ref"
                )
            mine.append(case)
        # The measurement's duration counts once, on its first testcase, so the suite's
        # total time is the time spent measuring.
        mine[0].elapsed_s = num(record.result.get("duration_s"))
        cases.extend(mine)
    return cases


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k in sorted(value, key=str):
            _flat(f"{prefix}.{k}" if prefix else str(k), value[k], out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = ", ".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = _value(value) or ""


def junit_string(
    records: Sequence[MeasurementRecord],
    *,
    environment: Mapping[str, Any] | None = None,
    suite_name: str = SUITE_NAME,
) -> str:
    """The JUnit XML text for ``records``; ``environment`` becomes suite properties."""
    try:
        import junit_xml
    except ImportError:
        raise ImportError(
            "--triton-perf-junit needs the junit-xml package: pip install junit-xml "
            "(a dependency of pytest-triton-perf; reinstall the plugin)"
        ) from None

    cases = _cases(records)
    suite_props: dict[str, str] = {}
    _flat("environment", environment or {}, suite_props)
    tcs = []
    for c in cases:
        tc = junit_xml.TestCase(c.name, classname=c.classname, elapsed_sec=c.elapsed_s)
        if c.failure:
            tc.add_failure_info(message=c.failure[0], output=c.failure[1], failure_type="perf")
        if c.skipped:
            tc.add_skipped_info(message=c.skipped)
        tcs.append(tc)
    suite = junit_xml.TestSuite(suite_name, tcs, properties=suite_props or None)
    raw = junit_xml.to_xml_report_string([suite], prettyprint=False)

    root = ET.fromstring(raw)
    elements = list(root.iter("testcase"))
    # junit-xml writes the cases in the order given; strict zip catches any other order.
    for element, c in zip(elements, cases, strict=True):
        if c.properties:
            props = ET.Element("properties")
            for k, v in c.properties.items():
                ET.SubElement(props, "property", {"name": k, "value": v})
            element.insert(0, props)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(
    path: str | os.PathLike[str],
    records: Sequence[MeasurementRecord],
    *,
    environment: Mapping[str, Any] | None = None,
) -> Path:
    """Write the perf JUnit file for ``records`` to ``path`` (atomically)."""
    return atomic_write_text(path, junit_string(records, environment=environment))


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the perf JUnit file of ``records`` at ``destination``."""
    return [write_junit(destination, records, environment=context.environment)]
