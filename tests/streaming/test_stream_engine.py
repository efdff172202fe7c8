"""Streaming (decoupled) models on the real embedded server: ``measure()`` drives
ModelStreamInfer with both gRPC clients, closed and open loop, and its TTFT and ITL match the
delays the models are configured with.

``llm`` (example_repo) sends its first token 40 ms (plus 20 us per prompt word) after a
request arrives and the next ones every 10 ms, 16 in all; ``stream_errors`` fails every
second request after two tokens; ``stream_no_final`` never sends the final flag.
"""

from __future__ import annotations

import time

import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.server.local import LocalTritonServer

FAST = MeasureSettings(warmup_s=0.3, windows=2, window_s=0.7, max_windows=2)
FIRST_TOKEN_MS, TOKEN_MS, TOKENS, PREFILL_MS_PER_WORD = 40.0, 10.0, 16, 0.02


def check_stream(r: PerfResult, ttft_ms: float = FIRST_TOKEN_MS) -> None:
    """TTFT and ITL within 10% of the configured delays; every count consistent."""
    assert r.errors == 0, r.first_error
    assert r.ttft_ms is not None and r.itl_ms is not None and r.stream is not None
    assert r.ttft_ms.p50 == pytest.approx(ttft_ms, rel=0.10)
    assert r.itl_ms.p50 == pytest.approx(TOKEN_MS, rel=0.10)
    assert r.itl_per_request_ms is not None
    assert r.itl_per_request_ms.avg == pytest.approx(TOKEN_MS, rel=0.10)
    assert r.second_response_ms is not None
    assert r.second_response_ms.p50 == pytest.approx(ttft_ms + TOKEN_MS, rel=0.10)
    assert r.responses_per_request == TOKENS
    assert r.stream.responses == TOKENS * r.requests
    assert r.responses_per_s == pytest.approx(TOKENS * r.throughput)
    assert r.ttft_ms.count == r.requests and r.itl_ms.count == (TOKENS - 1) * r.requests
    # vLLM's TPOT is each request's mean gap; end-to-end latency ends at the last token.
    assert r.tpot_ms is not None and r.tpot_ms.avg == pytest.approx(TOKEN_MS, rel=0.10)
    assert r.e2e_ms is not None and r.tpot_ms.count == r.e2e_ms.count == r.requests
    assert r.e2e_ms.p50 == pytest.approx(ttft_ms + (TOKENS - 1) * TOKEN_MS, rel=0.10)
    assert r.latency_ms is not None and r.e2e_ms.max <= r.latency_ms.max
    # The request ends at the final flag, after the last token.
    assert r.latency_ms is not None and r.latency_ms.p50 >= r.ttft_ms.p50 + 14 * TOKEN_MS
    for w in r.windows:
        assert w.stream is not None and w.stream.responses == TOKENS * (w.requests - w.errors)
    assert r.server is not None and r.server.requests == r.requests + r.drained + r.ramp


@pytest.mark.parametrize("grpc_client", ["lean", "grpcio"])
def test_closed_loop_ttft_and_itl_match_the_configured_delays(
    server: LocalTritonServer, grpc_client: str
) -> None:
    slo = {"ttft_ms": 1000.0, "tpot_ms": 100.0, "e2e_ms": 5000.0}  # every request meets them
    r = measure(
        server,
        "llm",
        concurrency=2,
        grpc_client=grpc_client,
        token_output="TOKEN",
        slo=slo,
        settings=FAST,
    )
    check_stream(r)
    assert r.output_tokens_per_s == pytest.approx(r.responses_per_s)
    assert r.unavailable_reason("output_tokens_per_s") is None
    assert r.slo_attainment == 1.0 and r.goodput == pytest.approx(r.throughput)
    assert r.slo is not None and dict(r.slo.slo) == slo


def test_open_loop_times_responses_from_the_schedule(server: LocalTritonServer) -> None:
    r = measure(server, "llm", request_rate=30, settings=FAST)
    check_stream(r)
    # Sent on schedule (a busy 2-core machine makes a few late); completions lag the first
    # window by a request's 190 ms.
    assert r.late_share is not None and r.late_share < 0.25
    assert r.request_rate_achieved is not None and r.request_rate_achieved > 20
    assert r.output_tokens_per_s is None
    assert "token_output" in (r.unavailable_reason("output_tokens_per_s") or "")


def test_worker_processes_merge_every_response(server: LocalTritonServer) -> None:
    r = measure(server, "llm", concurrency=4, workers=2, settings=FAST)
    assert r.workers == 2
    check_stream(r)


def test_a_longer_prompt_shows_in_ttft(server: LocalTritonServer) -> None:
    """The prefill (20 us per prompt word) of 1000 words against 10: 19.8 ms more TTFT."""
    short, long = (
        measure(server, "llm", prompt_length=n, settings=FAST, concurrency=2) for n in (10, 1000)
    )
    check_stream(short, FIRST_TOKEN_MS + 10 * PREFILL_MS_PER_WORD)
    check_stream(long, FIRST_TOKEN_MS + 1000 * PREFILL_MS_PER_WORD)
    assert short.workload.inputs == "random,prompt=10"
    assert long.ttft_ms.p50 - short.ttft_ms.p50 == pytest.approx(19.8, abs=2.5)  # type: ignore[union-attr]


@pytest.mark.parametrize("grpc_client", ["lean", "grpcio"])
def test_an_error_in_the_middle_of_a_stream_fails_its_request(
    server: LocalTritonServer, grpc_client: str
) -> None:
    r = measure(server, "stream_errors", concurrency=2, grpc_client=grpc_client, settings=FAST)
    # Every second request fails after two tokens; the stream goes on with the next.
    assert r.requests > 20 and r.errors == pytest.approx(r.requests / 2, abs=3)
    assert r.first_error is not None and r.first_error.startswith("stream_errors: request ")
    assert r.responses_per_request == 4  # of the successful requests
    assert r.server is not None and r.server.requests == r.requests + r.drained + r.ramp


@pytest.mark.parametrize("grpc_client", ["lean", "grpcio"])
def test_a_model_that_sends_no_final_flag_is_reported_not_waited_on(
    server: LocalTritonServer, grpc_client: str
) -> None:
    started = time.monotonic()
    r = measure(
        server,
        "stream_no_final",
        grpc_client=grpc_client,
        stream_timeout_s=0.4,
        settings=MeasureSettings(warmup_s=0, windows=1, window_s=1.0, max_windows=1),
    )
    assert time.monotonic() - started < 10
    assert r.requests >= 2 and r.errors == r.requests
    assert r.first_error == (
        "model 'stream_no_final' sent no final response within 0.4 s of its last response"
        " (2 response(s) so far): does it send the final flag"
        " (TRITONSERVER_RESPONSE_COMPLETE_FINAL)? stream_timeout_s sets the wait"
    )


def test_options_a_streaming_model_cannot_take_are_refused(server: LocalTritonServer) -> None:
    with pytest.raises(InputSpecError, match="Triton's HTTP /infer endpoint does not return"):
        measure(server, "llm", protocol="http", settings=FAST)
    with pytest.raises(InputSpecError, match="token_output='TOKENS' is not an output; its"):
        measure(server, "llm", token_output="TOKENS", settings=FAST)
    with pytest.raises(InputSpecError, match="this model is not decoupled"):
        measure(server, "simple", token_output="OUTPUT0", settings=FAST)
    with pytest.raises(InputSpecError, match="stream_timeout_s must be a number"):
        measure(server, "llm", stream_timeout_s=0, settings=FAST)
    with pytest.raises(InputSpecError, match="slo key 'itl_ms' is not an SLO; accepted: ttft_ms"):
        measure(server, "llm", slo={"itl_ms": 50}, settings=FAST)
    with pytest.raises(InputSpecError, match=r"slo bounds the TTFT, .* not decoupled"):
        measure(server, "simple", slo={"e2e_ms": 50}, settings=FAST)
