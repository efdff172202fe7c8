"""The kinds of value a suite file holds: each checks a YAML node, names what it accepts in
words, and writes its JSON Schema, so the validator and the published schema come from one
table (:mod:`pytest_triton_perf.suite.schema`).

A check returns the node's value (normalised) or raises :class:`Invalid` at the node that is
wrong; :class:`Record` gathers the problems of all its fields instead of stopping at the
first, so one run shows every mistake of a file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from pytest_triton_perf.numbers import shown

MERGE_TAG = "tag:yaml.org,2002:merge"


class Invalid(Exception):
    """A value that is not accepted, at ``node``; the message names key, value and form."""

    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


@dataclass
class Context:
    """Where a check is: the file as shown to the user, the YAML constructor for scalars,
    the test being checked, and the problems found so far."""

    source: str
    loader: yaml.SafeLoader
    test: str = ""
    errors: list[str] = field(default_factory=list)

    def report(self, node: yaml.Node, message: str) -> None:
        """One problem, as ``file:line:col: test: message`` (1-based, as editors count)."""
        mark = node.start_mark
        who = f"{self.test}: " if self.test else ""
        self.errors.append(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {who}{message}")

    def value(self, node: yaml.Node) -> Any:
        """The plain Python value of ``node`` (aliases and merge keys resolved)."""
        return self.loader.construct_object(node, deep=True)


def hint(word: Any, choices: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or nothing."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        float(value)
    )


class Kind:
    """A kind of value: :meth:`check`, :attr:`words` (what is accepted, for messages and
    the documentation) and :meth:`schema` (its JSON Schema)."""

    words = "a value"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def refuse(self, node: yaml.Node, ctx: Context, path: str) -> Invalid:
        """The standard refusal: path, value, what is accepted."""
        value = ctx.value(node)
        extra = ""
        if isinstance(value, str) and "number" in self.words:
            try:
                float(value)
            except ValueError:
                pass
            else:  # YAML 1.1 reads 1e3 (no dot) as text
                extra = f" (YAML reads {value} as text: write it with a dot, e.g. 1.0e3)"
        return Invalid(node, f"{path}: {shown(value)} is not accepted; {self.words} is.{extra}")


@dataclass(frozen=True)
class Anything(Kind):
    """Any value: keywords passed on to the measurement engine, which checks them."""

    words: str = "any value (the measurement engine checks it)"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        return ctx.value(node)

    def schema(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Text(Kind):
    """A non-empty string, optionally matching ``pattern``."""

    words: str = "a non-empty text"
    pattern: str | None = None

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        value = ctx.value(node)
        ok = isinstance(value, str) and value.strip() != ""
        if ok and self.pattern is not None:
            ok = re.fullmatch(self.pattern, value) is not None
        if not ok:
            raise self.refuse(node, ctx, path)
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "minLength": 1}
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        return out


@dataclass(frozen=True)
class Choice(Kind):
    """One of ``values`` (or an alias of one, returned as itself)."""

    values: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def words(self) -> str:  # type: ignore[override]
        names = ", ".join(repr(v) for v in self.values)
        if len(self.values) == 1 and not self.aliases:
            return names
        more = f" (or {', '.join(repr(a) for a in self.aliases)})" if self.aliases else ""
        return f"one of {names}{more}"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        value = ctx.value(node)
        if isinstance(value, str) and value in (*self.values, *self.aliases):
            return value
        extra = hint(value, [*self.values, *self.aliases])
        raise Invalid(
            node, f"{path}: {shown(value)} is not accepted.{extra} Accepted: {self.words}."
        )

    def schema(self) -> dict[str, Any]:
        return {"enum": [*self.values, *self.aliases]}


@dataclass(frozen=True)
class Whole(Kind):
    """A whole number >= ``minimum`` (not a boolean)."""

    minimum: int | None = 1

    @property
    def words(self) -> str:  # type: ignore[override]
        return "a whole number" + (f" >= {self.minimum}" if self.minimum is not None else "")

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        value = ctx.value(node)
        if _is_int(value) and (self.minimum is None or value >= self.minimum):
            return value
        raise self.refuse(node, ctx, path)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        return out


@dataclass(frozen=True)
class Number(Kind):
    """A finite number above (or at, unless ``exclusive``) ``minimum``, up to ``maximum``."""

    minimum: float = 0.0
    exclusive: bool = True
    maximum: float | None = None
    unit: str = ""

    @property
    def words(self) -> str:  # type: ignore[override]
        op = ">" if self.exclusive else ">="
        top = f" and <= {self.maximum:g}" if self.maximum is not None else ""
        unit = f" ({self.unit})" if self.unit else ""
        return f"a number {op} {self.minimum:g}{top}{unit}"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        value = ctx.value(node)
        if _is_number(value):
            number = float(value)
            low = number > self.minimum if self.exclusive else number >= self.minimum
            if low and (self.maximum is None or number <= self.maximum):
                return value
        raise self.refuse(node, ctx, path)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        out["exclusiveMinimum" if self.exclusive else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True)
class Boolean(Kind):
    """true or false."""

    words: str = "true or false"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        value = ctx.value(node)
        if isinstance(value, bool):
            return value
        raise self.refuse(node, ctx, path)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class ListOf(Kind):
    """A non-empty list of ``item``."""

    item: Kind

    @property
    def words(self) -> str:  # type: ignore[override]
        return f"a non-empty list, each {self.item.words}"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.refuse(node, ctx, path)
        return [self.item.check(n, ctx, f"{path}[{i}]") for i, n in enumerate(node.value)]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": self.item.schema()}


@dataclass(frozen=True)
class Either(Kind):
    """The first of ``kinds`` that accepts the node (e.g. a number or a list of them)."""

    kinds: tuple[Kind, ...]

    @property
    def words(self) -> str:  # type: ignore[override]
        return " or ".join(k.words for k in self.kinds)

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        inner: Invalid | None = None
        for kind in self.kinds:
            try:
                return kind.check(node, ctx, path)
            except Invalid as e:
                # A list with one bad element: name the element, not the whole list.
                if e.node is not node and inner is None:
                    inner = e
        if inner is not None:
            raise inner
        raise self.refuse(node, ctx, path)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [k.schema() for k in self.kinds]}


@dataclass(frozen=True)
class MapOf(Kind):
    """A mapping of free keys (text) to ``value``; ``key_pattern`` restricts the keys."""

    value: Kind
    what: str = "name"
    key_pattern: str | None = None
    min_items: int = 1
    max_items: int | None = None

    @property
    def words(self) -> str:  # type: ignore[override]
        one = "one " if self.max_items == 1 else ""
        return f"a mapping of {one}{self.what} -> {self.value.words}"

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        if not isinstance(node, yaml.MappingNode) or not (
            self.min_items <= len(node.value) <= (self.max_items or len(node.value))
        ):
            raise self.refuse(node, ctx, path)
        out = {}
        for key_node, value_node in pairs(node, ctx):
            key = ctx.value(key_node)
            if not isinstance(key, str) or (
                self.key_pattern is not None and re.fullmatch(self.key_pattern, key) is None
            ):
                raise Invalid(key_node, f"{path}: the key {shown(key)} is not a {self.what}.")
            out[key] = self.value.check(value_node, ctx, f"{path}.{key}")
        return out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "additionalProperties": self.value.schema()}
        if self.min_items:
            out["minProperties"] = self.min_items
        if self.max_items is not None:
            out["maxProperties"] = self.max_items
        if self.key_pattern is not None:
            out["propertyNames"] = {"pattern": f"^(?:{self.key_pattern})$"}
        return out


@dataclass(frozen=True)
class Checked(Kind):
    """A value checked by a function of the package (the ``sla`` marker's parser, the search
    space's): ``parse(value, path)`` returns the value or raises a ValueError / ConfigError
    whose message is shown as it is, at the node."""

    parse: Callable[[Any, str], Any]
    json: dict[str, Any]
    words: str = ""
    #: Check each key of a mapping alone first (every bad key is reported, not the first).
    per_key: bool = False

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        if self.per_key and isinstance(node, yaml.MappingNode):
            # Each key alone first, so that every bad key of the mapping is reported.
            problems = []
            for k, v in pairs(node, ctx):
                try:
                    self.parse({ctx.value(k): ctx.value(v)}, path)
                except KeyProblem as e:
                    problems.append(Invalid(k if e.at_key else v, e.message))
                except ValueError as e:
                    problems.append(Invalid(v, str(e)))
            for problem in problems[:-1]:
                ctx.report(problem.node, problem.message)
            if problems:
                raise problems[-1]
        value = ctx.value(node)
        try:
            return self.parse(value, path)
        except KeyProblem as e:
            where = node
            if isinstance(node, yaml.MappingNode):
                for k, v in pairs(node, ctx):
                    if ctx.value(k) == e.key:
                        where = k if e.at_key else v
            raise Invalid(where, e.message) from None
        except ValueError as e:
            raise Invalid(node, str(e)) from None

    def schema(self) -> dict[str, Any]:
        return self.json


class KeyProblem(ValueError):
    """A problem with one key of a mapping (``at_key``) or its value."""

    def __init__(self, key: Any, message: str, *, at_key: bool = False):
        super().__init__(message)
        self.key = key
        self.message = message
        self.at_key = at_key


@dataclass(frozen=True)
class Ref(Kind):
    """``kind``, written once in the JSON Schema's definitions under ``name`` and referred
    to wherever it is used."""

    name: str
    kind: Kind
    #: What is accepted, in words, where the kind's own words are too long for a message.
    summary: str = ""

    @property
    def words(self) -> str:  # type: ignore[override]
        return self.summary or self.kind.words

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Any:
        return self.kind.check(node, ctx, path)

    def schema(self) -> dict[str, Any]:
        return {"$ref": f"#/definitions/{self.name}"}


@dataclass(frozen=True)
class Field:
    """One key of a record: its kind, what it means, an example (YAML), whether required."""

    key: str
    kind: Kind
    text: str
    example: str = ""
    required: bool = False


class Fields(dict[str, Any]):
    """A checked record: key -> value, with the nodes of keys and values for later checks
    that span fields."""

    def __init__(self, node: yaml.Node):
        super().__init__()
        self.node = node
        self.key_nodes: dict[str, yaml.Node] = {}
        self.value_nodes: dict[str, yaml.Node] = {}


def pairs(node: yaml.MappingNode, ctx: Context) -> list[tuple[yaml.Node, yaml.Node]]:
    """The key/value nodes of a mapping, YAML merge keys (``<<: *anchor``) resolved."""
    if not any(k.tag == MERGE_TAG for k, _ in node.value):
        return list(node.value)
    flat = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
    ctx.loader.flatten_mapping(flat)  # a copy: the node itself keeps its own keys
    return list(flat.value)


@dataclass(frozen=True)
class Record(Kind):
    """A mapping of known keys (:class:`Field`), each checked by its kind. Unknown keys,
    duplicated keys and missing required keys are reported with the closest match; a
    key's bad value does not stop the others from being checked. ``extra(key)`` may accept
    keys outside the table (returning the kind to check them with)."""

    name: str
    fields: tuple[Field, ...]
    extra: Callable[[str], Kind | None] | None = None

    @property
    def words(self) -> str:  # type: ignore[override]
        return f"a mapping of {', '.join(f.key for f in self.fields)}"

    @property
    def by_key(self) -> dict[str, Field]:
        return {f.key: f for f in self.fields}

    def check(self, node: yaml.Node, ctx: Context, path: str) -> Fields:
        if not isinstance(node, yaml.MappingNode):
            raise self.refuse(node, ctx, path or self.name)
        out = Fields(node)
        by_key = self.by_key
        explicit = [ctx.value(k) for k, _ in node.value if k.tag != MERGE_TAG]
        seen: set[Any] = set()
        prefix = f"{path}." if path else ""
        for key_node, value_node in pairs(node, ctx):
            key = ctx.value(key_node)
            if key in seen and explicit.count(key) > 1:
                ctx.report(key_node, f"{prefix}{key}: given twice; keep one.")
                continue
            seen.add(key)
            kind = by_key[key].kind if key in by_key else None
            if kind is None and self.extra is not None and isinstance(key, str):
                kind = self.extra(key)
            if kind is None:
                accepted = ", ".join(by_key)
                where = f" in {path}" if path else ""
                ctx.report(
                    key_node,
                    f"unknown key {shown(key)}{where}.{hint(key, list(by_key))} "
                    f"Accepted keys: {accepted}.",
                )
                continue
            out.key_nodes[key] = key_node
            out.value_nodes[key] = value_node
            try:
                out[key] = kind.check(value_node, ctx, f"{prefix}{key}")
            except Invalid as e:
                ctx.report(e.node, e.message)
        for f in self.fields:
            if f.required and f.key not in out.key_nodes:
                example = f", e.g. {f.key}: {f.example}" if f.example else ""
                ctx.report(node, f"{prefix}{f.key} is missing: {f.text}{example}.")
        return out

    def schema(self) -> dict[str, Any]:
        props = {}
        for f in self.fields:
            props[f.key] = {"description": f.text, **f.kind.schema()}
        out: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        required = [f.key for f in self.fields if f.required]
        if required:
            out["required"] = required
        return out
