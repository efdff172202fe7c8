"""The report formats, one entry each, and the one loop that writes them.

Both the plugin (at the end of a pytest session) and the ``triton-perf`` CLI (``render``,
``compare``) ask this module which outputs were requested and write them through
:func:`write_reports`; neither names a format. A new format is a module with a writer
(:data:`~pytest_triton_perf.report.context.Writer`: records, destination, context) and one
:class:`ReportFormat` in :data:`FORMATS`; its plugin option is one row of the option table
(the entry names its ``Settings`` field), its CLI flag comes from the entry.

The terminal summary is not a format: pytest always shows it in its own section, and the CLI
prints it to standard output (``render --terminal``, or when no other output is asked for).
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import ReportError
from pytest_triton_perf.report import (
    benchmark_json,
    csv_report,
    json_report,
    junit,
    markdown,
    plots,
)
from pytest_triton_perf.report.context import ReportContext, Writer
from pytest_triton_perf.verdicts import MeasurementRecord


@dataclass(frozen=True)
class ReportFormat:
    """One report format: what writes it and what asks for it.

    ``setting``: the ``Settings`` field (the plugin option's dest) holding the destination;
    ``environ``: an environment variable naming the destination, for an output the
    environment asks for (GitHub's job summary): the plugin writes it whenever the variable
    is set and there are measurements, the CLI when its switch is given. ``cli_flag``: the
    flag of ``triton-perf render`` and ``compare`` (None: the plugin alone writes it);
    ``metavar`` None makes it a switch whose destination is ``environ``. ``extra``: the
    optional extra the format needs (``pip install 'pytest-triton-perf[<extra>]'``), and
    ``requires`` the module that extra brings, checked before any measurement runs.
    ``skip_empty``: nothing is written for a session without measurements. ``summary``: the
    plugin's line about the output (``{destination}``, ``{count}`` of files), None for
    none; ``cli_verb``: the CLI's word before each file written.
    """

    name: str
    write: Writer
    setting: str | None = None
    environ: str | None = None
    cli_flag: str | None = None
    metavar: str | None = "PATH"
    cli_help: str = ""
    extra: str | None = None
    requires: str | None = None
    skip_empty: bool = False
    summary: str | None = None
    cli_verb: str = "wrote"

    @property
    def cli_dest(self) -> str:
        """The argparse attribute of the CLI flag: ``--step-summary`` -> ``step_summary``."""
        return (self.cli_flag or self.name).lstrip("-").replace("-", "_")


FORMATS: tuple[ReportFormat, ...] = (
    ReportFormat(
        "json",
        json_report.write_report,
        setting="json",
        summary="results: {destination}",
    ),
    ReportFormat(
        "junit",
        junit.write_report,
        setting="junit",
        cli_flag="--junit",
        cli_help="write the perf JUnit file to PATH",
        summary="perf JUnit: {destination}",
    ),
    ReportFormat(
        "markdown",
        markdown.write_report,
        setting="markdown",
        cli_flag="--markdown",
        cli_help="write the Markdown summary to PATH",
        summary="Markdown summary: {destination}",
    ),
    ReportFormat(
        "step-summary",
        markdown.append_report,
        environ="GITHUB_STEP_SUMMARY",
        cli_flag="--step-summary",
        metavar=None,
        cli_help="append the Markdown summary to $GITHUB_STEP_SUMMARY",
        cli_verb="appended to",
    ),
    ReportFormat(
        "csv",
        csv_report.write_report,
        setting="csv",
        cli_flag="--csv",
        cli_help="write one CSV row per measurement to PATH",
        summary="CSV: {destination}",
    ),
    ReportFormat(
        "benchmark-json",
        benchmark_json.write_report,
        setting="benchmark_json",
        cli_flag="--benchmark-json",
        metavar="DIR",
        cli_help="write github-action-benchmark's customSmallerIsBetter.json and "
        "customBiggerIsBetter.json into DIR",
        skip_empty=True,
        summary="github-action-benchmark: {count} file(s) in {destination}",
    ),
    ReportFormat(
        "plots",
        plots.write_report,
        setting="plots",
        cli_flag="--plots",
        metavar="DIR",
        cli_help="write PNG plots into DIR (needs matplotlib)",
        extra="plots",
        requires="matplotlib",
        skip_empty=True,
        summary="{count} plot(s) in {destination}",
    ),
)


@dataclass(frozen=True)
class Request:
    """One output asked for: a format and where it goes."""

    format: ReportFormat
    destination: Path


@dataclass(frozen=True)
class Written:
    """One output done: what was asked for and the files written or appended to."""

    request: Request
    files: list[Path]

    def summary(self) -> str | None:
        """The plugin's line about this output, or None."""
        template = self.request.format.summary
        if template is None:
            return None
        return template.format(destination=self.request.destination, count=len(self.files))

    def cli_lines(self) -> Iterator[str]:
        """The CLI's line for each file: ``wrote out/perf.md``."""
        for path in self.files:
            yield f"{self.request.format.cli_verb} {path}"


def missing_extras(setting: Callable[[str], Any]) -> list[str]:
    """One line per asked-for format whose optional extra is not installed, naming the
    option, the module and the install command: said before the session measures anything,
    not after (a gate that measures for an hour and then fails on its report is broken)."""
    problems = []
    for f in FORMATS:
        if not (f.setting and f.requires and setting(f.setting) is not None):
            continue
        try:  # imported, not only found: a broken install fails here too, not at the end
            importlib.import_module(f.requires)
        except ImportError:
            flag = "--triton-perf-" + f.setting.replace("_", "-")
            problems.append(
                f"{flag} needs {f.requires}, which is not installed: "
                f"pip install 'pytest-triton-perf[{f.extra}]' (or leave out {flag})."
            )
    return problems


def plugin_requests(
    setting: Callable[[str], Any],
    records: Sequence[MeasurementRecord],
    environ: Mapping[str, str] | None = None,
) -> list[Request]:
    """The outputs a pytest session asks for, in registry order.

    ``setting(name)`` returns a ``Settings`` field. A format whose setting is set is
    written; one the environment asks for (``environ``) only when there are measurements,
    so that a job running other tests gets no empty section.
    """
    env = os.environ if environ is None else environ
    requests = []
    for f in FORMATS:
        value = setting(f.setting) if f.setting else None
        if value is None and f.environ and records:
            value = env.get(f.environ) or None
        if value is None or (f.skip_empty and not records):
            continue
        requests.append(Request(f, Path(value)))
    return requests


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """The flag of every format the CLI writes (``--junit PATH``, ``--step-summary``)."""
    for f in FORMATS:
        if f.cli_flag is None:
            continue
        if f.metavar is None:
            parser.add_argument(f.cli_flag, dest=f.cli_dest, action="store_true", help=f.cli_help)
        else:
            parser.add_argument(f.cli_flag, dest=f.cli_dest, metavar=f.metavar, help=f.cli_help)


def cli_requests(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> list[Request]:
    """The outputs a ``triton-perf`` command line asks for, in registry order; a switch
    whose environment variable is unset is a ReportError naming both."""
    env = os.environ if environ is None else environ
    requests = []
    for f in FORMATS:
        value = getattr(args, f.cli_dest, None) if f.cli_flag else None
        if not value:
            continue
        if f.metavar is None:
            value = env.get(f.environ or "")
            if not value:
                raise ReportError(f"{f.cli_flag}: {f.environ} is not set")
        requests.append(Request(f, Path(value)))
    return requests


def write_reports(
    requests: Sequence[Request],
    records: Sequence[MeasurementRecord],
    context: ReportContext,
) -> Iterator[Written]:
    """Write each requested output in order, yielding each as it is done; the first error
    (a TritonPerfError such as missing matplotlib, an OSError) ends the loop, the outputs
    before it stay written and have been yielded."""
    for r in requests:
        yield Written(r, r.format.write(records, r.destination, context))
