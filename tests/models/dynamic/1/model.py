"""Variable-length input: OUTPUT0 echoes INPUT0 [batch, n], SUM is its sum per row [batch, 1]."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            total = x.sum(axis=1, keepdims=True, dtype=x.dtype)
            outputs = [pb_utils.Tensor("OUTPUT0", x), pb_utils.Tensor("SUM", total)]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
