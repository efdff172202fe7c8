"""MkDocs hook: the documentation's reference tables, made from the code's own tables.

A page asks for a table with a placeholder, an HTML comment the hook replaces before the
Markdown is converted:

``<!-- triton-perf: options -->``
    every option of the option table (``pytest_triton_perf.options.OPTIONS``); with flags
    after the name (``<!-- triton-perf: options --triton-perf-json --triton-perf-csv -->``)
    only those, in that order.
``<!-- triton-perf: sla-keys -->``
    the ``sla`` marker's keys, from the metric catalogue (``pytest_triton_perf.metrics``).
``<!-- triton-perf: gate-defaults -->``
    the metrics baseline comparisons gate by default, with their minimum effects and floors.
``<!-- triton-perf: capacity-bounds -->``
    the SLA keys that limit a capacity search, inline.
``<!-- triton-perf: measure-keywords -->``
    the keywords of ``triton_perf.measure()`` with their defaults and documentation
    (``pytest_triton_perf.measure.options``).
``<!-- triton-perf: yaml-keys RECORD -->``
    the keys of a YAML suite's record (``suite``, ``test``, ``load``, ``capacity``,
    ``search``, ``input``) from the suite schema (``pytest_triton_perf.suite.schema``).
``<!-- triton-perf: api -->``
    the API reference: one mkdocstrings block per name of ``pytest_triton_perf.__all__``.

So each table has one source, the code, and no committed page can go stale. An unknown
placeholder, or a flag that is no option, fails the build. ``tests/test_docs.py`` builds the
site strictly and reads these functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

PLACEHOLDER = re.compile(r"<!-- triton-perf: (?P<what>[a-z-]+)(?P<args>(?: [^ >]+)*) -->")


def _cell(text: str) -> str:
    """Text for a table cell: no line breaks, pipes escaped outside code spans (inside one,
    Python-Markdown's tables keep a pipe as it is, and an escape would show)."""
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    return "".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def option_anchor(flag: str) -> str:
    """The anchor of an option's row in the options reference: the flag without dashes
    in front (``triton-perf-window-s``)."""
    return flag.lstrip("-")


def options_table(flags: Sequence[str] = ()) -> str:
    """The options (all, or those of ``flags`` in that order): flag, ini twin, default,
    what it does. A switch has no ini twin and says so."""
    from pytest_triton_perf.options import OPTIONS

    by_flag = {opt.flag: opt for opt in OPTIONS}
    unknown = [f for f in flags if f not in by_flag]
    if unknown:
        raise ValueError(f"not in the option table: {', '.join(unknown)}")
    chosen = [by_flag[f] for f in flags] if flags else list(OPTIONS)
    rows = []
    for opt in chosen:
        names = f"`{opt.flag}`" if opt.switch else f"`{opt.flag}={opt.metavar}`"
        if opt.alias:
            names += f", `{opt.alias}={opt.metavar}`"
        anchor = f'<a id="{option_anchor(opt.flag)}"></a>'
        ini = "none (a switch: put it in `addopts`)" if opt.switch else f"`{opt.ini}`"
        rows.append([anchor + names, ini, f"`{opt.shown_default}`", opt.text])
    return _table(["option", "ini key", "default", "what it does"], rows)


def sla_table() -> str:
    """The ``sla`` marker's keys: key, bound, unit and meaning, Model Analyzer's name."""
    from pytest_triton_perf import metrics

    rows = [
        [
            f"`{key}`",
            "upper" if m.upper else "lower",
            m.help,
            ", ".join(f"`{a}`" for a in m.aliases),
        ]
        for key, m in metrics.BY_SLA_KEY.items()
    ]
    return _table(["key", "bound", "unit", "Model Analyzer's name"], rows)


def gate_defaults_table() -> str:
    """The metrics compared by default: name in ``regression=`` and ``--triton-perf-min-effect``,
    minimum effect, floor, what yields it."""
    from pytest_triton_perf import metrics

    rows = []
    for m in metrics.GATED:
        assert m.gate is not None
        names = ", ".join(f"`{n}`" for n in dict.fromkeys((m.short, m.name, *m.aliases)))
        if m.counts:
            effect = f"{m.gate.min_effect * 100:g} percentage points"
        else:
            effect = f"{m.gate.min_effect * 100:g}%"
        floor = f"{m.gate.floor:g} {m.unit}" if m.gate.floor else "none"
        if m.search_only:
            only = "a capacity search"
        elif m.streaming_only:
            only = "a streaming model"
        elif m.colocation_only:
            only = "models measured together"
        else:
            only = "every measurement"
        rows.append([names, effect, floor, only])
    return _table(["metric (names accepted)", "minimum effect", "floor", "measured by"], rows)


def capacity_bounds() -> str:
    """The SLA keys that limit a capacity search, as an inline list."""
    from pytest_triton_perf.capacity import LIMITING_KEYS

    return ", ".join(f"`{k}`" for k in LIMITING_KEYS)


def _shown(value: Any) -> str:
    """A default as Python writes it."""
    return repr(value)


def measure_keywords() -> str:
    """``measure()``'s keywords: name, default, documentation."""
    from pytest_triton_perf.measure import options

    docs = options.docs()
    defaults: dict[str, Any] = dict(options.LOAD_DEFAULTS)
    rows = [
        [f"`{key}`", f"`{_shown(defaults.get(key))}`", docs.get(key, "")]
        for key in options.keys(options.LoadOptions)
    ]
    return _table(["keyword", "default", "what it is"], rows).replace("``", "`")


def _records() -> dict[str, Any]:
    from pytest_triton_perf.suite import schema

    return {
        "suite": schema.document_record(),
        "test": schema.test_record(),
        "load": schema.LOAD.kind,
        "capacity": schema.CAPACITY,
        "search": schema.SEARCH,
        "slo": schema.SLO,
        "input": next(k for k in schema.INPUT_VALUE.kinds if getattr(k, "name", "") == "input"),
    }


#: What a record's key accepts, where the kind's own words list another table's keys.
_SHORTER = {
    ("suite", "defaults"): "a mapping of a test's keys but name",
    ("suite", "tests"): "a non-empty list of tests, each a mapping of a test's keys",
}


def yaml_keys(record: str) -> str:
    """The keys of one record of a suite file: key, accepted values, meaning, example."""
    records = _records()
    if record not in records:
        raise ValueError(f"no suite record {record!r}; records: {', '.join(records)}")
    rows = []
    for f in records[record].fields:
        key = f"`{f.key}` (required)" if f.required else f"`{f.key}`"
        example = f"`{f.key}: {f.example}`" if f.example else ""
        accepted = _SHORTER.get((record, f.key), f.kind.words)
        rows.append([key, accepted, f.text, example])
    return _table(["key", "accepted", "meaning", "example"], rows)


#: How the API reference groups the exported names, by what they are.
_API_GROUPS = (
    ("Fixture and servers", "the class of `triton_perf` and the server handles"),
    ("Functions", "usable without pytest"),
    ("Results", "what the calls return"),
    ("Exceptions", "one hierarchy under `TritonPerfError`"),
)


def api_reference() -> str:
    """One mkdocstrings block per exported name, grouped: servers and the fixture's class,
    functions, results, exceptions."""
    import pytest_triton_perf as package

    groups: dict[str, list[str]] = {title: [] for title, _ in _API_GROUPS}
    for name in package.__all__:
        if name.startswith("_"):
            continue
        value = getattr(package, name)
        if isinstance(value, type) and issubclass(value, package.TritonPerfError):
            groups["Exceptions"].append(name)
        elif not isinstance(value, type):
            groups["Functions"].append(name)
        elif name == "TritonPerf" or name.endswith("TritonServer"):
            groups["Fixture and servers"].append(name)
        else:
            groups["Results"].append(name)
    out = []
    for title, words in _API_GROUPS:
        out.append(f"## {title}\n\n{words[0].upper()}{words[1:]}.\n")
        out += [f"::: pytest_triton_perf.{name}\n" for name in groups[title]]
    return "\n".join(out)


GENERATORS = {
    "options": lambda args: options_table(args),
    "sla-keys": lambda args: sla_table(),
    "gate-defaults": lambda args: gate_defaults_table(),
    "capacity-bounds": lambda args: capacity_bounds(),
    "measure-keywords": lambda args: measure_keywords(),
    "yaml-keys": lambda args: yaml_keys(*args),
    "api": lambda args: api_reference(),
}


def render(markdown: str) -> str:
    """``markdown`` with every placeholder replaced by its table."""

    def replace(match: re.Match[str]) -> str:
        what, args = match["what"], match["args"].split()
        if what not in GENERATORS:
            raise ValueError(f"unknown placeholder {what!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[what](args)

    return PLACEHOLDER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: fill the page's placeholders."""
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown)
    except ValueError as e:
        raise PluginError(f"{page.file.src_uri}: {e}") from e
