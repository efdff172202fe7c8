"""How busy the machine was during a measurement: the load average and the CPU steal share.

A history comparison sets one session's measurement against runs recorded in other
sessions; a verdict reads differently when the machine had three runnable processes per core
or a hypervisor took a tenth of its time. Both figures are recorded with each measurement
(and stored with each baseline run) and shown beside the verdict. Linux only for steal:
``/proc/stat``'s aggregate ``cpu`` line, whose eighth value counts ticks stolen by the
hypervisor (proc(5)); None elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")


def cpu_ticks(stat: Path = PROC_STAT) -> tuple[int, int] | None:
    """(steal ticks, total ticks) of all CPUs since boot, or None where not reported.

    The total is user + nice + system + idle + iowait + irq + softirq + steal (guest time is
    already counted in user and nice).
    """
    try:
        first = stat.read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    if not first or first[0] != "cpu" or len(first) < 9:
        return None
    try:
        values = [int(v) for v in first[1:9]]
    except ValueError:
        return None
    return values[7], sum(values)


def load_1m() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


@dataclass
class HostLoad:
    """A measurement's machine load: start it before, :meth:`finish` after.

    ``load_1m`` is the load average at the end; ``steal_pct`` the share of all CPU time
    stolen by the hypervisor between start and finish, in percent (None where Linux does not
    report it, or when no tick passed).
    """

    stat: Path = PROC_STAT
    _start: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self._start = cpu_ticks(self.stat)

    def finish(self) -> dict[str, float | None]:
        """``{"load_1m": 3.2, "steal_pct": 0.0}`` for the time since the start."""
        end = cpu_ticks(self.stat)
        steal = None
        if self._start is not None and end is not None and end[1] > self._start[1]:
            steal = 100.0 * (end[0] - self._start[0]) / (end[1] - self._start[1])
        return {"load_1m": load_1m(), "steal_pct": steal}


def describe(load: Mapping[str, Any] | None) -> str:
    """``load 3.2, steal 0%`` (the parts that are known), or '' for none."""
    if not load:
        return ""
    parts = []
    if load.get("load_1m") is not None:
        parts.append(f"load {float(load['load_1m'] or 0):.1f}")
    if load.get("steal_pct") is not None:
        parts.append(f"steal {float(load['steal_pct'] or 0):.0f}%")
    return ", ".join(parts)
