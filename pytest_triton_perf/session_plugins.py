"""The plugin objects that ``pytest_configure`` registers for a session: the summary
collector (records, baselines, reports) and, with ``--triton-perf-shard``, the shard
selector. Their hooks are methods, found by pytest on the registered object."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf import __version__
from pytest_triton_perf.baseline.shards import (
    DURATIONS_FILE,
    assign_shards,
    read_durations,
    save_durations,
)
from pytest_triton_perf.baseline.store import BaselineError, BaselineStore
from pytest_triton_perf.errors import TritonPerfError
from pytest_triton_perf.gate import baseline_run
from pytest_triton_perf.report import registry
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.server_fixtures import PERF_SESSION_KEY, SETTINGS_KEY
from pytest_triton_perf.settings import Settings
from pytest_triton_perf.verdicts import MeasurementRecord


class ShardSelector:
    """``--triton-perf-shard=K/N``: keeps this shard's tests and deselects the others,
    after every other selection (``-k``, ``-m``), so that every runner splits the same set.
    Registered only when the option is given."""

    def __init__(self, settings: Settings):
        assert settings.shard is not None and settings.baseline_dir is not None
        self.index, self.count = settings.shard
        self.baseline_dir = settings.baseline_dir
        self.line = ""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Assign every collected test to a shard (``baseline/shards.py``)."""
        try:
            durations = read_durations(self.baseline_dir)
        except BaselineError as e:
            raise pytest.UsageError(f"--triton-perf-shard: {e}") from None
        plan = assign_shards([item.nodeid for item in items], self.count, durations)
        mine = self.index - 1
        keep = [item for item in items if plan.assignment[item.nodeid] == mine]
        dropped = [item for item in items if plan.assignment[item.nodeid] != mine]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        where = f"{self.baseline_dir.name}/{DURATIONS_FILE}"
        share = f"triton-perf: shard {self.index}/{self.count}: {len(keep)} of {len(items)} tests"
        if plan.balanced:
            self.line = (
                f"{share}, about {plan.expected_s[mine]:.0f} s of {sum(plan.expected_s):.0f} s "
                f"by the durations in {where} ({plan.balanced} tests with a stored duration, "
                f"{plan.hashed} without)"
            )
        else:
            self.line = f"{share} (no stored durations in {where}: split by test id)"
        items[:] = keep

    def pytest_report_collectionfinish(self) -> list[str]:
        """The shard's share, under pytest's collection line."""
        return [self.line] if self.line else []


class PerfSummary:
    """Collects every test's measurement records (also from xdist workers), saves
    baselines and writes reports at the end of the session. Registered per session.

    It also maps SIGTERM (what a CI cancel sends) to the interrupt path for the session, so
    a cancelled job stops its load, stops its server and says that no baseline was updated,
    like Ctrl-C; the previous handler comes back at the end.
    """

    def __init__(self, config: pytest.Config):
        self.config = config
        self.records: list[MeasurementRecord] = []
        self.saved: list[Path] = []
        self.messages: list[str] = []
        self.crashed: list[str] = []
        #: Test id -> (file, 0-based line), for GitHub annotations.
        self.locations: dict[str, tuple[str, int | None]] = {}
        #: Test id -> seconds of its call phase, for the durations that balance shards.
        self.durations: dict[str, float] = {}
        #: ``--triton-perf-disable``: smoke checks run, and the tests that ran them.
        self.smoke_checks = 0
        self.smoke_tests = 0
        self._previous_sigterm: Any = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Route SIGTERM through KeyboardInterrupt while the session runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

        with contextlib.suppress(ValueError, OSError):
            self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def restore_sigterm(self) -> None:
        """Put back the SIGTERM handler the session started with (once)."""
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the records of each test's call phase, with the test's outcome."""
        if report.failed and "crashed while running" in str(report.longrepr):
            # pytest-xdist's report of a test whose worker died: no records came with it.
            self.crashed.append(report.nodeid)
            return
        if report.when != "call":
            return
        smoke = getattr(report, "triton_perf_smoke", 0)
        if smoke:
            self.smoke_checks += smoke
            self.smoke_tests += 1
        records = getattr(report, "triton_perf", None) or []
        if records:
            self.locations[report.nodeid] = (str(report.location[0]), report.location[1])
            self.durations[report.nodeid] = report.duration
        for d in records:
            record = MeasurementRecord.from_dict(d)
            self.records.append(dataclasses.replace(record, outcome=report.outcome))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Controller only: save accepted runs, write the report files."""
        self.restore_sigterm()
        if hasattr(self.config, "workerinput"):
            return
        settings = self.config.stash[SETTINGS_KEY]
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if self.crashed:
            more = ", ..." if len(self.crashed) > 3 else ""
            self.messages.append(
                f"{len(self.crashed)} test(s) crashed with their worker "
                f"({', '.join(self.crashed[:3])}{more}): no measurement of theirs is reported "
                f"or saved"
            )
        if self.smoke_tests:
            self.messages.append(
                f"measurements disabled (--triton-perf-disable): {self.smoke_checks} smoke "
                f"check(s) in {self.smoke_tests} test(s), a few requests each; no SLA "
                f"checks, comparisons or baselines"
            )
        used = bool(self.records) or self.config.stash.get(PERF_SESSION_KEY, None) is not None
        if interrupted and (settings.save or used):
            self.messages.append(
                "baselines were NOT updated: the session was interrupted"
                + (" (--triton-perf-save ignored)" if settings.save else "")
            )
        elif settings.save:
            self._save(settings, session)
        try:
            self._write_reports(settings)
        except (TritonPerfError, OSError) as e:
            self.messages.append(f"ERROR writing reports: {e}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _save(self, settings: Settings, session: pytest.Session) -> None:
        assert settings.baseline_dir is not None
        store = BaselineStore(settings.baseline_dir)
        accepted = [r for r in self.records if r.outcome == "passed"]
        skipped = len(self.records) - len(accepted)
        perf = self.config.stash.get(PERF_SESSION_KEY, None)
        revision = dict(perf.context.revision) if perf else {}
        revision["plugin_version"] = __version__
        for record in accepted:
            key = record.environment.get("key", {})
            try:
                path = store.save(
                    key,
                    record.test,
                    record.label,
                    baseline_run(record, revision),
                    workload=record.result.get("workload", {}),
                    # The machine's load is the run's own (stored in the run), not the key's.
                    environment={
                        k: v for k, v in record.environment.items() if k not in ("key", "host_load")
                    },
                )
            except TritonPerfError as e:
                self.messages.append(f"ERROR saving baseline: {e}")
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
                continue
            self.saved.append(path)
        self.messages.append(
            f"saved {len(self.saved)} baseline run(s) to {settings.baseline_dir}"
            + (f"; {skipped} measurement(s) of failed tests not saved" if skipped else "")
        )
        try:  # how long each perf test took: what balances --triton-perf-shard
            save_durations(settings.baseline_dir, self.durations)
        except TritonPerfError as e:
            self.messages.append(f"ERROR saving test durations: {e}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_reports(self, settings: Settings) -> None:
        """Every output the registry finds asked for, with a line each in the summary."""
        requests = registry.plugin_requests(lambda name: getattr(settings, name), self.records)
        if not requests:
            return
        perf = self.config.stash.get(PERF_SESSION_KEY, None)
        context = ReportContext(
            environment={"key": perf.context.key, **perf.context.environment} if perf else {},
            session={
                "plugin_version": __version__,
                "args": list(self.config.invocation_params.args),
                "saved": [str(p) for p in self.saved],
                **({"shard": "{}/{}".format(*settings.shard)} if settings.shard else {}),
            },
            inconclusive=settings.inconclusive,
            no_baseline=settings.no_baseline,
        )
        for written in registry.write_reports(requests, self.records, context):
            line = written.summary()
            if line is not None:
                self.messages.append(line)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line per measurement, verdicts, what was saved and written."""
        if not self.records and not self.messages:
            return
        from pytest_triton_perf.report.terminal import render_terminal

        terminalreporter.section("triton-perf")
        settings = self.config.stash[SETTINGS_KEY]
        for line in render_terminal(
            self.records,
            self.config.get_verbosity(),
            columns=settings.columns,
            sort=settings.sort,
            no_baseline=settings.no_baseline,
        ):
            terminalreporter.write_line(line, yellow=line.startswith("warning:"))
        if os.environ.get("GITHUB_ACTIONS") == "true":
            from pytest_triton_perf.report.annotations import gate_annotations

            for line in gate_annotations(
                self.records,
                self.locations,
                settings.inconclusive,
                no_baseline=settings.no_baseline,
            ):
                terminalreporter.write_line(line)
        for line in self.messages:
            terminalreporter.write_line(line, red=line.startswith(("ERROR", "baselines were NOT")))
