"""pytest hooks: options, the ``sla`` marker, verdicts after each test, the summary.

Thin on purpose: parsing lives in ``settings`` and ``sla``, the work in the core layers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_triton_perf import sla
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.fixtures import (
    RESULTS_KEY,
    SETTINGS_KEY,
    triton_client,
    triton_grpc_client,
    triton_perf,
    triton_server,
)
from pytest_triton_perf.report.summary import Row, render_table, rows_from_properties, sla_property
from pytest_triton_perf.settings import OPTIONS, Option, build_settings

__all__ = ["triton_client", "triton_grpc_client", "triton_perf", "triton_server"]

SPEC_KEY = pytest.StashKey["sla.SlaSpec | None"]()
SUMMARY_KEY = pytest.StashKey["PerfSummary"]()

MARKER_HELP = (
    "sla(p50_ms=, p90_ms=, p95_ms=, p99_ms=, avg_ms=, min_throughput=, max_gpu_memory_mb=, "
    "max_cpu_memory_mb=, max_error_rate=): service-level agreement checked against every "
    "triton_perf.measure() result of the test (ms, inferences/s, MB = 10^6 bytes, a 0-1 rate)."
)


def _argparse_type(opt: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return opt.parse(opt.flag, text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = opt.metavar  # argparse names the type in its message
    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every option of the table in one group, with its ini twin."""
    group = parser.getgroup("triton-perf", "Triton performance gate (pytest-triton-perf)")
    for opt in OPTIONS:
        group.addoption(
            opt.flag,
            dest=f"triton_perf_{opt.dest}",
            type=_argparse_type(opt),
            default=None,
            metavar=opt.metavar,
            help=opt.help,
        )
        parser.addini(opt.ini, help=opt.help, default="")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; parse and validate every setting once."""
    config.addinivalue_line("markers", MARKER_HELP)
    inidir = config.inipath.parent if config.inipath else None
    try:
        config.stash[SETTINGS_KEY] = build_settings(
            lambda dest: config.getoption(f"triton_perf_{dest}"), config.getini, inidir
        )
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    summary = PerfSummary(config)
    config.stash[SUMMARY_KEY] = summary
    config.pluginmanager.register(summary, "triton-perf-summary")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every ``sla`` marker before any server starts."""
    errors = []
    for item in items:
        markers = [(m.args, m.kwargs) for m in item.iter_markers("sla")]
        try:
            item.stash[SPEC_KEY] = sla.merge_markers(item.nodeid, markers)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise pytest.UsageError("invalid sla marker:\n" + "\n".join(errors))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After a passing test body, check its measurements against its SLA."""
    yield
    spec = item.stash.get(SPEC_KEY, None)
    results = item.stash.get(RESULTS_KEY, [])
    if not results:
        if spec is not None:
            pytest.fail(
                f"{item.nodeid} has an sla marker but measured nothing: call "
                f"triton_perf.measure(...) in the test, or remove the marker.",
                pytrace=False,
            )
        return
    checks = sla.evaluate(spec, results)
    labels = [sla.label(r) for r in results]
    for index, name in enumerate(labels):
        mine = [c for c in checks if c.measurement == name]
        verdict = "pass" if all(c.passed for c in mine) else "FAIL"
        item.user_properties.append(sla_property(index, verdict if spec else "none"))
    if not all(c.passed for c in checks):
        pytest.fail(sla.failure_text(item.nodeid, checks), pytrace=False)


class PerfSummary:
    """Collects measurement rows from reports (also from xdist workers, through
    ``user_properties``) and prints them at the end. Registered per session."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.rows: list[Row] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the rows of each test's call phase."""
        if report.when == "call":
            self.rows.extend(rows_from_properties(report.nodeid, report.user_properties))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line per measurement: model, workload, p50/p99, throughput, SLA result."""
        if not self.rows:
            return
        terminalreporter.section("triton-perf")
        verbose = self.config.get_verbosity() > 0
        for line in render_table(self.rows, verbose=verbose):
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the summary collector."""
    summary = config.stash.get(SUMMARY_KEY, None)
    if summary is not None:
        del config.stash[SUMMARY_KEY]
        config.pluginmanager.unregister(summary)
