"""The package's layering, read from its imports.

Dependencies run one way: options -> settings -> server -> load -> measure -> verdicts ->
report, under the plugin, the fixtures and the CLI. Every import counts, also one inside a
function or under ``TYPE_CHECKING``: a function-level import hides a cycle, it does not
remove it. CONTRIBUTING.md's "How the layers depend" draws the same map. The size of modules is
held here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_triton_perf"
NAME = "pytest_triton_perf"

#: Each module's layer by the longest matching prefix; a module imports only its own layer
#: or a lower one.
LAYERS: dict[str, int] = {
    # 0: foundation, imported by everyone: errors, the metric catalogue, pure helpers.
    "errors": 0,
    "metrics": 0,
    "numbers": 0,
    "files": 0,
    "urls": 0,
    # the records every layer passes to the reports: verdicts and their JSON form.
    "verdicts": 0,
    # 1-2: the option table and the settings built from it.
    "options": 1,
    "settings": 2,
    "server": 3,
    "load": 4,
    "measure": 5,
    # 6: verdicts: SLA checks, baseline comparisons and the records they produce.
    "sla": 6,
    "gate": 6,
    "baseline": 6,
    # capacity and configuration searches: measurements under the SLA's bounds.
    "capacity": 6,
    "search": 6,
    # models together: co-location groups and memory footprints.
    "colocation": 6,
    "footprint": 6,
    "report": 7,
    # 8: the top: pytest wiring, the CLI, the package's public face.
    "fixtures": 8,
    "server_fixtures": 8,
    "plugin": 8,
    "session_plugins": 8,
    "cli": 8,
    # YAML suites: collected by the plugin, run through the fixtures.
    "suite": 8,
    "__init__": 8,
    "__main__": 8,
}
LAYER_NAMES = {
    0: "foundation",
    1: "options",
    2: "settings",
    3: "server",
    4: "load",
    5: "measure",
    6: "verdicts",
    7: "report",
    8: "top",
}
#: The only modules that may import pytest: everything else runs without it.
PYTEST_IMPORTERS = {"plugin", "session_plugins", "fixtures", "server_fixtures", "suite.items"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(
        f"module {NAME}.{module} has no layer: add it (or its package) to LAYERS in "
        f"tests/test_layers.py and to the map in CONTRIBUTING.md (How the layers depend)"
    )


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every module of the package (and ``pytest``/``_pytest``) that ``path`` imports,
    anywhere in the file, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                target = ".".join([NAME, *base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == NAME or target.startswith(NAME + "."):
                # `from pkg.sub import name` may import a submodule `name`.
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    out.append((sub if _is_module(sub) else target, node.lineno))
            else:
                out.append((target, node.lineno))
    return out


def _is_module(dotted: str) -> bool:
    rel = dotted.removeprefix(NAME).lstrip(".")
    if not rel:
        return True
    return rel in _modules()


def _internal(target: str) -> str | None:
    if target == NAME:
        return "__init__"
    if target.startswith(NAME + "."):
        return target.removeprefix(NAME + ".")
    return None


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_run_down_the_layers(module: str) -> None:
    path = _modules()[module]
    own = _layer(module)
    wrong = []
    for target, line in _imports(path, module):
        inner = _internal(target)
        if inner is None or inner == module:
            continue
        layer = _layer(inner)
        if layer > own:
            wrong.append(
                f"{path.name}:{line} imports {target} ({LAYER_NAMES[layer]}, layer {layer}) "
                f"from layer {own} ({LAYER_NAMES[own]})"
            )
    assert not wrong, "\n".join(wrong)


def test_load_does_not_import_measure() -> None:
    for module, path in _modules().items():
        if module.split(".")[0] != "load":
            continue
        for target, line in _imports(path, module):
            inner = _internal(target) or ""
            assert inner.split(".")[0] != "measure", f"{path}:{line} imports {target}"


#: The verdicts layer's rooms. Records: what every part passes along. Statistics: pure
#: functions of numbers (tests, intervals, stopping rules). Store: baselines on disk.
#: Orchestration: the gate pipeline and the capabilities' subjects, the only part that
#: drives the measurement engine.
RECORDS = {"verdicts", "gate.context"}
STATISTICS = {"baseline.compare", "baseline.paired", "baseline.sequential", "measure.stats"}
STORE = {"baseline.store", "baseline.key", "baseline.shards"}
#: Modules that may import the engine (``measure.engine``): orchestration, the engine's own
#: package, and the top (fixtures, CLI, YAML schema, the package root).
ENGINE_USERS = {
    "gate",
    "baseline.ab",
    "capacity",
    "colocation",
    "footprint",
    "search",
    "measure",
    "fixtures",
    "cli",
    "suite",
    "__init__",
}
#: What no record, statistic or store module may import: anything that serves, loads or
#: measures.
DRIVERS = ("server", "load", "measure.engine", "gate.pipeline", "gate.subjects")


def _top_match(module: str, names: set[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:n]) in names for n in range(1, len(parts) + 1))


@pytest.mark.parametrize("module", sorted(RECORDS | STATISTICS | STORE))
def test_records_statistics_and_store_drive_nothing(module: str) -> None:
    path = _modules()[module]
    for target, line in _imports(path, module):
        inner = _internal(target) or ""
        assert not any(inner == d or inner.startswith(d + ".") for d in DRIVERS), (
            f"{path.name}:{line} imports {target}: records, statistics and the store are "
            f"pure (no server, load or engine)"
        )


def test_only_orchestration_drives_the_engine() -> None:
    wrong = []
    for module, path in _modules().items():
        if _top_match(module, ENGINE_USERS):
            continue
        for target, line in _imports(path, module):
            inner = _internal(target) or ""
            if inner.startswith("measure.engine"):
                wrong.append(f"{path.name}:{line} imports {target}")
    assert not wrong, "only orchestration drives the engine:\n" + "\n".join(wrong)


def test_nothing_below_report_imports_report() -> None:
    for module, path in _modules().items():
        if _layer(module) >= LAYERS["report"]:
            continue
        for target, line in _imports(path, module):
            inner = _internal(target) or ""
            assert inner.split(".")[0] != "report", f"{path}:{line} imports {target}"


def test_only_plugin_and_fixtures_import_pytest() -> None:
    for module, path in _modules().items():
        if module in PYTEST_IMPORTERS:
            continue
        for target, line in _imports(path, module):
            top = target.split(".")[0]
            assert top not in ("pytest", "_pytest"), f"{path}:{line} imports {target}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over module-level and function-level imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, _ in _imports(path, module):
            inner = _internal(target)
            if inner is not None and inner in modules and inner != module:
                graph[module].add(inner)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_function_level_import(tmp_path: Path) -> None:
    """The rule would be empty if a function-level import went unseen."""
    source = tmp_path / "x.py"
    source.write_text(
        "def f():\n    from pytest_triton_perf.report import text\n"
        "    from ..measure import engine\n",
        encoding="utf-8",
    )
    found = {t for t, _ in _imports(source, "load.x")}
    assert "pytest_triton_perf.report.text" in found
    assert "pytest_triton_perf.measure.engine" in found


#: The most lines a module may have: past it, a module holds more than one thing.
MAX_LINES = 600
#: Modules being split on other branches now: this set must be empty once they are merged.
PENDING: set[str] = set()


def test_no_module_over_the_line_limit() -> None:
    """No module of the package is over :data:`MAX_LINES` lines; the offenders listed."""
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in PENDING:
            long[rel] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them along a seam): " + ", ".join(
        f"{rel} ({n})" for rel, n in long.items()
    )
