"""Send schedules of the open loop: constant spacing or Poisson arrivals, seeded.

A schedule is an endless sequence of offsets (ns) from the start of a phase. Worker ``j`` of
``n`` processes gets its share so that the union of all workers' schedules is the requested
one: constant spacing is interleaved (worker ``j`` sends at ``(j + n*m) / rate``), Poisson
arrivals are split into ``n`` independent Poisson processes of ``rate / n`` (their
superposition is a Poisson process of ``rate``), each seeded from the one recorded seed.

A :class:`RateRamp` is a finite schedule whose rate rises over time (a capacity search's
one pass over the rates). Its arrivals are those of a rate-1 schedule in *operational
time* ``u`` mapped through the inverse of the expected count ``Lambda(t)`` (the integral of
the rate): ``u = 0, 1, 2, ...`` for constant spacing, a rate-1 Poisson process for Poisson
arrivals, which the map makes a Poisson process of the ramp's rate (Cinlar's time change).
Workers share it as they share a constant rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RateRamp:
    """An open loop at ``start`` requests/s for ``hold_s`` (its warm-up), then doubling every
    ``doubling_s`` up to ``end``, where the schedule ends. Geometric, so that every rate is
    crossed at the same relative speed: a bucket of the ramp spans the same relative rise
    of the rate wherever the knee turns out to be."""

    start: float
    end: float
    doubling_s: float
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.start <= self.end and self.doubling_s > 0 and self.hold_s >= 0):
            raise ValueError(f"not a rate ramp: {self!r}")

    @property
    def duration_s(self) -> float:
        """Seconds from the first send to the end of the schedule (the hold included)."""
        return self.hold_s + self.doubling_s * math.log2(self.end / self.start)

    def rate_at(self, t_s: float) -> float:
        """The rate (requests/s) ``t_s`` seconds after the start."""
        rising = min(max(t_s - self.hold_s, 0.0), self.duration_s - self.hold_s)
        return self.start * 2.0 ** (rising / self.doubling_s)

    def expected(self, t_s: float) -> float:
        """Requests scheduled in the first ``t_s`` seconds: ``Lambda(t)``."""
        held = self.start * min(t_s, self.hold_s)
        scale = self.start * self.doubling_s / math.log(2)
        return held + scale * (self.rate_at(t_s) / self.start - 1.0)

    def time_of(self, u: np.ndarray) -> np.ndarray:
        """Seconds from the start at which the expected count reaches ``u``:
        ``Lambda^-1(u)``, the map from operational time."""
        held = self.start * self.hold_s
        scale = self.start * self.doubling_s / math.log(2)
        rising = self.hold_s + self.doubling_s * np.log2(1.0 + np.maximum(u - held, 0.0) / scale)
        out: np.ndarray = np.where(u < held, u / self.start, rising)
        return out


def ramp_offsets_ns(
    ramp: RateRamp,
    arrival: ArrivalKind | str,
    *,
    seed: int = 0,
    worker: int = 0,
    workers: int = 1,
) -> Iterator[int]:
    """The send offsets (ns from phase start) of ``worker`` on ``ramp``, ending with it."""
    if arrival == "constant":
        rng = None
    elif arrival == "poisson":
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(workers)[worker])
    else:
        raise ValueError(f"arrival must be one of {ARRIVALS}, got {arrival!r}")
    end_s, m, u = ramp.duration_s, 0, 0.0
    while True:
        if rng is None:
            us = worker + workers * (m + np.arange(CHUNK, dtype=np.float64))
            m += CHUNK
        else:
            us = u + np.cumsum(rng.exponential(float(workers), size=CHUNK))
            u = float(us[-1])
        times = ramp.time_of(us)
        inside = times[times <= end_s]
        yield from (int(v) for v in inside * 1e9)
        if len(inside) < len(times):
            return
