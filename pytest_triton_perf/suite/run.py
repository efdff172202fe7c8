"""Run one test of a suite: the call of ``triton_perf`` a Python test would make, so the
fixture records, gates, compares and reports it exactly as it does a Python test's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.errors import MeasurementError
from pytest_triton_perf.load.input_data import input_set
from pytest_triton_perf.load.model_info import fetch_model_spec
from pytest_triton_perf.suite.loader import SuiteTest

if TYPE_CHECKING:
    from pytest_triton_perf.fixtures import TritonPerf


def run_test(triton_perf: TritonPerf, test: SuiteTest) -> Any:
    """``triton_perf.measure``, ``.capacity`` or ``.search`` with the test's arguments;
    returns what the call returns."""
    arguments = dict(test.arguments)
    if test.inline_inputs:
        arguments["inputs"] = typed_inputs(triton_perf, test)
    call = getattr(triton_perf, test.call)
    return call(test.model, **arguments)


def typed_inputs(triton_perf: TritonPerf, test: SuiteTest) -> Any:
    """The test's input sets with each inline one (input name -> values) made into numpy
    arrays of the model's datatypes, as perf_analyzer's input-data files are."""
    server = triton_perf.server
    server.check_alive()
    version = test.arguments.get("version")
    try:
        spec = fetch_model_spec(server.http_url, test.model, version)
    except OSError as e:
        server.check_alive()
        raise MeasurementError(
            f"cannot read model '{test.model}' metadata from {server.http_url}: {e}"
        ) from e
    shapes = test.arguments.get("shapes")
    given = test.arguments["inputs"]
    sets = given if isinstance(given, list) else [given]
    typed = [
        input_set(s, spec, shapes, where=f"{test.name}: inputs") if isinstance(s, Mapping) else s
        for s in sets
    ]
    return typed if isinstance(given, list) else typed[0]
