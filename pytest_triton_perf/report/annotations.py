"""GitHub Actions annotations of the gate's verdicts, on the line of the test that measured.

A workflow command printed to standard output, ``::error file=F,line=L::message`` or
``::warning ...``, shows on that line of the pull request's diff and in the run's summary
(GitHub's "Workflow commands for GitHub Actions"). The plugin prints them at the end of a
session that runs under GitHub Actions (``GITHUB_ACTIONS=true``):

- ``::error`` for an SLA breach and for a regression: the test failed, and the annotation
  says which bound or metric and by how much, where the reviewer reads the code;
- for an inconclusive comparison, by ``--triton-perf-inconclusive``: ``warn`` (the default)
  a ``::warning`` (the test passes, the annotation keeps it from passing unnoticed),
  ``fail`` an ``::error`` (the test failed), ``pass`` none (the summary alone lists it);
- for a compared measurement without a baseline, the same by ``--triton-perf-no-baseline``,
  naming where the baseline was looked for.

A measurement of a test that was expected to fail (``xfail``) is not annotated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_triton_perf.report.text import (
    SHORT_METRIC,
    comparison_reason,
    missing_baseline,
    sla_reason,
)
from pytest_triton_perf.verdicts import INCONCLUSIVE, REGRESSION, MeasurementRecord

#: Test id -> (file relative to the rootdir, 0-based line), as pytest's ``item.location``.
Locations = Mapping[str, tuple[str, int | None]]


def _escape_data(text: str) -> str:
    """A message as a workflow command carries it: %, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A property value (file name): also ':' and ',' escaped."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(level: str, record: MeasurementRecord, locations: Locations, message: str) -> str:
    """``::<level> file=F,line=L::message``; without a location, ``::<level>::message``."""
    where = ""
    if record.test in locations:
        path, line = locations[record.test]
        where = f" file={_escape_property(path)}"
        if line is not None:
            where += f",line={line + 1}"
    return f"::{level}{where}::{_escape_data(message)}"


def _undecided(record: MeasurementRecord) -> str:
    undecided = [c for c in record.comparisons if c.verdict == INCONCLUSIVE]
    what = "; ".join(
        f"{SHORT_METRIC.get(c.metric, c.metric)}: {c.note or 'not decided'}" for c in undecided
    )
    return f"triton-perf inconclusive: {record.test} {record.label}: {what}"


def inconclusive_annotations(
    records: Sequence[MeasurementRecord], locations: Locations
) -> list[str]:
    """One ``::warning`` line per measurement with an inconclusive metric."""
    return [
        _command("warning", r, locations, _undecided(r))
        for r in records
        if any(c.verdict == INCONCLUSIVE for c in r.comparisons)
    ]


def _missing(record: MeasurementRecord) -> str:
    note = record.baseline.get("note")
    return f"triton-perf {record.verdict}: {record.test} {record.label}" + (
        f": {note}" if note else ""
    )


def gate_annotations(
    records: Sequence[MeasurementRecord],
    locations: Locations,
    inconclusive: str = "warn",
    *,
    no_baseline: str = "warn",
) -> list[str]:
    """The annotations of a session: per measurement an ``::error`` for its SLA breaches,
    one for its regressions, and its inconclusive metrics and a missing baseline as the
    policies say (see the module docstring)."""
    lines = []
    for r in records:
        if r.outcome == "skipped":  # xfail: the failure was expected
            continue
        breached = [s for s in r.sla if not s.passed]
        if breached:
            what = "; ".join(sla_reason(s) for s in breached)
            lines.append(
                _command(
                    "error", r, locations, f"triton-perf SLA breach: {r.test} {r.label}: {what}"
                )
            )
        regressed = [c for c in r.comparisons if c.verdict == REGRESSION]
        if regressed:
            what = "; ".join(comparison_reason(r, c, with_note=False) for c in regressed)
            lines.append(
                _command(
                    "error", r, locations, f"triton-perf regression: {r.test} {r.label}: {what}"
                )
            )
        policed = (
            (inconclusive, any(c.verdict == INCONCLUSIVE for c in r.comparisons), _undecided),
            (no_baseline, missing_baseline(r), _missing),
        )
        for policy, found, message in policed:
            if found and policy != "pass":
                level = "error" if policy == "fail" else "warning"
                lines.append(_command(level, r, locations, message(r)))
    return lines
