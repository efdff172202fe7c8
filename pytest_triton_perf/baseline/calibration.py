"""A stored A/A calibration of the machine: the variance of the per-load offset between two
identical copies of a model, per metric (``triton-perf calibrate`` writes it; A/B mode
reads it).

Two identical copies of a model differ by an offset of their own for as long as their
backend processes live (:mod:`pytest_triton_perf.baseline.sequential`). A/B mode measures in
load epochs and estimates the offset's variance from the spread between them; with the
default three epochs that estimate has two degrees of freedom, which makes every interval
wide. An A/A run of many epochs on the same machine measures that variance once
(DerSimonian and Laird's moment estimate, ``epochs.offset_variance``), and A/B mode uses
it pooled with the spread of its own epochs (with Satterthwaite's degrees of freedom).

Stored per baseline key (the hardware and software key of the baselines, so a calibration
of one machine never stands in for another) in ``calibration.json`` beside that key's
baselines: per model, and the machine's figure (the largest of its models' per metric),
which stands in for a model that was not calibrated itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_triton_perf.baseline.epochs import Offset
from pytest_triton_perf.baseline.store import key_directory, locked, read_json
from pytest_triton_perf.errors import BaselineError
from pytest_triton_perf.files import atomic_write_text

FILE = "calibration.json"
SCHEMA_VERSION = 1


def path(root: Path, key: Mapping[str, Any]) -> Path:
    """Where the calibration of the machine under ``key`` is stored."""
    return root / key_directory(key) / FILE


def _read(file: Path) -> dict[str, Any]:
    if not file.exists():
        return {"schema_version": SCHEMA_VERSION, "models": {}}
    doc = read_json(file, "calibration file")
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise BaselineError(
            f"calibration file {file}: expected a JSON object with schema_version "
            f"{SCHEMA_VERSION}; it was left untouched (run triton-perf calibrate again after "
            f"removing it)."
        )
    if not isinstance(doc.get("models"), dict):
        raise BaselineError(f"calibration file {file}: 'models' is missing or not an object.")
    return doc


def offsets(root: Path | None, key: Mapping[str, Any], model: str) -> dict[str, Offset]:
    """The calibrated offsets of ``model`` on this machine (its own, or the machine's
    largest per metric); empty when nothing is stored."""
    if root is None:
        return {}
    file = path(root, key)
    if not file.exists():
        return {}
    models: dict[str, Any] = _read(file)["models"]
    entry = models.get(model)
    if entry is not None:
        return _offsets(entry)
    out: dict[str, Offset] = {}
    for other in models.values():
        for metric, off in _offsets(other).items():
            if metric not in out or off.tau2 > out[metric].tau2:
                out[metric] = off
    return out


def _offsets(entry: Mapping[str, Any]) -> dict[str, Offset]:
    out = {}
    for metric, v in entry.get("metrics", {}).items():
        tau2, epochs = v.get("tau2"), v.get("epochs")
        if isinstance(tau2, int | float) and math.isfinite(tau2) and isinstance(epochs, int):
            out[metric] = Offset(float(tau2), epochs)
    return out


def save(
    root: Path, key: Mapping[str, Any], model: str, found: Mapping[str, Offset], **about: Any
) -> Path:
    """Store ``model``'s calibrated offsets under ``key`` (atomic, under the store's lock);
    returns the file."""
    file = path(root, key)
    file.parent.mkdir(parents=True, exist_ok=True)
    with locked(file, "calibration file"):
        doc = _read(file)
        doc["key"] = dict(key)
        doc["models"][model] = {
            "metrics": {m: {"tau2": o.tau2, "epochs": o.epochs} for m, o in found.items()},
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **about,
        }
        atomic_write_text(file, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return file
