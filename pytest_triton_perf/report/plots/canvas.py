"""What every plot shares: the palette, a figure on its own Agg canvas, file names."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_triton_perf.errors import PlotError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURRENT_COLOR = "#d95f02"  # orange: the run under test
BASELINE_COLOR = "#1b6ca8"  # blue: what it is compared with
P99_COLOR = "#7570b3"
#: One colour per latency figure of a capacity curve (p50 and p99 as in the sweep curves).
LATENCY_COLORS = {
    "p50_ms": CURRENT_COLOR,
    "p90_ms": "#1b9e77",
    "p95_ms": "#e6ab02",
    "p99_ms": P99_COLOR,
    "avg_ms": "#666666",
}
BREACH_COLOR = "#d62728"
#: Candidates of a configuration search by status: colour and marker.
STATUS_STYLE: dict[str | None, tuple[str, str]] = {
    "finalist": ("#1b6ca8", "o"),
    "pruned": ("#999999", "o"),
    "infeasible": (BREACH_COLOR, "x"),
}


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas; :class:`PlotError`
    when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(
            "--triton-perf-plots needs matplotlib, which is not installed: "
            "pip install 'pytest-triton-perf[plots]'"
        ) from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, attached to this figure only: no global backend
    return fig


def safe_name(text: str, limit: int = 80) -> str:
    """A file-name fragment: letters, digits, ``.``, ``_``, ``-``; ``_`` for the rest."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "x"
    return safe[:limit]


def unique_names(keys: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Map each raw key to its file name; names that collide after sanitizing get a short
    hash of the raw key, so the result depends only on the keys, never on their order."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for raw, name in keys:
        by_name[name].add(raw)
    out = {}
    for raw, name in keys:
        if len(by_name[name]) > 1:
            name = f"{name}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
        out[raw] = name
    return out
