"""One results document from the shards of a run (``triton-perf merge``).

Each shard (``--triton-perf-shard=K/N``, one CI runner) writes its own results file; their
measurements are disjoint by construction. The merged document holds every measurement in
the order of the files given, the first file's environment, and a session that lists where
each part came from, so one set of reports (terminal, Markdown, JUnit, plots) describes the
whole run. What cannot be right is said, not hidden: a shard of N missing, a shard given
twice, the same measurement in two files, shards that ran on different machines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_triton_perf.report.json_report import SCHEMA_VERSION
from pytest_triton_perf.verdicts import MeasurementRecord


@dataclass
class Merged:
    """The merged results: the document, its records, what is off about them, and the
    shards of N that no file came from (``["2/3"]``)."""

    document: dict[str, Any]
    records: list[MeasurementRecord]
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _shard(session: Mapping[str, Any]) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)/(\d+)", str(session.get("shard") or ""))
    return (int(m[1]), int(m[2])) if m else None


def merge_results(
    parts: Sequence[tuple[Path, Mapping[str, Any], Sequence[MeasurementRecord]]],
) -> Merged:
    """Merge results files, each given as (path, document, records) as ``read_results``
    returns them."""
    records: list[MeasurementRecord] = []
    notes: list[str] = []
    sources = []
    saved: list[str] = []
    shards: dict[tuple[int, int], Path] = {}
    where: dict[tuple[str, str, int], Path] = {}
    for path, doc, recs in parts:
        session = doc.get("session") or {}
        shard = _shard(session)
        if shard is not None:
            if shard in shards:
                notes.append(
                    f"shard {shard[0]}/{shard[1]} is given twice: {shards[shard]} and {path}"
                )
            shards.setdefault(shard, path)
        sources.append(
            {
                "file": str(path),
                "shard": session.get("shard"),
                "args": session.get("args"),
                "measurements": len(recs),
            }
        )
        saved += [str(s) for s in session.get("saved") or []]
        for r in recs:
            key = (r.test, r.label, r.index)
            if key in where:
                notes.append(
                    f"{r.test} {r.label} was measured in two files ({where[key]}, {path}): "
                    f"both kept; were the shards given the same K/N?"
                )
            where.setdefault(key, path)
            records.append(r)
    missing = []
    counts = {n for _, n in shards}
    if len(counts) > 1:
        splits = ", ".join(f"N={n}" for n in sorted(counts))
        notes.append(f"the files come from runs split differently ({splits})")
    for n in sorted(counts):
        missing += [f"{k}/{n}" for k in range(1, n + 1) if (k, n) not in shards]
    unsharded = [str(p) for p, doc, _ in parts if _shard(doc.get("session") or {}) is None]
    if shards and unsharded:
        notes.append(f"not from a sharded run: {', '.join(unsharded)}")
    keys: list[Any] = []
    for _, doc, _ in parts:
        env_key = (doc.get("environment") or {}).get("key")
        if env_key and env_key not in keys:
            keys.append(env_key)
    if len(keys) > 1:
        notes.append(
            f"the shards ran on {len(keys)} different machines (hardware/software keys): "
            f"the environment shown is the first file's; each measurement keeps its own, and "
            f"its baselines are those of its machine's key"
        )
    first = parts[0][1] if parts else {}
    first_session = first.get("session") or {}
    session = {
        "plugin_version": first_session.get("plugin_version"),
        "merged_from": sources,
        "saved": list(dict.fromkeys(saved)),
    }
    if counts:
        session["shards"] = max(counts)
    document = {
        "schema_version": SCHEMA_VERSION,
        "session": session,
        "environment": dict(first.get("environment") or {}),
        "measurements": [r.to_dict() for r in records],
    }
    return Merged(document, records, notes, missing)
