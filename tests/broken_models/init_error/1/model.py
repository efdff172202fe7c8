"""Fails to load: initialize() raises RuntimeError with a fixed message for tests to match."""


class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("deliberate init failure for tests")

    def execute(self, requests):
        raise AssertionError("unreachable: initialize always fails")
