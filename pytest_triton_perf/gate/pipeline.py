"""The gate pipeline: what to measure (a :class:`~pytest_triton_perf.gate.strategies.Subject`)
under how to judge it (no comparison, history, A/B). Free of pytest: the fixture, the YAML
items and the benchmarks all run their measurements through :meth:`GatePipeline.run`, and
:func:`~pytest_triton_perf.gate.verdict.evaluate_test` judges the records it returns by the
strategy each was measured under, so a statistical rule is written once.

The one mode dispatch is :meth:`GatePipeline.mode`: A/B when a reference is loaded, history
when comparing with stored runs, otherwise none. A subject none of whose figures are compared
(a footprint, a configuration search's record) is measured under no comparison whatever the
mode; in A/B mode a subject with a model the reference lacks is measured alone and reported
as not compared, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.baseline import calibration
from pytest_triton_perf.gate.context import GateContext, Measured
from pytest_triton_perf.gate.strategies import (
    AB,
    STRATEGIES,
    Arms,
    Mode,
    Subject,
    not_in_reference,
)
from pytest_triton_perf.measure.host import HostLoad

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.ab import ABPlan
    from pytest_triton_perf.baseline.compare import GateSettings
    from pytest_triton_perf.baseline.reference import ReferenceModels


def _no_config(model: str) -> dict[str, Any] | None:
    return None


@dataclass
class GatePipeline:
    """Runs subjects under the session's strategy and returns their records.

    ``context``: the key, the store and the rules; ``references``: A/B mode's reference
    copies (None outside A/B mode); ``compare``: history mode (``--triton-perf-compare``);
    ``model_config``: a model's configuration as the server reports it (hashed into the
    records)."""

    context: GateContext
    references: ReferenceModels | None = None
    compare: bool = False
    model_config: Callable[[str], dict[str, Any] | None] = _no_config

    def mode(self) -> Mode:
        """The comparison mode of this session: the only place it is decided."""
        if self.references is not None:
            return "ab"
        if self.compare:
            return "history"
        return None

    def run(
        self,
        subject: Subject,
        *,
        gate: GateSettings | None = None,
        plan: ABPlan | None = None,
    ) -> list[Measured]:
        """Measure ``subject`` under the session's strategy: a record per model, with the
        host's load over the measurement and each model's configuration. ``gate`` (the
        test's rule; default the session's) and ``plan`` (the A/B design of this call)
        matter in A/B mode only."""
        host = HostLoad()
        mode = self.mode() if subject.comparable else None
        if mode == "ab":
            measured = self._ab(subject, gate or self.context.gate, plan)
        else:
            measured = STRATEGIES[mode].measure(subject)
        load = host.finish()
        names = subject.models if len(subject.models) == len(measured) else ()
        for i, m in enumerate(measured):
            if m.host_load is None:  # a recorded result brings the load of its own run
                m.host_load = load
            if m.config is None:
                m.config = self.model_config(names[i] if names else m.result.model)
        return measured

    def _ab(self, subject: Subject, gate: GateSettings, plan: ABPlan | None) -> list[Measured]:
        refs = self.references
        assert refs is not None
        found = {m: refs.arms(m) for m in subject.models}
        missing = [m for m, a in found.items() if a is None]
        if missing:
            measured = AB.measure(subject)
            note = not_in_reference(subject.models, missing, refs.origin)
            for m in measured:
                m.reference_note = note
            return measured
        assert plan is not None, "a comparable subject in A/B mode needs the call's A/B plan"
        names = {m: a for m, a in found.items() if a is not None}
        store = self.context.store
        root = store.root if store is not None else None
        offsets = {m: calibration.offsets(root, self.context.key, m) for m in names}
        return subject.measure_ab(Arms(names, refs, plan, gate, offsets))
