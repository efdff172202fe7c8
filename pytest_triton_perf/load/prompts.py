"""Prompts of a given length for text (BYTES) and token-id inputs: ``measure(prompt_length=...)``.

A model's prefill cost grows with its prompt; a gate that sends 8 words cannot see a
regression that only long prompts show. ``prompt_length`` sets how many tokens the prompt
inputs carry:

- ``128``: every request's prompt has 128 tokens;
- ``(64, 512)``: lengths drawn uniformly from 64..512 (inclusive), seeded;
- ``{"mean": 256, "stddev": 64}``: lengths drawn from a normal distribution, rounded, at
  least 1, seeded (GenAI-Perf's ``--synthetic-input-tokens-mean/-stddev``);
- ``{"text_input": 128, "input_ids": (64, 512)}``: per input, each value one of the above.

Without per-input keys the prompt inputs are the model's BYTES inputs, or, when it has none,
its integer inputs with one dynamic dimension (token ids). A token is a word of a BYTES
input (random lowercase letters, words separated by one space, which is how the example
model counts them; a tokenizer would count somewhat differently) or one element of a
token-id input (random ids 1..99, the dynamic dimension set to the length). The other
inputs are built as ``inputs`` says (``"random"``, ``"zero"``, or a dict of arrays that
leaves the prompt inputs out). :data:`PROMPTS` distinct prompts are generated and sent in
turn, so a server that caches prompt prefixes is not measured on one prompt repeated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.inputs import InputsArg, build_inputs, encode_payloads
from pytest_triton_perf.load.model_spec import ModelSpec, TensorSpec, numpy_dtype
from pytest_triton_perf.load.transport import InputTensor

#: Distinct prompts generated and rotated (GenAI-Perf's default ``--num-prompts``).
PROMPTS = 100
#: What ``prompt_length`` takes: one length rule, or a rule per input name.
PromptLength = int | tuple[int, int] | Mapping[str, Any]

_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_INTEGER = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


@dataclass(frozen=True)
class Lengths:
    """One length rule: fixed, uniform between two bounds, or normal."""

    low: int
    high: int
    mean: float | None = None
    stddev: float | None = None

    def draw(self, rng: np.random.Generator) -> int:
        """One length."""
        if self.mean is not None and self.stddev is not None:
            return max(1, round(float(rng.normal(self.mean, self.stddev))))
        if self.low == self.high:
            return self.low
        return int(rng.integers(self.low, self.high + 1))

    def describe(self) -> str:
        """``128``, ``64-512`` or ``256+-64``."""
        if self.mean is not None:
            return f"{self.mean:g}+-{self.stddev:g}"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


def _is_length(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def parse_rule(model: str, value: Any, where: str = "prompt_length") -> Lengths:
    """A length rule; InputSpecError naming the value and the accepted forms."""
    if _is_length(value):
        return Lengths(value, value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(map(_is_length, value)):
        low, high = value
        if low <= high:
            return Lengths(low, high)
    if isinstance(value, Mapping) and set(value) == {"mean", "stddev"}:
        mean, sd = value["mean"], value["stddev"]
        if all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in (mean, sd)
        ) and (mean >= 1 and sd >= 0):
            return Lengths(1, 1, float(mean), float(sd))
    raise InputSpecError(
        f"model '{model}': {where}={value!r} is not accepted; give a number of tokens >= 1"
        " (128), a range (64, 512), a distribution {'mean': 256, 'stddev': 64}, or a dict of"
        " these by input name"
    )


def _prompt_inputs(spec: ModelSpec) -> list[TensorSpec]:
    """The inputs a plain ``prompt_length`` applies to."""
    text = [t for t in spec.inputs if t.datatype == "BYTES"]
    if text:
        return text
    return [t for t in spec.inputs if t.datatype in _INTEGER and list(t.dims).count(-1) == 1]


def parse(spec: ModelSpec, prompt_length: Any) -> dict[str, Lengths]:
    """Input name -> length rule; InputSpecError for a value, an input name or an input
    datatype that prompts do not apply to."""
    if isinstance(prompt_length, Mapping) and not set(prompt_length) <= {"mean", "stddev"}:
        if not prompt_length:
            raise InputSpecError(f"model '{spec.name}': prompt_length is an empty dict")
        rules = {}
        for name, value in prompt_length.items():
            t = spec.input(str(name))
            _check_input(spec, t)
            rules[t.name] = parse_rule(spec.name, value, f"prompt_length[{name!r}]")
        return rules
    rule = parse_rule(spec.name, prompt_length)
    targets = _prompt_inputs(spec)
    if not targets:
        raise InputSpecError(
            f"model '{spec.name}' has no prompt input for prompt_length: no BYTES input and no"
            " integer input with one dynamic dimension; its inputs are "
            + ", ".join(f"'{t.name}' {t.datatype} {list(t.dims)}" for t in spec.inputs)
        )
    return {t.name: rule for t in targets}


def _check_input(spec: ModelSpec, t: TensorSpec) -> None:
    if t.datatype == "BYTES":
        return
    if t.datatype in _INTEGER and list(t.dims).count(-1) == 1:
        return
    raise InputSpecError(
        f"model '{spec.name}' input '{t.name}' ({t.datatype} {list(t.dims)}) takes no"
        " prompt_length: accepted are BYTES inputs (words) and integer inputs with one"
        " dynamic dimension (token ids)"
    )


def _words(rng: np.random.Generator, n: int) -> bytes:
    """``n`` random lowercase words of 2-7 letters, separated by single spaces."""
    sizes = rng.integers(2, 8, size=n)
    letters = _LETTERS[rng.integers(0, len(_LETTERS), size=int(sizes.sum()))].tobytes()
    words, pos = [], 0
    for size in sizes:
        words.append(letters[pos : pos + size])
        pos += int(size)
    return b" ".join(words)


def prompt_array(t: TensorSpec, length: int, rng: np.random.Generator) -> np.ndarray:
    """One sample (no batch dimension) of input ``t`` holding prompts of ``length`` tokens."""
    if t.datatype == "BYTES":
        dims = tuple(1 if d == -1 else d for d in t.dims)
        n = int(np.prod(dims, dtype=np.int64))
        flat = np.array([_words(rng, length) for _ in range(n)], dtype=np.object_)
        return flat.reshape(dims)
    dims = tuple(length if d == -1 else d for d in t.dims)
    return rng.integers(1, 100, size=dims).astype(numpy_dtype(t.datatype))


def encode_prompt_requests(
    spec: ModelSpec,
    inputs: InputsArg,
    prompt_length: Any,
    *,
    protocol: str,
    http_url: str,
    version: str | None = None,
    batch_size: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[tuple[bytes, ...], str]:
    """:data:`PROMPTS` request bodies with prompts as ``prompt_length`` says, and the label
    the workload records (``random,prompt=64-512``). The other inputs come from ``inputs``:
    ``"random"`` (seeded ``seed + k`` for request ``k``), ``"zero"`` or a dict of arrays."""
    tensors, label = prompt_tensor_sets(
        spec, inputs, prompt_length, batch_size=batch_size, shapes=shapes, seed=seed
    )
    payloads = encode_payloads(spec, tensors, protocol=protocol, http_url=http_url, version=version)
    return payloads, label


def prompt_tensor_sets(
    spec: ModelSpec,
    inputs: InputsArg,
    prompt_length: Any,
    *,
    batch_size: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[list[tuple[InputTensor, ...]], str]:
    """The input tensors of :func:`encode_prompt_requests`' requests, and the label."""
    rules = parse(spec, prompt_length)
    fixed = sorted(set(rules) & set(shapes or {}))
    if fixed:
        raise InputSpecError(
            f"model '{spec.name}': shapes fixes input '{fixed[0]}', whose length prompt_length"
            " sets; give one of them"
        )
    if isinstance(inputs, str):
        if inputs not in ("random", "zero"):
            raise InputSpecError(
                f"model '{spec.name}': with prompt_length, inputs must be 'random', 'zero' or a"
                f" dict of arrays for the other inputs; got inputs={inputs!r}"
            )
        label = inputs
    elif isinstance(inputs, Mapping):
        given = sorted(set(rules) & {str(k) for k in inputs})
        if given:
            raise InputSpecError(
                f"model '{spec.name}': inputs gives '{given[0]}', whose prompts prompt_length"
                " generates; leave it out of inputs"
            )
        label = "user"
    else:
        raise InputSpecError(
            f"model '{spec.name}': with prompt_length, inputs must be 'random', 'zero' or one"
            f" dict of arrays, got {type(inputs).__name__}"
        )
    by_name = {t.name: t for t in spec.inputs}
    rng = np.random.default_rng(seed)
    tensors: list[tuple[InputTensor, ...]] = []
    for k in range(PROMPTS):
        prompts = {n: prompt_array(by_name[n], rule.draw(rng), rng) for n, rule in rules.items()}
        if isinstance(inputs, Mapping):
            tensors.append(
                build_inputs(
                    spec, {**inputs, **prompts}, batch_size=batch_size, shapes=shapes, seed=seed
                )
            )
            continue
        dims = {n: [int(d) for d in a.shape] for n, a in prompts.items()}
        rest = build_inputs(
            spec, inputs, batch_size=batch_size, shapes={**(shapes or {}), **dims}, seed=seed + k
        )
        mine = {
            n: build_inputs(
                dataclasses.replace(spec, inputs=(by_name[n],)),
                {n: a},
                batch_size=batch_size,
            )[0]
            for n, a in prompts.items()
        }
        tensors.append(tuple(mine.get(t.name, t) for t in rest))
    described = ",".join(
        f"{n}:{r.describe()}" if isinstance(prompt_length, Mapping) and n in prompt_length else ""
        for n, r in rules.items()
    )
    if not described.strip(","):
        described = next(iter(rules.values())).describe()
    return tensors, f"{label},prompt={described}"
