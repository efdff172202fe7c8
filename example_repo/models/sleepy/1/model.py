"""Sleeps `service_time_ms` (a config parameter) per execution, then echoes INPUT0."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        self.service_time_s = float(params["service_time_ms"]["string_value"]) / 1000.0

    def execute(self, requests):
        # Busy-free wait: time.sleep releases the stub's CPU for the load generator.
        time.sleep(self.service_time_s)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
