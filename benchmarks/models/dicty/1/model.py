"""Builds and reads a dict of `rounds` string keys per request (a config parameter), then
echoes INPUT0: CPU work of hashing and allocation that holds the GIL and a core."""

import json

import triton_python_backend_utils as pb_utils


def work(rounds):
    table = {}
    for i in range(rounds):
        table[f"k{i}"] = i
    return sum(table[f"k{i}"] for i in range(0, rounds, 3))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.rounds = int(config["parameters"]["rounds"]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            work(self.rounds)
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
