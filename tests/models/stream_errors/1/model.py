"""Streams `tokens` responses per request; every `fail_every`-th request sends an error
response after its second token, then the final flag (config parameters)."""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.tokens = int(params["tokens"]["string_value"])
        self.token_s = float(params["token_ms"]["string_value"]) / 1e3
        self.fail_every = int(params["fail_every"]["string_value"])
        self.count = 0

    def execute(self, requests):
        for request in requests:
            self.count += 1
            sender = request.get_response_sender()
            for k in range(self.tokens):
                time.sleep(self.token_s)
                if k == 2 and self.count % self.fail_every == 0:
                    error = pb_utils.TritonError(f"stream_errors: request {self.count} failed")
                    sender.send(pb_utils.InferenceResponse(error=error))
                    break
                token = np.array([f"tok{k}".encode()], dtype=np.object_)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TOKEN", token)]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
