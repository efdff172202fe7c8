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
from pytest_triton_perf.metrics import parse_metric_map

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.compare import GateSettings
    from pytest_triton_perf.measure.engine import MeasureSettings
    from pytest_triton_perf.server.container import GpuRequest


def _number(
    flag: str,
    text: str,
    convert: Callable[[str], float],
    ok: Callable[[float], bool],
    accepted: str,
) -> float:
    """``convert(text)`` when ``ok`` holds for it; else ConfigError naming flag and value."""
    try:
        value = convert(text)
        good = math.isfinite(value) and ok(value)
    except (ValueError, OverflowError):  # not a number; an int too large for a float
        good = False
    if not good:
        raise ConfigError(f"{flag}={text!r}: {accepted} is accepted, e.g. {_EXAMPLES[accepted]}.")
    return value


_POSITIVE_S = "a positive number of seconds"
_NON_NEGATIVE_S = "a number of seconds >= 0"
_WHOLE = "a whole number >= 1"
_PROBABILITY = "a probability between 0 and 1"
_EXAMPLES = {_POSITIVE_S: "2.5", _NON_NEGATIVE_S: "2", _WHOLE: "3", _PROBABILITY: "0.01"}


def _positive_float(flag: str, text: str) -> float:
    return _number(flag, text, float, lambda v: v > 0, _POSITIVE_S)


def _non_negative_float(flag: str, text: str) -> float:
    return _number(flag, text, float, lambda v: v >= 0, _NON_NEGATIVE_S)


def _positive_int(flag: str, text: str) -> int:
    return int(_number(flag, text, int, lambda v: v >= 1, _WHOLE))


def _text(flag: str, text: str) -> str:
    if not text.strip():
        raise ConfigError(f"{flag}={text!r}: an empty value is not accepted.")
    return text.strip()


def _address(flag: str, text: str) -> str:
    # Validated here so that a bad address is a usage error, not a failure of every test.
    from pytest_triton_perf.server.remote import parse_url

    parse_url(text, option=flag)
    return text.strip()


def _container(name: str) -> Callable[[str, str], Any]:
    """A parser of the container launcher's module, imported when an option is given
    (the module imports docker-py only when a container starts)."""

    def parse(flag: str, text: str) -> Any:
        from pytest_triton_perf.server import container

        return getattr(container, name)(flag, text)

    parse.__name__ = name
    return parse


def _switch(flag: str, text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _probability(flag: str, text: str) -> float:
    return _number(flag, text, float, lambda v: 0 < v < 1, _PROBABILITY)


def _effects(flag: str, text: str) -> dict[str, float | None]:
    return parse_metric_map(text, where=f"{flag}={text!r}")


def _floors(flag: str, text: str) -> dict[str, float | None]:
    return parse_metric_map(text, where=f"{flag}={text!r}", unit="ms")


def _sla_mode(flag: str, text: str) -> str:
    if text.strip() not in ("point", "strict"):
        raise ConfigError(f"{flag}={text!r}: 'point' or 'strict' is accepted.")
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
    ini_key: str | None = None  # when the flag itself has no triton prefix (--gpus)
    switch: bool = False  # a command-line switch without value and without ini twin

    @property
    def ini(self) -> str:
        """The ini twin: ``--triton-perf-window-s`` -> ``triton_perf_window_s``."""
        return self.ini_key or self.flag.lstrip("-").replace("-", "_")


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
        "--triton-image",
        "image",
        _container("parse_image"),
        None,
        "IMAGE",
        "Run Triton in a Docker container of this image (with a tag or digest, e.g. "
        "nvcr.io/nvidia/tritonserver:24.08-py3); --triton-url wins over it. Default: none, "
        "start a local tritonserver.",
    ),
    Option(
        "--gpus",
        "gpus",
        _container("parse_gpus"),
        None,
        "GPUS",
        "GPUs for the --triton-image container, as Docker takes them: all, a count, "
        "device=0,2, GPU UUIDs, none. Default: none.",
        ini_key="triton_gpus",
    ),
    Option(
        "--triton-pull",
        "pull",
        _container("parse_pull"),
        "missing",
        "POLICY",
        "When to pull the --triton-image: missing, always or never. Default: missing.",
    ),
    Option(
        "--triton-network",
        "network",
        _container("parse_network"),
        "host",
        "MODE",
        "Container networking: host (Triton binds free 127.0.0.1 ports on the host's "
        "network) or ports (Triton's ports published on 127.0.0.1). Default: host.",
    ),
    Option(
        "--triton-shm-size",
        "shm_size",
        _container("parse_shm_size"),
        "1g",
        "SIZE",
        "/dev/shm of the container (the Python backend needs 64 MB per model instance). "
        "Default: 1g.",
    ),
    Option(
        "--triton-ulimit-memlock",
        "ulimit_memlock",
        _container("parse_ulimit"),
        -1,
        "LIMIT",
        "memlock ulimit of the container: unlimited, bytes (k/m/g allowed) or off (the "
        "engine's default). Default: unlimited, as NGC recommends.",
    ),
    Option(
        "--triton-ulimit-stack",
        "ulimit_stack",
        _container("parse_ulimit"),
        67108864,
        "LIMIT",
        "stack ulimit of the container: unlimited, bytes (k/m/g allowed) or off. "
        "Default: 67108864 (64 MiB), as NGC recommends.",
    ),
    Option(
        "--triton-docker-kwargs",
        "docker_kwargs",
        _container("parse_docker_kwargs"),
        None,
        "JSON",
        "Extra arguments of docker-py's containers.create as a JSON object, e.g. "
        '\'{"cpuset_cpus": "0-3"}\'. Default: none.',
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
    Option(
        "--triton-perf-save",
        "save",
        _switch,
        False,
        "",
        "Record this run's measurements (of passing tests) as accepted baseline runs. "
        "Default: off.",
        switch=True,
    ),
    Option(
        "--triton-perf-compare",
        "compare",
        _switch,
        False,
        "",
        "Compare each measurement with its stored baseline (history mode). Default: off.",
        switch=True,
    ),
    Option(
        "--triton-perf-baseline-dir",
        "baseline_dir",
        _text,
        None,
        "DIR",
        "Where baselines are stored (commit it). Default: .triton-perf at the rootdir.",
        path=True,
    ),
    Option(
        "--triton-perf-baseline-ref",
        "baseline_ref",
        _text,
        None,
        "REF",
        "A/B mode: load each measured model as it is at git revision REF beside the "
        "candidate and alternate their windows. Default: none.",
    ),
    Option(
        "--triton-perf-baseline-repo",
        "baseline_repo",
        _text,
        None,
        "DIR",
        "A/B mode with the reference models taken from a model repository directory. "
        "Default: none.",
        path=True,
    ),
    Option(
        "--triton-perf-compare-windows",
        "compare_windows",
        _positive_int,
        10,
        "N",
        "Windows per arm when comparing or saving (significance needs at least 5). Default: 10.",
    ),
    Option(
        "--triton-perf-alpha",
        "alpha",
        _probability,
        0.01,
        "ALPHA",
        "Significance level of the one-sided tests. Default: 0.01.",
    ),
    Option(
        "--triton-perf-min-effect",
        "min_effect",
        _effects,
        None,
        "SPEC",
        "Smallest change that counts as a regression, e.g. p50=5%,p99=10%,throughput=5% "
        "(off disables a metric). Default: p50=5%,p99=10%,throughput=5%,error_rate=0.1%.",
    ),
    Option(
        "--triton-perf-floor",
        "floor",
        _floors,
        None,
        "SPEC",
        "Absolute latency change below which nothing regresses, e.g. p50=0.2ms,p99=0.5ms. "
        "Default: p50=0.2ms,p99=0.5ms.",
    ),
    Option(
        "--triton-perf-sla-mode",
        "sla_mode",
        _sla_mode,
        "point",
        "point|strict",
        "point: the measured value decides an SLA bound; strict: a bound inside the 95% "
        "interval (marginal) fails too. Default: point.",
    ),
    Option(
        "--triton-perf-json",
        "json",
        _text,
        None,
        "PATH",
        "Write every measurement with windows, verdicts and environment as JSON. Default: none.",
        path=True,
    ),
    Option(
        "--triton-perf-junit",
        "junit",
        _text,
        None,
        "PATH",
        "Write a JUnit XML file of perf checks (one testcase per measurement and metric). "
        "Default: none.",
        path=True,
    ),
    Option(
        "--triton-perf-markdown",
        "markdown",
        _text,
        None,
        "PATH",
        "Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set). Default: none.",
        path=True,
    ),
    Option(
        "--triton-perf-plots",
        "plots",
        _text,
        None,
        "DIR",
        "Write PNG plots (needs the 'plots' extra: matplotlib). Default: none.",
        path=True,
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
    image: str | None = None
    gpus: GpuRequest | None = None
    pull: str = "missing"
    network: str = "host"
    shm_size: str = "1g"
    ulimit_memlock: int | str = -1  # bytes, -1 unlimited, or "off"
    ulimit_stack: int | str = 67108864
    docker_kwargs: dict[str, Any] | None = None
    startup_timeout_s: float = 120.0
    warmup_s: float = 2.0
    windows: int = 3
    window_s: float = 2.0
    save: bool = False
    compare: bool = False
    baseline_dir: Path | None = None
    baseline_ref: str | None = None
    baseline_repo: Path | None = None
    compare_windows: int = 10
    alpha: float = 0.01
    min_effect: dict[str, float | None] | None = None
    floor: dict[str, float | None] | None = None
    sla_mode: str = "point"
    json: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    plots: Path | None = None

    @property
    def ab_mode(self) -> bool:
        """True when a reference is named: measurements alternate with it (A/B mode)."""
        return bool(self.baseline_ref or self.baseline_repo)

    def gate_settings(self) -> GateSettings:
        """The decision rule with this session's alpha, minimum effects and floors."""
        from pytest_triton_perf.baseline.compare import GateSettings

        base = GateSettings(alpha=self.alpha)
        effects = dict(base.min_effect)
        disabled = set()
        for metric, value in (self.min_effect or {}).items():
            if value is None:
                disabled.add(metric)
            else:
                effects[metric] = value
        floors = dict(base.floor)
        floors.update({k: v or 0.0 for k, v in (self.floor or {}).items()})
        return GateSettings(self.alpha, effects, floors, frozenset(disabled))

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
        if value is None and not opt.switch:
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
    if values["gpus"] is not None and not values["image"] and not values["url"]:
        raise ConfigError(
            f"--gpus={values['gpus'].spec} applies to a container: add --triton-image=IMAGE "
            f"(e.g. nvcr.io/nvidia/tritonserver:24.08-py3). The local launcher uses the GPUs "
            f"CUDA_VISIBLE_DEVICES shows it."
        )
    if values["compare"] and (values["baseline_ref"] or values["baseline_repo"]):
        raise ConfigError(
            "--triton-perf-compare (history mode) and --triton-perf-baseline-ref/-repo "
            "(A/B mode) exclude each other: choose one comparison per run."
        )
    if values["baseline_ref"] and values["baseline_repo"]:
        raise ConfigError(
            "--triton-perf-baseline-ref and --triton-perf-baseline-repo both name a "
            "reference: give one."
        )
    return Settings(**values)
