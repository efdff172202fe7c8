"""Echoes INPUT0; every `fail_every`-th request (config parameter, default 4) fails.

The failure is a per-request error response (`pb_utils.TritonError`), not a crash, so that
tests can check how failed requests are counted.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.fail_every = int(params.get("fail_every", {}).get("string_value", "4"))
        self.count = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.count += 1
            if self.fail_every > 0 and self.count % self.fail_every == 0:
                error = pb_utils.TritonError(f"flaky: deliberate failure of request {self.count}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
