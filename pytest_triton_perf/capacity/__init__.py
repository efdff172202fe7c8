"""Capacity: the highest load a model sustains while every latency bound of its SLA holds.

:func:`find_capacity` searches over one load axis, concurrency (closed loop) or request rate
(open loop), with a measurement function it is given:

1. **Growth.** From ``start``, multiply the load by ``growth`` (2) until a bound breaks, the
   ``limit`` is reached, or throughput stops growing: the best of the last ``gain_steps`` (2)
   levels adds less than ``min_gain`` (5%) to the best before them (Model Analyzer's stop
   rule for its concurrency sweeps, which gives up after a few levels that gain less than 5%).
2. **Bisection** between the last level that held every bound and the first that broke one,
   until they are ``resolution`` apart (1 for concurrency, 5% of the load for a rate).

``load`` is the highest level that held every bound and the capacity the throughput
(inferences/s) measured there; the knee is the lowest level whose throughput is within
``min_gain`` of the best measured within the bounds (beyond it, more load only queues).

**The ramp** (``method="ramp"``, the default over ``request_rate``; ``capacity.ramp``, the
engine's ``measure_ramp``, ``measure.ramp``): instead of a full measurement per level, one
open loop whose rate doubles every few seconds from ``start`` (after a hold at ``start``,
its warm-up), cut into buckets of 5% of the rate by *scheduled* send time. Latency counts
from the schedule, so each bucket's requests, followed to their end, give latency against
the offered rate. The ramp stops once three buckets in a row break a bound (judged on the
requests answered by then, a lower bound on their latency, so the break is certain), so the
server is never driven far past its knee. The knee is the highest bucket rate that held,
capped by the rate the server answered while past it (a queue takes a few buckets to build
up to a latency bound; the answer rate does not wait for it). Then **one steady level** at
:data:`RAMP_MARGIN` (90%) of the knee, measured at full length, confirms it, and the
bisection of the search closes the bracket from it to the first bucket that broke, to
``RAMP_RESOLUTION`` (10%; usually one level). Should the steady level break a bound, the
level below is 90% of it again until one holds, and the bisection closes that bracket. A
ramp that ends within the bounds short of ``limit`` hands over to the search from its end;
one whose first buckets break, to the search from its start. A closed loop has no rate to ramp:
``method="search"`` is the default over concurrency, and the only method there.

**Capacity by goodput** (DistServe's definition, ``capacity(..., attainment=0.9,
slo={...})``): the bound ``min_slo_attainment`` limits the search like a latency bound, so
the answer is the highest load at which at least that share of requests meets every
per-request SLO (TTFT, TPOT, end-to-end; failed requests miss them). A level holds when the
**point estimate** of its attainment reaches the target, as every SLA bound and every
latency bound of the search is decided; its 95% Wilson interval is shown beside it, and a
capacity level whose interval straddles the target is noted as marginal. The interval's
lower bound would make the answer depend on how many requests a level happened to hold
(short levels, lower capacity) rather than on the server, and would not match the
``min_slo_attainment`` check that the same record then meets.

Over ``request_rate`` each level is an open loop whose latency counts from the *scheduled*
send time (see ``load/open_loop.py``): when the server falls behind, its queue shows in the
latency of the very level that caused it, so the capacity cannot be inflated by a client
that sends late (perf_analyzer times from the actual send, so a client that falls behind
hides the queue from its ``--latency-threshold`` search).

Pure with respect to the server: the caller's ``measure`` does the measuring, so the search
is the same for a plain test, each arm of an A/B comparison and each candidate of a
configuration search.
"""

from pytest_triton_perf.capacity.bounds import (
    ATTAINMENT_KEY,
    AXES,
    LATENCY_KEYS,
    LIMITING_KEYS,
    SEARCH_KEYS,
    attainment_text,
    bound_metric,
    breaches,
    goodput_bounds,
    latency_bounds,
)
from pytest_triton_perf.capacity.levels import MAX_STEPS
from pytest_triton_perf.capacity.ramp import RAMP_MARGIN, RampFn
from pytest_triton_perf.capacity.result import FULL_PHASES, CapacityResult, CapacityStep
from pytest_triton_perf.capacity.search import (
    DEFAULT_LIMIT,
    DEFAULT_METHOD,
    GAIN_STEPS,
    GROWTH,
    LATER_WARMUP_S,
    METHODS,
    MIN_GAIN,
    RATE_RESOLUTION,
    CapacityMethod,
    check_method,
    find_capacity,
    level_settings,
)

__all__ = [
    "ATTAINMENT_KEY",
    "AXES",
    "DEFAULT_LIMIT",
    "DEFAULT_METHOD",
    "FULL_PHASES",
    "GAIN_STEPS",
    "GROWTH",
    "LATENCY_KEYS",
    "LATER_WARMUP_S",
    "LIMITING_KEYS",
    "MAX_STEPS",
    "METHODS",
    "MIN_GAIN",
    "RAMP_MARGIN",
    "RATE_RESOLUTION",
    "SEARCH_KEYS",
    "CapacityMethod",
    "CapacityResult",
    "CapacityStep",
    "RampFn",
    "attainment_text",
    "bound_metric",
    "breaches",
    "check_method",
    "find_capacity",
    "goodput_bounds",
    "latency_bounds",
    "level_settings",
]
