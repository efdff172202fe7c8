"""A sequence model that checks its clients: per correlation ID it counts starts, ends and
requests, keeps the running sum of INPUT0 (OUTPUT0), and notes every request that breaks
the sequence protocol: one without START on an ID that is not open ("orphans"), a START on
an ID still open ("restarts"). A request whose INPUT0 is -1 answers with the ledger as JSON
in LEDGER and clears it (that request is not recorded)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _flag(request, name):
    return bool(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        self.ledger = {}
        self.open = {}  # correlation ID -> running sum

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            corrid = request.correlation_id()
            key = f"{type(corrid).__name__}:{corrid}"
            ledger = b""
            if int(x.flat[0]) == -1:
                ledger = json.dumps(self.ledger).encode()
                self.ledger = {}
                total = 0
            else:
                entry = self.ledger.setdefault(
                    key,
                    {"starts": 0, "ends": 0, "requests": 0, "sum": 0, "orphans": 0, "restarts": 0},
                )
                entry["requests"] += 1
                if _flag(request, "START"):
                    entry["starts"] += 1
                    if key in self.open:
                        entry["restarts"] += 1
                    self.open[key] = 0
                elif key not in self.open:
                    entry["orphans"] += 1
                    self.open[key] = 0
                total = self.open[key] + int(x.sum())
                self.open[key] = total
                entry["sum"] = total
                if _flag(request, "END"):
                    entry["ends"] += 1
                    del self.open[key]
            out = np.full(x.shape, total, dtype=np.int32)
            text = np.full(x.shape, ledger, dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", out), pb_utils.Tensor("LEDGER", text)]
                )
            )
        return responses
