"""The pytest side of YAML suites: a file collector and one item per test.

Each item is a :class:`pytest.Function` whose function takes the ``triton_perf`` fixture and
carries the test's markers (its ``sla``, then the defaults' ``sla``, then ``markers:``), so
fixtures, ``-k``, ``-m``, xdist, JUnit, baselines and reports treat it as they treat a
Python test; only its location is the YAML file and line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_triton_perf.errors import SuiteError
from pytest_triton_perf.suite.loader import SuiteTest, load_suite
from pytest_triton_perf.suite.run import run_test

if TYPE_CHECKING:
    from pytest_triton_perf.fixtures import TritonPerf


def test_function(test: SuiteTest) -> Callable[..., None]:
    """The test's function: takes ``triton_perf`` and makes the test's call, with the
    test's markers applied as decorators would."""

    def triton_perf_suite_test(triton_perf: TritonPerf) -> None:
        run_test(triton_perf, test)

    triton_perf_suite_test.__doc__ = f"{test.name}: triton_perf.{test.call}({test.model!r}, ...)"
    func: Any = triton_perf_suite_test
    for kwargs in test.sla:  # closest first: the first sla marker wins per key
        func = pytest.mark.sla(**kwargs)(func)
    return func


class SuiteFile(pytest.File):
    """A ``triton-perf*.yaml`` file: checked whole before any of its tests runs; a problem
    is a collection error that lists every problem with file, line and column."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            suite = load_suite(self.path, shown_as=self._shown_path())
        except SuiteError as e:
            raise self.CollectError(f"invalid triton-perf suite:\n{e}") from None
        problems = []
        made = []
        for test in suite.tests:
            func = test_function(test)
            for marker in test.markers:
                try:
                    func = getattr(pytest.mark, marker.name)(*marker.args, **marker.kwargs)(func)
                except pytest.fail.Exception as e:  # --strict-markers: not registered
                    problems.append(f"{marker.where}: {test.name}: markers: {e.msg}")
            made.append((test, func))
        if problems:
            raise self.CollectError("invalid triton-perf suite:\n" + "\n".join(problems))
        for test, func in made:
            yield SuiteItem.from_parent(self, name=test.name, callobj=func, suite_test=test)

    def _shown_path(self) -> str:
        """The path as the user can open it: relative to the directory pytest runs in."""
        here = self.config.invocation_params.dir
        try:
            return os.path.relpath(self.path, here)
        except ValueError:  # another drive (Windows)
            return str(self.path)


class SuiteItem(pytest.Function):
    """One test of a suite: a :class:`pytest.Function` located at its YAML entry."""

    def __init__(self, *, suite_test: SuiteTest, **kwargs: Any):
        self.suite_test = suite_test
        super().__init__(**kwargs)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """The YAML file and the line of the test's entry (0-based, as pytest counts)."""
        return self.path, self.suite_test.line - 1, self.name
