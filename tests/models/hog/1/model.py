"""Allocates `alloc_mb` MB (a config parameter) in initialize, every page written so that it
is resident, and keeps it until unloaded; echoes INPUT0."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        mb = int(config["parameters"]["alloc_mb"]["string_value"])
        self.held = np.ones(mb * 1_000_000 // 8, dtype=np.float64)

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
