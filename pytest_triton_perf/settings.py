"""The frozen settings of a session, built from the option table.

No pytest import: the plugin hands :func:`build_settings` a getter of parsed command-line
values and one of raw ini values. Every default comes from
:data:`~pytest_triton_perf.options.OPTIONS`; the conversions into the measurement engine's
and the gate's own settings live with the fixtures, which sit above both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.options import OPTIONS, default
from pytest_triton_perf.options.container import GpuRequest


@dataclass(frozen=True)
class Settings:
    """Everything the fixtures need, parsed and validated once per session.

    One field per option of :data:`~pytest_triton_perf.options.OPTIONS` (its ``dest``),
    defaulting to that option's default.
    """

    url: str | None = default("url")
    grpc_url: str | None = default("grpc_url")
    model_repository: Path | None = default("model_repository")
    models: tuple[str, ...] | None = default("models")
    server_path: Path | None = default("server_path")
    image: str | None = default("image")
    gpus: GpuRequest | None = default("gpus")
    pull: str = default("pull")
    network: str = default("network")
    shm_size: str = default("shm_size")
    ipc: str = default("ipc")
    ulimit_memlock: int | str = default("ulimit_memlock")  # bytes, -1 unlimited, or "off"
    ulimit_stack: int | str = default("ulimit_stack")
    docker_kwargs: dict[str, Any] | None = default("docker_kwargs")
    # None: the launcher's own (options.STARTUP_TIMEOUT_S, REMOTE_STARTUP_TIMEOUT_S).
    startup_timeout_s: float | None = default("startup_timeout_s")
    warmup_s: float = default("warmup_s")
    windows: int = default("windows")
    window_s: float = default("window_s")
    disable: bool = default("disable")
    skip: bool = default("skip")
    only: bool = default("only")
    shard: tuple[int, int] | None = default("shard")  # (K, N): shard K of N, 1-based
    save: bool = default("save")
    compare: bool = default("compare")
    baseline_dir: Path | None = default("baseline_dir")
    baseline_ref: str | None = default("baseline_ref")
    baseline_repo: Path | None = default("baseline_repo")
    compare_windows: int = default("compare_windows")
    compare_budget_s: float = default("compare_budget_s")
    ab_method: str = default("ab_method")
    ab_epochs: int = default("ab_epochs")
    ab_pin: bool = default("ab_pin")
    ab_confirm: bool = default("ab_confirm")
    block_s: float = default("block_s")
    alpha: float = default("alpha")
    pass_alpha: float = default("pass_alpha")
    min_effect: dict[str, float | None] | None = default("min_effect")
    floor: dict[str, float | None] | None = default("floor")
    sla_mode: str = default("sla_mode")
    inconclusive: str = default("inconclusive")
    no_baseline: str = default("no_baseline")
    yaml_pattern: tuple[str, ...] = default("yaml_pattern")
    columns: tuple[str, ...] | None = default("columns")
    sort: str | None = default("sort")  # a column, "-" first for descending
    json: Path | None = default("json")
    junit: Path | None = default("junit")
    markdown: Path | None = default("markdown")
    csv: Path | None = default("csv")
    benchmark_json: Path | None = default("benchmark_json")
    plots: Path | None = default("plots")

    @property
    def ab_mode(self) -> bool:
        """True when a reference is named: measurements alternate with it (A/B mode)."""
        return bool(self.baseline_ref or self.baseline_repo)


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
            f"--triton-gpus/--gpus={values['gpus'].spec} applies to a container: add "
            f"--triton-image=IMAGE (e.g. nvcr.io/nvidia/tritonserver:24.08-py3). The local "
            f"launcher uses the GPUs CUDA_VISIBLE_DEVICES shows it."
        )
    if values["compare"] and (values["baseline_ref"] or values["baseline_repo"]):
        raise ConfigError(
            "--triton-perf-compare (history mode) and --triton-perf-baseline-ref/-repo "
            "(A/B mode) exclude each other: choose one comparison per run."
        )
    if values["skip"] and values["only"]:
        raise ConfigError(
            "--triton-perf-skip (skip the perf tests) and --triton-perf-only (run only the "
            "perf tests) exclude each other: give one."
        )
    if values["baseline_ref"] and values["baseline_repo"]:
        raise ConfigError(
            "--triton-perf-baseline-ref and --triton-perf-baseline-repo both name a "
            "reference: give one."
        )
    return Settings(**values)
