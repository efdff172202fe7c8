"""Unit tests of option parsing and precedence (no pytest config involved)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.measure.engine import MeasureSettings
from pytest_triton_perf.options import (
    OPTIONS,
    REMOTE_STARTUP_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    Option,
    default,
)
from pytest_triton_perf.server.container import ContainerTritonServer
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.server.remote import RemoteTritonServer
from pytest_triton_perf.settings import Settings, build_settings

BY_FLAG = {o.flag: o for o in OPTIONS}


def build(
    cli: dict[str, object] | None = None,
    ini: dict[str, str] | None = None,
    inidir: Path | None = None,
):
    cli, ini = cli or {}, ini or {}
    return build_settings(lambda dest: cli.get(dest), lambda name: ini.get(name, ""), inidir)


def test_defaults() -> None:
    s = build()
    assert (s.url, s.model_repository, s.models) == (None, None, None)
    assert (s.warmup_s, s.windows, s.window_s) == (2.0, 3, 2.0)


def test_command_line_wins_over_ini(tmp_path: Path) -> None:
    s = build({"window_s": 0.5}, {"triton_perf_window_s": "4", "triton_perf_windows": "7"})
    assert s.window_s == 0.5
    assert s.windows == 7


def test_ini_repository_is_relative_to_the_ini_file(tmp_path: Path) -> None:
    s = build(ini={"triton_model_repository": "models"}, inidir=tmp_path)
    assert s.model_repository == (tmp_path / "models").resolve()


def test_ini_value_is_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"triton_perf_windows \(ini\)='zero'"):
        build(ini={"triton_perf_windows": "zero"})


@pytest.mark.parametrize(
    ("flag", "text", "fragment"),
    [
        ("--triton-perf-window-s", "0", "a positive number of seconds"),
        ("--triton-perf-window-s", "abc", "a positive number of seconds"),
        ("--triton-perf-warmup-s", "-1", "a number of seconds >= 0"),
        ("--triton-perf-windows", "2.5", "a whole number >= 1"),
        ("--triton-startup-timeout", "inf", "a positive number"),
        ("--triton-models", " , ", "comma-separated list"),
        ("--triton-perf-shard", "3/2", "K/N with whole numbers 1 <= K <= N"),
        ("--triton-perf-shard", "1", "e.g. 1/4"),
        ("--triton-perf-columns", "test,p98", "unknown column 'p98'. Did you mean 'p99'?"),
        ("--triton-perf-columns", " ", "a comma-separated list of columns"),
        ("--triton-perf-sort", "-latency", "unknown column 'latency'"),
        ("--triton-perf-sort", "memory", "names 2 columns (gpu_memory, cpu_memory)"),
    ],
)
def test_bad_values_name_flag_value_and_form(flag: str, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        BY_FLAG[flag].parse(flag, text)
    assert f"{flag}={text!r}" in str(info.value)
    assert fragment in str(info.value)


def test_model_list_parses_commas_and_spaces() -> None:
    assert BY_FLAG["--triton-models"].parse("--triton-models", "a, b c") == ("a", "b", "c")


def test_grpc_url_needs_http_url() -> None:
    with pytest.raises(ConfigError, match="without --triton-url"):
        build({"grpc_url": "localhost:8001"})


def test_every_option_has_ini_twin_metavar_and_default_in_help() -> None:
    for opt in OPTIONS:
        assert "Default" in opt.help, opt.flag
        if opt.switch:
            continue  # a switch takes no value and has no ini twin
        assert opt.ini == opt.flag[2:].replace("-", "_")
        assert opt.ini.startswith("triton_"), opt.flag
        assert opt.metavar, opt.flag


def test_settings_defaults_are_the_option_tables() -> None:
    """One source per default: each field of Settings is an option's dest, defaulting to
    that option's default."""
    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == [opt.dest for opt in OPTIONS]
    plain = Settings()
    for opt in OPTIONS:
        assert getattr(plain, opt.dest) == opt.default, opt.flag
    assert build(None) == plain


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.flag)
def test_each_help_text_names_its_default(opt: Option) -> None:
    """The help ends with the default; where the option has a value, the first word of the
    shown default parses (by the option's own parser) to that value."""
    assert opt.help.endswith(f" Default: {opt.shown_default}."), opt.help
    if opt.default is not None:
        first = opt.shown_default.split(" ")[0].rstrip(",")
        assert opt.parse(opt.flag, first) == opt.default


def test_comparison_defaults_shown_are_the_gates() -> None:
    """--triton-perf-min-effect and --triton-perf-floor default to the gate's own values,
    and the help texts name exactly those."""
    gate = GateSettings()
    effects, floors = BY_FLAG["--triton-perf-min-effect"], BY_FLAG["--triton-perf-floor"]
    assert effects.parse(effects.flag, effects.shown_default) == dict(gate.min_effect)
    assert floors.parse(floors.flag, floors.shown_default) == dict(gate.floor)
    assert gate.alpha == default("alpha")


def test_consumers_default_to_the_option_table() -> None:
    """The engine's and the launchers' own defaults are the options' (a library user who
    builds them directly measures the way pytest does)."""
    engine = MeasureSettings()
    assert (engine.warmup_s, engine.windows, engine.window_s) == (
        default("warmup_s"),
        default("windows"),
        default("window_s"),
    )
    for launcher, timeout in (
        (LocalTritonServer, STARTUP_TIMEOUT_S),
        (ContainerTritonServer, STARTUP_TIMEOUT_S),
        (RemoteTritonServer, REMOTE_STARTUP_TIMEOUT_S),
    ):
        params = inspect.signature(launcher.__init__).parameters
        assert params["startup_timeout_s"].default == timeout
    # The option's default (none given) is each launcher's own, and its help names both.
    assert default("startup_timeout_s") is None
    assert f"{STARTUP_TIMEOUT_S:g}" in BY_FLAG["--triton-startup-timeout"].help
    assert f"{REMOTE_STARTUP_TIMEOUT_S:g}" in BY_FLAG["--triton-startup-timeout"].help
    params = inspect.signature(ContainerTritonServer.__init__).parameters
    for dest in ("pull", "network", "shm_size", "ulimit_memlock", "ulimit_stack"):
        assert params[dest].default == default(dest), dest


def test_columns_and_sort_accept_the_reports_names_and_aliases() -> None:
    columns, sort = BY_FLAG["--triton-perf-columns"], BY_FLAG["--triton-perf-sort"]
    parsed = columns.parse(columns.flag, "test, P90,p99_ms,memory,server_queue,p90")
    assert parsed == ("test", "p90", "p99", "gpu_memory", "cpu_memory", "queue")
    assert sort.parse(sort.flag, "-p99_ms") == "-p99"
    assert sort.parse(sort.flag, "throughput") == "throughput"
    assert BY_FLAG["--triton-perf-shard"].parse("--triton-perf-shard", " 2/3 ") == (2, 3)


def test_skip_and_only_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match=r"--triton-perf-skip .* and --triton-perf-only"):
        build({"skip": True, "only": True})
    assert build({"only": True}).only
