"""The Markdown summary (``--triton-perf-markdown``, and ``$GITHUB_STEP_SUMMARY`` when set).

Plain GitHub-flavoured Markdown that also reads well as text: a count line, one table row per
measurement, then the details a reviewer needs to judge a failure (regressions with baseline
and current intervals, p-value, the smallest change each comparison could see, baseline file
and revision; SLA breaches with the bound and the 95% interval), the measurements that ask
for action (improvements, inconclusive: left out under ``--triton-perf-inconclusive=pass``;
measurements without a baseline, with where it was looked for: left out under
``--triton-perf-no-baseline=pass``),
and what each pass would have flagged, with the machine's load during the measurement.

Streaming (decoupled) models get a table of their per-response figures (TTFT, inter-response
latency pooled and per request, time to second response, responses and tokens per second).

Ensembles and BLS models get a "Pipelines" section: per measurement, a table of its steps
(requests, server queue and compute per request of the step, each step's share of one
pipeline request). Capacity searches get a section of their own (the headline, then the step
table), and so do configuration searches (the best configuration and its lead over the
committed one, the time spent and the pruning, the ranked candidate table, the best
config.pbtxt diff folded). So do models measured together (each model's figures together and
its co-location cost: p99 and throughput alone against together, with the change and its 95%
interval) and memory footprints (each stage's memory, the sources, the placement snippet).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_triton_perf.files import atomic_write_text
from pytest_triton_perf.footprint import placement_lines
from pytest_triton_perf.report.analysis import (
    best_diff,
    capacity_effort,
    capacity_headline,
    capacity_notes,
    capacity_of,
    capacity_table,
    capacity_title,
    footprint_headline,
    footprint_of,
    footprint_sources,
    footprint_table,
    group_lines,
    group_of,
    group_table,
    group_title,
    search_lines,
    search_of,
    search_table,
    search_title,
)
from pytest_triton_perf.report.context import DEFAULT_TITLE, ReportContext
from pytest_triton_perf.report.streaming import HEADER as STREAM_HEADER
from pytest_triton_perf.report.streaming import stream_row, streamed
from pytest_triton_perf.report.text import (
    PIPELINE_HEADER,
    could_see,
    counts_text,
    extra_infos,
    fmt,
    fmt_interval,
    fmt_mb,
    fmt_mde,
    fmt_p,
    fmt_pct,
    host_load,
    missing_baseline,
    model_name,
    num,
    pipeline_of,
    pipeline_rows,
    pipeline_title,
    revision_text,
    summary_figures,
    verdict_cell,
    with_unit,
    workload_text,
)
from pytest_triton_perf.sla import BOUNDS
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    MeasurementRecord,
)


def _cell(text: object) -> str:
    """Text safe in a table cell: pipes escaped, newlines flattened (both break the row).

    GitHub's table parser unescapes ``\\|`` inside code spans too, so this also holds there.
    """
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: object) -> str:
    """Inline code (test ids, file names), safe in a table cell."""
    inner = _cell(text).replace("`", "'")
    return f"`{inner}`"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Table lines; cells must already be made safe with :func:`_cell` or :func:`_code`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _memory(record: MeasurementRecord) -> str:
    f = summary_figures(record)
    parts = []
    if f["gpu_memory_mb"] is not None:
        parts.append(f"GPU {fmt_mb(f['gpu_memory_mb'])} MB")
    if f["cpu_memory_mb"] is not None:
        parts.append(f"CPU {fmt_mb(f['cpu_memory_mb'])} MB")
    joules = num(record.result.get("energy_j"))
    if joules is not None:  # GPU energy over the windows, and what it bought
        per = f["tokens_per_joule"] or f["inferences_per_joule"]
        unit = "tokens/J" if f["tokens_per_joule"] is not None else "infer/J"
        parts.append(f"GPU {fmt(joules)} J" + (f" ({fmt(per)} {unit})" if per else ""))
    return ", ".join(parts) or "-"


def _sla_cell(record: MeasurementRecord) -> str:
    return f"**{record.sla_verdict}**" if record.sla_verdict == "FAIL" else record.sla_verdict


def _verdict_cell(record: MeasurementRecord) -> str:
    text = verdict_cell(record)
    return f"**{text}**" if record.verdict == REGRESSION and text != "-" else text


def _baseline_source(record: MeasurementRecord) -> str:
    b = record.baseline
    if not b:
        return ""
    mode = {"ab": "A/B reference in the same server", "history": "stored runs"}.get(
        str(b.get("mode")), str(b.get("mode") or "")
    )
    parts = [f"baseline: {mode}" if mode else "baseline"]
    if b.get("file"):
        parts.append(f"file {_code(b['file'])}")
    if b.get("revision"):
        parts.append(f"revision {_cell(revision_text(b['revision']))}")
    if b.get("note"):
        parts.append(_cell(b["note"]))
    load = host_load(record)
    if load:
        parts.append(f"this measurement: {load}")
    return ", ".join(parts)


def _comparison_details(records: Sequence[MeasurementRecord], verdict: str) -> list[str]:
    lines: list[str] = []
    for r in records:
        rows = [
            [
                _cell(c.metric),
                fmt(c.baseline),
                fmt_interval(c.baseline_ci),
                fmt(c.current),
                fmt_interval(c.current_ci),
                fmt_pct(c.change_pct),
                fmt_p(c.p_value),
                fmt_mde(c.mde_pct),
                _cell(c.note),
            ]
            for c in r.comparisons
            if c.verdict == verdict
        ]
        if not rows:
            continue
        lines += ["", f"#### {_code(r.test)}: {_cell(r.label)}", ""]
        lines += _table(
            [
                "metric",
                "baseline",
                "baseline 95% interval",
                "current",
                "current 95% interval",
                "change",
                "p-value",
                "could see",
                "note",
            ],
            rows,
        )
        source = _baseline_source(r)
        if source:
            lines += ["", source]
    return lines


def _missing_details(records: Sequence[MeasurementRecord]) -> list[str]:
    """The measurements compared with no baseline, each with where it was looked for."""
    missing = [r for r in records if missing_baseline(r)]
    if not missing:
        return []
    lines = [
        "",
        "### No baseline",
        "",
        "These measurements were not compared (record baselines with `--triton-perf-save`; "
        "`--triton-perf-no-baseline=fail` fails them).",
        "",
    ]
    for r in missing:
        note = r.baseline.get("note")
        lines.append(
            f"- {_code(r.test)}: {_cell(r.label)}: {_cell(r.verdict)}"
            + (f": {_cell(note)}" if note else "")
        )
    return lines


def _pass_details(records: Sequence[MeasurementRecord]) -> list[str]:
    """One line per measurement with passing metrics: what they would have flagged, and the
    machine's load (a pass is only as strong as the smallest change it could see)."""
    lines = []
    for r in records:
        seen = could_see(c for c in r.comparisons if c.verdict == PASS)
        if not seen:
            continue
        what = "; ".join(x for x in (seen, host_load(r)) if x)
        if what:
            lines.append(f"- {_code(r.test)}: {_cell(r.label)}: {_cell(what)}")
    return ["", "### Passes", "", *lines] if lines else []


def _sla_details(records: Sequence[MeasurementRecord]) -> list[str]:
    rows = []
    for r in records:
        for s in r.sla:
            if s.passed and not s.marginal:
                continue
            bound = BOUNDS.get(s.key)
            op = "<=" if bound is None or bound.upper else ">="
            metric = bound.metric if bound else s.key
            rows.append(
                [
                    _code(r.test),
                    _cell(r.label),
                    s.key,
                    f"{op} {with_unit(s.bound, metric)}",
                    with_unit(s.value, metric),
                    fmt_interval(s.interval),
                    "**FAIL**" if not s.passed else "marginal",
                    _cell(s.note),
                ]
            )
    if not rows:
        return []
    header = ["test", "measurement", "key", "bound", "measured", "95% interval", "verdict", "note"]
    return ["", "### SLA breaches and marginal results", "", *_table(header, rows)]


def _extra_info(records: Sequence[MeasurementRecord]) -> list[str]:
    """A line per test with ``triton_perf.extra_info``."""
    lines = [f"- {_code(test)}: {_cell(text)}" for test, text in extra_infos(records)]
    return ["", "### Extra info", "", *lines] if lines else []


def _fenced(text: str, language: str = "") -> list[str]:
    """A fenced code block longer than any run of backticks in ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, *text.rstrip("\n").splitlines(), fence]


def _stream_details(records: Sequence[MeasurementRecord]) -> list[str]:
    rows = []
    for r in records:
        if streamed(r):
            test, *cells = stream_row(r)
            rows.append([_code(test), *(_cell(c) for c in cells)])
    if not rows:
        return []
    return ["", "### Streaming", "", *_table(STREAM_HEADER, rows)]


def _pipeline_details(records: Sequence[MeasurementRecord]) -> list[str]:
    """The "Pipelines" section: per ensemble or BLS measurement, its steps in a table."""
    lines: list[str] = []
    for r in records:
        pipeline = pipeline_of(r)
        if pipeline is None:
            continue
        lines += [
            "",
            f"**{_cell(r.test)}** {_cell(model_name(r))} {_cell(workload_text(r))}: "
            f"{pipeline_title(pipeline)}",
            "",
            *_table(PIPELINE_HEADER, [[_cell(c) for c in row] for row in pipeline_rows(pipeline)]),
        ]
    if not lines:
        return []
    return [
        "",
        "### Pipelines",
        "",
        "Server time per composing model (Triton's statistics of each step over the same "
        "windows): queue and compute per request of the step; *share* is what the step adds "
        "to one request of the pipeline.",
        *lines,
    ]


def _capacity_details(records: Sequence[MeasurementRecord]) -> list[str]:
    lines: list[str] = []
    for r in records:
        cap = capacity_of(r)
        if cap is None:
            continue
        header, rows = capacity_table(cap)
        lines += ["", f"#### {_code(r.test)}: {_cell(capacity_title(cap))}", ""]
        lines += [f"**{_cell(capacity_headline(cap))}**, {capacity_effort(cap)}", ""]
        lines += [f"- note: {_cell(n)}" for n in capacity_notes(cap)]
        lines += [""] if capacity_notes(cap) else []
        lines += _table(header, [[_cell(c) for c in row] for row in rows])
    return ["", "### Capacity", *lines] if lines else []


def _search_details(records: Sequence[MeasurementRecord]) -> list[str]:
    lines: list[str] = []
    for r in records:
        search = search_of(r)
        if search is None:
            continue
        header, rows = search_table(search)
        lines += ["", f"#### {_code(r.test)}: {_cell(search_title(search))}", ""]
        lines += [f"- {_cell(x)}" for x in search_lines(search)]
        lines += ["", *_table(header, [[_cell(c) for c in row] for row in rows])]
        diff = best_diff(search)
        if diff:
            summary = "best config.pbtxt (diff against the committed one)"
            lines += ["", f"<details><summary>{summary}</summary>", ""]
            lines += [*_fenced(diff, "diff"), "", "</details>"]
    return ["", "### Configuration search", *lines] if lines else []


def _group_details(records: Sequence[MeasurementRecord]) -> list[str]:
    lines: list[str] = []
    for r in records:
        group = group_of(r)
        if group is None:
            continue
        header, rows = group_table(group)
        lines += ["", f"#### {_code(r.test)}: {_cell(group_title(group))}", ""]
        lines += _table(header, [[_cell(c) for c in row] for row in rows])
        lines += ["", *(f"- {_cell(x)}" for x in group_lines(group))]
    return ["", "### Co-location", *lines] if lines else []


def _footprint_details(records: Sequence[MeasurementRecord]) -> list[str]:
    lines: list[str] = []
    for r in records:
        fp = footprint_of(r)
        if fp is None:
            continue
        header, rows = footprint_table(fp)
        lines += ["", f"#### {_code(r.test)}: **{_cell(footprint_headline(fp))}**", ""]
        lines += _table(header, [[_cell(c) for c in row] for row in rows])
        lines += ["", *(f"- {_cell(x)}" for x in footprint_sources(fp))]
        placement = placement_lines(fp)
        if placement:
            lines += ["", "Placement:", "", *_fenced("\n".join(placement), "yaml")]
    return ["", "### Memory footprint", *lines] if lines else []


def _environment(environment: Mapping[str, Any]) -> list[str]:
    rows = [
        [_cell(k), _cell(environment[k])]
        for k in sorted(environment)
        if environment[k] not in (None, "")
    ]
    if not rows:
        return []
    return [
        "",
        "<details><summary>Environment</summary>",
        "",
        *_table(["key", "value"], rows),
        "",
        "</details>",
    ]


def render_markdown(
    records: Sequence[MeasurementRecord],
    *,
    title: str = DEFAULT_TITLE,
    environment: Mapping[str, Any] | None = None,
    inconclusive: str = "warn",
    no_baseline: str = "warn",
) -> str:
    """The Markdown summary of ``records``; ``environment`` adds a collapsed table;
    ``inconclusive`` and ``no_baseline`` are the session's policies (``pass``: no details
    of undecided metrics, of measurements without a baseline)."""
    lines = [f"## {title}", ""]
    if not records:
        return "\n".join([*lines, "No measurements.", ""])
    lines += [f"**{counts_text(records)}**", ""]
    header = [
        "test",
        "model",
        "workload",
        "p50 ms",
        "p99 ms",
        "infer/s",
        "memory",
        "SLA",
        "baseline",
    ]
    rows = []
    for r in records:
        f = summary_figures(r)
        rows.append(
            [
                _code(r.test),
                _cell(model_name(r)),
                _cell(workload_text(r)),
                fmt(f["p50_ms"]),
                fmt(f["p99_ms"]),
                fmt(f["throughput"], 1),
                _memory(r),
                _sla_cell(r),
                _verdict_cell(r),
            ]
        )
    lines += _table(header, rows)
    lines += _extra_info(records)

    regressions = _comparison_details(records, REGRESSION)
    if regressions:
        lines += ["", "### Regressions", *regressions]
    lines += _sla_details(records)
    lines += _stream_details(records)
    lines += _pipeline_details(records)
    lines += _capacity_details(records)
    lines += _search_details(records)
    lines += _group_details(records)
    lines += _footprint_details(records)
    improvements = _comparison_details(records, IMPROVEMENT)
    if improvements:
        lines += ["", "### Improvements", "", "Accept them with `--triton-perf-save`."]
        lines += improvements
    undecided = _comparison_details(records, INCONCLUSIVE) if inconclusive != "pass" else []
    if undecided:
        lines += [
            "",
            "### Inconclusive",
            "",
            "These metrics were not decided (the note says why: windows too noisy, or a "
            "test unable to see the smallest change that counts); they were not gated.",
            *undecided,
        ]
    if no_baseline != "pass":
        lines += _missing_details(records)
    lines += _pass_details(records)
    lines += _environment(environment or {})
    return "\n".join(lines) + "\n"


def write_markdown(path: str | os.PathLike[str], text: str) -> Path:
    """Write the Markdown summary to ``path`` (atomically)."""
    return atomic_write_text(path, text)


def append_markdown(path: str | os.PathLike[str], text: str) -> Path:
    """Append ``text`` to ``path``, separated from earlier content by a blank line.

    GitHub Actions collects every step's appends to ``$GITHUB_STEP_SUMMARY`` into the job
    summary, so this appends (never replaces).
    """
    target = Path(path)
    with target.open("a", encoding="utf-8") as f:
        if target.stat().st_size:
            f.write("\n")
        f.write(text if text.endswith("\n") else text + "\n")
    return target


def _render(records: Sequence[MeasurementRecord], context: ReportContext) -> str:
    return render_markdown(
        records,
        title=context.title,
        environment=context.environment,
        inconclusive=context.inconclusive,
        no_baseline=context.no_baseline,
    )


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the Markdown summary of ``records`` at ``destination``."""
    return [write_markdown(destination, _render(records, context))]


def append_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer of the job summary: the Markdown summary appended to
    ``destination`` (the file ``$GITHUB_STEP_SUMMARY`` names)."""
    return [append_markdown(destination, _render(records, context))]
