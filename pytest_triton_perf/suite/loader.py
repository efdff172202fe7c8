"""Read a suite file into :class:`SuiteTest` objects, each the call of ``triton_perf`` a
Python test would make, or a :class:`SuiteError` listing every problem of the file with
its line and column.

The YAML is composed into nodes (which carry their position) and each node is checked
against the table of :mod:`.schema`; the marker's, the capacity search's and the
configuration search's own parsers check what they own, so a YAML test is refused for
exactly what the same Python test would be refused for, only earlier: at collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.capacity import SEARCH_KEYS, goodput_bounds
from pytest_triton_perf.errors import ArgumentError, ConfigError, SuiteError
from pytest_triton_perf.suite.kinds import Context, Fields, Record, hint, pairs
from pytest_triton_perf.suite.schema import (
    LOAD_KEYWORDS,
    NOT_KEYWORDS,
    document_record,
    test_record,
)

Call = Literal["measure", "capacity", "search"]
#: Markers a suite spells with keys of its own, or cannot express.
_NOT_MARKERS = {
    "sla": "write the bounds under the test's sla: key",
    "parametrize": "write one test per case (YAML anchors share the common keys)",
}
EXAMPLE = "tests:\n  - name: simple_p99\n    model: simple\n    sla: {p99_ms: 30}"


@dataclass(frozen=True)
class Marker:
    """A pytest marker of a test: ``pytest.mark.<name>(*args, **kwargs)``; ``where`` is the
    ``file:line:col`` it was written at."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class SuiteTest:
    """One test of a suite: ``triton_perf.<call>(model, **arguments)`` under ``sla``.

    ``sla`` holds the sla markers' keyword arguments, closest first (the test's own, then
    the defaults'), as a Python test's function and module markers; ``inline_inputs`` says
    that ``arguments["inputs"]`` holds values to be typed by the model's metadata.
    """

    name: str
    line: int
    call: Call
    model: str
    arguments: dict[str, Any]
    sla: tuple[dict[str, Any], ...] = ()
    markers: tuple[Marker, ...] = ()
    inline_inputs: bool = False


@dataclass(frozen=True)
class Suite:
    """A checked suite file."""

    path: Path
    tests: tuple[SuiteTest, ...]


def load_suite(path: Path, *, shown_as: str | None = None, text: str | None = None) -> Suite:
    """Read and check the suite at ``path`` (``text``: its content, when already read);
    messages name the file as ``shown_as`` (default: the path as given). Raises
    :class:`SuiteError` with every problem found."""
    source = shown_as or str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SuiteError(f"{source}: cannot read the suite: {e}") from None
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
            what = " ".join(x for x in (e.context, e.problem) if x)
            raise SuiteError(f"{where}: not valid YAML: {what}") from None
        except yaml.YAMLError as e:
            raise SuiteError(f"{source}: not valid YAML: {e}") from None
        if node is None:
            raise SuiteError(f"{source}: the suite is empty; it needs tests:, e.g.\n{EXAMPLE}")
        ctx = Context(source, loader)
        tests = _Checker(ctx, path.parent).document(node)
    finally:
        loader.dispose()
    if ctx.errors:
        raise SuiteError("\n".join(ctx.errors))
    return Suite(path, tuple(tests))


#: What the file keys of a test name.
_FILES = {"prompts": "JSONL file of prompts", "tokenizer": "tokenizer.json"}


class _Checker:
    """The checks of one file, with the context that collects its problems."""

    def __init__(self, ctx: Context, base: Path):
        self.ctx = ctx
        self.base = base

    def where(self, node: yaml.Node) -> str:
        mark = node.start_mark
        return f"{self.ctx.source}:{mark.line + 1}:{mark.column + 1}"

    def document(self, node: yaml.Node) -> list[SuiteTest]:
        ctx = self.ctx
        doc = document_record()
        if not isinstance(node, yaml.MappingNode):
            ctx.report(
                node,
                f"a suite is a mapping with tests: (and defaults:), e.g.\n{EXAMPLE}",
            )
            return []
        defaults: Fields | None = None
        entries: yaml.Node | None = None
        for key_node, value_node in pairs(node, ctx):
            key = ctx.value(key_node)
            if key == "defaults":
                ctx.test = "defaults"
                defaults = self._record(test_record(True), value_node, "defaults")
                ctx.test = ""
            elif key == "tests":
                entries = value_node
            else:
                ctx.report(
                    key_node,
                    f"unknown key {key!r} at the top of the suite.{hint(key, list(doc.by_key))}"
                    f" Accepted keys: {', '.join(doc.by_key)}.",
                )
        if entries is None:
            ctx.report(node, f"tests: is missing; a suite lists its tests, e.g.\n{EXAMPLE}")
            return []
        if not isinstance(entries, yaml.SequenceNode) or not entries.value:
            ctx.report(entries, "tests: a non-empty list of tests is accepted, e.g.\n" + EXAMPLE)
            return []
        out: list[SuiteTest] = []
        names: dict[str, str] = {}
        for i, entry in enumerate(entries.value):
            ctx.test = self._label(entry, i)
            checked = self._record(test_record(), entry, "a test")
            if checked is None:
                continue
            name = checked.get("name")
            if isinstance(name, str):
                if name in names:
                    ctx.report(
                        checked.value_nodes["name"],
                        f"name {name!r} is taken by the test at {names[name]}; test names "
                        f"are pytest ids and must differ.",
                    )
                names.setdefault(name, self.where(entry))
            test = self._test(checked, defaults or Fields(node), entry)
            if test is not None:
                out.append(test)
        ctx.test = ""
        return out

    def _record(self, record: Record, node: yaml.Node, what: str) -> Fields | None:
        """``node`` checked as ``record``; None (and the problem reported) unless a mapping."""
        if not isinstance(node, yaml.MappingNode):
            value = self.ctx.value(node)
            self.ctx.report(
                node, f"{what} is a mapping of keys (name, model, load, ...), not {value!r}."
            )
            return None
        return record.check(node, self.ctx, "")

    def _label(self, entry: yaml.Node, index: int) -> str:
        if isinstance(entry, yaml.MappingNode):
            for k, v in entry.value:
                named = isinstance(k, yaml.ScalarNode) and k.value == "name"
                if named and isinstance(v, yaml.ScalarNode) and v.value:
                    return str(v.value)
        return f"tests[{index}]"

    # -- one test ---------------------------------------------------------------------------

    def _test(self, own: Fields, defaults: Fields, entry: yaml.Node) -> SuiteTest | None:
        ctx = self.ctx
        before = len(ctx.errors)
        merged: dict[str, Any] = {}
        nodes: dict[str, yaml.Node] = {}
        for source in (defaults, own):
            for key, value in source.items():
                if key in ("sla", "regression", "markers"):
                    continue  # these add up, see below
                merged[key] = value
                nodes[key] = source.value_nodes[key]
        if "model" not in merged and "model" not in own.key_nodes:
            ctx.report(entry, "model is missing: name the model to measure, e.g. model: simple.")
        markers = [m for source in (own, defaults) for m in self._markers(source)]
        slas = [s for source in (own, defaults) if (s := self._sla(source))]
        self._check_sla(slas, own, defaults, entry)
        load: Mapping[str, Any] = merged.get("load") or {}
        load_nodes = getattr(merged.get("load"), "value_nodes", {})
        call = self._check_load(load, load_nodes, nodes.get("load", entry), slas, merged, nodes)
        inputs, inline = self._inputs(merged.get("inputs"), nodes.get("inputs"))
        for key in ("prompts", "tokenizer"):  # files, relative to the suite
            if isinstance(merged.get(key), str):
                path = self.base / merged[key]
                if not path.is_file():
                    ctx.report(
                        nodes[key],
                        f"{key}: {merged[key]!r} is not accepted: no such file in {self.base} "
                        f"(accepted: the path of a {_FILES[key]} relative to this suite).",
                    )
                merged[key] = str(path)
        if len(ctx.errors) > before or "name" not in own or "model" not in merged:
            return None
        arguments = {
            k: v for k, v in merged.items() if k not in NOT_KEYWORDS and k not in ("inputs",)
        }
        if "version" in arguments:
            arguments["version"] = str(arguments["version"])
        if inputs is not None:
            arguments["inputs"] = inputs
        arguments.update({k: load[k] for k in LOAD_KEYWORDS if k in load})
        if call == "capacity" and isinstance(load.get("capacity"), Mapping):
            arguments.update(load["capacity"])
        elif call == "search":
            search = dict(load["search"])
            if "model_repository" in search:
                search["model_repository"] = str(self.base / search["model_repository"])
            arguments.update(search)
        return SuiteTest(
            name=own["name"],
            line=entry.start_mark.line + 1,
            call=call,
            model=str(merged["model"]),
            arguments=arguments,
            sla=tuple(slas),
            markers=tuple(markers),
            inline_inputs=inline,
        )

    def _sla(self, source: Fields) -> dict[str, Any]:
        """The sla marker's arguments of one record: its sla: and regression: keys."""
        out = dict(source.get("sla") or {})
        if "regression" in source:
            if "regression" in out:
                self.ctx.report(
                    source.key_nodes["regression"],
                    "regression is given twice, in sla: and beside it; keep one.",
                )
            out["regression"] = source["regression"]
        return out

    def _check_sla(
        self, slas: list[dict[str, Any]], own: Fields, defaults: Fields, entry: yaml.Node
    ) -> None:
        """The merged markers, as the plugin will merge them (a min_capacity needs a latency
        bound somewhere)."""
        try:
            sla.merge_markers(self.ctx.test, [((), s) for s in slas])
        except ConfigError as e:
            node = own.value_nodes.get("sla") or defaults.value_nodes.get("sla") or entry
            self.ctx.report(node, str(e).removeprefix(f"{self.ctx.test}: "))

    def _markers(self, source: Fields) -> list[Marker]:
        out = []
        node = source.value_nodes.get("markers")
        for spec, item in zip(
            source.get("markers") or [], getattr(node, "value", []), strict=False
        ):
            name, value = (spec, None) if isinstance(spec, str) else next(iter(spec.items()))
            if name in _NOT_MARKERS:
                self.ctx.report(
                    item, f"markers: {name!r} is not accepted here: {_NOT_MARKERS[name]}."
                )
                continue
            if isinstance(value, Mapping):
                marker = Marker(name, (), dict(value), self.where(item))
            elif isinstance(value, list):
                marker = Marker(name, tuple(value), {}, self.where(item))
            elif value is None:
                marker = Marker(name, (), {}, self.where(item))
            else:
                marker = Marker(name, (value,), {}, self.where(item))
            out.append(marker)
        return out

    def _check_load(
        self,
        load: Mapping[str, Any],
        load_nodes: Mapping[str, yaml.Node],
        load_node: yaml.Node,
        slas: list[dict[str, Any]],
        merged: Mapping[str, Any],
        nodes: Mapping[str, yaml.Node],
    ) -> Call:
        """What the load asks for, and the combinations that cannot work."""
        ctx = self.ctx

        def at(key: str) -> yaml.Node:
            return load_nodes.get(key, load_node)

        capacity = load.get("capacity")
        call: Call = "measure"
        if capacity is not None and capacity is not False:
            call = "capacity"
        if "search" in load:
            if call == "capacity":
                ctx.report(
                    at("search"),
                    "load: capacity and search exclude each other; a "
                    "search with objective: capacity finds each candidate's capacity.",
                )
            call = "search"
        if "concurrency" in load and "request_rate" in load:
            ctx.report(
                at("request_rate"),
                "load: concurrency (closed loop) and request_rate "
                "(open loop) exclude each other; with request_rate, max_in_flight bounds "
                "the requests in flight.",
            )
        over = (load.get("capacity") if isinstance(capacity, Mapping) else None) or {}
        search = load.get("search") or {}
        if call == "capacity":
            for key in ("concurrency", "request_rate"):
                if key in load:
                    ctx.report(
                        at(key),
                        f"load: capacity searches the load itself: remove {key} "
                        f"(capacity: {{over: {key}, start: N}} sets the axis and the first "
                        f"level).",
                    )
        open_loop = (
            "request_rate" in load
            or over.get("over") == "request_rate"
            or search.get("over") == "request_rate"
        )
        for key, given in (("capacity", over), ("search", search)):
            axis = given.get("over") or ("request_rate" if open_loop else "concurrency")
            if given.get("method") == "ramp" and axis != "request_rate":
                ctx.report(
                    at(key),
                    f"load: {key}: method ramp raises an open loop's rate: give "
                    f"over: request_rate (over concurrency, method: search).",
                )
        for key in ("arrival", "max_in_flight"):
            if key in load and not open_loop:
                ctx.report(
                    at(key),
                    f"load: {key} applies to an open loop: give request_rate "
                    f"(or capacity: {{over: request_rate}}).",
                )
        bounds: dict[str, Any] = {}
        for s in slas:
            for key in s:
                if key in metrics.MARKER_KEYS:
                    bounds.setdefault(metrics.MARKER_KEYS[key], s[key])
        latency = {k for k, b in sla.BOUNDS.items() if b.unit == "ms"}
        if call == "capacity":
            extra = {
                metrics.MARKER_KEYS.get(k, k): v for k, v in (over.get("bounds") or {}).items()
            }
            limits = {**bounds, **extra}
            try:
                limits = goodput_bounds(
                    limits, attainment=over.get("attainment"), slo=merged.get("slo")
                )
            except ArgumentError as e:  # an attainment without SLOs to attain
                ctx.report(at("capacity"), f"load: {e}.")
            else:
                if not (set(SEARCH_KEYS) & set(limits)):
                    ctx.report(
                        at("capacity"),
                        "load: capacity is the load sustained while latency "
                        "bounds hold: give one in sla: (e.g. sla: {p99_ms: 100}) or "
                        "capacity: {bounds: {p99_ms: 100}} (or, by goodput, capacity: "
                        "{attainment: 0.9} with slo:).",
                    )
        elif "min_capacity" in bounds:
            ctx.report(
                load_node,
                "sla: min_capacity checks a capacity search: add load: {capacity: true} "
                "(or remove min_capacity).",
            )
        if call == "search":
            objective = search.get("objective", "capacity")
            given = {metrics.MARKER_KEYS.get(k, k) for k in search.get("sla") or bounds}
            if objective == "capacity" and not (latency & given):
                ctx.report(
                    at("search"),
                    "load: search with objective capacity (the default) "
                    "needs a latency bound: give one in sla: (e.g. sla: {p99_ms: 100}), or "
                    "choose objective: throughput.",
                )
            if "version" in merged:
                ctx.report(
                    nodes["version"],
                    "version does not apply to a search: its "
                    "candidates are copies of the model's files with edited "
                    "configurations.",
                )
        return call

    def _inputs(self, value: Any, node: yaml.Node | None) -> tuple[Any, bool]:
        """Input files resolved against the suite's directory (and checked to exist); whether
        some input set holds values."""
        if value is None or node is None:
            return None, False
        sets = value if isinstance(value, list) else [value]
        set_nodes = node.value if isinstance(value, list) else [node]
        out = []
        inline = False
        for item, item_node in zip(sets, set_nodes, strict=True):
            if isinstance(item, str) and item not in ("random", "zero"):
                path = self.base / item
                if not path.is_file():
                    self.ctx.report(
                        item_node,
                        f"inputs: {item!r} is not accepted: no such file in {self.base} "
                        f"(accepted: 'random', 'zero', the path of a perf_analyzer JSON "
                        f"input-data file relative to this suite, input name -> values, or "
                        f"a list of these).",
                    )
                item = str(path)
            elif isinstance(item, Mapping):
                inline = True
            out.append(item)
        return (out if isinstance(value, list) else out[0]), inline
