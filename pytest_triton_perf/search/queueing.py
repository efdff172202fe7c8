"""The queueing model of a predictive search: a candidate's capacity under latency bounds,
predicted from a short measurement at low load.

**The system** is a closed loop (perf_analyzer's and our concurrency N): N clients, each
sending its next request as soon as the previous one returned (after a think time Z, the
client's own time between response and send), and one multi-server station, the model's
``c`` instances, each serving one *execution* of up to ``R`` requests at a time (dynamic
batching; ``R = 1`` without it), an execution of ``b`` requests taking a deterministic
service time ``S(b)``, linear in ``b``.

**The method** is an approximate mean-value analysis (MVA; Reiser and Lavenberg, "Mean-value
analysis of closed multichain queuing networks", JACM 1980) of that network with a
load-dependent batch server, in closed form per population N (no recursion is needed for a
single station):

- requests per execution ``b(N) = min(R, max(1, N / c))`` (the clients spread over the
  instances) and the station's saturation rate ``X_sat(N) = c * b(N) / S(b(N))``;
- mean response time ``T(N) = max(S(b) + o + W, N / X_sat(N) - Z)``: either no request
  waits for a whole round (the service time, the overhead ``o`` outside the model's compute,
  and with batching ``W = S(b) / 2``, the mean residual of the execution in progress that
  a greedy dynamic batcher makes an arriving request wait for), or the station is the
  bottleneck and Little's law ``N = X * (T + Z)`` gives the time;
- throughput ``X(N) = N / (T(N) + Z)``;
- a tail (p90, p95, p99) of ``ceil(N / (c * b)) * S(b) + o`` (plus the low-load jitter,
  at most ``S / 4``) when requests queue for whole rounds (deterministic service, M/D/c's
  discreteness: the unluckiest request waits for every round ahead of it),
  ``T(N) + S(b) / 2`` in the batching regime, and ``T(N) + min(J, S(1))`` with no wait at
  all (``J``: the tail the measurement at low load showed); p50 and avg bounds are
  checked on ``T(N)``.

The capacity predicted is ``X(N*)`` for the highest ``N*`` before the first population
whose predicted latency breaks a bound (find_capacity's answer: the throughput of the
highest level within the bounds). Parameters come from the measurement at low load:
``S`` from Triton's statistics (compute input + infer + output per request, which Triton
charges with the whole execution's time), ``o`` as the mean latency minus the server's
time, ``Z`` from Little's law at that level, ``J`` as its p99 minus its mean.

Pure: no server, no clock. :func:`profile` builds the parameters from measured figures and
:func:`predict` solves the model; tests check both against seeded simulations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: Bounds the model predicts: a mean or median (on T) or an upper percentile (T + tail).
MEAN_BOUNDS = ("avg_ms", "p50_ms")
TAIL_BOUNDS = ("p90_ms", "p95_ms", "p99_ms")
PREDICTABLE = (*MEAN_BOUNDS, *TAIL_BOUNDS, "max_error_rate")
#: The highest population the model looks at when no limit is given.
MAX_POPULATION = 4096
#: The level a prediction is checked at keeps its bounds with this share to spare (a
#: measurement right at a bound breaks it half the time) ...
CHECK_MARGIN = 0.2
#: ... while its throughput reaches this share of the predicted capacity at least.
CHECK_REACH = 0.98
#: Where a check breaks a bound, the level measured next: this share of it at most.
BELOW = 0.85


@dataclass(frozen=True)
class Profile:
    """A candidate's service, as measured at low load (milliseconds)."""

    instances: int  # c
    batch_limit: int  # R: requests per execution at most (1 without dynamic batching)
    service_ms: float  # S(1): one execution of one request
    slope_ms: float  # dS/db: added per request of an execution (>= 0)
    overhead_ms: float  # o: latency outside the model's compute, with no queue
    think_ms: float  # Z: a client's time between a response and its next request
    spread_ms: float  # J: p99 minus mean latency at low load
    inferences_per_request: int = 1  # a request's batch size

    def service(self, batch: float) -> float:
        """S(b): one execution of ``batch`` requests."""
        return self.service_ms + self.slope_ms * max(0.0, batch - 1.0)

    def describe(self) -> str:
        """``3 instances x 1 request per execution, S 10.7 ms (+0.0 ms per request), overhead
        0.6 ms``."""
        return (
            f"{self.instances} instance{'s' if self.instances != 1 else ''} x "
            f"{self.batch_limit} request{'s' if self.batch_limit != 1 else ''} per execution, "
            f"S {self.service_ms:.1f} ms (+{self.slope_ms:.1f} ms per request), overhead "
            f"{self.overhead_ms:.1f} ms"
        )


@dataclass(frozen=True)
class Point:
    """The model's figures at one population N (ms; throughput in inferences/s)."""

    population: int
    throughput: float
    mean_ms: float
    tail_ms: float
    queued: bool  # whether requests wait for whole rounds (the station is the bottleneck)


@dataclass(frozen=True)
class Prediction:
    """A predicted capacity: ``capacity`` (inferences/s) at concurrency ``load``, with the
    first population that breaks a bound (``next_load``, ``limited_by``: its bound key,
    ``"limit"`` or ``"plateau"``) and the ``knee``. ``capacity`` None: even concurrency 1
    is predicted to break a bound."""

    capacity: float | None
    load: int | None
    knee: int | None
    next_load: int | None
    limited_by: str
    at_load: Point | None
    profile: Profile
    #: Where to measure to check the prediction: the highest population that keeps every
    #: bound with CHECK_MARGIN to spare, but at least ``reach``, the lowest whose
    #: throughput reaches CHECK_REACH of the capacity (and at most ``load``); the model's
    #: figures there.
    check: Point | None = None
    reach: Point | None = None

    def below(self) -> Point | None:
        """The level measured when the check breaks a bound: ``reach`` where it is at most
        :data:`BELOW` of the check, else that share of the check (None: nothing below)."""
        if self.check is None:
            return None
        n = self.check.population
        if self.reach is not None and self.reach.population <= BELOW * n:
            return self.reach
        lower = int(BELOW * n)
        return point(self.profile, lower) if 1 <= lower < n else None

    def latency(self, key: str) -> float | None:
        """The predicted figure a bound key limits, at the predicted load."""
        if self.at_load is None:
            return None
        return self.at_load.mean_ms if key in MEAN_BOUNDS else self.at_load.tail_ms

    def describe(self) -> str:
        """``predicted 280.4 infer/s at concurrency 13 (p99 ~48 ms; limited by p99_ms)``."""
        if self.capacity is None or self.load is None:
            return f"predicted to break {self.limited_by} at concurrency 1"
        tail = f"; tail ~{self.at_load.tail_ms:.0f} ms" if self.at_load else ""
        return (
            f"predicted {self.capacity:.1f} infer/s at concurrency {self.load}{tail}; "
            f"limited by {self.limited_by}"
        )


def profile(
    *,
    instances: int,
    batch_limit: int,
    concurrency: float,
    throughput_rps: float,
    mean_ms: float,
    p99_ms: float,
    service_ms: float,
    queue_ms: float = 0.0,
    batched: tuple[float, float] | None = None,
    inferences_per_request: int = 1,
) -> Profile:
    """The model's parameters from a measurement at low load: at ``concurrency`` (about
    one request per instance) ``throughput_rps`` requests/s, ``mean_ms`` and ``p99_ms``
    latency, Triton's ``service_ms`` (compute per request) and ``queue_ms``.
    ``batched``: (requests per execution, service ms) measured with batches forming, for
    the slope of S(b); None: S does not grow with the batch."""
    service = max(service_ms, 1e-3)
    overhead = max(0.0, mean_ms - service - queue_ms)
    think = 0.0
    if throughput_rps > 0:
        think = min(max(0.0, concurrency / throughput_rps * 1000.0 - mean_ms), mean_ms)
    slope = 0.0
    if batched is not None and batched[0] >= 1.5:
        slope = max(0.0, (batched[1] - service) / (batched[0] - 1.0))
    return Profile(
        instances=max(1, int(instances)),
        batch_limit=max(1, int(batch_limit)),
        service_ms=service,
        slope_ms=slope,
        overhead_ms=overhead,
        think_ms=think,
        spread_ms=max(0.0, p99_ms - mean_ms),
        inferences_per_request=max(1, int(inferences_per_request)),
    )


def point(p: Profile, population: int) -> Point:
    """The model at ``population`` clients (see the module's docstring)."""
    n = float(population)
    c = p.instances
    batch = min(float(p.batch_limit), max(1.0, n / c))
    s = p.service(batch)
    saturation = c * batch / s  # requests per ms
    waits = p.batch_limit > 1 and n > c
    residual = s / 2.0 if waits else 0.0
    unqueued = s + p.overhead_ms + residual
    queued_time = n / saturation - p.think_ms
    queued = queued_time > unqueued
    mean = max(unqueued, queued_time)
    if queued:
        # Deterministic service in rounds of c * b requests: the unluckiest request waits
        # ceil(N / (c * b)) executions, plus the jitter seen at low load (at most S / 4).
        rounds = math.ceil(n / (c * batch) - 1e-9)
        tail = max(mean, rounds * s + p.overhead_ms) + min(p.spread_ms, s / 4.0)
    elif waits:
        tail = mean + s / 2.0
    else:
        tail = mean + min(p.spread_ms, p.service_ms)
    throughput = n / (mean + p.think_ms) * 1000.0 * p.inferences_per_request
    return Point(population, throughput, mean, tail, queued)


def _breaks(pt: Point, bounds: Mapping[str, float]) -> str | None:
    for key, bound in bounds.items():
        if key in MEAN_BOUNDS and pt.mean_ms > bound:
            return key
        if key in TAIL_BOUNDS and pt.tail_ms > bound:
            return key
    return None


def predict(
    p: Profile,
    bounds: Mapping[str, float],
    *,
    limit: float | None = None,
    min_gain: float = 0.05,
) -> Prediction:
    """The capacity the model predicts under ``bounds`` (SLA keys; those in
    :data:`PREDICTABLE`), over concurrency 1 .. ``limit``: the throughput at the highest
    population before the first that breaks a bound. The knee: the lowest population whose
    throughput is within ``min_gain`` of the capacity."""
    top = int(min(limit, MAX_POPULATION)) if limit is not None else MAX_POPULATION
    top = max(1, top)
    points: list[Point] = []
    limited_by = "limit"
    next_load: int | None = None
    for n in range(1, top + 1):
        pt = point(p, n)
        broken = _breaks(pt, bounds)
        if broken is not None:
            limited_by, next_load = broken, n
            break
        points.append(pt)
        # Past the bottleneck, more clients only queue: the capacity no longer grows, and
        # the latency grows by S / c per client, so the bound is reached soon; keep going.
    if not points:
        return Prediction(None, None, None, next_load, limited_by, None, p)
    best = points[-1]
    knee = next(
        (q.population for q in points if q.throughput >= (1 - min_gain) * best.throughput),
        best.population,
    )
    spare = {k: v * (1 - CHECK_MARGIN) for k, v in bounds.items()}
    roomy = [q for q in points if _breaks(q, spare) is None]
    reach = next(q for q in points if q.throughput >= CHECK_REACH * best.throughput)
    check = max([reach, *roomy[-1:]], key=lambda q: q.population)
    return Prediction(
        best.throughput, best.population, knee, next_load, limited_by, best, p, check, reach
    )


def relative_error(measured: float, predicted: float) -> float:
    """``measured / predicted - 1`` (inf when nothing was predicted)."""
    if predicted <= 0 or not math.isfinite(predicted):
        return math.inf
    return measured / predicted - 1.0
