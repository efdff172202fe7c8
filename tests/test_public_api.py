"""The public API: ``import pytest_triton_perf`` gives every name a user writes, documented,
without pulling in the heavy optional dependencies; every exception a user can meet lives in
``errors.py`` and is exported; the examples of the README and the documentation import from
the package root only."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_triton_perf
from pytest_triton_perf import errors
from pytest_triton_perf.errors import TritonPerfError
from tests.docs_pages import pages

ROOT = Path(__file__).resolve().parents[1]
NAME = "pytest_triton_perf"
PUBLIC = [n for n in pytest_triton_perf.__all__ if not n.startswith("_")]


def test_the_issues_names_import_from_the_root() -> None:
    from pytest_triton_perf import Candidate, PerfResult, SearchResult, TritonPerf

    assert TritonPerf.__module__ == "pytest_triton_perf.fixtures"
    assert SearchResult.__name__ == "SearchResult"
    assert Candidate.__name__ == "Candidate"
    assert PerfResult.__name__ == "PerfResult"


def test_all_is_sorted_without_duplicates() -> None:
    names = pytest_triton_perf.__all__
    assert names == sorted(set(names)), "keep __all__ sorted, each name once"


@pytest.mark.parametrize("name", pytest_triton_perf.__all__)
def test_every_exported_name_imports_from_the_root(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from pytest_triton_perf import {name}", namespace)
    assert namespace[name] is getattr(pytest_triton_perf, name)
    assert name in dir(pytest_triton_perf)


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pytest_triton_perf import *", namespace)
    assert set(pytest_triton_perf.__all__) <= set(namespace)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        pytest_triton_perf.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("name", PUBLIC)
def test_every_exported_class_and_function_has_a_docstring(name: str) -> None:
    obj = getattr(pytest_triton_perf, name)
    assert inspect.isclass(obj) or inspect.isfunction(obj), f"{name}: {obj!r}"
    doc = obj.__doc__ or ""
    # A dataclass without a docstring gets its signature as one: "Name(field: type, ...)".
    generated = inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")
    assert doc.strip() and not generated, f"{name} has no docstring of its own"


def _package_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(pytest_triton_perf.__path__, "pytest_triton_perf.")
    )


def _exceptions_of_the_package() -> set[type[BaseException]]:
    for module in _package_modules():
        importlib.import_module(module)
    found: set[type[BaseException]] = set()
    todo: list[type[BaseException]] = [TritonPerfError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] == "pytest_triton_perf" and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_the_walk_sees_the_whole_package() -> None:
    """The rule below would be empty if the walk missed subpackages."""
    modules = _package_modules()
    assert {"pytest_triton_perf.cli", "pytest_triton_perf.report.plots"} <= set(modules)
    assert "pytest_triton_perf.suite.loader" in modules


def test_every_user_facing_exception_is_defined_in_errors_and_exported() -> None:
    """A new subclass of TritonPerfError defined in another module fails here: define it in
    errors.py (one hierarchy) and export it from the package root."""
    found = _exceptions_of_the_package()
    assert len(found) >= 15, sorted(c.__name__ for c in found)
    elsewhere = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in found if c.__module__ != errors.__name__
    )
    assert not elsewhere, f"define these in pytest_triton_perf/errors.py: {elsewhere}"
    missing = sorted(
        c.__name__
        for c in found
        if c.__name__ not in pytest_triton_perf.__all__
        or getattr(pytest_triton_perf, c.__name__, None) is not c
    )
    assert not missing, f"export these from pytest_triton_perf/__init__.py: {missing}"


def test_errors_py_defines_only_the_hierarchy_and_imports_nothing_of_the_package() -> None:
    """Every module imports errors.py; it must import none of them back."""
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass)]
    assert classes and all(issubclass(c, TritonPerfError) for c in classes)


@pytest.mark.parametrize(
    ("old_home", "name"),
    [
        ("pytest_triton_perf.baseline.store", "BaselineError"),
        ("pytest_triton_perf.report.json_report", "ResultsFileError"),
        ("pytest_triton_perf.report.registry", "ReportError"),
        ("pytest_triton_perf.report.plots", "PlotError"),
        ("pytest_triton_perf.suite.loader", "SuiteError"),
        ("pytest_triton_perf.cli", "CliError"),
        ("pytest_triton_perf.server.base", "StaleServerError"),
    ],
)
def test_moved_exceptions_are_still_importable_from_their_old_modules(
    old_home: str, name: str
) -> None:
    assert getattr(importlib.import_module(old_home), name) is getattr(errors, name)


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return set(out.split())


HEAVY = {"docker", "matplotlib", "pynvml"}


def test_importing_the_package_imports_neither_heavy_dependencies_nor_pytest() -> None:
    loaded = _imported_after("import pytest_triton_perf")
    assert "pytest_triton_perf" in loaded
    assert not loaded & (HEAVY | {"pytest", "_pytest"})


def test_every_exported_name_resolves_without_the_heavy_dependencies() -> None:
    loaded = _imported_after(
        "import pytest_triton_perf as p\nfor n in p.__all__:\n    getattr(p, n)"
    )
    assert "pytest" in loaded  # TritonPerf was imported: the probe ran
    assert not loaded & HEAVY


#: An import of the package in a code block of the docs: its module and the names it imports.
_IMPORT = re.compile(
    r"^\s*(?:from\s+(?P<module>pytest_triton_perf[\w.]*)\s+import\s+(?P<names>[^#\n]+)"
    r"|import\s+(?P<plain>pytest_triton_perf[\w.]*))",
    re.M,
)


def test_documented_examples_import_only_from_the_package_root() -> None:
    """Code blocks of the README and the documentation's pages need not be whole programs
    (fragments do not parse): read import lines."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in pages())
    blocks = re.findall(r"```[\w-]*\n(.*?)```", text, re.S)
    found = [m for block in blocks for m in _IMPORT.finditer(block)]
    deep = [m.group(0).strip() for m in found if (m["module"] or m["plain"]) != NAME]
    assert not deep, f"documented examples import submodules (import from {NAME}): {deep}"
    names = {
        n.strip().split(" as ")[0]
        for m in found
        if m["names"]
        for n in m["names"].strip("() \\").split(",")
        if n.strip()
    }
    assert names, "the documentation shows at least one import from the package root"
    assert names <= set(pytest_triton_perf.__all__), names - set(pytest_triton_perf.__all__)
