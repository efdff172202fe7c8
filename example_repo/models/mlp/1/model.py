"""A 64 -> 128 -> 10 MLP (softmax output) run by onnxruntime: a model that does real math.

Dynamic batching hands several requests to one ``execute``; they are concatenated into a
single onnxruntime call, which is the point of batching.
"""

import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        # One thread: the server, the stub and the load generator share few cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        (probs,) = self.session.run(["OUTPUT0"], {"INPUT0": np.concatenate(inputs)})
        responses = []
        start = 0
        for x in inputs:
            out = probs[start : start + len(x)]
            start += len(x)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
