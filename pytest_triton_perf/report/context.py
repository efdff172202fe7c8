"""What every report writer is given besides the records and its destination.

A report format is a module with a function of the :data:`Writer` shape and one entry in
``report/registry.py``; the plugin and the ``triton-perf`` CLI build a :class:`ReportContext`
and loop over the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_triton_perf.verdicts import MeasurementRecord

DEFAULT_TITLE = "Triton performance"


@dataclass(frozen=True)
class ReportContext:
    """The session a report describes.

    ``environment``: the hardware/software key and the environment of the run (what the
    results file stores under ``environment``); ``session``: the plugin version, the
    command-line arguments, the baseline files saved (``session`` in the results file);
    ``title``: the heading of human-readable reports; ``inconclusive``: the session's
    ``--triton-perf-inconclusive`` policy (``pass`` leaves undecided metrics out of the
    Markdown details: the summary alone lists them); ``no_baseline``: the session's
    ``--triton-perf-no-baseline`` policy (``pass`` leaves measurements without a baseline
    out of the Markdown details).
    """

    environment: Mapping[str, Any] = field(default_factory=dict)
    session: Mapping[str, Any] = field(default_factory=dict)
    title: str = DEFAULT_TITLE
    inconclusive: str = "warn"
    no_baseline: str = "warn"


#: A report writer: ``write(records, destination, context)`` writes the report of
#: ``records`` to ``destination`` (a file, or a directory for several files) and returns
#: the files written or appended to.
Writer = Callable[[Sequence[MeasurementRecord], Path, ReportContext], list[Path]]
