"""Configuration search: which ``config.pbtxt`` serves a model best under its SLA.

``run_search(server, model, space, objective=..., sla=...)`` loads every candidate
configuration of ``space`` beside the model, measures it (by default a short probe, a
queueing model's prediction and one level at full length where it predicts the answer;
racing, successive halving or a grid on request) and returns a :class:`SearchResult`: the
candidates ranked, the best one with its ``config.pbtxt`` ready to commit, and how far it
is ahead of the committed configuration.
"""

from __future__ import annotations

from pytest_triton_perf.search.objective import MAXIMISE as OBJECTIVES
from pytest_triton_perf.search.result import Candidate, SearchResult
from pytest_triton_perf.search.runner import MeasureFn, run_search
from pytest_triton_perf.search.space import KEYS, parse_space
from pytest_triton_perf.search.strategy import STRATEGIES

__all__ = [
    "KEYS",
    "OBJECTIVES",
    "STRATEGIES",
    "Candidate",
    "MeasureFn",
    "SearchResult",
    "parse_space",
    "run_search",
]
