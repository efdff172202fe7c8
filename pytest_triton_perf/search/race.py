"""Racing: the candidates loaded side by side and measured in interleaved rounds.

Racing for configuration selection (Maron & Moore, "Hoeffding Races", NIPS 1993/1994;
Birattari, Stützle, Paquete & Varrentrapp, "A Racing Algorithm for Configuring
Metaheuristics" (F-Race), GECCO 2002), with the A/B mode's design applied to N arms:

1. **Load together**: every candidate (the committed configuration as ``<model>__cfg0``
   among them) is loaded at once, each as its own model variant. Should some load only
   alone (memory), the search runs by successive halving instead, and its notes say why.
2. **Rounds**: each round measures one short block per candidate still in the race (rung
   0's settings: 0.2 s of warm-up and two windows of 0.3 s, never extended), in a fresh
   random order per round (seeded; the seed is in the search's notes). A drift of the
   machine (a neighbour, a clock, a thermal state) lasting longer than a round hits every
   candidate alike, and cancels in the pairs below.
3. **Dropping rule**, after each round from the :data:`MIN_ROUNDS`-th on: the leader is the
   candidate with the best geometric mean of its objective over the rounds; every other
   challenger is compared with it by the **paired log-ratios** of the objective (round i
   gives one pair: both measured within the same round), a **one-sided Student t bound** on
   their mean. A challenger whose bound shows it worse than the leader is pruned (the
   note names the rounds, its ratio to the leader and the bound). The level is **alpha
   Bonferroni-corrected** over the other candidates in the race (any of them may be the
   leader) and over the race's looks (the rounds at which it may drop one): a candidate
   at least as good as every other is then dropped with a probability of at most
   :data:`ALPHA` in the whole race, whoever leads. F-Race uses Friedman's rank test
   instead; a t test on log-ratios uses the size of the differences, not only their
   order, which decides sooner with the few rounds a search can afford.
   A challenger whose blocks clearly break the SLA (beyond a bound by more than
   ``objective.SHORT_TOLERANCE``, the halving's rule) in most rounds is infeasible. A
   dropped candidate is unloaded at once. The committed configuration is never dropped.
4. **Stop** when one challenger is left, or when the round budget (:func:`race_budget`:
   about the time successive halving would measure for) is spent; then at most
   ``strategy.MIN_KEEP`` challengers, the best by geometric mean, go on. The survivors are
   measured at full length and settle as halving's finalists do (``strategy.settle``).

Racing answers objectives measured at a fixed load (``throughput``, ``p99_ms``). Not:

- a **capacity**: each candidate's figure is a search over load levels, not one block at
  a load given, so rounds of equal blocks do not exist (predict or halving answer it);
- **GPU or host memory** as the objective or a constraint: a memory figure is the growth
  during a measurement, and a candidate's allocator grows once (its later blocks read
  about 0, which has no log-ratio), while every candidate loaded shares the device; each
  candidate is measured alone by halving instead.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_triton_perf import metrics
from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search.candidates import Arm, Measurement
from pytest_triton_perf.search.loader import Loader
from pytest_triton_perf.search.objective import MAXIMISE
from pytest_triton_perf.search.strategy import MIN_KEEP, halving_s, nominal_s, settle

if TYPE_CHECKING:
    from pytest_triton_perf.measure.plan import MeasureSettings

#: The chance that the race drops a candidate at least as good as every other.
ALPHA = 0.05
#: Rounds before the first comparison (a t bound on 2 pairs is too wide to tell anything).
MIN_ROUNDS = 3
#: Rounds at most, whatever the budget (each round is a look that costs alpha).
MAX_ROUNDS = 12


def unraceable(objective: str, bounds: Mapping[str, float]) -> str | None:
    """Why racing does not answer this search (see the module's docstring), or None."""
    if objective == "capacity":
        return "a capacity is searched over load levels, not measured in equal blocks"
    memory = [
        k
        for k in (objective, *(metrics.BY_SLA_KEY[k].name for k in bounds))
        if k.endswith("_memory_mb")
    ]
    if memory:
        return f"{memory[0]} is measured as a candidate's own growth, which needs it measured alone"
    return None


@dataclass(frozen=True)
class Budget:
    """How much a race may measure: ``blocks`` in all, in ``rounds`` at most."""

    blocks: int
    rounds: int

    @property
    def looks(self) -> int:
        """The rounds after which the race may drop a candidate."""
        return max(1, self.rounds - MIN_ROUNDS + 1)


def race_budget(
    arms: int, block: MeasureSettings, short: MeasureSettings, full: MeasureSettings
) -> Budget:
    """The round budget of ``arms`` candidates (the committed one among them): the blocks
    that take about what successive halving would measure for (``strategy.halving_s``),
    less the race's own full-length end (the committed configuration and one challenger),
    and at least :data:`MIN_ROUNDS` rounds of every candidate. The rounds at most: those
    blocks spent on rounds of three candidates (the fewest that go on racing) after the
    first :data:`MIN_ROUNDS`, and no more than :data:`MAX_ROUNDS`."""
    spare = halving_s(arms - 1, short, full) - 2 * nominal_s(full)
    first = MIN_ROUNDS * arms
    blocks = max(first, math.floor(spare / nominal_s(block) + 1e-9))
    return Budget(blocks, min(MAX_ROUNDS, MIN_ROUNDS + (blocks - first) // 3))


@dataclass(frozen=True)
class Comparison:
    """A challenger against the leader over the rounds both were measured in."""

    rounds: tuple[int, ...]
    ratio: float  # the geometric mean of challenger / leader on the objective
    bound: float  # the one-sided bound on that ratio (on the leader's side of 1: worse)
    level: float  # its confidence
    worse: bool

    def describe(self, objective: str, leader: str) -> str:
        """``throughput 0.51x sleepy__cfg2's over rounds 1-3, at most 0.55x (99.2%, ...)``."""
        side = "at most" if MAXIMISE[objective] else "at least"
        return (
            f"{objective} {self.ratio:.3g}x {leader}'s over rounds {_span(self.rounds)}, "
            f"{side} {self.bound:.3g}x (one-sided {self.level:.2%} paired t bound on "
            f"log-ratios)"
        )


def compare(
    challenger: Mapping[int, float], leader: Mapping[int, float], objective: str, alpha: float
) -> Comparison | None:
    """A one-sided paired t test at level ``alpha`` on the log-ratios of the objective
    (``challenger`` and ``leader``: round -> log of the objective): whether the challenger
    is worse than the leader. None with fewer than two pairs."""
    from scipy.stats import t as student_t

    rounds = tuple(sorted(set(challenger) & set(leader)))
    if len(rounds) < 2:
        return None
    sign = 1.0 if MAXIMISE[objective] else -1.0
    # Positive: the challenger is better in that round.
    gains = [sign * (challenger[r] - leader[r]) for r in rounds]
    n = len(gains)
    mean = statistics.fmean(gains)
    se = statistics.stdev(gains) / math.sqrt(n)
    upper = mean + float(student_t.ppf(1 - alpha, n - 1)) * se
    return Comparison(rounds, math.exp(sign * mean), math.exp(sign * upper), 1 - alpha, upper < 0)


@dataclass(frozen=True)
class RaceSteps:
    """What the race asks of the runner: ``block(arm, round)`` measures one short block of
    a loaded arm (appended to its measurements; None: it failed, its status says so);
    ``final(arm, rung)`` measures it at full length; ``release(arms)`` unloads arms."""

    block: Callable[[Arm, int], Measurement | None]
    final: Callable[[Arm, int], None]
    release: Callable[[Sequence[Arm]], None]


@dataclass(frozen=True)
class RaceOutcome:
    """How a race went: its rounds, seed, budget, why it stopped, how many it pruned."""

    rounds: int
    seed: int
    budget: Budget
    blocks: int
    stopped: str
    pruned: int
    alpha: float

    def describe(self) -> str:
        """The search's note."""
        return (
            f"race: {self.rounds} round(s) of one block per candidate, in a random order "
            f"per round (seed {self.seed}); paired t bounds on log-ratios against the "
            f"leader, alpha {self.alpha:g} Bonferroni-corrected over the candidates and "
            f"{self.budget.looks} look(s); {self.pruned} pruned; stopped: {self.stopped} "
            f"(budget: {self.budget.rounds} rounds, {self.budget.blocks} blocks; "
            f"{self.blocks} measured)"
        )


def run_race(
    arms: Sequence[Arm],
    steps: RaceSteps,
    objective: str,
    budget: Budget,
    *,
    seed: int,
    alpha: float = ALPHA,
    notify: Callable[[str], None] = lambda line: None,
) -> RaceOutcome:
    """Race ``arms`` (loaded; those already failed are left out), see the module's
    docstring; sets each arm's status and note."""
    rng = random.Random(seed)
    logs: dict[int, dict[int, float]] = {a.index: {} for a in arms}
    broke: dict[int, list[tuple[str, ...]]] = {a.index: [] for a in arms}
    active = [a for a in arms if a.status == "pending"]
    done = pruned = blocks = 0
    stopped = "one challenger left"
    while _challengers(active) > 1:
        if done == budget.rounds or blocks + len(active) > budget.blocks:
            stopped = "the round budget is spent"
            break
        done += 1
        order = rng.sample(active, len(active))
        for arm in order:
            measurement = steps.block(arm, done)
            blocks += 1
            if measurement is None:
                continue
            broke[arm.index].append(measurement.breaches)
            value = measurement.objective
            if value is not None and value > 0:
                logs[arm.index][done] = math.log(value)
        notify(f"  round {done}: " + ", ".join(_figure(a, logs, done) for a in order))
        steps.release([a for a in active if a.status == "failed"])
        active = [a for a in active if a.status != "failed"]
        if done >= MIN_ROUNDS:
            active, dropped = _drop(active, logs, broke, objective, alpha, budget, done, notify)
            pruned += dropped
            steps.release([a for a in arms if a.status in ("pruned", "infeasible")])
    else:
        if not _challengers(active):
            stopped = "no challenger left"
    active, dropped = _keep_best(active, logs, objective, done, notify)
    pruned += dropped
    steps.release([a for a in arms if a.status == "pruned" and a not in active])
    for arm in active:
        steps.final(arm, done + 1)
        if arm.status != "failed":
            settle(arm)
    steps.release(active)
    return RaceOutcome(done, seed, budget, blocks, stopped, pruned, alpha)


def _challengers(arms: Sequence[Arm]) -> int:
    return sum(not a.committed for a in arms)


def _mean(values: Mapping[int, float]) -> float | None:
    return statistics.fmean(values.values()) if values else None


def _figure(arm: Arm, logs: Mapping[int, Mapping[int, float]], round_: int) -> str:
    value = logs[arm.index].get(round_)
    return f"{arm.name} {fmt(math.exp(value)) if value is not None else '-'}"


def _span(rounds: Sequence[int]) -> str:
    first, last = rounds[0], rounds[-1]
    if list(rounds) == list(range(first, last + 1)):
        return f"{first}-{last}"
    return ", ".join(str(r) for r in rounds)


def _drop(
    active: list[Arm],
    logs: Mapping[int, Mapping[int, float]],
    broke: Mapping[int, Sequence[tuple[str, ...]]],
    objective: str,
    alpha: float,
    budget: Budget,
    round_: int,
    notify: Callable[[str], None],
) -> tuple[list[Arm], int]:
    """After a round: the clearly infeasible challengers out, then those worse than the
    leader; returns who is left and how many were pruned."""

    def breaking(arm: Arm) -> bool:
        found = broke[arm.index]
        return 2 * sum(bool(b) for b in found) > len(found)

    for arm in active:
        if not arm.committed and breaking(arm):
            last = next(b for b in reversed(broke[arm.index]) if b)
            count = sum(bool(b) for b in broke[arm.index])
            arm.status = "infeasible"
            arm.note = (
                f"clearly breaks {', '.join(last)} (race: in {count} of "
                f"{len(broke[arm.index])} rounds, after round {round_})"
            )
            notify(f"  {arm.name}: infeasible ({arm.note})")
    active = [a for a in active if a.status == "pending"]
    sign = 1.0 if MAXIMISE[objective] else -1.0
    # The leader: the best geometric mean among those not clearly out of the SLA.
    contenders = [a for a in active if logs[a.index] and not breaking(a)]
    if not contenders:
        return active, 0
    leader = max(contenders, key=lambda a: (sign * (_mean(logs[a.index]) or 0.0), a.committed))
    level = alpha / (max(1, len(active) - 1) * budget.looks)
    worse: list[tuple[Arm, Comparison]] = []
    for arm in active:
        if arm is leader or arm.committed:
            continue
        found = compare(logs[arm.index], logs[leader.index], objective, level)
        if found is not None and found.worse:
            worse.append((arm, found))
    if worse and len(worse) == _challengers(active):
        # Every challenger is worse than the committed configuration: the best of them
        # stays for the full-length end (the runner-up the reports and ties rank against).
        keep = max(worse, key=lambda w: sign * math.log(w[1].ratio))
        worse.remove(keep)
    for arm, found in worse:
        arm.status = "pruned"
        arm.note = f"pruned after round {round_}: {found.describe(objective, leader.name)}"
        notify(f"  {arm.name}: {arm.note}")
    return [a for a in active if a.status == "pending"], len(worse)


def _keep_best(
    active: list[Arm],
    logs: Mapping[int, Mapping[int, float]],
    objective: str,
    round_: int,
    notify: Callable[[str], None],
) -> tuple[list[Arm], int]:
    """At the end of the budget: at most ``MIN_KEEP`` challengers, the best by geometric
    mean, go on to full length, as halving's last short rung keeps them."""
    sign = 1.0 if MAXIMISE[objective] else -1.0

    def key(arm: Arm) -> tuple[bool, float, int]:
        mean = _mean(logs[arm.index])
        return (mean is None, -sign * (mean or 0.0), arm.index)

    challengers = sorted((a for a in active if not a.committed), key=key)
    for position, arm in enumerate(challengers[MIN_KEEP:], start=MIN_KEEP + 1):
        mean = _mean(logs[arm.index])
        arm.status = "pruned"
        arm.note = (
            f"pruned after round {round_}: not told apart from the leader within the round "
            f"budget; {objective} {fmt(math.exp(mean) if mean is not None else None)} "
            f"(geometric mean), #{position} of {len(challengers)} (kept the best {MIN_KEEP})"
        )
        notify(f"  {arm.name}: {arm.note}")
    return [a for a in active if a.status == "pending"], max(0, len(challengers) - MIN_KEEP)


@dataclass
class Racer:
    """The runner's side of :class:`RaceSteps`: loads the candidates together, measures
    blocks and full-length ends through ``measured(arm, rung, final, settings)`` (the
    search's own measurement: figures, breaches, failures), unloads."""

    loader: Loader
    measured: Callable[[Arm, int, bool, MeasureSettings], Measurement | None]
    objective: str
    short: MeasureSettings
    full: MeasureSettings
    notify: Callable[[str], None]

    @property
    def block(self) -> MeasureSettings:
        """One block: rung 0's settings, never extended (the blocks of a round are equal)."""
        return dataclasses.replace(self.short, max_windows=self.short.windows)

    def budget(self, arms: Sequence[Arm]) -> Budget:
        """:func:`race_budget` of the arms that loaded."""
        count = sum(a.status == "pending" for a in arms)
        return race_budget(count, self.block, self.short, self.full)

    def steps(self) -> RaceSteps:
        """The callables the race takes."""
        return RaceSteps(
            block=lambda arm, round_: self.measured(arm, round_, False, self.block),
            final=self.final,
            release=self.release,
        )

    def final(self, arm: Arm, rung: int) -> None:
        """Measure ``arm`` at full length, as the last rung of halving does."""
        found = self.measured(arm, rung, True, self.full)
        if found is not None:
            self.notify(found.line(arm, self.objective))

    def release(self, arms: Sequence[Arm]) -> None:
        """Unload ``arms`` in the background (the search waits for them at its end)."""
        self.loader.unload([a.name for a in arms if self.loader.loaded(a.name)], wait=False)

    def load_together(self, arms: Sequence[Arm]) -> str | None:
        """Load ``arms`` side by side. None when every one loaded, or failed to load alone
        too (its own configuration: marked failed, as halving would); else why they do
        not load together (memory), every one unloaded again."""
        found = self.loader.load_all(arms)
        broken = [a for a in arms if found.get(a.name) is not None]
        if not broken:
            return None
        # Whether each fails on its own or only beside the others: try it alone.
        self.loader.unload([a.name for a in arms if self.loader.loaded(a.name)])
        crowded = []
        for arm in broken:
            why = self.loader.load(arm)
            if why is not None:
                self.loader.failed(arm, why, self.notify)
                continue
            crowded.append(arm)
            self.loader.unload([arm.name])
        left = [a for a in arms if a.status != "failed"]
        if not crowded:
            again = self.loader.load_all(left)
            crowded = [a for a in left if again.get(a.name) is not None]
        if not crowded:
            return None
        self.loader.unload([a.name for a in arms if self.loader.loaded(a.name)])
        first = crowded[0]
        return (
            f"{len(crowded)} candidate(s) loaded alone but not beside the others "
            f"({first.name}: {found.get(first.name) or 'a second try failed'})"
        )
