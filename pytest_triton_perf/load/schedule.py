"""Send schedules of the open loop: constant spacing or Poisson arrivals, seeded.

A schedule is an endless sequence of offsets (ns) from the start of a phase. Worker ``j`` of
``n`` processes gets its share so that the union of all workers' schedules is the requested
one: constant spacing is interleaved (worker ``j`` sends at ``(j + n*m) / rate``), Poisson
arrivals are split into ``n`` independent Poisson processes of ``rate / n`` (their
superposition is a Poisson process of ``rate``), each seeded from the one recorded seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, get_args

import numpy as np

ArrivalKind = Literal["constant", "poisson"]
ARRIVALS: tuple[ArrivalKind, ...] = get_args(ArrivalKind)

#: Offsets are generated in chunks of this many (bounded memory for long runs).
CHUNK = 4096


def offsets_ns(
    rate: float,
    arrival: ArrivalKind | str,
    *,
    seed: int = 0,
    worker: int = 0,
    workers: int = 1,
) -> Iterator[int]:
    """Endless send offsets (ns from phase start) of ``worker`` for a total ``rate`` per second."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    if arrival == "constant":
        period_ns = 1e9 / rate
        m = 0
        while True:
            ks = worker + workers * (m + np.arange(CHUNK, dtype=np.float64))
            yield from (int(v) for v in ks * period_ns)
            m += CHUNK
    elif arrival == "poisson":
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(workers)[worker])
        mean_gap_ns = 1e9 * workers / rate
        t = 0.0
        while True:
            gaps = rng.exponential(mean_gap_ns, size=CHUNK)
            times = t + np.cumsum(gaps)
            t = float(times[-1])
            yield from (int(v) for v in times)
    else:
        raise ValueError(f"arrival must be one of {ARRIVALS}, got {arrival!r}")
