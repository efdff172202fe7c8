"""How numbers read, everywhere: table cells, the failure screens, the reports, the CLI.

One formatter, so the screen that fails a test and the reports written after it never show
the same figure, interval or p-value two ways. Pure: no imports from this package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, NaN, a bool, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
    return f if math.isfinite(f) else None


def fmt(value: Any, digits: int = 2) -> str:
    """A figure for a table cell: ``-`` when missing; three significant digits below 1,
    ``digits`` decimals up to 100, one decimal up to 1000, none above."""
    v = num(value)
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) < 1:
        return f"{v:.3g}"
    return f"{v:.{digits}f}"


def fmt_mb(value: Any) -> str:
    """Memory in whole MB, or ``-`` when unknown (never 0 for "not measured")."""
    v = num(value)
    return "-" if v is None else f"{v:.0f}"


def fmt_pct(value: Any) -> str:
    """A signed change in percent, e.g. ``+12.3%``."""
    v = num(value)
    return "-" if v is None else f"{v:+.1f}%"


def fmt_p(value: Any) -> str:
    """A p-value: four decimals, or ``<0.0001``."""
    v = num(value)
    if v is None:
        return "-"
    return "<0.0001" if v < 0.0001 else f"{v:.4f}"


def fmt_interval(interval: Sequence[float] | None) -> str:
    """A 95% interval as ``[lo, hi]``, or ``-``."""
    if not interval or len(interval) != 2:
        return "-"
    return f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def shown(value: Any) -> str:
    """``repr`` for messages, safe for values Python refuses to print (integers of
    thousands of digits)."""
    try:
        return repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to print>"
