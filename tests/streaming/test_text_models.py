"""Text models on the real embedded server, over gRPC's ModelStreamInfer and Triton's HTTP
generate extension: TTFT, TPOT, SLO attainment and goodput as the model constructs them, with
tokens counted by a tokenizer.

``textstream`` (tests/models) streams ``max_tokens`` words in pieces (the first token
alone, then three a piece); a fast request's first token comes 30 ms after it arrives and
each next one 8 ms later, a slow one's (every second request) 90 ms and 24 ms. With
``slo={"ttft_ms": 60, "tpot_ms": 16}`` the fast half meet both and the slow half neither.
``textonce`` is not decoupled: one text after 20 ms, over ``/generate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS

# The SLO figures count the requests started in the windows, through the drain: what the
# ramp before the first window leaves of a cold start does not favour the fast half.
SETTINGS = MeasureSettings(warmup_s=0.5, windows=2, window_s=1.25, max_windows=2)
FAST_TTFT, FAST_TPOT, SLOW_TTFT, SLOW_TPOT = 30.0, 8.0, 90.0, 24.0
TOKENS, PIECES = 6, 3  # pieces of 1, 3 and 2 tokens
SLO = {"ttft_ms": 60.0, "tpot_ms": 16.0}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word-level tokenizer (one token per whitespace-separated word) made here with the
    tokenizers library: the test model's words count one token each."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ("red", "green", "blue", "cyan", "magenta", "yellow", "black", "white")
    tok = Tokenizer(
        models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, "[UNK]")
    )
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.mark.parametrize("protocol", ["grpc", "generate"])
def test_half_slow_requests_show_in_ttft_tpot_attainment_and_goodput(
    server: LocalTritonServer, tokenizer: Path, protocol: str
) -> None:
    r = measure(
        server,
        "textstream",
        request_rate=30,
        protocol=protocol,  # type: ignore[arg-type]
        output_length=TOKENS,
        tokenizer=str(tokenizer),
        slo=SLO,
        settings=SETTINGS,
    )
    assert r.errors == 0, r.first_error
    assert r.workload.protocol == protocol
    assert r.token_counting == "tokenizer:tokenizer.json"
    assert r.responses_per_request == PIECES
    assert r.output_tokens is not None and r.output_tokens.min == r.output_tokens.max == TOKENS
    assert r.output_tokens.total == TOKENS * r.requests
    assert r.input_tokens is not None and r.input_tokens.avg == 128  # synthetic prompts' words
    assert r.output_tokens_per_s == pytest.approx(TOKENS * r.throughput)
    assert r.ttft_ms is not None and r.tpot_ms is not None and r.e2e_ms is not None
    # Half fast, half slow: each half's median its own (medians: a stall of the machine
    # that runs the suite beside this test moves a mean or a maximum, not the halves).
    assert r.stream is not None
    fast_e2e = FAST_TTFT + (TOKENS - 1) * FAST_TPOT
    slow_e2e = SLOW_TTFT + (TOKENS - 1) * SLOW_TPOT
    for samples, bound, fast, slow in (
        (r.stream.ttft_samples_ms, SLO["ttft_ms"], FAST_TTFT, SLOW_TTFT),
        (r.stream.tpot_samples_ms, SLO["tpot_ms"], FAST_TPOT, SLOW_TPOT),
        (r.stream.e2e_samples_ms, (fast_e2e + slow_e2e) / 2, fast_e2e, slow_e2e),
    ):
        assert np.median(samples[samples <= bound]) == pytest.approx(fast, rel=0.10)
        assert np.median(samples[samples > bound]) == pytest.approx(slow, rel=0.10)
        assert (samples <= bound).mean() == pytest.approx(0.5, abs=0.1)
    assert r.slo_attainment is not None and r.slo_attainment == pytest.approx(0.5, abs=0.1)
    assert r.goodput is not None and r.goodput == pytest.approx(0.5 * r.throughput, rel=0.10)
    assert r.slo is not None and dict(r.slo.missed)["tpot_ms"] == pytest.approx(
        r.requests / 2, abs=0.1 * r.requests
    )


def test_without_a_tokenizer_tokens_are_responses(server: LocalTritonServer) -> None:
    """Three responses of six tokens: TPOT by responses counts two gaps of 2.5 tokens' time."""
    r = measure(
        server,
        "textstream",
        concurrency=2,
        protocol="generate",
        output_length=TOKENS,
        settings=MeasureSettings(warmup_s=0.3, windows=1, window_s=1.0, max_windows=1),
    )
    assert r.errors == 0, r.first_error
    assert r.token_counting == "responses"
    assert r.output_tokens is not None and r.output_tokens.avg == PIECES
    assert r.output_tokens_per_s is None
    # By responses: the fast half's TPOT is two gaps of 2.5 tokens' time. Its median, not
    # the minimum: a request whose first response a stall of the machine delayed has its
    # later gaps shortened, and reads low (17.2 ms for 20 in a loaded container).
    assert r.tpot_ms is not None and r.stream is not None
    samples = np.asarray(r.stream.tpot_samples_ms)
    fast = (TOKENS - 1) * FAST_TPOT / (PIECES - 1)
    slow = (TOKENS - 1) * SLOW_TPOT / (PIECES - 1)
    lower = samples[samples <= (fast + slow) / 2]
    assert len(lower) >= len(samples) / 4, samples
    assert np.median(lower) == pytest.approx(fast, rel=0.10)


def test_a_model_that_is_not_decoupled_is_measured_over_generate(
    server: LocalTritonServer, tmp_path: Path, tokenizer: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "one two three", "output_length": 5}\n\n{"prompt": "four five"}\n')
    r = measure(
        server,
        "textonce",
        protocol="generate",
        prompts=str(prompts),
        tokenizer=str(tokenizer),
        slo={"e2e_ms": 1000.0},
        settings=MeasureSettings(warmup_s=0.2, windows=1, window_s=0.6, max_windows=1),
    )
    assert r.errors == 0, r.first_error
    assert r.workload.inputs == "prompts=prompts.jsonl"
    assert r.responses_per_request == 1
    assert r.ttft_ms is not None and r.e2e_ms is not None and r.ttft_ms.p50 == r.e2e_ms.p50
    assert r.ttft_ms.p50 == pytest.approx(20.0, rel=0.25)
    # The prompts alternate: 5 tokens asked of the first, the model's 6 of the second.
    assert r.output_tokens is not None and (r.output_tokens.min, r.output_tokens.max) == (5, 6)
    assert r.input_tokens is not None and (r.input_tokens.min, r.input_tokens.max) == (2, 3)
    assert r.slo_attainment == 1.0  # SLOs of a model that is not decoupled, over generate


def test_the_example_text_model_streams_as_its_configuration_says(
    server: LocalTritonServer,
) -> None:
    """``textgen`` (example_repo): 16 tokens in pieces of two after the first, 40 ms to the
    first and 10 ms apart, counted by its own tokenizer over its vLLM-style inputs."""
    r = measure(
        server,
        "textgen",
        concurrency=2,
        tokenizer=str(EXAMPLE_MODELS / "textgen" / "tokenizer.json"),
        settings=MeasureSettings(warmup_s=0.3, windows=1, window_s=1.0, max_windows=1),
    )
    assert r.errors == 0, r.first_error
    assert r.workload.inputs == "text,prompt=128" and r.responses_per_request == 9
    assert r.output_tokens is not None and r.output_tokens.avg == 16
    assert r.ttft_ms is not None and r.ttft_ms.p50 == pytest.approx(40.0, rel=0.10)
    assert r.tpot_ms is not None and r.tpot_ms.p50 == pytest.approx(10.0, rel=0.10)


def test_text_options_are_checked_before_anything_is_sent(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    with pytest.raises(InputSpecError, match="protocol must be one of 'grpc', 'http', 'generate'"):
        measure(server, "textstream", protocol="sse", settings=SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(InputSpecError, match=r"tokenizer='gpt2' is not a file; .* nothing is"):
        measure(server, "textstream", tokenizer="gpt2", settings=SETTINGS)
    with pytest.raises(InputSpecError, match=r"tokenizer=.* BYTES output 'text_output'"):
        measure(server, "llm", tokenizer=str(tmp_path), settings=SETTINGS)
    with pytest.raises(InputSpecError, match=r"prompts is for text models: the model has no BYTES"):
        measure(server, "llm", prompts="p.jsonl", settings=SETTINGS)
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputSpecError, match=r"nope.jsonl': no such file; give a JSONL file"):
        measure(server, "textstream", prompts=str(missing), settings=SETTINGS)


def test_a_stream_without_its_final_response_fails_over_generate(
    server: LocalTritonServer,
) -> None:
    """``stream_no_final`` sends two responses and never the final flag: generate_stream's
    response never ends, and the request fails after ``stream_timeout_s``."""
    r = measure(
        server,
        "stream_no_final",
        protocol="generate",
        stream_timeout_s=0.4,
        settings=MeasureSettings(warmup_s=0, windows=1, window_s=1.0, max_windows=1),
    )
    assert r.requests >= 2 and r.errors == r.requests
    assert r.first_error == (
        "model 'stream_no_final' sent no final response within 0.4 s of its last response"
        " (2 response(s) so far) over generate; stream_timeout_s sets the wait"
    )


def test_an_error_event_fails_its_request_over_generate(server: LocalTritonServer) -> None:
    """``stream_errors`` fails every second request after two tokens: Triton sends the error
    as an SSE event after the HTTP 200, and the next request goes on the same connection."""
    r = measure(
        server,
        "stream_errors",
        concurrency=2,
        protocol="generate",
        settings=MeasureSettings(warmup_s=0.2, windows=1, window_s=0.8, max_windows=1),
    )
    assert r.requests > 20 and r.errors == pytest.approx(r.requests / 2, abs=3)
    assert r.first_error is not None and r.first_error.startswith("stream_errors: request ")
    assert r.responses_per_request == 4  # of the successful requests
    assert r.server is not None and r.server.requests == r.requests + r.drained + r.ramp
