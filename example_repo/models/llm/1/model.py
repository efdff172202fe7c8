"""Streams `output_tokens` tokens per request, timed like an LLM server (config parameters).

Each request is generated on its own thread, as an LLM server with continuous batching serves
requests side by side: `execute` only starts the threads and returns. Token k of a request is
sent at `arrival + first_token_ms + prefill + k * token_ms`, on an absolute schedule, so the
time a send takes does not accumulate into the gaps. The prefill is `prefill_us_per_token` for
each whitespace-separated word of PROMPT: a longer prompt has a later first token.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(params, key, default):
    return float(params.get(key, {}).get("string_value", default))


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.first_token_s = _param(params, "first_token_ms", "40") / 1e3
        self.token_s = _param(params, "token_ms", "10") / 1e3
        self.output_tokens = int(_param(params, "output_tokens", "16"))
        self.prefill_s_per_word = _param(params, "prefill_us_per_token", "0") / 1e6
        self.threads = []

    def execute(self, requests):
        arrival = time.monotonic()
        self.threads = [t for t in self.threads if t.is_alive()]
        for request in requests:
            prompt = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy()
            words = sum(len(bytes(p).split()) for p in prompt.reshape(-1))
            thread = threading.Thread(
                target=self.generate,
                args=(request.get_response_sender(), arrival, words),
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
        return None

    def generate(self, sender, arrival, words):
        first = arrival + self.first_token_s + words * self.prefill_s_per_word
        for k in range(self.output_tokens):
            delay = first + k * self.token_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            token = np.array([f"tok{k}".encode()], dtype=np.object_)
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TOKEN", token)]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=5)
