"""Waits `wait_ms` (a config parameter) per request, then echoes INPUT0."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.wait_s = float(config["parameters"]["wait_ms"]["string_value"]) / 1000.0

    def execute(self, requests):
        responses = []
        for request in requests:
            # time.sleep releases the stub's CPU: the wait costs no core.
            time.sleep(self.wait_s)
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
