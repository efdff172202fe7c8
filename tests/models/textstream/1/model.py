"""Streams words in pieces, every second request slow (see config.pbtxt)."""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

WORDS = ("red", "green", "blue", "cyan", "magenta", "yellow", "black", "white")


def _param(params, key):
    return float(params[key]["string_value"])


def _scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"])["parameters"]
        self.fast = (_param(params, "first_token_ms") / 1e3, _param(params, "token_ms") / 1e3)
        self.slow = (
            _param(params, "slow_first_token_ms") / 1e3,
            _param(params, "slow_token_ms") / 1e3,
        )
        self.max_tokens = int(_param(params, "max_tokens"))
        self.per_piece = int(_param(params, "tokens_per_piece"))
        self.count = 0
        self.threads = []

    def execute(self, requests):
        arrival = time.monotonic()
        self.threads = [t for t in self.threads if t.is_alive()]
        for request in requests:
            n = _scalar(request, "max_tokens")
            stream = _scalar(request, "stream")
            first, per_token = self.slow if self.count % 2 else self.fast
            self.count += 1
            thread = threading.Thread(
                target=self.generate,
                args=(
                    request.get_response_sender(),
                    arrival + first,
                    per_token,
                    self.max_tokens if n is None else int(n),
                    bool(stream),
                ),
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
        return None

    def generate(self, sender, first, per_token, tokens, stream):
        words = [WORDS[k % len(WORDS)] for k in range(tokens)]
        # The first piece ends after the first token, each next one `per_piece` later.
        ends = sorted({*range(1, tokens, self.per_piece), tokens}) if stream else [tokens]
        start = 0
        for end in ends:
            delay = first + (end - 1) * per_token - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            piece = (" " if start else "") + " ".join(words[start:end])
            out = pb_utils.Tensor("text_output", np.array([piece.encode()], dtype=np.object_))
            flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if end == tokens else 0
            sender.send(pb_utils.InferenceResponse([out]), flags=flags)
            start = end

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=5)
