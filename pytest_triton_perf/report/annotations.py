"""GitHub Actions annotations for undecided comparisons (``--triton-perf-inconclusive=warn``).

A workflow command printed to standard output, ``::warning file=F,line=L::message``, shows
as a warning on the test's line in the pull request and in the run's summary (GitHub's
"Workflow commands for GitHub Actions"). An inconclusive comparison does not fail the build
under ``warn``, so the annotation is what keeps it from passing unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_triton_perf.report.text import SHORT_METRIC
from pytest_triton_perf.verdicts import INCONCLUSIVE, MeasurementRecord


def _escape_data(text: str) -> str:
    """A message as a workflow command carries it: %, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A property value (file name): also ':' and ',' escaped."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def inconclusive_annotations(
    records: Sequence[MeasurementRecord], locations: Mapping[str, tuple[str, int | None]]
) -> list[str]:
    """One ``::warning`` line per measurement with an inconclusive metric.

    ``locations`` maps a test id to its file (relative to the rootdir) and 0-based line, as
    pytest's ``item.location`` gives them; a test without one is annotated without a file.
    """
    lines = []
    for r in records:
        undecided = [c for c in r.comparisons if c.verdict == INCONCLUSIVE]
        if not undecided:
            continue
        what = "; ".join(
            f"{SHORT_METRIC.get(c.metric, c.metric)}: {c.note or 'not decided'}" for c in undecided
        )
        message = f"triton-perf inconclusive: {r.test} {r.label}: {what}"
        where = ""
        if r.test in locations:
            path, line = locations[r.test]
            where = f" file={_escape_property(path)}"
            if line is not None:
                where += f",line={line + 1}"
        lines.append(f"::warning{where}::{_escape_data(message)}")
    return lines
