"""PNG plots (``--triton-perf-plots=DIR``): latency distributions and latency-throughput curves.

matplotlib is an optional extra (``pip install 'pytest-triton-perf[plots]'``), imported only
when plots are asked for, and used through ``Figure`` and the Agg canvas directly: pyplot's
global state and backend selection have no place in a test run (no display, maybe threads).

- ``latency-<test>-<n>.png``, one per measurement: the latency distribution (density over a
  log axis, and the cumulative share) of the current run against its baseline: the stored
  run's histogram in history mode, the reference's in A/B mode, the current run alone
  (and titled so) when there is none.
- ``curve-<test>-<model>-<protocol>-b<batch>.png``, one per test, model, protocol and batch
  size measured at several concurrency levels (or request rates): p50 and p99 latency against
  throughput, each point labelled with its load, the baseline's curve dashed when known.
- ``capacity-<test>-<n>.png``, one per capacity search: each bounded latency of the steps
  against throughput (steps in load order, each labelled with its load, those that broke a
  bound crossed), every bound a horizontal dashed line, the capacity point marked and
  labelled, the knee a dotted vertical line.
- ``stream-<test>-<n>.png``, one per measurement of a streaming (decoupled) model: the
  distributions of its time to first response (TTFT) and of the gaps between consecutive
  responses (ITL), density over a log axis and cumulative share, against the baseline's
  (stored run or A/B reference) when it has them, p50 and p99 marked.
- ``search-<test>-<n>.png``, one per configuration search: every candidate measured on
  throughput (x) against p99 (y), the SLA's p99 bound (and minimum throughput) drawn, the
  best and the committed configuration marked (Model Analyzer's main chart); and
  ``search-memory-<test>-<n>.png``, GPU memory (x) against p99, when any candidate has a
  GPU memory figure.
- ``colocation-<test>-<n>.png``, one per group of models measured together with their
  interference rounds: each model's p99 and throughput alone and together, the together bar
  with the 95% interval of the change, the change written above it.

``measurements`` draws the first four kinds, ``analyses`` the capacity, search and
co-location figures, ``canvas`` holds what they share (palette, figure, file names).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pytest_triton_perf.errors import PlotError
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.plots.analyses import (
    analysis_plots,
    capacity_figure,
    group_figure,
    search_figure,
    search_memory_figure,
)
from pytest_triton_perf.report.plots.canvas import new_figure, safe_name, unique_names
from pytest_triton_perf.report.plots.measurements import (
    curve_groups,
    curve_plot,
    latency_plot,
    stream_plot,
)
from pytest_triton_perf.verdicts import MeasurementRecord

__all__ = [
    "PlotError",
    "capacity_figure",
    "group_figure",
    "search_figure",
    "search_memory_figure",
    "write_plots",
    "write_report",
]


def write_plots(
    directory: str | os.PathLike[str], records: Sequence[MeasurementRecord]
) -> list[Path]:
    """Write the PNG plots of ``records`` into ``directory``; returns the files written.

    Measurements without a latency histogram (no request succeeded) get no distribution plot.
    Raises :class:`PlotError` when matplotlib is not installed.
    """
    out = Path(directory)
    if not records:
        return []
    new_figure(1, 1)  # fail early, before creating the directory, when matplotlib is missing
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    latency_keys = [
        (f"{r.test}\0{r.index}", f"latency-{safe_name(r.test)}-{r.index}") for r in records
    ]
    names = unique_names(latency_keys)
    for r, (raw, _) in zip(records, latency_keys, strict=True):
        p = latency_plot(r, out / f"{names[raw]}.png")
        if p is not None:
            written.append(p)

    stream_keys = [
        (f"{r.test}\0{r.index}", f"stream-{safe_name(r.test)}-{r.index}")
        for r in records
        if r.stream_histograms
    ]
    names = unique_names(stream_keys)
    for r, (raw, _) in zip([r for r in records if r.stream_histograms], stream_keys, strict=True):
        p = stream_plot(r, out / f"{names[raw]}.png")
        if p is not None:
            written.append(p)

    groups = curve_groups(records)
    curve_keys = [
        (
            "\0".join(map(str, key)),
            f"curve-{safe_name(key[0])}-{safe_name(key[1], 40)}-{key[2]}-b{key[3]}"
            + ("" if key[4] == "closed" else f"-{safe_name(key[4])}"),
        )
        for key in groups
    ]
    names = unique_names(curve_keys)
    for (key, group), (raw, _) in zip(groups.items(), curve_keys, strict=True):
        p = curve_plot(key, group, out / f"{names[raw]}.png")
        if p is not None:
            written.append(p)
    written += analysis_plots(records, out)
    return written


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the plots of ``records`` in the directory ``destination``."""
    return write_plots(destination, records)
