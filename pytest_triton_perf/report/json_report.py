"""The JSON results file (``--triton-perf-json``): written atomically, read back for the CLI.

The file is meant to be archived by CI and diffed: keys are sorted (``schema_version`` first),
indentation is fixed, NaN and infinities become ``null`` (strict JSON parsers reject them).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import ResultsFileError
from pytest_triton_perf.files import atomic_write_text
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.verdicts import MeasurementRecord

SCHEMA_VERSION = 1


def _plain(value: Any) -> Any:
    """A JSON-ready copy: sorted mappings, lists for tuples, None for non-finite floats,
    Python numbers for numpy scalars (records may carry them from the statistics)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy scalar or array, without importing numpy
    if callable(tolist):
        return _plain(tolist())
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to JSON")


def dumps(document: Mapping[str, Any]) -> str:
    """The text of a results document: two-space indent, ``schema_version`` first, then the
    other keys sorted at every level."""
    plain = _plain(document)
    ordered = {"schema_version": plain.pop("schema_version")} if "schema_version" in plain else {}
    ordered.update(plain)
    return json.dumps(ordered, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write a results document (``results_document(...)``) atomically to ``path``."""
    return atomic_write_text(path, dumps(document))


def load_json(path: str | os.PathLike[str], what: str = "results file") -> Any:
    """Parse a JSON file; errors name the file and, for bad JSON, the line and column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{p}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsFileError(f"{p}: cannot read the {what}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsFileError(
            f"{p}: invalid JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}"
        ) from None


def read_results(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], list[MeasurementRecord]]:
    """Read a results file written by ``--triton-perf-json``: the document and its records."""
    p = Path(path)
    document = load_json(p)
    if not isinstance(document, dict):
        raise ResultsFileError(
            f"{p}: not a results file: the top level is a {type(document).__name__}, "
            f"an object with 'schema_version' and 'measurements' is expected"
        )
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        found = "no schema_version" if version is None else f"schema_version {version!r}"
        raise ResultsFileError(
            f"{p}: {found}: this pytest-triton-perf reads results files of schema_version "
            f"{SCHEMA_VERSION}; render the file with the version that wrote it, or re-run "
            f"the tests with --triton-perf-json"
        )
    measurements = document.get("measurements")
    if not isinstance(measurements, list):
        raise ResultsFileError(f"{p}: 'measurements' must be a list of measurement objects")
    records = []
    for i, m in enumerate(measurements):
        try:
            records.append(MeasurementRecord.from_dict(m))
        except KeyError as e:
            raise ResultsFileError(f"{p}: measurements[{i}] has no key {e}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ResultsFileError(f"{p}: measurements[{i}] is malformed: {e}") from None
    return document, records


def results_document(
    records: Sequence[MeasurementRecord],
    *,
    environment: Mapping[str, Any],
    session: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON results file: every measurement with windows, verdicts, environment."""
    return {
        "schema_version": SCHEMA_VERSION,
        "session": dict(session),
        "environment": dict(environment),
        "measurements": [r.to_dict() for r in records],
    }


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the results file of ``records`` at ``destination``."""
    document = results_document(records, environment=context.environment, session=context.session)
    return [write_json(destination, document)]
