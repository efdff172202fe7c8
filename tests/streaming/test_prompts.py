"""``prompt_length``: prompts of a given length in tokens for BYTES and token-id inputs,
fixed or drawn from a seeded distribution, built from a model's metadata (no server)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.load.prompts import PROMPTS, encode_prompt_requests, parse


def spec_of(*inputs: tuple[str, str, list[int]], max_batch_size: int = 0) -> ModelSpec:
    batch = [-1] if max_batch_size else []
    return ModelSpec.from_metadata(
        {
            "name": "m",
            "inputs": [{"name": n, "datatype": t, "shape": batch + d} for n, t, d in inputs],
            "outputs": [{"name": "OUT", "datatype": "BYTES", "shape": [*batch, 1]}],
        },
        {"max_batch_size": max_batch_size},
    )


LLM = spec_of(("PROMPT", "BYTES", [1]), ("MAX_TOKENS", "INT32", [1]))
IDS = spec_of(("input_ids", "INT64", [-1]), ("mask", "FP32", [4]))


def decoded(payloads: tuple[bytes, ...], name: str) -> list[Any]:
    """The tensor ``name`` of each gRPC request: words of a BYTES prompt, ids otherwise."""
    out = []
    for p in payloads:
        req = service_pb2.ModelInferRequest.FromString(p)
        (k,) = [i for i, t in enumerate(req.inputs) if t.name == name]
        raw = req.raw_input_contents[k]
        if req.inputs[k].datatype == "BYTES":
            out.append(raw[4:].split(b" "))
        else:
            out.append(
                np.frombuffer(raw, dtype={"INT32": "<i4"}.get(req.inputs[k].datatype, "<i8"))
            )
    return out


def encode(spec: ModelSpec, prompt_length: Any, **kwargs: Any) -> tuple[tuple[bytes, ...], str]:
    return encode_prompt_requests(
        spec,
        kwargs.pop("inputs", "random"),
        prompt_length,
        protocol="grpc",
        http_url="h:1",
        **kwargs,
    )


def test_a_fixed_length_gives_that_many_words_in_every_prompt() -> None:
    payloads, label = encode(LLM, 128)
    assert label == "random,prompt=128" and len(payloads) == PROMPTS
    words = decoded(payloads, "PROMPT")
    assert {len(w) for w in words} == {128}
    assert len({b" ".join(w) for w in words}) == PROMPTS  # distinct prompts: no cache hits
    assert all(w.isalpha() and w.islower() for w in words[0])
    # The other inputs are built as `inputs` says.
    assert len(decoded(payloads, "MAX_TOKENS")[0]) == 1


def test_a_range_draws_seeded_lengths_within_it() -> None:
    payloads, label = encode(LLM, (64, 512), seed=7)
    lengths = [len(w) for w in decoded(payloads, "PROMPT")]
    assert label == "random,prompt=64-512"
    assert min(lengths) >= 64 and max(lengths) <= 512 and len(set(lengths)) > 50
    again, _ = encode(LLM, (64, 512), seed=7)
    assert again == payloads
    assert encode(LLM, (64, 512), seed=8)[0] != payloads


def test_a_normal_distribution_as_genai_perf_takes_it() -> None:
    payloads, label = encode(LLM, {"mean": 256, "stddev": 32})
    lengths = np.array([len(w) for w in decoded(payloads, "PROMPT")])
    assert label == "random,prompt=256+-32"
    assert 240 < lengths.mean() < 272 and 20 < lengths.std() < 45


def test_token_id_inputs_get_the_length_as_their_dynamic_dimension() -> None:
    payloads, label = encode(IDS, (10, 20), inputs="zero")
    ids = decoded(payloads, "input_ids")
    assert label == "zero,prompt=10-20"
    assert all(10 <= len(x) <= 20 and (x >= 1).all() and (x < 100).all() for x in ids)


def test_per_input_rules_and_a_dict_for_the_other_inputs() -> None:
    rules = {"PROMPT": 32}
    payloads, label = encode(LLM, rules, inputs={"MAX_TOKENS": np.array([16], dtype=np.int32)})
    assert label == "user,prompt=PROMPT:32"
    assert {len(w) for w in decoded(payloads, "PROMPT")} == {32}
    req = service_pb2.ModelInferRequest.FromString(payloads[0])
    (k,) = [i for i, t in enumerate(req.inputs) if t.name == "MAX_TOKENS"]
    assert np.frombuffer(req.raw_input_contents[k], "<i4").tolist() == [16]


def test_a_batching_model_repeats_the_prompt_over_the_batch() -> None:
    spec = spec_of(("PROMPT", "BYTES", [1]), max_batch_size=8)
    payloads, _ = encode(spec, 5, batch_size=3)
    req = service_pb2.ModelInferRequest.FromString(payloads[0])
    assert list(req.inputs[0].shape) == [3, 1]


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (LLM, 0, "prompt_length=0 is not accepted; give a number of tokens >= 1"),
        (LLM, (512, 64), "prompt_length=(512, 64) is not accepted"),
        (LLM, {"mean": 10}, "prompt_length={'mean': 10} is not accepted"),
        (LLM, {"NOPE": 10}, "model 'm' has no input 'NOPE'"),
        (LLM, {"MAX_TOKENS": 10}, "input 'MAX_TOKENS' (INT32 [1]) takes no prompt_length"),
        (spec_of(("x", "FP32", [4])), 8, "model 'm' has no prompt input for prompt_length"),
    ],
)
def test_bad_values_name_what_is_accepted(spec: ModelSpec, value: Any, message: str) -> None:
    with pytest.raises(InputSpecError, match=re.escape(message)):
        parse(spec, value)


def test_inputs_that_collide_with_the_prompts_are_refused() -> None:
    with pytest.raises(InputSpecError, match="shapes fixes input 'input_ids'"):
        encode(IDS, 8, shapes={"input_ids": [8]})
    with pytest.raises(InputSpecError, match="inputs gives 'PROMPT'"):
        encode(LLM, 8, inputs={"PROMPT": np.array([b"x"], dtype=np.object_)})
    with pytest.raises(InputSpecError, match="inputs must be 'random', 'zero' or one dict"):
        encode(LLM, 8, inputs=["random", "zero"])
