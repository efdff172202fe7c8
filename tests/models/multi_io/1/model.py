"""Two inputs, two outputs, no batch dimension: IDS_TIMES_2 = 2 * IDS, SCALES_SUM = sum(SCALES)."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "IDS").as_numpy()
            scales = pb_utils.get_input_tensor_by_name(request, "SCALES").as_numpy()
            outputs = [
                pb_utils.Tensor("IDS_TIMES_2", ids * 2),
                pb_utils.Tensor("SCALES_SUM", scales.sum(keepdims=True, dtype=scales.dtype)),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
