"""Sends two responses per request and no final flag: a broken decoupled model. A request
is released (final flag) only once cancelled, i.e. after its client gave up on it."""

import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.held = []
        self.lock = threading.Lock()
        self.running = True
        self.watcher = threading.Thread(target=self.release_cancelled, daemon=True)
        self.watcher.start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            for k in range(2):
                token = np.array([f"tok{k}".encode()], dtype=np.object_)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TOKEN", token)]))
            with self.lock:
                self.held.append(sender)
        return None

    def release_cancelled(self):
        while self.running:
            time.sleep(0.05)
            with self.lock:
                cancelled = [s for s in self.held if s.is_cancelled()]
                self.held = [s for s in self.held if s not in cancelled]
            for sender in cancelled:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        self.running = False
