"""The report registry: one entry per format, written by the plugin and by ``triton-perf``
alike, and in step with the option table, the documentation and the packaging extras."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_triton_perf import cli
from pytest_triton_perf.options import OPTIONS
from pytest_triton_perf.report import registry
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.json_report import read_results, write_json
from pytest_triton_perf.report.registry import FORMATS, ReportFormat
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.settings import Settings
from pytest_triton_perf.verdicts import MeasurementRecord
from tests.conftest import FAST_OPTIONS
from tests.docs_pages import page
from tests.report.factory import document, mixed_records

FAKE_ENV = "TRITON_PERF_FAKE_REPORT"


@dataclasses.dataclass
class FakeFormat:
    """A test-only report format: records each call instead of writing a file."""

    calls: list[tuple[list[MeasurementRecord], Path, ReportContext]] = dataclasses.field(
        default_factory=list
    )

    def write(
        self, records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
    ) -> list[Path]:
        self.calls.append((list(records), destination, context))
        return [destination]

    def entry(self) -> ReportFormat:
        return ReportFormat(
            "fake",
            self.write,
            environ=FAKE_ENV,
            cli_flag="--fake-report",
            cli_help="write the fake report to PATH",
            summary="fake report: {destination} ({count} file)",
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeFormat:
    """A fake format registered for one test: one more entry in the registry, nothing
    else touched."""
    format_ = FakeFormat()
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, format_.entry()))
    return format_


# -- the registry against the option table, the CLI, the docs, the extras ---------------


def _docs_reports_page() -> str:
    """The documentation's page "Reports", its table of report options generated from the
    option rows its placeholder names."""
    return page("reports.md")


def test_every_report_option_has_an_entry_and_every_entry_an_option() -> None:
    by_dest = {opt.dest: opt for opt in OPTIONS}
    fields = {f.name for f in dataclasses.fields(Settings)}
    docs = _docs_reports_page()
    docs_flags = set(re.findall(r"^\| <a id=[^>]*></a>`(--[a-z-]+)=", docs, re.MULTILINE))

    settings = [f.setting for f in FORMATS if f.setting]
    assert len(set(settings)) == len(settings)
    for name in settings:
        assert name in by_dest, f"format setting {name!r} is no option of the table"
        assert name in fields, f"format setting {name!r} is no Settings field"
        assert by_dest[name].path, f"{by_dest[name].flag} must be resolved like a path"
    # Every report option the Reports page lists is a registered format, and the other way
    # round.
    assert docs_flags == {by_dest[name].flag for name in settings}
    # Outputs the environment asks for are named there too, and offered by the CLI.
    for f in FORMATS:
        if f.setting is None:
            assert f.environ and f.environ in docs, f.name
            assert f.cli_flag is not None, f.name


def test_the_cli_offers_exactly_the_registered_flags() -> None:
    """The report flags of ``render`` and ``compare`` all come from the registry."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    wanted = {f.cli_flag for f in FORMATS if f.cli_flag}
    assert wanted == {
        "--junit",
        "--markdown",
        "--plots",
        "--step-summary",
        "--csv",
        "--benchmark-json",
    }
    terminal = {"-v", "--verbose", "-q", "--quiet", "--columns", "--sort"}
    others = {
        "render": {"-h", "--help", "--title", "--terminal", *terminal},
        "compare": {"-h", "--help", "--title", "--alpha", "--min-effect"},
        "merge": {"-h", "--help", "--title", "-o", "--output", "--baselines", "--baseline-dir"}
        | terminal,
    }
    for command, rest in others.items():
        flags = {s for a in sub.choices[command]._actions for s in a.option_strings}
        assert flags == wanted | rest, command


def test_extras_of_formats_are_declared_in_the_packaging() -> None:
    requires = importlib.metadata.requires("pytest-triton-perf") or []
    needing = {f.name: f.extra for f in FORMATS if f.extra}
    assert needing == {"plots": "plots"}
    assert any(r.startswith("matplotlib") and 'extra == "plots"' in r for r in requires)


# -- which outputs are asked for ------------------------------------------------------------


def test_plugin_requests_follow_the_settings_and_the_environment(tmp_path: Path) -> None:
    settings = Settings(junit=tmp_path / "j.xml", plots=tmp_path / "plots")
    records = mixed_records()[:1]
    environ = {"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}

    def names(recs: list[MeasurementRecord], env: dict[str, str]) -> list[str]:
        asked = registry.plugin_requests(lambda name: getattr(settings, name), recs, env)
        return [r.format.name for r in asked]

    assert names(records, environ) == ["junit", "step-summary", "plots"]
    # Without measurements: no plots and no empty job summary; the files still say so.
    assert names([], environ) == ["junit"]
    assert names(records, {}) == ["junit", "plots"]


def test_step_summary_switch_without_the_variable_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_json(tmp_path / "results.json", document(mixed_records()[:1]))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert cli.main(["render", str(results), "--step-summary"], io.StringIO()) == 2
    assert "triton-perf: error: --step-summary: GITHUB_STEP_SUMMARY is not set" in (
        capsys.readouterr().err
    )
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = io.StringIO()
    assert cli.main(["render", str(results), "--step-summary"], out) == 0
    assert out.getvalue() == f"appended to {summary}\n"
    assert summary.read_text().startswith("earlier step\n\n## Triton performance\n")


# -- a registered format is written by both paths, neither touched ------------------------


def test_a_registered_format_is_written_by_render_and_compare(
    tmp_path: Path, fake: FakeFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    results = write_json(tmp_path / "results.json", document(mixed_records()[:2]))
    doc, records = read_results(results)

    out = io.StringIO()
    assert cli.main(["render", str(results), "--fake-report", "out/fake.txt"], out) == 0
    assert out.getvalue() == "wrote out/fake.txt\n"  # no terminal summary: a file was asked
    got, destination, context = fake.calls[-1]
    assert got == records
    assert destination == Path("out/fake.txt")
    assert context.environment == doc["environment"]
    assert context.session == doc["session"]

    out = io.StringIO()
    args = ["compare", str(results), str(results), "--fake-report", "cmp.txt", "--title", "T"]
    assert cli.main(args, out) == 0
    assert out.getvalue().endswith("\nwrote cmp.txt\n")
    got, destination, context = fake.calls[-1]
    assert [r.label for r in got] == [r.label for r in records]
    assert all(r.comparisons for r in got)  # compare hands the writers its verdicts
    assert (destination, context.title) == (Path("cmp.txt"), "T")
    assert len(fake.calls) == 2


def test_a_registered_format_is_written_by_the_plugin(
    pytester: pytest.Pytester,
    server: LocalTritonServer,
    fake: FakeFormat,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process, so that the inner session sees the fake entry. Also the Markdown file
    and the job summary without --triton-perf-json (they once needed its environment)."""
    summary = pytester.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv(FAKE_ENV, str(pytester.path / "fake.txt"))
    pytester.makepyfile(
        """
        def test_measured(triton_perf):
            triton_perf.measure("sleepy")
        """
    )
    result = pytester.runpytest_inprocess(
        f"--triton-url={server.http_url}",
        f"--triton-grpc-url={server.grpc_url}",
        *FAST_OPTIONS,
        "--triton-perf-markdown=perf.md",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    [(records, destination, context)] = fake.calls
    [record] = records
    assert record.test.endswith("::test_measured") and record.label.startswith("sleepy ")
    assert destination == pytester.path / "fake.txt"
    assert context.environment["key"]["triton"]
    assert context.session["args"][-2:] == ["-p", "no:cacheprovider"]
    result.stdout.fnmatch_lines(
        [
            f"Markdown summary: {pytester.path / 'perf.md'}",
            f"fake report: {pytester.path / 'fake.txt'} (1 file)",
        ]
    )
    assert "| sleepy |" in (pytester.path / "perf.md").read_text()
    assert "| sleepy |" in summary.read_text()


def test_plots_without_matplotlib_fail_the_session_with_the_extra_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A format's missing extra is a clean error of both paths, here the CLI's."""
    monkeypatch.chdir(tmp_path)
    results = write_json(tmp_path / "results.json", document(mixed_records()[:1]))
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = io.StringIO()
    code = cli.main(["render", str(results), "--junit", "j.xml", "--plots", "p"], out)
    assert code == 2
    assert out.getvalue() == "wrote j.xml\n"  # the outputs before it are written
    assert "pip install 'pytest-triton-perf[plots]'" in capsys.readouterr().err


def test_a_format_without_its_extra_is_refused_before_anything_runs(
    pytester: pytest.Pytester,
) -> None:
    """The perf-gate workflow once installed the plugin without the `plots` extra and asked
    for plots: every measurement ran, then the report failed the job. Now the session does
    not start, and says what to install."""
    pytester.makeconftest(
        "import sys\nsys.modules['matplotlib'] = None  # as if the plots extra were not installed\n"
    )
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('ran')\n")
    result = pytester.runpytest_subprocess("--triton-perf-plots=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (  # a plain substring: fnmatch would read [plots] as a character class
        "ERROR: --triton-perf-plots needs matplotlib, which is not installed: "
        "pip install 'pytest-triton-perf[plots]' (or leave out --triton-perf-plots)."
    ) in result.stderr.str()
    assert "ran" not in result.stdout.str()
    assert not (pytester.path / "plots").exists()


def test_missing_extras_is_silent_when_the_extra_is_there_or_not_asked_for() -> None:
    assert registry.missing_extras(lambda name: "plots" if name == "plots" else None) == []
    assert registry.missing_extras(lambda name: None) == []
