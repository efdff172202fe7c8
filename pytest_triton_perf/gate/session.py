"""A session's gate: the session's options turned into the decision rule, the measurement
settings of a call, the A/B design, and the :class:`GateSession` that builds the
:class:`~pytest_triton_perf.gate.pipeline.GatePipeline` every capability runs through.
No pytest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.gate.context import GateContext
from pytest_triton_perf.gate.pipeline import GatePipeline
from pytest_triton_perf.options import SMOKE_WINDOW_S
from pytest_triton_perf.server.http import ProbeError, get_json
from pytest_triton_perf.settings import Settings

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.ab import ABPlan
    from pytest_triton_perf.baseline.reference import ReferenceModels
    from pytest_triton_perf.measure.engine import MeasureSettings
    from pytest_triton_perf.server.base import TritonServer


def gate_settings(settings: Settings) -> GateSettings:
    """The decision rule with the session's alpha, minimum effects and floors."""
    base = GateSettings(alpha=settings.alpha)
    effects = dict(base.min_effect)
    disabled = set()
    for metric, value in (settings.min_effect or {}).items():
        if value is None:
            disabled.add(metric)
        else:
            effects[metric] = value
    floors = dict(base.floor)
    floors.update({k: v or 0.0 for k, v in (settings.floor or {}).items()})
    return GateSettings(
        settings.alpha, effects, floors, frozenset(disabled), pass_alpha=settings.pass_alpha
    )


def measure_settings(settings: Settings, **overrides: Any) -> MeasureSettings:
    """The engine's settings: the session's with a test's per-call ``overrides``."""
    # Imported here: the engine pulls in the protocol clients, which plain option
    # parsing (and `pytest --help`) should not pay for.
    from pytest_triton_perf.measure.engine import MeasureSettings

    values: dict[str, Any] = {
        "warmup_s": settings.warmup_s,
        "windows": settings.windows,
        "window_s": settings.window_s,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    # Stability may extend a measurement; never below the windows asked for. A value of the
    # wrong type is left to MeasureSettings, whose ArgumentError names it.
    windows = values["windows"]
    if isinstance(windows, int) and not isinstance(windows, bool):
        values.setdefault("max_windows", max(MeasureSettings.max_windows, windows))
    measured = MeasureSettings(**values)  # validated even when the smoke check replaces it
    if settings.disable:
        return dataclasses.replace(
            measured, warmup_s=0.0, windows=1, window_s=SMOKE_WINDOW_S, max_windows=1
        )
    return measured


def call_settings(
    settings: Settings,
    warmup_s: float | None = None,
    windows: int | None = None,
    window_s: float | None = None,
) -> MeasureSettings:
    """A measurement's settings: the session's with the call's overrides, validated first
    (ArgumentError naming a bad value), then raised to the comparison's windows when
    comparing or saving: a comparison needs enough windows per arm to reach
    significance."""
    measured = measure_settings(settings, warmup_s=warmup_s, windows=windows, window_s=window_s)
    if settings.compare or settings.save or settings.ab_mode:
        return measured.with_windows_at_least(settings.compare_windows)
    return measured


def ab_plan(settings: Settings, measured: MeasureSettings) -> ABPlan:
    """The A/B design of the session's options, with a call's windows."""
    from pytest_triton_perf.baseline.ab import ABPlan

    return ABPlan(
        method=settings.ab_method,
        budget_s=settings.compare_budget_s,
        blocks=measured.windows,
        block_s=settings.block_s,
        warmup_s=measured.warmup_s,
        window_s=measured.window_s,
        epochs=settings.ab_epochs,
    )


@dataclass
class GateSession:
    """Session-wide gating state: the context (key, store, rules), A/B mode's references
    and the models' configurations as the server reports them (hashed into records)."""

    server: TritonServer
    settings: Settings
    context: GateContext
    references: ReferenceModels | None = None
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def model_config(self, model: str) -> dict[str, Any] | None:
        """The model's configuration as the server reports it (None where it does not)."""
        if model not in self.configs:
            try:
                status, payload = get_json(f"{self.server.base_url}/v2/models/{model}/config")
            except ProbeError:
                return None
            if status != 200 or not isinstance(payload, dict):
                return None
            self.configs[model] = payload
        return self.configs[model]

    @property
    def pipeline(self) -> GatePipeline:
        """The pipeline every measurement of the session runs through."""
        return GatePipeline(
            self.context,
            references=self.references,
            compare=self.settings.compare,
            model_config=self.model_config,
        )
