"""Text models without a server: prompts files, the backends' input conventions, tokenizer
counting and the per-request token records (:mod:`pytest_triton_perf.load.text`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load import text
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.load.prompts import PROMPTS
from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.responses import ResponseRecords
from pytest_triton_perf.measure.streaming import counted, figures

TOKENIZER = Path(__file__).resolve().parents[2] / "example_repo/models/textgen/tokenizer.json"


def spec_of(*inputs: tuple[str, str], decoupled: bool = True) -> ModelSpec:
    return ModelSpec.from_metadata(
        {
            "name": "m",
            "inputs": [{"name": n, "datatype": t, "shape": [1]} for n, t in inputs],
            "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}],
        },
        {
            "max_batch_size": 0,
            "model_transaction_policy": {"decoupled": decoupled},
            # As the backends declare them: everything but the prompt optional.
            "input": [{"name": n, "optional": n != "text_input"} for n, _ in inputs],
        },
    )


VLLM = spec_of(
    ("text_input", "BYTES"),
    ("stream", "BOOL"),
    ("sampling_parameters", "BYTES"),
    ("exclude_input_in_output", "BOOL"),
)
TRTLLM = spec_of(("text_input", "BYTES"), ("max_tokens", "INT32"), ("stream", "BOOL"))


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_prompts_file_gives_texts_and_optional_output_lengths(tmp_path: Path) -> None:
    path = write(
        tmp_path, '{"text": "hello there", "output_length": 8}', "", '{"prompt": "  spaced  "}'
    )
    assert text.read_prompts(path) == (
        text.Prompt("hello there", 8),
        text.Prompt("  spaced  ", None),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"prompts.jsonl:2: not JSON \(.*\); each line is one object, \{\"text\""),
        ('["a list"]', r"prompts.jsonl:2: \['a list'\] is not a JSON object; accepted:"),
        ('{"output_length": 3}', r"prompts.jsonl:2: no prompt text \(keys \['output_length'\]\)"),
        ('{"text": ""}', r"prompts.jsonl:2: text='' is not a non-empty string"),
        ('{"text": "a", "prompt": "b"}', r"prompts.jsonl:2: both 'text' and 'prompt'"),
        ('{"text": "a", "max_tokens": 3}', r"prompts.jsonl:2: unknown key\(s\) 'max_tokens'"),
        ('{"text": "a", "output_length": 0}', r"prompts.jsonl:2: output_length=0 is not a"),
        ('{"text": "a", "output_length": true}', r"prompts.jsonl:2: output_length=True"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, '{"text": "fine"}', line)
    with pytest.raises(InputSpecError, match=message):
        text.read_prompts(path)


def test_a_missing_or_empty_prompts_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputSpecError, match=r"nope.jsonl': no such file; give a JSONL file"):
        text.read_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(InputSpecError, match="holds no prompt; one per line"):
        text.read_prompts(write(tmp_path, "", "  "))


def test_vllm_conventions_stream_exclude_the_prompt_and_send_max_tokens_as_json(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '{"text": "a b c", "output_length": 7}', '{"text": "d"}')
    r = text.text_requests(VLLM, prompts=path, prompt_length=None, output_length=4, streaming=True)
    assert r.prompts == ("a b c", "d") and r.label == "prompts=prompts.jsonl,output=4"
    first, second = r.arrays
    assert first["text_input"].tolist() == [b"a b c"]
    assert first["stream"].tolist() == [True] and first["stream"].dtype == np.bool_
    assert first["exclude_input_in_output"].tolist() == [True]
    assert json.loads(first["sampling_parameters"][0]) == {"max_tokens": 7}  # the line's
    assert json.loads(second["sampling_parameters"][0]) == {"max_tokens": 4}  # the rule's


def test_tensorrt_llm_conventions_send_max_tokens_as_int32() -> None:
    r = text.text_requests(
        TRTLLM, prompts=None, prompt_length=(3, 5), output_length=16, streaming=False, seed=1
    )
    assert len(r.arrays) == PROMPTS and r.label == "text,prompt=3-5,output=16"
    assert {len(p.split()) for p in r.prompts} <= {3, 4, 5}
    a = r.arrays[0]
    assert a["max_tokens"].dtype == np.int32 and a["max_tokens"].tolist() == [16]
    assert a["stream"].tolist() == [False] and "sampling_parameters" not in a


def test_without_an_output_length_max_tokens_is_left_to_the_model() -> None:
    r = text.text_requests(
        VLLM, prompts=None, prompt_length=None, output_length=None, streaming=True
    )
    assert "sampling_parameters" not in r.arrays[0]
    assert r.label == f"text,prompt={text.DEFAULT_PROMPT_LENGTH}"


def test_a_required_max_tokens_needs_an_output_length() -> None:
    required = ModelSpec.from_metadata(
        {
            "name": "m",
            "inputs": [
                {"name": "text_input", "datatype": "BYTES", "shape": [1]},
                {"name": "max_tokens", "datatype": "INT32", "shape": [1]},
            ],
            "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}],
        },
        {"max_batch_size": 0},
    )
    with pytest.raises(InputSpecError, match="requires its input 'max_tokens': give output_len"):
        text.text_requests(
            required, prompts=None, prompt_length=4, output_length=None, streaming=True
        )
    r = text.text_requests(required, prompts=None, prompt_length=4, output_length=8, streaming=True)
    assert r.arrays[0]["max_tokens"].tolist() == [8]


def test_text_options_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    bare = spec_of(("text_input", "BYTES"))
    with pytest.raises(InputSpecError, match="the model has neither input"):
        text.text_requests(bare, prompts=None, prompt_length=4, output_length=8, streaming=True)
    with pytest.raises(InputSpecError, match="give one of them"):
        text.text_requests(
            VLLM, prompts=write(tmp_path, '{"text": "a"}'), prompt_length=4, output_length=None,
            streaming=True,
        )  # fmt: skip
    with pytest.raises(InputSpecError, match=r"output_length=0 is not accepted; give a number"):
        text.text_requests(VLLM, prompts=None, prompt_length=4, output_length=0, streaming=True)
    with pytest.raises(InputSpecError, match="a text model's prompt is 'text_input'"):
        text.text_requests(
            VLLM, prompts=None, prompt_length={"other": 4}, output_length=None, streaming=True
        )


def test_the_tokenizer_is_a_local_file_and_counts_words_of_its_vocabulary(tmp_path: Path) -> None:
    tok = text.load_tokenizer(str(TOKENIZER))
    counts = text.count_tokens(tok, [b"the of and", " to in", b"", "zzz unknown words"])
    assert counts.tolist() == [3, 2, 0, 3]  # unknown words count one [UNK] each
    with pytest.raises(InputSpecError, match=r"tokenizer='meta-llama/Llama-3' is not a file"):
        text.load_tokenizer("meta-llama/Llama-3")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(InputSpecError, match=r"is not a tokenizer\.json the tokenizers library"):
        text.load_tokenizer(str(bad))


def test_counting_labels() -> None:
    assert text.counting_label("/x/y/tokenizer.json", None) == "tokenizer:tokenizer.json"
    assert text.counting_label(None, "TOKEN") == "token_output:TOKEN"
    assert text.counting_label(None, None) == "responses"


def test_tokens_are_counted_after_the_windows_from_the_kept_text() -> None:
    """Two requests of 3 and 2 responses; the tokenizer counts 5 and 4 tokens in their text,
    so TPOT divides by 4 and 3 tokens' gaps, not by the responses'."""
    ms = 1_000_000
    responses = ResponseRecords(
        first_ns=np.array([10 * ms, 20 * ms]),
        second_ns=np.array([20 * ms, 60 * ms]),
        last_ns=np.array([50 * ms, 60 * ms]),
        count=np.array([3, 2]),
        tokens=np.array([-1, -1]),
        gaps_ns=np.array([10 * ms, 30 * ms, 40 * ms]),
        prompt=np.array([1, 0]),
        texts=(b"the of and to in", b"is that it was"),
    )
    records = Records(
        end_ns=np.array([100, 200]),
        latency_ns=np.array([50 * ms, 60 * ms]),
        ok=np.array([True, True]),
        responses=responses,
    )
    done = counted(records, (7, 11), str(TOKENIZER))
    assert done.responses is not None and done.responses.texts is None
    assert done.responses.tokens.tolist() == [5, 4]
    assert done.responses.input_tokens is not None
    assert done.responses.input_tokens.tolist() == [11, 7]
    f = figures(done, [0, 1000], 1.0, None, counting="tokenizer:tokenizer.json")
    assert f is not None and f.token_counting == "tokenizer:tokenizer.json"
    assert f.tpot_samples_ms.tolist() == pytest.approx([40 / 4, 40 / 3])
    assert f.output_tokens == 9 and f.output_tokens_per_s == 9.0
    assert f.output_tokens_per_request is not None and f.output_tokens_per_request.total == 9
    assert f.input_tokens_per_request is not None
    assert (f.input_tokens_per_request.min, f.input_tokens_per_request.max) == (7, 11)
    # Without a tokenizer: responses are the tokens, the inputs still known.
    plain = figures(counted(records, (7, 11), None), [0, 1000], 1.0, None)
    assert plain is not None and plain.token_counting == "responses"
    assert plain.tpot_samples_ms.tolist() == pytest.approx([40 / 2, 40 / 1])
    assert plain.output_tokens is None and plain.output_tokens_per_request is not None
    assert plain.output_tokens_per_request.total == 5


def test_kept_texts_follow_their_requests_through_select_and_merge() -> None:
    def part(texts: tuple[bytes, ...], prompt: list[int]) -> ResponseRecords:
        n = len(texts)
        one = np.ones(n, np.int64)
        return ResponseRecords(
            one, -one, one, one, -one, np.empty(0, np.int64), np.array(prompt), texts
        )

    merged = ResponseRecords.merge(
        [part((b"a", b"b"), [0, 1]), part((b"c",), [2])], np.array([2, 0, 1])
    )
    assert merged.texts == (b"c", b"a", b"b") and merged.prompt.tolist() == [2, 0, 1]
    picked = merged.select(np.array([True, False, True]))
    assert picked.texts == (b"c", b"b") and picked.prompt.tolist() == [2, 1]


def test_reports_say_how_tokens_were_counted() -> None:
    from pytest_triton_perf.measure.figures import TokenStats
    from pytest_triton_perf.report.streaming import stream_line
    from tests.report.factory import make_record, make_stream_result

    r = make_stream_result(token_output="TOKEN")
    assert r.stream is not None
    counted_stream = dataclasses.replace(
        r.stream,
        token_counting="tokenizer:tokenizer.json",
        input_tokens_per_request=TokenStats.from_counts(np.array([100, 156])),
        output_tokens_per_request=TokenStats.from_counts(np.array([16, 16])),
    )
    line = stream_line(make_record(dataclasses.replace(r, stream=counted_stream)))
    assert " tokens/s (tokenizer:tokenizer.json; 128.0 in, 16.0 out per request)" in line
    assert "(tokenizer:" not in stream_line(make_record(r))


def test_the_committed_tokenizer_is_what_its_script_makes(tmp_path: Path) -> None:
    import runpy

    script = TOKENIZER.parents[2] / "scripts" / "make_tokenizer.py"
    main = runpy.run_path(str(script))["main"]
    assert main(["--check"]) == 0
    other = tmp_path / "tokenizer.json"
    other.write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--output", str(other)]) == 1
    assert main(["--output", str(other)]) == 0 and other.read_bytes() == TOKENIZER.read_bytes()
