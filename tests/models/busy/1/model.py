"""Runs a pure-Python loop of `loop_iterations` steps (a config parameter) per request,
then echoes INPUT0: CPU work that takes the GIL and a core, unlike a sleep."""

import json

import triton_python_backend_utils as pb_utils


def spin(iterations):
    acc = 0
    for i in range(iterations):
        acc += i * i % 7
    return acc


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        self.iterations = int(params["loop_iterations"]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            spin(self.iterations)
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
