"""pytest hooks: options, the ``sla`` marker, verdicts after each test, the summary.

Thin on purpose: parsing lives in ``settings`` and ``sla``, the work in the core layers; the
objects registered per session (the summary collector, the shard selector) in
``session_plugins``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import sysconfig
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.baseline.reference import export_git_ref, remove_export
from pytest_triton_perf.errors import ConfigError, TritonPerfError
from pytest_triton_perf.fixtures import triton_perf
from pytest_triton_perf.gate import evaluate_test, extra_info_problem, smoke_failure
from pytest_triton_perf.options import BASELINE_DIR, OPTIONS, Option
from pytest_triton_perf.report import registry
from pytest_triton_perf.report.summary import sla_property
from pytest_triton_perf.server_fixtures import (
    EXTRA_INFO_KEY,
    MEASURED_KEY,
    PERF_SESSION_KEY,
    REFERENCE_KEY,
    SETTINGS_KEY,
    SPEC_KEY,
    triton_client,
    triton_grpc_client,
    triton_perf_session,
    triton_server,
)
from pytest_triton_perf.session_plugins import PerfSummary, ShardSelector
from pytest_triton_perf.settings import Settings, build_settings
from pytest_triton_perf.verdicts import MeasurementRecord

__all__ = [
    "triton_client",
    "triton_grpc_client",
    "triton_perf",
    "triton_perf_session",
    "triton_server",
]

SUMMARY_KEY = pytest.StashKey[PerfSummary]()
RECORDS_KEY = pytest.StashKey[list[MeasurementRecord]]()
#: ``--triton-perf-disable``: the smoke checks a test ran (its measurements).
SMOKE_KEY = pytest.StashKey[int]()
EXPORT_KEY = pytest.StashKey[Path]()
#: The notice, when another plugin or conftest took an option's short twin (``--gpus``).
ALIAS_NOTICE_KEY = pytest.StashKey[list[str]]()
GROUP = ("triton-perf", "Triton performance gate (pytest-triton-perf)")

MARKER_HELP = metrics.marker_help()


def _argparse_type(opt: Option, flag: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return opt.parse(flag, text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = opt.metavar  # argparse names the type in its message
    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every option of the table in one group, with its ini twin. Short twins
    (``--gpus``) wait until the initial conftests are loaded: see
    :func:`pytest_load_initial_conftests`."""
    group = parser.getgroup(*GROUP)
    for opt in OPTIONS:
        if opt.switch:
            group.addoption(
                opt.flag,
                dest=f"triton_perf_{opt.dest}",
                action="store_true",
                default=None,
                help=opt.help.replace("%", "%%"),  # argparse %-formats help texts
            )
            continue
        group.addoption(
            opt.flag,
            dest=f"triton_perf_{opt.dest}",
            type=_argparse_type(opt, opt.flag),
            default=None,
            metavar=opt.metavar,
            help=opt.help.replace("%", "%%"),  # argparse %-formats help texts
        )
        parser.addini(opt.ini, help=opt.help, default="")


def _registered_flags(parser: pytest.Parser) -> set[str]:
    """Every flag registered so far, by pytest, plugins and conftests (pytest has no
    public listing: read its option groups)."""
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]
    return {
        name for group in groups for opt in getattr(group, "options", []) for name in opt.names()
    }


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    """Register the short twins (``--gpus``) of options once the initial conftests have
    added theirs: an ML repository's conftest often defines ``--gpus``, and two plugins
    defining one flag stop pytest. When it is taken, only ``--triton-gpus`` works, and
    the header says so. The command line is parsed for good after this hook."""
    result = yield
    taken = _registered_flags(parser)
    notices = early_config.stash.setdefault(ALIAS_NOTICE_KEY, [])
    for opt in OPTIONS:
        if opt.alias is None:
            continue
        if opt.alias in taken:
            notices.append(
                f"triton-perf: {opt.alias} is defined by another plugin or conftest; "
                f"use {opt.flag} (ini {opt.ini}) for the triton-perf option."
            )
            continue
        parser.getgroup(*GROUP).addoption(
            opt.alias,
            dest=f"triton_perf_{opt.dest}",
            type=_argparse_type(opt, opt.alias),
            default=None,
            metavar=opt.metavar,
            help=f"Same as {opt.flag}.",
        )
    return result


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The notice of a short twin left to another plugin, once per session."""
    if hasattr(config, "workerinput"):  # xdist workers print no header: the controller does
        return []
    return config.stash.get(ALIAS_NOTICE_KEY, [])


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; parse and validate every setting once; prepare A/B mode."""
    config.addinivalue_line("markers", MARKER_HELP)
    inidir = config.inipath.parent if config.inipath else None
    try:
        settings = build_settings(
            lambda dest: config.getoption(f"triton_perf_{dest}"), config.getini, inidir
        )
        if settings.baseline_dir is None:
            settings = dataclasses.replace(settings, baseline_dir=config.rootpath / BASELINE_DIR)
        missing = registry.missing_extras(lambda name: getattr(settings, name))
        if missing:
            raise ConfigError("\n".join(missing))
        ignored = _disabled_comparisons(settings)
        if ignored:  # smoke checks have no verdicts: nothing to compare with or to save
            settings = dataclasses.replace(
                settings, save=False, compare=False, baseline_ref=None, baseline_repo=None
            )
        config.stash[SETTINGS_KEY] = settings
        _prepare_reference(config, settings)
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    summary = PerfSummary(config)
    if ignored:
        summary.messages.append(f"--triton-perf-disable: {', '.join(ignored)} ignored")
    config.stash[SUMMARY_KEY] = summary
    config.pluginmanager.register(summary, "triton-perf-summary")
    if settings.shard is not None:
        config.pluginmanager.register(ShardSelector(settings), "triton-perf-shard")


def _disabled_comparisons(settings: Settings) -> list[str]:
    """The comparison and saving options that ``--triton-perf-disable`` leaves unused."""
    if not settings.disable:
        return []
    return [
        flag
        for flag, on in (
            ("--triton-perf-save", settings.save),
            ("--triton-perf-compare", settings.compare),
            ("--triton-perf-baseline-ref", settings.baseline_ref),
            ("--triton-perf-baseline-repo", settings.baseline_repo),
        )
        if on
    ]


def _prepare_reference(config: pytest.Config, settings: Settings) -> None:
    """A/B mode: find or export the reference model repository before any server starts,
    so that a bad revision is a usage error, not a failure of every test."""
    if settings.baseline_repo is not None:
        if not settings.baseline_repo.is_dir():
            raise ConfigError(
                f"--triton-perf-baseline-repo={settings.baseline_repo}: not a directory; "
                f"give a model repository (a directory of <model>/config.pbtxt)."
            )
        origin = f"directory {settings.baseline_repo}"
        config.stash[REFERENCE_KEY] = (settings.baseline_repo, origin)
    elif settings.baseline_ref is not None:
        if settings.model_repository is None:
            raise ConfigError(
                f"--triton-perf-baseline-ref={settings.baseline_ref} needs the model "
                f"repository's location in git: set --triton-model-repository=DIR."
            )
        repo, root = export_git_ref(settings.model_repository, settings.baseline_ref)
        config.stash[EXPORT_KEY] = root
        config.stash[REFERENCE_KEY] = (repo, f"git revision {settings.baseline_ref}")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """YAML suites: files named as ``--triton-perf-yaml-pattern`` (``triton-perf*.yaml``)
    are collected with one test per entry of their ``tests:`` list (``suite/``)."""
    settings = parent.config.stash.get(SETTINGS_KEY, None)
    patterns = settings.yaml_pattern if settings is not None else ()
    if not any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        return None
    from pytest_triton_perf.suite.items import SuiteFile

    return SuiteFile.from_parent(parent, path=file_path)


def is_perf_test(item: pytest.Item) -> bool:
    """A perf test: one that uses the ``triton_perf`` fixture or carries an ``sla`` marker
    (what ``--triton-perf-skip`` and ``--triton-perf-only`` tell apart)."""
    return "triton_perf" in getattr(item, "fixturenames", ()) or (
        item.get_closest_marker("sla") is not None
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every ``sla`` marker before any server starts; skip the perf tests, or the
    others, as ``--triton-perf-skip`` / ``--triton-perf-only`` ask."""
    errors = []
    for item in items:
        markers = [(m.args, m.kwargs) for m in item.iter_markers("sla")]
        try:
            item.stash[SPEC_KEY] = sla.merge_markers(item.nodeid, markers)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise pytest.UsageError("invalid sla marker:\n" + "\n".join(errors))
    settings = config.stash[SETTINGS_KEY]
    if settings.skip or settings.only:
        skip = pytest.mark.skip(
            reason="perf test (--triton-perf-skip)"
            if settings.skip
            else "not a perf test (--triton-perf-only)"
        )
        for item in items:
            if is_perf_test(item) == settings.skip:
                item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After a passing test body, check its measurements against its SLA and baseline."""
    yield
    spec = item.stash.get(SPEC_KEY, None)
    measured = item.stash.get(MEASURED_KEY, [])
    if not measured:
        if spec is not None:
            pytest.fail(
                f"{item.nodeid} has an sla marker but measured nothing: call "
                f"triton_perf.measure(...) in the test, or remove the marker.",
                pytrace=False,
            )
        return
    if item.config.stash[SETTINGS_KEY].disable:
        item.stash[SMOKE_KEY] = len(measured)
        failure = smoke_failure(item.nodeid, measured)
        if failure:
            pytest.fail(failure, pytrace=False)
        return
    extra_info = item.stash.get(EXTRA_INFO_KEY, {})
    problem = extra_info_problem(item.nodeid, extra_info)
    if problem:
        pytest.fail(problem, pytrace=False)
    session = item.config.stash[PERF_SESSION_KEY]
    try:
        verdict = evaluate_test(
            item.nodeid,
            spec,
            measured,
            session.context,
            gate_overrides=spec.regression if spec else None,
        )
    except TritonPerfError as e:
        problem = str(e)
    else:
        problem = ""
    if problem:  # a corrupt baseline, a server gone during the confirming re-run
        pytest.fail(problem, pytrace=False)
    if extra_info:
        verdict.records = [
            dataclasses.replace(r, extra_info=dict(extra_info)) for r in verdict.records
        ]
    item.stash[RECORDS_KEY] = verdict.records
    for record in verdict.records:
        item.user_properties.append(sla_property(record.index, record.sla_verdict))
        item.user_properties.append((f"triton_perf.{record.index}.baseline", record.verdict))
    if verdict.failure:
        pytest.fail(verdict.failure, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Carry the test's records on its report: the one channel that reaches the xdist
    controller, which alone saves baselines and writes reports. A test that failed with one
    of our errors is reported in one line (:func:`short_failure`)."""
    report = yield
    if report.failed and call.excinfo is not None:
        short = short_failure(item, call.excinfo)
        if short is not None:
            report.longrepr = short  # a string: travels from xdist workers as it is
    if call.when == "call":
        records = item.stash.get(RECORDS_KEY, [])
        report.triton_perf = [r.to_dict() for r in records]  # type: ignore[attr-defined]
        smoke = item.stash.get(SMOKE_KEY, 0)
        if smoke:
            report.triton_perf_smoke = smoke  # type: ignore[attr-defined]
    return report


def short_failure(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
    """``test_x.py:12: InputSpecError: <message>`` for a test that failed with one of this
    package's errors (a refused argument, a model that is not ready, a server gone): the
    line where the test called us, not a traceback through the plugin. None keeps pytest's
    report: for other exceptions, and with ``--tb=long``, ``--tb=native`` or
    ``--full-trace``, which ask for the whole traceback."""
    error = excinfo.value
    if not isinstance(error, TritonPerfError):
        return None
    config = item.config
    if config.getoption("fulltrace", False) or config.getoption("tbstyle", "auto") in (
        "long",
        "native",
    ):
        return None
    return f"{_call_site(item, error)}: {type(error).__name__}: {error}"


#: Frames in these directories are not the user's: this package, the standard library and
#: installed packages (pytest and pluggy among them).
_NOT_USER_CODE = (
    Path(__file__).resolve().parent,
    *{
        Path(p).resolve()
        for key, p in sysconfig.get_paths().items()
        if key in ("stdlib", "platstdlib", "purelib", "platlib")
    },
)


def _call_site(item: pytest.Item, error: BaseException) -> str:
    """``path:line`` of the last frame of the user's code in the error's traceback (the
    call into this package); the test's own location when there is none."""
    site = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        path = Path(frame.f_code.co_filename)
        if not path.is_absolute():  # <frozen ...>, <string>
            continue
        path = path.resolve()
        if not any(path.is_relative_to(d) for d in _NOT_USER_CODE):
            site = (path, lineno)
    if site is None:
        where, line, _ = item.location
        return f"{where}:{(line or 0) + 1}"
    path, lineno = site
    with contextlib.suppress(ValueError):
        path = path.relative_to(item.config.invocation_params.dir.resolve())
    return f"{path}:{lineno}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the summary collector; remove A/B mode's exported reference."""
    summary = config.stash.get(SUMMARY_KEY, None)
    if summary is not None:
        summary.restore_sigterm()  # also when the session never finished normally
        del config.stash[SUMMARY_KEY]
        config.pluginmanager.unregister(summary)
    remove_export(config.stash.get(EXPORT_KEY, None))
