"""From what one measurement saw to its :class:`~pytest_triton_perf.measure.result.PerfResult`:
the figures of the windows (latencies pooled over them) and what qualifies them (a saturated
load generator, late sends, other traffic, outputs read back from shared memory)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_triton_perf.load import text
from pytest_triton_perf.load.driver import PhaseStats
from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.shared_memory import SharedMemory
from pytest_triton_perf.measure import streaming
from pytest_triton_perf.measure.energy import EnergyMeter
from pytest_triton_perf.measure.memory import MemoryPeaks
from pytest_triton_perf.measure.plan import MeasureSettings, Plan, configuration_unavailable
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, Pipeline, ServerBreakdown
from pytest_triton_perf.measure.windows import is_stable, pool, window_results
from pytest_triton_perf.server.protocol import MODEL_CONFIGURATION, STATISTICS

#: Share of one core the event loop may use before the run is flagged client-bound.
CLIENT_BOUND_CPU = 0.9
#: A send later than this after its scheduled time is late (perf_analyzer's threshold).
LATE_NS = 1_000_000
#: Share of late sends above which an open loop is flagged (perf_analyzer warns at 1%).
LATE_SHARE_LIMIT = 0.01


@dataclass(frozen=True)
class Observed:
    """Everything one measurement saw, before it is summarised into a PerfResult."""

    records: Records  # every request of the ramp, the windows and the final drain
    boundaries: list[int]  # window boundaries (perf_counter ns); the first is t0
    stats: PhaseStats  # the load generator's own cost over the ramp and the windows
    cancelled: int  # requests still in flight when the drain timed out
    workers: int
    server: ServerBreakdown | None
    memory: MemoryPeaks
    unavailable: Mapping[str, str]  # figure -> why it has no value
    other_traffic: tuple[tuple[str, int], ...]
    notes: tuple[str, ...]  # said while measuring (e.g. more worker processes)
    pipeline: Pipeline | None = None  # per composing model, for ensembles and BLS models
    energy: EnergyMeter | None = None  # the GPUs' energy over the windows, or why none
    load_start: int | None = None  # when the load restarted (ns), the ramp before t0; None: t0


def generator_saturated(records: Records, stats: PhaseStats) -> bool:
    """The load generator, not the server, limited this phase."""
    if stats.loop_share >= CLIENT_BOUND_CPU:
        return True
    late = records.late_share(LATE_NS)
    # Late sends while connections were free: the loop could not keep the schedule.
    return late is not None and late > LATE_SHARE_LIMIT and stats.pool_exhausted == 0


def summarise(plan: Plan, seen: Observed) -> PerfResult:
    """The figures of the windows (latencies pooled over them), and what qualifies them."""
    batch = plan.workload.batch_size
    t0, t_end = seen.boundaries[0], seen.boundaries[-1]
    t_load = t0 if seen.load_start is None else min(seen.load_start, t0)
    span = seen.records.between(t0, t_end)
    late = span.late_share(LATE_NS)
    client_bound = generator_saturated(span, seen.stats)
    duration_s = (t_end - t0) / 1e9
    wins = window_results(seen.records, seen.boundaries, batch)
    pooled = pool(seen.records, seen.boundaries, batch)
    unavailable = {**seen.unavailable, **seen.memory.unavailable}
    if seen.energy is not None:
        unavailable.update(seen.energy.unavailable(plan.load.stream is not None))
    no_config = configuration_unavailable(plan)
    if no_config is not None:
        unavailable["model_configuration"] = no_config
    sequences = span.sequences if plan.spec.sequence is not None else None
    tokens = plan.load.stream.token_output if plan.load.stream else None
    tokenizer = plan.text.tokenizer if plan.text is not None else None
    counting = text.counting_label(tokenizer, tokens)
    records = seen.records
    if plan.text is not None:
        records = streaming.counted(records, plan.text.prompt_tokens, tokenizer)
    slo = dict(plan.slo)
    if plan.load.stream is not None:
        wins = streaming.with_windows(wins, records, seen.boundaries, tokens, slo, counting)
        if counting == "responses":
            unavailable["output_tokens_per_s"] = (
                "tokens are not counted: name the output that carries them, e.g."
                " measure(..., token_output='OUTPUT0'), or for a text model give its"
                " tokenizer, measure(..., tokenizer='tokenizer.json')"
            )
        if not slo:
            for figure in ("slo_attainment", "goodput"):
                unavailable[figure] = (
                    "no per-request SLOs were given: state them, e.g."
                    " measure(..., slo={'ttft_ms': 200, 'tpot_ms': 50})"
                )
    return PerfResult(
        model=plan.spec.name,
        version=plan.workload.version,
        workload=plan.workload,
        throughput=pooled.throughput,
        latency_ms=pooled.latency_ms,
        requests=pooled.requests,
        errors=pooled.errors,
        windows=wins,
        duration_s=pooled.duration_s,
        stable=is_stable(wins, plan.settings.stability_pct),
        server=seen.server,
        gpu_memory_mb=seen.memory.gpu_mb,
        cpu_memory_mb=seen.memory.cpu_mb,
        unavailable=tuple(sorted(unavailable.items())),
        first_error=pooled.first_error,
        client_bound=client_bound,
        seed=plan.seed,
        latencies_ms=pooled.latencies_ms,
        # Answered after the last window closed: counted by the server, not in the figures.
        drained=len(seen.records.between(t_end, np.iinfo(np.int64).max)),
        # Answered in the ramp, before the first window opened: the same.
        ramp=len(seen.records.between(np.iinfo(np.int64).min, t0)),
        ramp_s=(t0 - t_load) / 1e9,
        client_cpu=seen.stats.loop_share,
        notes=tuple(
            _notes(plan.settings, seen, late, client_bound, plan.notes)
            + kserve_notes(plan, unavailable)
        ),
        client_cpu_s=seen.stats.process_cpu_s,
        late_share=late,
        request_rate_achieved=len(span) / duration_s if duration_s > 0 else 0.0,
        workers=seen.workers,
        gpu_memory_delta_mb=seen.memory.gpu_delta_mb,
        other_traffic=seen.other_traffic,
        sequences=len(sequences) if sequences is not None else None,
        sequence_errors=int((~sequences.ok).sum()) if sequences is not None else None,
        sequence_latency_ms=(
            LatencyStats.from_samples(sequences.latency_ns[sequences.ok] / 1e6)
            if sequences is not None
            else None
        ),
        sequence_slots=plan.spec.sequence.slots if plan.spec.sequence is not None else None,
        stream=streaming.figures(
            records, seen.boundaries, pooled.duration_s, tokens, slo, counting
        ),
        pipeline=seen.pipeline,
        energy=seen.energy.energy if seen.energy is not None else None,
    )


def _notes(
    settings: MeasureSettings,
    seen: Observed,
    late: float | None,
    client_bound: bool,
    plan_notes: Sequence[str] = (),
) -> list[str]:
    """What a reader of the figures must know: a busy server, cancelled or late requests,
    a saturated load generator."""
    notes = [*plan_notes, *seen.notes]
    if seen.other_traffic:
        notes.append(
            "the server was not idle: other models completed requests during the measurement ("
            + ", ".join(f"{name}: {n}" for name, n in seen.other_traffic)
            + "); the figures include that load"
        )
    if seen.cancelled:
        notes.append(
            f"{seen.cancelled} request(s) still in flight {settings.drain_timeout_s:g}s after the"
            " last window were cancelled; server statistics may include them"
        )
    if late is not None and late > LATE_SHARE_LIMIT:
        notes.append(
            f"{late:.1%} of requests were sent more than {LATE_NS / 1e6:g} ms after their"
            " scheduled time"
            + (
                f" ({seen.stats.pool_exhausted} waited for one of max_in_flight connections)"
                if seen.stats.pool_exhausted
                else " (the load generator fell behind)"
            )
        )
    if client_bound:
        notes.append(
            "client-bound: the load generator was saturated; figures show its limit, not"
            " the server's"
        )
    return notes


#: The figures a KServe V2 server without Triton's extensions leaves unavailable, by their
#: key in ``PerfResult.unavailable``, as the note names them.
KSERVE_FIGURES = {
    "model_configuration": "model configuration",
    "server": "server statistics",
    "other_traffic": "other models' traffic",
    "gpu_memory_mb": "GPU memory",
    "cpu_memory_mb": "CPU memory",
}
#: How the note of such a server starts (the terminal summary shows these notes).
KSERVE_NOTE = "KServe V2 server"


def kserve_notes(plan: Plan, unavailable: Mapping[str, str]) -> list[str]:
    """On a KServe V2 server other than Triton (no model configuration extension), one note
    naming the figures unavailable there; the result's ``unavailable`` says why for each."""
    if not plan.server.kserve_only:
        return []
    figures = [name for key, name in KSERVE_FIGURES.items() if key in unavailable]
    missing = plan.server.missing((MODEL_CONFIGURATION, STATISTICS))
    return [
        f"{KSERVE_NOTE} {plan.server.label} (without Triton's {' and '.join(missing)}"
        f" extension{'s' if len(missing) > 1 else ''}): measured from the model's metadata;"
        f" unavailable: {', '.join(figures) or 'nothing'} (the result's 'unavailable' says"
        " why for each)"
    ]


def shared_memory_outcome(
    result: PerfResult, regions: SharedMemory, expected: Sequence[Mapping[str, bytes]] | None
) -> PerfResult:
    """The result with ``outputs_verified`` (the outputs read back from the output region
    against the answer over the socket) and a note when they differ, before the regions go."""
    if expected is None or result.requests == 0:
        return result
    differ = regions.verify(expected)
    notes = result.notes
    if differ:
        notes = (
            *notes,
            f"shared memory ({regions.kind}): the outputs read back from the output region"
            f" differ from the server's answer over the socket to the same inputs for"
            f" {', '.join(differ)}: a model whose outputs vary between calls, or outputs not"
            " written to the region",
        )
    return dataclasses.replace(result, outputs_verified=not differ, notes=notes)


def summarise_started(
    plan: Plan, records: Records, start_ns: int, end_ns: int, *, workers: int = 1
) -> PerfResult:
    """The figures of the requests an open loop *scheduled* in ``[start_ns, end_ns)``,
    each followed to its end however late (a rate ramp's bucket: latency against the rate
    offered then). Throughput is their answered inferences per second of the span; the
    server's statistics and memory are not sampled per span."""
    offered = records.started_between(start_ns, end_ns)
    last = int(offered.end_ns.max()) + 1 if len(offered) else end_ns
    # One window from the span's start to its last answer holds every request of the span,
    # whether counted by completion (the latencies) or by start (the SLO attainment).
    seen = Observed(
        records=offered,
        boundaries=[start_ns, max(last, end_ns)],
        stats=PhaseStats(),
        cancelled=0,
        workers=workers,
        server=None,
        memory=MemoryPeaks(),
        unavailable={},
        other_traffic=(),
        notes=(),
    )
    result = summarise(plan, seen)
    duration_s = (end_ns - start_ns) / 1e9
    inferences = (len(offered) - result.errors) * plan.workload.batch_size
    return dataclasses.replace(
        result,
        duration_s=duration_s,
        throughput=inferences / duration_s if duration_s > 0 else 0.0,
        request_rate_achieved=len(offered) / duration_s if duration_s > 0 else 0.0,
    )
