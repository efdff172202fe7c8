"""Unit tests of option parsing and precedence (no pytest config involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.settings import OPTIONS, build_settings

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
        assert opt.ini == (opt.ini_key or opt.flag[2:].replace("-", "_"))
        assert opt.ini.startswith("triton_"), opt.flag
        assert opt.metavar, opt.flag
