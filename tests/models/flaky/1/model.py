"""Echoes INPUT0; every `fail_every`-th request (config parameter, default 4) fails.

The failure is a failed request, not a crash. `fail_mode` picks how it fails, because Triton
2.51 counts the two differently in `/v2/models/flaky/stats` and `nv_inference_request_*`:
"response" (default) sends a `pb_utils.TritonError` response, which the client sees as an error
(HTTP 500) but Triton counts as a *success*; "raise" raises from `execute`, which Triton counts
as a failure (reason BACKEND) for every request of that execution.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.fail_every = int(params.get("fail_every", {}).get("string_value", "4"))
        self.raise_error = params.get("fail_mode", {}).get("string_value", "response") == "raise"
        self.count = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.count += 1
            if self.fail_every > 0 and self.count % self.fail_every == 0:
                message = f"flaky: deliberate failure of request {self.count}"
                if self.raise_error:
                    raise pb_utils.TritonModelException(message)
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
                continue
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
