"""Per-response records and the figures computed from them, without a server: the recorder
the loops fill, its merge across worker processes, and TTFT / ITL / rates by window."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_triton_perf.load.recorder import Recorder, Records
from pytest_triton_perf.load.responses import ResponseRecorder
from pytest_triton_perf.measure import streaming
from pytest_triton_perf.measure.windows import window_results
from tests.report.factory import make_stream_result

MS = 1_000_000


class Done:
    """What a streaming client holds after a request: its responses' times and tokens."""

    def __init__(self, times: list[int], tokens: int = -1) -> None:
        self.response_ns = times
        self.tokens = tokens


def record(rec: Recorder, start: int, times: list[int], end: int, ok: bool = True) -> None:
    """One request as a loop records it: the request, then its responses."""
    rec.add(end, end - start, None if ok else "failed")
    assert rec.responses is not None
    rec.responses.add(start, Done(times, tokens=2 * len(times)))


def two_requests() -> Records:
    """A: 2 responses 10 ms apart; B: 11 responses 1 ms apart; C: failed after 1 response;
    D: only the final flag (no response)."""
    rec = Recorder(responses=ResponseRecorder())
    record(rec, 0, [40 * MS, 50 * MS], 51 * MS)
    record(rec, 0, [20 * MS + k * MS for k in range(11)], 31 * MS)
    record(rec, 0, [5 * MS], 6 * MS, ok=False)
    record(rec, 0, [], 2 * MS)
    return rec.snapshot()


def test_pooled_gaps_and_per_request_means_are_both_reported() -> None:
    records = two_requests()
    f = streaming.figures(records, [0, 100 * MS], 0.1, "TOKEN")
    assert f is not None and f.ttft_ms is not None and f.itl_ms is not None
    # Successful requests only: the failed one's 5 ms is no TTFT of the model; the one
    # without a response has none.
    assert f.ttft_ms.count == 2 and f.ttft_ms.min == 20.0 and f.ttft_ms.max == 40.0
    # Pooled: 11 gaps, one of 10 ms and ten of 1 ms; per request: 10 ms and 1 ms.
    assert f.itl_ms.count == 11 and f.itl_ms.avg == pytest.approx(20 / 11)
    assert f.itl_ms.p50 == 1.0 and f.itl_ms.max == 10.0
    assert f.itl_per_request_ms is not None
    assert f.itl_per_request_ms.count == 2 and f.itl_per_request_ms.avg == pytest.approx(5.5)
    assert f.second_response_ms is not None
    assert sorted(f.second_samples_ms) == [21.0, 50.0]
    assert f.responses == 13 and f.requests == 3
    assert f.responses_per_request == pytest.approx(13 / 3)
    assert f.responses_per_s == pytest.approx(130.0)
    assert f.output_tokens == 26 and f.output_tokens_per_s == pytest.approx(260.0)
    assert streaming.figures(records, [0, 100 * MS], 0.1, None).output_tokens_per_s is None


def test_records_without_responses_have_no_stream_figures() -> None:
    rec = Recorder()
    rec.add(5 * MS, 5 * MS, None)
    assert streaming.figures(rec.snapshot(), [0, 10 * MS], 0.01, None) is None


def test_worker_records_merge_with_each_requests_gaps() -> None:
    """Two workers' records, interleaved by completion time: every request keeps its own
    gaps (their sum is its last response minus its first)."""
    parts = []
    for worker in range(2):
        rec = Recorder(responses=ResponseRecorder())
        for k in range(5):
            n = 1 + (k + worker) % 4
            start = (10 * k + worker) * MS
            times = [start + (3 + j * (worker + 1)) * MS for j in range(n)]
            record(rec, start, times, times[-1] + MS)
        parts.append(rec.snapshot())
    merged = Records.merge(parts)
    r = merged.responses
    assert r is not None and len(r) == len(merged) == 10
    assert (np.diff(merged.end_ns) >= 0).all()
    offsets = np.concatenate([[0], np.cumsum(np.maximum(r.count - 1, 0))])
    for i in range(len(r)):
        gaps = r.gaps_ns[offsets[i] : offsets[i + 1]]
        assert gaps.sum() == r.last_ns[i] - r.first_ns[i]
        assert (merged.latency_ns[i] - r.last_ns[i]) == MS
    # A window keeps whole requests, gaps included.
    late = merged.between(25 * MS, 10**12).responses
    assert late is not None
    assert len(late.gaps_ns) == int(np.maximum(late.count - 1, 0).sum())


def test_windows_carry_the_responses_of_the_requests_completed_in_them() -> None:
    records = two_requests()
    bounds = [0, 40 * MS, 100 * MS]
    wins = streaming.with_windows(window_results(records, bounds, 1), records, bounds, "TOKEN")
    first, second = wins
    # B (and the failed one, and the empty one) end in window 0, A in window 1.
    assert first.stream is not None and second.stream is not None
    assert first.stream.responses == 11 and second.stream.responses == 2
    assert first.ttft_ms is not None and first.ttft_ms.max == 20.0
    assert second.itl_ms is not None and second.itl_ms.p50 == 10.0
    assert second.responses_per_s == pytest.approx(2 / 0.06)
    assert first.output_tokens_per_s == pytest.approx(22 / 0.04)
    assert first.to_dict()["ttft_ms"]["count"] == 1


def test_ab_blocks_merge_into_one_arm() -> None:
    """A/B mode: an arm's blocks pool their raw values; rates count over their windows."""
    from pytest_triton_perf.baseline.ab import merge_blocks

    blocks = [make_stream_result(seed=s, windows=1) for s in (1, 2, 3)]
    arm = merge_blocks(blocks)
    assert arm.stream is not None and arm.ttft_ms is not None and arm.itl_ms is not None
    each = [b.stream for b in blocks]
    assert all(s is not None for s in each)
    assert arm.ttft_ms.count == sum(s.ttft_ms.count for s in each if s and s.ttft_ms)
    assert arm.stream.responses == sum(s.responses for s in each if s)
    assert arm.responses_per_s == pytest.approx(arm.stream.responses / arm.duration_s)
    assert arm.responses_per_request == 16.0
    pooled = np.sort(np.concatenate([s.itl_samples_ms for s in each if s]))
    assert arm.itl_ms.p99 == pooled[int(np.ceil(0.99 * len(pooled))) - 1]


def test_tpot_and_end_to_end_latency_per_request() -> None:
    """vLLM's TPOT, (end-to-end - TTFT) / (output tokens - 1), over the successful requests
    of two tokens or more; end-to-end latency to the last response."""
    f = streaming.figures(two_requests(), [0, 100 * MS], 0.1, "TOKEN")
    assert f is not None and f.tpot_ms is not None and f.e2e_ms is not None
    # A: 40 -> 50 ms over 4 tokens; B: 20 -> 30 ms over 22 tokens.
    assert sorted(f.tpot_samples_ms) == pytest.approx([10 / 21, 10 / 3])
    assert f.tpot_ms.count == 2 and f.tpot_ms.max == pytest.approx(10 / 3)
    assert sorted(f.e2e_samples_ms) == [30.0, 50.0]
    assert f.to_dict()["e2e_ms"]["max"] == 50.0
    assert f.slo is None and f.to_dict()["goodput"] is None


@pytest.mark.parametrize(
    ("slo", "met", "missed"),
    [
        ({"ttft_ms": 30}, 1, {"ttft_ms": 3}),
        ({"tpot_ms": 1}, 1, {"tpot_ms": 3}),
        ({"e2e_ms": 60}, 2, {"e2e_ms": 2}),
        ({"ttft_ms": 45, "e2e_ms": 45}, 1, {"ttft_ms": 2, "e2e_ms": 3}),
    ],
)
def test_slos_count_failed_and_unanswered_requests_as_missing(
    slo: dict[str, float], met: int, missed: dict[str, int]
) -> None:
    """Four requests complete: A and B succeed, C fails, D has no response. C and D meet no
    SLO; goodput is the requests that met them all per second."""
    f = streaming.figures(two_requests(), [0, 100 * MS], 0.1, "TOKEN", slo)
    assert f is not None and f.slo is not None
    assert f.slo.requests == 4 and f.slo.met == met and dict(f.slo.missed) == missed
    assert f.slo.attainment == met / 4
    assert f.slo.goodput == pytest.approx(met / 0.1)
    assert f.to_dict()["slo_attainment"] == met / 4


def test_slos_count_the_requests_started_in_the_windows_through_the_drain() -> None:
    """A cold start, as the engine's first window has without a warm-up (no ramp): one
    request every 10 ms over 1 s, every second one slow (300 ms end to end against 50 ms).
    Counted by completion the first 300 ms would hold only fast requests and the slow ones
    started last would complete after the windows; counted by start (the drained ones
    followed to their end) the attainment is the constructed half, and goodput is that
    share of the requests completed per second, never more than the throughput."""
    rec = Recorder(responses=ResponseRecorder())
    for k in range(100):
        start = k * 10 * MS
        e2e = (300 if k % 2 else 50) * MS
        record(rec, start, [start + e2e // 2, start + e2e], start + e2e)
    records = rec.snapshot()
    f = streaming.figures(records, [0, 1000 * MS], 1.0, "TOKEN", {"e2e_ms": 100.0})
    assert f is not None and f.slo is not None
    assert f.slo.requests == 100 and f.slo.attainment == 0.5
    completed = len(records.between(0, 1000 * MS))
    # The fast ones started before 950 ms, the slow ones before 700 ms.
    assert completed == 48 + 35
    assert f.slo.goodput == pytest.approx(0.5 * completed)
    # Per window too: each window's requests are those started in it.
    windows = streaming.with_windows(
        window_results(records, [0, 500 * MS, 1000 * MS], 1),
        records,
        [0, 500 * MS, 1000 * MS],
        "TOKEN",
        {"e2e_ms": 100.0},
    )
    assert [w.stream.slo_attainment for w in windows if w.stream] == [0.5, 0.5]
