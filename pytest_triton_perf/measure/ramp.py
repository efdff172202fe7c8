"""A rate ramp: latency against offered rate in one pass of an open loop.

The open loop's rate rises geometrically (:class:`~pytest_triton_perf.load.schedule.RateRamp`)
after a short hold at its start rate (the warm-up). Latency counts from each request's
scheduled send time, so the requests *scheduled* in a span of the ramp, followed to their
end, give the latency at the rate offered then: the ramp is cut into **buckets** by
scheduled time, each spanning :data:`STEP` (5%) of the rate and holding at least
:data:`MIN_BUCKET_REQUESTS` requests, and each bucket is summarised like a measurement
(:func:`~pytest_triton_perf.measure.summary.summarise_started`).

**Stopping.** A bucket is judged once it has ended :attr:`RampPlan.grace_s` ago, on the
requests of it answered by then: those still unanswered are the slowest, so a bucket that
breaks a bound on its answered requests breaks it for certain. After
:attr:`RampPlan.stop_after` breaking buckets in a row the ramp stops sending and drains;
past the knee the queue grows with every bucket, and a queue built far past it would
still be draining into the next measurement.

**The knee** (:func:`find_knee`): the highest bucket rate that held every bound, but no
higher than the rate the server answered while the ramp was past it. The second figure
matters for a server whose latency only breaks a bound once its queue has built up (a
constant-rate open loop into a model of fixed service time): its first buckets past the
knee still hold, because their queue is young, and the answer rate there is the server's
ceiling. A bucket's percentile over a few tens of requests is near its maximum: a
conservative reading, which the capacity's steady level then decides at full length.

The data and pure parts live here; ``measure.engine.measure_ramp`` runs a ramp.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_triton_perf.load.schedule import RateRamp
from pytest_triton_perf.measure.result import PerfResult

#: Relative rise of the offered rate across one bucket: the resolution of a rate search's
#: bisection (``capacity.RATE_RESOLUTION``), so the ramp resolves the knee as finely.
STEP = 0.05
#: Requests a bucket holds at least (the first buckets are merged until they do): with
#: fewer, one slow request decides its percentile.
MIN_BUCKET_REQUESTS = 20
#: The ramp doubles its rate no faster than this: slow enough for the queue at each rate to
#: settle (a few service times) before the rate has moved a bucket on.
MIN_DOUBLING_S = 2.0
#: ... and no slower than this: a ramp from far below the knee reaches it in reasonable time
#: (its first buckets merge until they hold enough requests, coarser where no knee is).
MAX_DOUBLING_S = 10.0
#: A ramp ends at most this many times its start rate; a capacity beyond it is searched
#: on from there.
SPAN = 16.0
#: Breaking buckets in a row that end the ramp: one can be a stall of the machine.
STOP_AFTER = 3
#: Longest wait after a bucket ends before it is judged, whatever the bounds.
MAX_GRACE_S = 2.0


@dataclass(frozen=True)
class RampPlan:
    """A ramp and how it is cut: ``edges_s`` are the buckets' edges in seconds from the
    end of the ramp's hold (where the rate starts to rise); a bucket is judged ``grace_s``
    after it ends, and ``stop_after`` breaking ones in a row end the ramp."""

    ramp: RateRamp
    edges_s: tuple[float, ...]
    grace_s: float
    stop_after: int = STOP_AFTER

    def rate(self, index: int) -> float:
        """Bucket ``index``'s offered rate: the schedule's mean over it (requests/s)."""
        a, b = self.edges_s[index], self.edges_s[index + 1]
        hold, ramp = self.ramp.hold_s, self.ramp
        return (ramp.expected(hold + b) - ramp.expected(hold + a)) / (b - a)

    def held(self, hold_s: float) -> RampPlan:
        """This plan with a hold of ``hold_s`` at the start rate before the rise."""
        return dataclasses.replace(self, ramp=dataclasses.replace(self.ramp, hold_s=hold_s))


def plan_ramp(start: float, limit: float, *, grace_s: float) -> RampPlan:
    """The ramp of a capacity search from ``start`` requests/s: doubling every
    :data:`MIN_DOUBLING_S` or slower, so that a bucket at twice the start rate (where the
    knee of a model is at least, for a rate search starting at half the closed-loop
    throughput) holds :data:`MIN_BUCKET_REQUESTS`, but no slower than
    :data:`MAX_DOUBLING_S`; up to ``limit`` or :data:`SPAN` times ``start``. Its hold (the
    warm-up) is the measurement's to set (:meth:`RampPlan.held`)."""
    per_bucket = math.log2(1 + STEP)
    wanted = MIN_BUCKET_REQUESTS / (2 * start * per_bucket)
    doubling = min(MAX_DOUBLING_S, max(MIN_DOUBLING_S, wanted))
    ramp = RateRamp(start, max(start * (1 + STEP), min(limit, start * SPAN)), doubling)
    rise = ramp.duration_s
    edges = [0.0]
    k = 1
    while edges[-1] < rise:
        edge = min(rise, doubling * per_bucket * k)
        k += 1
        if edge >= rise or ramp.expected(edge) - ramp.expected(edges[-1]) >= MIN_BUCKET_REQUESTS:
            edges.append(edge)
    return RampPlan(ramp, tuple(edges), min(max(grace_s, 0.0), MAX_GRACE_S))


@dataclass(frozen=True)
class RampBucket:
    """One bucket of a ramp: its span (seconds from the start of the rise), the rate offered
    over it, the rate the server answered while it ran (requests/s, whoever sent them), and
    the figures of the requests scheduled in it."""

    start_s: float
    end_s: float
    rate: float
    served: float
    result: PerfResult


@dataclass(frozen=True)
class RampRun:
    """What a ramp saw: its judged buckets in order; ``stopped`` when breaking buckets
    ended it before its schedule did; its wall time, the drain included."""

    plan: RampPlan
    buckets: tuple[RampBucket, ...]
    stopped: bool
    duration_s: float
    client_bound: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Knee:
    """A ramp's knee (requests/s; None: no bucket held) and what it was read from: the
    highest rate that held, the answer rate past the knee (None: the ramp never broke a
    bound), and the first rate above the held one that broke."""

    rate: float | None
    held: float | None
    served: float | None
    broke: float | None

    def describe(self) -> str:
        """``knee 182/s (held up to 197/s, answered 182/s past it)``."""
        if self.rate is None or self.held is None:
            return "no bucket of the ramp held the bounds"
        text = f"knee {self.rate:.4g}/s (held up to {self.held:.4g}/s"
        if self.served is not None:
            text += f", answered {self.served:.4g}/s past it"
        return text + ")"


def find_knee(run: RampRun, passed: Sequence[bool]) -> Knee:
    """The knee of ``run`` whose buckets held (``passed``) or broke; see the module's
    docstring."""
    held = [b.rate for b, ok in zip(run.buckets, passed, strict=True) if ok]
    top = max(held) if held else None
    broke = [b.rate for b, ok in zip(run.buckets, passed, strict=True) if not ok]
    above = min((r for r in broke if top is None or r > top), default=None)
    served = None
    if run.stopped:
        # The breaking buckets at the end: the server was behind all through them.
        tail: list[RampBucket] = []
        for bucket, ok in zip(reversed(run.buckets), reversed(passed), strict=True):
            if ok:
                break
            tail.append(bucket)
        span = sum(b.end_s - b.start_s for b in tail)
        if span > 0:
            served = sum(b.served * (b.end_s - b.start_s) for b in tail) / span
    rate = top if top is None or served is None else min(top, served)
    return Knee(rate, top, served, above)


__all__ = ["Knee", "RampBucket", "RampPlan", "RampRun", "find_knee", "plan_ramp"]
