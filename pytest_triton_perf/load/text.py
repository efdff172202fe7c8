"""Text models: prompts and outputs as text, as Triton's vLLM and TensorRT-LLM backends take them.

A *text model* has a BYTES input ``text_input`` (the prompt). Beside it the backends' optional
inputs are filled by their conventions: ``stream`` (BOOL) true when the responses are
streamed, ``exclude_input_in_output`` (BOOL) true, so that the output is the generated text
alone, and the output length as ``sampling_parameters`` (BYTES, JSON ``{"max_tokens": N}``,
vLLM's) or ``max_tokens`` (INT32, TensorRT-LLM's), whichever the model has. The output
``text_output`` (BYTES) streams pieces that may hold several tokens.

Prompts come from a JSONL file (``measure(prompts="prompts.jsonl")``), one JSON object per
line: ``{"text": "...", "output_length": 128}``; ``"prompt"`` is accepted for ``"text"``
and ``output_length`` is optional (the number of tokens to generate, sent as ``max_tokens``).
Without a file, :data:`~pytest_triton_perf.load.prompts.PROMPTS` synthetic prompts of
``prompt_length`` words (default :data:`DEFAULT_PROMPT_LENGTH`) are made, as
:mod:`pytest_triton_perf.load.prompts` makes them. ``output_length`` takes the same rules
as ``prompt_length`` (128, (64, 512), {"mean": 256, "stddev": 64}) and sets ``max_tokens``
of the prompts whose line does not.

Tokens: with ``tokenizer=`` (a local ``tokenizer.json``, read with the ``tokenizers``
library; nothing is downloaded) a request's output tokens are the tokenizer's count of its
concatenated ``text_output`` pieces and its input tokens that of its prompt. The pieces'
text is kept per request and counted after the windows (:func:`count_tokens`), off the
load generator's hot path. Without one, output tokens are responses (or the elements of
``token_output``) and input tokens are the prompt's whitespace-separated words.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_spec import ModelSpec, TensorSpec, numpy_dtype
from pytest_triton_perf.load.prompts import PROMPTS, Lengths, parse_rule, prompt_array

TEXT_INPUT = "text_input"
TEXT_OUTPUT = "text_output"
STREAM = "stream"
SAMPLING_PARAMETERS = "sampling_parameters"
MAX_TOKENS = "max_tokens"
EXCLUDE_INPUT = "exclude_input_in_output"
#: Inputs whose values the conventions set (the others come from ``inputs``).
CONVENTION_INPUTS = (TEXT_INPUT, STREAM, SAMPLING_PARAMETERS, MAX_TOKENS, EXCLUDE_INPUT)
#: Keys a line of a prompts file may hold: the prompt (either name) and its output length.
TEXT_KEYS = ("text", "prompt")
OUTPUT_LENGTH_KEY = "output_length"
#: Words of a synthetic prompt when neither ``prompts`` nor ``prompt_length`` is given.
DEFAULT_PROMPT_LENGTH = 128
_ACCEPTED_LINE = (
    '{"text": "...", "output_length": 128} ("prompt" for "text"; output_length optional)'
)


@dataclass(frozen=True)
class Prompt:
    """One prompt and, when its line gives one, the number of tokens to generate."""

    text: str
    output_length: int | None = None


def read_prompts(path: str | os.PathLike[str]) -> tuple[Prompt, ...]:
    """The prompts of a JSONL file, one JSON object per non-blank line (see module doc);
    InputSpecError naming ``file:line`` and what is accepted for anything else."""
    where = os.fspath(path)
    try:
        lines = Path(where).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputSpecError(
            f"prompts={where!r}: no such file; give a JSONL file with one prompt per line,"
            f" {_ACCEPTED_LINE}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputSpecError(f"prompts={where!r}: cannot read it as UTF-8 text: {e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputSpecError(
                f"{where}:{n}: not JSON ({e.msg} at column {e.colno}); each line is one object,"
                f" {_ACCEPTED_LINE}"
            ) from None
        out.append(_prompt(item, f"{where}:{n}"))
    if not out:
        raise InputSpecError(f"prompts={where!r} holds no prompt; one per line, {_ACCEPTED_LINE}")
    return tuple(out)


def _prompt(item: Any, where: str) -> Prompt:
    if not isinstance(item, Mapping):
        raise InputSpecError(f"{where}: {item!r} is not a JSON object; accepted: {_ACCEPTED_LINE}")
    texts = [k for k in TEXT_KEYS if k in item]
    if not texts:
        raise InputSpecError(
            f"{where}: no prompt text (keys {sorted(item)}); accepted: {_ACCEPTED_LINE}"
        )
    if len(texts) > 1:
        raise InputSpecError(f"{where}: both 'text' and 'prompt' are given; give one")
    text = item[texts[0]]
    if not isinstance(text, str) or not text:
        raise InputSpecError(
            f"{where}: {texts[0]}={text!r} is not a non-empty string; accepted: {_ACCEPTED_LINE}"
        )
    unknown = sorted(set(item) - {*TEXT_KEYS, OUTPUT_LENGTH_KEY})
    if unknown:
        raise InputSpecError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; accepted: {_ACCEPTED_LINE}"
        )
    length = item.get(OUTPUT_LENGTH_KEY)
    if length is not None and not (
        isinstance(length, int) and not isinstance(length, bool) and length >= 1
    ):
        raise InputSpecError(
            f"{where}: output_length={length!r} is not a number of tokens >= 1 (or leave it out)"
        )
    return Prompt(text, length)


def is_text_model(spec: ModelSpec) -> bool:
    """The model takes its prompt as the BYTES input ``text_input`` (vLLM / TensorRT-LLM)."""
    return any(t.name == TEXT_INPUT and t.datatype == "BYTES" for t in spec.inputs)


def text_output(spec: ModelSpec) -> str | None:
    """The BYTES output ``text_output`` when the model has one."""
    found = any(o.name == TEXT_OUTPUT and o.datatype == "BYTES" for o in spec.outputs)
    return TEXT_OUTPUT if found else None


@dataclass(frozen=True)
class TextRequests:
    """The text-convention inputs of each request (one sample each, by input name), the
    prompts they carry and the label the workload records."""

    arrays: tuple[dict[str, np.ndarray], ...]
    prompts: tuple[str, ...]
    label: str


def _length_rule(spec: ModelSpec, value: Any, where: str) -> Lengths:
    if isinstance(value, Mapping) and not set(value) <= {"mean", "stddev"}:
        if set(value) != {TEXT_INPUT}:
            raise InputSpecError(
                f"model '{spec.name}': {where}={dict(value)!r}: a text model's prompt is"
                f" '{TEXT_INPUT}'; give one length rule (128, (64, 512) or"
                " {'mean': 256, 'stddev': 64})"
            )
        value = value[TEXT_INPUT]
    return parse_rule(spec.name, value, where)


def text_requests(
    spec: ModelSpec,
    *,
    prompts: str | os.PathLike[str] | None,
    prompt_length: Any,
    output_length: Any,
    streaming: bool,
    seed: int = 0,
) -> TextRequests:
    """The requests of a text model (see module doc): prompts from the file ``prompts`` or
    synthetic ones of ``prompt_length`` words; ``max_tokens`` from each line's
    ``output_length``, else the ``output_length`` rule, else left to the model; ``stream``
    set to ``streaming``. InputSpecError naming the value and what is accepted."""
    names = {t.name: t for t in spec.inputs}
    rng = np.random.default_rng(seed)
    out_rule = (
        parse_rule(spec.name, output_length, "output_length") if output_length is not None else None
    )
    if prompts is not None:
        if prompt_length is not None:
            raise InputSpecError(
                f"model '{spec.name}': prompts={os.fspath(prompts)!r} gives the prompts;"
                " prompt_length makes synthetic ones: give one of them"
            )
        given = read_prompts(prompts)
        label = f"prompts={Path(os.fspath(prompts)).name}"
    else:
        rule = _length_rule(
            spec,
            DEFAULT_PROMPT_LENGTH if prompt_length is None else prompt_length,
            "prompt_length",
        )
        one = TensorSpec(TEXT_INPUT, "BYTES", (1,))
        given = tuple(
            Prompt(bytes(prompt_array(one, rule.draw(rng), rng)[0]).decode())
            for _ in range(PROMPTS)
        )
        label = f"text,prompt={rule.describe()}"
    lengths = [p.output_length or (out_rule.draw(rng) if out_rule else None) for p in given]
    if any(n is not None for n in lengths) and not (
        SAMPLING_PARAMETERS in names or MAX_TOKENS in names
    ):
        raise InputSpecError(
            f"model '{spec.name}': output_length is sent as '{SAMPLING_PARAMETERS}' (JSON"
            f" max_tokens) or '{MAX_TOKENS}' (INT32), and the model has neither input"
        )
    needed = [p for p, n in zip(given, lengths, strict=True) if n is None]
    if needed and MAX_TOKENS in names and not names[MAX_TOKENS].optional:
        raise InputSpecError(
            f"model '{spec.name}' requires its input '{MAX_TOKENS}': give output_length="
            " (tokens to generate: 128, (64, 512) or {'mean': 256, 'stddev': 64}), or an"
            " output_length on every line of the prompts file"
        )
    if out_rule is not None:
        label += f",output={out_rule.describe()}"
    arrays = []
    for p, n in zip(given, lengths, strict=True):
        a: dict[str, np.ndarray] = {TEXT_INPUT: _shaped(names[TEXT_INPUT], p.text.encode())}
        if STREAM in names:
            a[STREAM] = _shaped(names[STREAM], streaming)
        if EXCLUDE_INPUT in names:
            a[EXCLUDE_INPUT] = _shaped(names[EXCLUDE_INPUT], True)
        if n is not None and MAX_TOKENS in names:
            a[MAX_TOKENS] = _shaped(names[MAX_TOKENS], n)
        elif SAMPLING_PARAMETERS in names and (
            n is not None or not names[SAMPLING_PARAMETERS].optional
        ):
            sampling = {"max_tokens": n} if n is not None else {}
            a[SAMPLING_PARAMETERS] = _shaped(
                names[SAMPLING_PARAMETERS], json.dumps(sampling).encode()
            )
        arrays.append(a)
    return TextRequests(tuple(arrays), tuple(p.text for p in given), label)


def _shaped(t: TensorSpec, value: Any) -> np.ndarray:
    """One sample of input ``t`` holding ``value`` (dynamic dimensions of size 1)."""
    dims = tuple(1 if d == -1 else d for d in t.dims) or (1,)
    dtype = np.object_ if t.datatype == "BYTES" else numpy_dtype(t.datatype)
    if dtype is None:
        raise InputSpecError(
            f"input '{t.name}' has datatype {t.datatype}, which the text conventions cannot set"
        )
    return np.full(dims, value, dtype=dtype)


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """The ``tokenizers.Tokenizer`` of the local file ``path``; InputSpecError when it is not
    a file (nothing is downloaded: a hub name is refused), cannot be read, or the
    ``tokenizers`` library is missing."""
    if not Path(path).is_file():
        raise InputSpecError(
            f"tokenizer={path!r} is not a file; give the path of a local tokenizer.json (the"
            " tokenizers library's format, as Hugging Face models ship it): nothing is"
            " downloaded at run time"
        )
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputSpecError(
            f"tokenizer={path!r} needs the tokenizers library: pip install"
            " 'pytest-triton-perf[llm]' (or pip install tokenizers)"
        ) from None
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # the library raises its own Exception for a bad file
        raise InputSpecError(
            f"tokenizer={path!r} is not a tokenizer.json the tokenizers library reads: {e}"
        ) from None


def count_tokens(tokenizer: Any, texts: Sequence[bytes | str]) -> np.ndarray:
    """Tokens of each text by ``tokenizer`` (no special tokens added), in one batch call
    (the library's own threads); an empty text has none."""
    if not texts:
        return np.empty(0, np.int64)
    decoded = [t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in texts]
    encodings = tokenizer.encode_batch(decoded, add_special_tokens=False)
    return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(decoded))


def count_words(texts: Sequence[str]) -> np.ndarray:
    """Whitespace-separated words of each text: a prompt's tokens without a tokenizer."""
    return np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))


def counting_label(tokenizer: str | None, token_output: str | None) -> str:
    """How output tokens are counted: ``tokenizer:<file name>``, ``token_output:<OUTPUT>``
    (elements of that output) or ``responses``."""
    if tokenizer is not None:
        return f"tokenizer:{Path(tokenizer).name}"
    if token_output is not None:
        return f"token_output:{token_output}"
    return "responses"


__all__ = [
    "CONVENTION_INPUTS",
    "DEFAULT_PROMPT_LENGTH",
    "Prompt",
    "TextRequests",
    "count_tokens",
    "count_words",
    "counting_label",
    "is_text_model",
    "load_tokenizer",
    "read_prompts",
    "text_output",
    "text_requests",
]
