"""Answers `max_tokens` words as one text after `delay_ms` (see config.pbtxt)."""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"])["parameters"]
        self.delay_s = float(params["delay_ms"]["string_value"]) / 1e3

    def execute(self, requests):
        responses = []
        for request in requests:
            given = pb_utils.get_input_tensor_by_name(request, "max_tokens")
            n = 6 if given is None else int(given.as_numpy().reshape(-1)[0])
            time.sleep(self.delay_s)
            text = " ".join(["word"] * n).encode()
            out = pb_utils.Tensor("text_output", np.array([text], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
