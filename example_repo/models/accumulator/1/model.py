"""Running sum of INPUT0 per sequence: the state lives in the model instance, keyed by the
sequence's correlation ID (the CORRID control input), reset at START and dropped at END."""

import numpy as np
import triton_python_backend_utils as pb_utils


def _flag(request, name):
    return bool(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            corrid = int(pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy().flat[0])
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if _flag(request, "START"):
                self.sums[corrid] = 0
            # Wrapped to int32, as the output is (random inputs of other clients are large).
            total = (self.sums.get(corrid, 0) + int(x.sum()) + 2**31) % 2**32 - 2**31
            self.sums[corrid] = total
            if _flag(request, "END"):
                del self.sums[corrid]
            out = np.full(x.shape, total, dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
