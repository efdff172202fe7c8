"""``triton_perf.measure`` raises the package's errors: ``pytest.raises`` catches them, and
a test that does not is reported in one line naming its call, not a traceback through the
plugin. Inner pytest runs against the suite's real embedded server."""

from __future__ import annotations

import pytest

from pytest_triton_perf.server.local import LocalTritonServer
from tests.test_plugin import remote_args

HELPER = '    return triton_perf.measure("simple", batch_size=99)'
CONFTEST = f"""
def measure_too_big(triton_perf):
{HELPER}
"""
UNCAUGHT = '    triton_perf.measure("simple", batch_size=99)'

TESTS = """
import pytest
from conftest import measure_too_big
from pytest_triton_perf import ArgumentError, InputSpecError, ModelNotReadyError


def test_caught_as_input_spec_error(triton_perf):
    with pytest.raises(InputSpecError, match="accepts batch_size 1..64"):
        triton_perf.measure("simple", batch_size=99)


def test_caught_as_value_error(triton_perf):
    with pytest.raises(ValueError, match="got batch_size=99"):
        triton_perf.measure("simple", batch_size=99)


def test_bad_window_is_a_value_error(triton_perf):
    with pytest.raises(ArgumentError, match="window_s must be a number of seconds > 0, got 0"):
        triton_perf.measure("simple", window_s=0)


def test_windows_of_the_wrong_type_are_a_value_error(triton_perf):
    with pytest.raises(ArgumentError, match="windows must be an integer >= 1, got '3'"):
        triton_perf.measure("simple", windows="3")


def test_missing_model_is_caught(triton_perf):
    with pytest.raises(ModelNotReadyError):
        triton_perf.measure("no_such_model")


def test_uncaught(triton_perf):
    triton_perf.measure("simple", batch_size=99)


def test_uncaught_through_a_helper(triton_perf):
    measure_too_big(triton_perf)
"""


def line_of(text: str, code: str) -> int:
    """Line number of ``code`` in a file written from ``text`` (pytester strips the text)."""
    return text.strip().splitlines().index(code) + 1


REFUSED = (
    "InputSpecError: model 'simple' accepts batch_size 1..64 (max_batch_size); got batch_size=99"
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_refused=TESTS)
    return pytester


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_errors_are_caught_or_reported_in_one_line(
    project: pytest.Pytester, server: LocalTritonServer, xdist: list[str]
) -> None:
    result = project.runpytest_subprocess(*remote_args(server), *xdist)
    result.assert_outcomes(passed=5, failed=2)
    # xdist reports the tests in the order they finish, each under its worker's line.
    for test, line in (
        ("test_uncaught", f"test_refused.py:{line_of(TESTS, UNCAUGHT)}: {REFUSED}"),
        ("test_uncaught_through_a_helper", f"conftest.py:{line_of(CONFTEST, HELPER)}: {REFUSED}"),
    ):
        result.stdout.fnmatch_lines([f"*_ {test} _*", line])
    output = result.stdout.str() + result.stderr.str()
    assert "pytest_triton_perf/" not in output
    assert "Traceback" not in output


def test_long_traceback_on_request(project: pytest.Pytester, server: LocalTritonServer) -> None:
    result = project.runpytest_subprocess(*remote_args(server), "--tb=long", "-k", "test_uncaught")
    result.assert_outcomes(failed=2, deselected=5)
    result.stdout.fnmatch_lines(["*pytest_triton_perf/load/model_spec.py:*: InputSpecError"])
