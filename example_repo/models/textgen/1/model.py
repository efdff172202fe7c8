"""Streams text like Triton's vLLM backend, timed by config parameters (see config.pbtxt).

Inputs as the vLLM backend names them: ``text_input`` (the prompt), ``stream`` (pieces as they
are made, else one response with the whole text), ``sampling_parameters`` (JSON; ``max_tokens``
is read), ``exclude_input_in_output`` (without it a non-streamed answer starts with the prompt,
as vLLM's does). A ``max_tokens`` INT32 input (TensorRT-LLM's name) is read when a copy of the
model declares one. Output ``text_output``: one BYTES element per response.

Each request is generated on its own thread, as an LLM server with continuous batching serves
requests side by side: ``execute`` only starts the threads and returns. Token ``k`` is made at
``arrival + first + prefill + k * per_token`` on an absolute schedule, so the time a send takes
does not accumulate. The first piece is the first token alone; the next pieces hold
``tokens_per_piece`` tokens each (the last one what is left) and go out when their last token
is made, so by tokens TTFT is ``first`` and TPOT is ``per_token`` exactly. The words are the
vocabulary of ``tokenizer.json`` (one token each) in turn from a per-request offset.
"""

import itertools
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(params, key, default):
    return float(params.get(key, {}).get("string_value", default))


def _scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.first_s = _param(params, "first_token_ms", "40") / 1e3
        self.token_s = _param(params, "token_ms", "10") / 1e3
        self.max_tokens = int(_param(params, "max_tokens", "16"))
        self.per_piece = max(1, int(_param(params, "tokens_per_piece", "2")))
        self.prefill_s_per_word = _param(params, "prefill_us_per_token", "0") / 1e6
        self.slow_share = _param(params, "slow_share", "0")
        self.slow_first_s = _param(params, "slow_first_token_ms", "120") / 1e3
        self.slow_token_s = _param(params, "slow_token_ms", "30") / 1e3
        path = os.path.join(args["model_repository"], "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
        self.words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if w != "[UNK]"]
        self.count = 0
        self.threads = []

    def _slow(self):
        """Request ``n`` (in arrival order) is slow when ``floor((n + 1) * share)`` steps up:
        exactly ``share`` of every run of requests, evenly spread."""
        n = self.count
        self.count += 1
        return int((n + 1) * self.slow_share) > int(n * self.slow_share)

    def execute(self, requests):
        arrival = time.monotonic()
        self.threads = [t for t in self.threads if t.is_alive()]
        for request in requests:
            prompt = bytes(_scalar(request, "text_input"))
            stream = _scalar(request, "stream")
            exclude = _scalar(request, "exclude_input_in_output")
            max_tokens = self.max_tokens
            sampling = _scalar(request, "sampling_parameters")
            if sampling is not None and bytes(sampling).strip():
                max_tokens = int(json.loads(bytes(sampling)).get("max_tokens", max_tokens))
            given = _scalar(request, "max_tokens")
            if given is not None:
                max_tokens = int(given)
            slow = self._slow()
            first = self.slow_first_s if slow else self.first_s
            first += len(prompt.split()) * self.prefill_s_per_word
            thread = threading.Thread(
                target=self.generate,
                args=(
                    request.get_response_sender(),
                    arrival + first,
                    self.slow_token_s if slow else self.token_s,
                    max(1, max_tokens),
                    bool(stream) if stream is not None else False,
                    None if exclude is None or bool(exclude) else prompt.decode(),
                    self.count,
                ),
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
        return None

    def pieces(self, tokens):
        """Token index ranges of the pieces: the first token alone, then groups."""
        bounds = [0, 1]
        while bounds[-1] < tokens:
            bounds.append(min(tokens, bounds[-1] + self.per_piece))
        return list(itertools.pairwise(bounds))

    def generate(self, sender, first, per_token, tokens, stream, prompt, offset):
        words = [self.words[(offset + k) % len(self.words)] for k in range(tokens)]
        if not stream:
            delay = first + (tokens - 1) * per_token - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            text = " ".join(words) if prompt is None else " ".join([prompt, *words])
            out = pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))
            sender.send(
                pb_utils.InferenceResponse([out]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
            return
        pieces = self.pieces(tokens)
        for i, (start, end) in enumerate(pieces):
            delay = first + (end - 1) * per_token - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            text = " ".join(words[start:end])
            if start:
                text = " " + text  # a delta, as vLLM streams them: the pieces concatenate
            out = pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))
            last = i == len(pieces) - 1
            sender.send(
                pb_utils.InferenceResponse([out]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if last else 0,
            )

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=5)
