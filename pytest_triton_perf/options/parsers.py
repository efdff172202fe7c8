"""Parsers of option values: ``parse(flag, text)`` -> value, or a ConfigError naming the
flag, the bad value and the accepted form. The container launcher's parsers live in
:mod:`pytest_triton_perf.options.container`."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.metrics import CATALOGUE, parse_metric_map
from pytest_triton_perf.urls import parse_url

POSITIVE_S = "a positive number of seconds"
NON_NEGATIVE_S = "a number of seconds >= 0"
WHOLE = "a whole number >= 1"
PROBABILITY = "a probability between 0 and 1"
_EXAMPLES = {POSITIVE_S: "2.5", NON_NEGATIVE_S: "2", WHOLE: "3", PROBABILITY: "0.01"}


def _number(
    flag: str,
    text: str,
    convert: Callable[[str], float],
    ok: Callable[[float], bool],
    accepted: str,
) -> float:
    """``convert(text)`` when ``ok`` holds for it; else ConfigError naming flag and value."""
    try:
        value = convert(text)
        good = math.isfinite(value) and ok(value)
    except (ValueError, OverflowError):  # not a number; an int too large for a float
        good = False
    if not good:
        raise ConfigError(f"{flag}={text!r}: {accepted} is accepted, e.g. {_EXAMPLES[accepted]}.")
    return value


def positive_float(flag: str, text: str) -> float:
    """A number of seconds > 0."""
    return _number(flag, text, float, lambda v: v > 0, POSITIVE_S)


def non_negative_float(flag: str, text: str) -> float:
    """A number of seconds >= 0."""
    return _number(flag, text, float, lambda v: v >= 0, NON_NEGATIVE_S)


def positive_int(flag: str, text: str) -> int:
    """A whole number >= 1."""
    return int(_number(flag, text, int, lambda v: v >= 1, WHOLE))


def probability(flag: str, text: str) -> float:
    """A probability strictly between 0 and 1."""
    return _number(flag, text, float, lambda v: 0 < v < 1, PROBABILITY)


def non_empty_text(flag: str, text: str) -> str:
    """Any non-empty text, stripped."""
    if not text.strip():
        raise ConfigError(f"{flag}={text!r}: an empty value is not accepted.")
    return text.strip()


def address(flag: str, text: str) -> str:
    """A server address, checked here so that a bad one is a usage error, not a failure of
    every test; kept as written (the launcher parses it again)."""
    parse_url(text, option=flag)
    return text.strip()


def switch(flag: str, text: str) -> bool:
    """A switch's ini form: 1, true, yes, on -> True; anything else False."""
    return text.strip().lower() in ("1", "true", "yes", "on")


def on_off(flag: str, text: str) -> bool:
    """``on`` or ``off`` (also true/false, yes/no, 1/0)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{flag}={text!r}: 'on' or 'off' is accepted.")


def effects(flag: str, text: str) -> dict[str, float | None]:
    """Minimum effects per metric, e.g. ``p50=5%,p99=10%``."""
    return parse_metric_map(text, where=f"{flag}={text!r}")


def floors(flag: str, text: str) -> dict[str, float | None]:
    """Absolute latency floors per metric, e.g. ``p50=0.2ms``."""
    return parse_metric_map(text, where=f"{flag}={text!r}", unit="ms")


def sla_mode(flag: str, text: str) -> str:
    """``point`` or ``strict``."""
    if text.strip() not in ("point", "strict"):
        raise ConfigError(f"{flag}={text!r}: 'point' or 'strict' is accepted.")
    return text.strip()


#: What a verdict that neither passes nor regresses does to its test: an inconclusive
#: comparison (``--triton-perf-inconclusive``), a measurement without a baseline
#: (``--triton-perf-no-baseline``).
POLICIES = ("pass", "warn", "fail")
#: The analyses of A/B mode (``--triton-perf-ab-method``; re-exported by ``baseline.ab``).
AB_METHODS = ("paired", "mann-whitney")


def policy(flag: str, text: str) -> str:
    """``pass``, ``warn`` or ``fail``."""
    if text.strip() not in POLICIES:
        raise ConfigError(f"{flag}={text!r}: 'pass', 'warn' or 'fail' is accepted.")
    return text.strip()


def ab_method(flag: str, text: str) -> str:
    """``paired`` or ``mann-whitney``."""
    value = text.strip().lower().replace("_", "-")
    if value not in AB_METHODS:
        raise ConfigError(f"{flag}={text!r}: 'paired' or 'mann-whitney' is accepted.")
    return value


def name_list(flag: str, text: str) -> tuple[str, ...]:
    """Model names separated by commas or spaces."""
    names = tuple(n.strip() for n in text.replace(",", " ").split() if n.strip())
    if not names:
        raise ConfigError(f"{flag}={text!r}: a comma-separated list of model names is accepted.")
    return names


def file_patterns(flag: str, text: str) -> tuple[str, ...]:
    """Glob patterns of file names (``triton-perf*.yaml``), separated by commas or spaces."""
    patterns = tuple(p for p in text.replace(",", " ").split() if p)
    bad = [p for p in patterns if "/" in p or "\\" in p]
    if not patterns or bad:
        raise ConfigError(
            f"{flag}={text!r}: file name patterns separated by commas or spaces are accepted "
            f"(names, not paths), e.g. 'triton-perf*.yaml,perf-*.yml'."
        )
    return patterns


#: The columns of the terminal table (``--triton-perf-columns``, ``--triton-perf-sort``), in
#: the order ``pytest --help`` lists them; ``report/terminal.py`` renders each.
COLUMNS = (
    "test",
    "model",
    "workload",
    "p50",
    "p90",
    "p95",
    "p99",
    "avg",
    "throughput",
    "capacity",
    "requests",
    "errors",
    "error_rate",
    "gpu_memory",
    "cpu_memory",
    "energy",
    "tokens_per_joule",
    "queue",
    "compute",
    "sla",
    "baseline",
    "extra",
)
#: Other names of columns: the metric catalogue's figure names (``p99_ms``), and words a
#: reader may reach for. ``memory`` stands for both memory columns.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    **{m.name: (m.short,) for m in CATALOGUE if m.short in COLUMNS and m.name != m.short},
    "memory": ("gpu_memory", "cpu_memory"),
    "server_queue": ("queue",),
    "queue_ms": ("queue",),
    "compute_infer": ("compute",),
    "compute_ms": ("compute",),
    "infer/s": ("throughput",),
    "extra_info": ("extra",),
}


def _column(flag: str, text: str, name: str) -> tuple[str, ...]:
    """The columns ``name`` stands for; ConfigError with the closest name otherwise."""
    key = name.strip().lower()
    if key in COLUMNS:
        return (key,)
    if key in COLUMN_ALIASES:
        return COLUMN_ALIASES[key]
    known = [*COLUMNS, *COLUMN_ALIASES]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"{flag}={text!r}: unknown column {name.strip()!r}.{hint} Accepted: "
        f"{', '.join(COLUMNS)} (also memory = gpu_memory,cpu_memory, server_queue = queue, "
        f"p99_ms = p99, ...)."
    )


def columns(flag: str, text: str) -> tuple[str, ...]:
    """Column names separated by commas, e.g. ``test,p90,p99,memory,queue``: each once, in
    the order given."""
    names = [n for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(
            f"{flag}={text!r}: a comma-separated list of columns is accepted, e.g. "
            f"'test,p50,p99,throughput,memory,queue'."
        )
    out: dict[str, None] = {}
    for name in names:
        out.update(dict.fromkeys(_column(flag, text, name)))
    return tuple(out)


def sort_column(flag: str, text: str) -> str:
    """One column to sort the terminal table by, ascending; ``-p99`` for descending."""
    raw = text.strip()
    descending = raw.startswith("-")
    found = _column(flag, text, raw.removeprefix("-"))
    if len(found) != 1:
        raise ConfigError(
            f"{flag}={text!r}: {raw.removeprefix('-')!r} names {len(found)} columns "
            f"({', '.join(found)}); sort by one of them."
        )
    return ("-" if descending else "") + found[0]


def shard(flag: str, text: str) -> tuple[int, int]:
    """``K/N``: shard K (1-based) of N."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", text, re.ASCII)
    if m is None or not 1 <= int(m[1]) <= int(m[2]):
        raise ConfigError(
            f"{flag}={text!r}: K/N with whole numbers 1 <= K <= N is accepted (shard K of "
            f"N), e.g. 1/4."
        )
    return int(m[1]), int(m[2])
