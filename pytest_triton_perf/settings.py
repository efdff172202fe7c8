"""Options of the plugin: one table, their parsers, and the frozen settings built from them.

No pytest import: the plugin registers each :class:`Option` as a command-line flag and an
ini key, and hands :func:`build_settings` a getter. Each parser raises :class:`ConfigError`
naming the flag, the bad value and the accepted form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.errors import ConfigError

if TYPE_CHECKING:
    from pytest_triton_perf.measure.engine import MeasureSettings


def _positive_float(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise ConfigError(f"{flag}={text!r}: a positive number of seconds is accepted, e.g. 2.5.")
    return value


def _non_negative_float(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise ConfigError(f"{flag}={text!r}: a number of seconds >= 0 is accepted, e.g. 2.")
    return value


def _positive_int(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{flag}={text!r}: a whole number >= 1 is accepted, e.g. 3.")
    return value


def _text(flag: str, text: str) -> str:
    if not text.strip():
        raise ConfigError(f"{flag}={text!r}: an empty value is not accepted.")
    return text.strip()


def _address(flag: str, text: str) -> str:
    # Validated here so that a bad address is a usage error, not a failure of every test.
    from pytest_triton_perf.server.remote import parse_url

    parse_url(text, option=flag)
    return text.strip()


def _name_list(flag: str, text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.replace(",", " ").split() if n.strip())
    if not names:
        raise ConfigError(f"{flag}={text!r}: a comma-separated list of model names is accepted.")
    return names


@dataclass(frozen=True)
class Option:
    """One setting: its flag, ini key, parser, default and help text."""

    flag: str
    dest: str
    parse: Callable[[str, str], Any]
    default: Any
    metavar: str
    help: str
    path: bool = False  # resolved relative to the ini file's directory when from the ini

    @property
    def ini(self) -> str:
        """The ini twin: ``--triton-perf-window-s`` -> ``triton_perf_window_s``."""
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option(
        "--triton-url",
        "url",
        _address,
        None,
        "HOST:PORT",
        "HTTP address of a running Triton server to measure instead of starting one "
        "(host:port or http://host:port). Default: none, start a local server.",
    ),
    Option(
        "--triton-grpc-url",
        "grpc_url",
        _address,
        None,
        "HOST:PORT",
        "gRPC address of that server. Default: the --triton-url host at its port + 1.",
    ),
    Option(
        "--triton-model-repository",
        "model_repository",
        _text,
        None,
        "DIR",
        "Triton model repository to serve (ini: relative to the ini file). Default: none.",
        path=True,
    ),
    Option(
        "--triton-models",
        "models",
        _name_list,
        None,
        "M1,M2",
        "Models to load from the repository. Default: all of them.",
    ),
    Option(
        "--triton-server-path",
        "server_path",
        _text,
        None,
        "PATH",
        "tritonserver binary (or a directory with bin/tritonserver). Default: tritonserver "
        "on PATH, else the one shipped by nvidia-pytriton.",
        path=True,
    ),
    Option(
        "--triton-startup-timeout",
        "startup_timeout_s",
        _positive_float,
        120.0,
        "SECONDS",
        "How long to wait for the server and its models to be ready. Default: 120.",
    ),
    Option(
        "--triton-perf-warmup-s",
        "warmup_s",
        _non_negative_float,
        2.0,
        "SECONDS",
        "Warm-up before the measured windows of each measurement. Default: 2.",
    ),
    Option(
        "--triton-perf-windows",
        "windows",
        _positive_int,
        3,
        "N",
        "Measured windows per measurement (at least). Default: 3.",
    ),
    Option(
        "--triton-perf-window-s",
        "window_s",
        _positive_float,
        2.0,
        "SECONDS",
        "Length of one measurement window. Default: 2.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything the fixtures need, parsed and validated once per session."""

    url: str | None = None
    grpc_url: str | None = None
    model_repository: Path | None = None
    models: tuple[str, ...] | None = None
    server_path: Path | None = None
    startup_timeout_s: float = 120.0
    warmup_s: float = 2.0
    windows: int = 3
    window_s: float = 2.0

    def measure_settings(self, **overrides: Any) -> MeasureSettings:
        """The engine's settings: these defaults with a test's per-call ``overrides``."""
        # Imported here: the engine pulls in the protocol clients, which plain option
        # parsing (and `pytest --help`) should not pay for.
        from pytest_triton_perf.measure.engine import MeasureSettings

        values: dict[str, Any] = {
            "warmup_s": self.warmup_s,
            "windows": self.windows,
            "window_s": self.window_s,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        # Stability may extend a measurement; never below the windows asked for.
        values.setdefault("max_windows", max(MeasureSettings.max_windows, values["windows"]))
        return MeasureSettings(**values)


def build_settings(
    getoption: Callable[[str], Any], getini: Callable[[str], Any], inidir: Path | None
) -> Settings:
    """Read every option: the command line wins over the ini file, which wins over defaults.

    ``getoption(dest)`` returns the parsed command-line value or None; ``getini(name)`` the
    raw ini string ('' when unset). Ini paths are resolved relative to ``inidir``.
    """
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = getoption(opt.dest)
        from_ini = False
        if value is None:
            raw = getini(opt.ini)
            if raw not in (None, "", []):
                value = opt.parse(f"{opt.ini} (ini)", str(raw))
                from_ini = True
        if value is None:
            value = opt.default
        if opt.path and value is not None:
            path = Path(value).expanduser()
            if from_ini and inidir is not None and not path.is_absolute():
                path = inidir / path
            value = path.resolve()
        values[opt.dest] = value
    if values["grpc_url"] and not values["url"]:
        raise ConfigError(
            "--triton-grpc-url is set without --triton-url: give the HTTP address too "
            "(the remote launcher needs both)."
        )
    return Settings(**values)
