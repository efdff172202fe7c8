"""The JSON results file: atomic, stable, read back into the same records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pytest_triton_perf.report.json_report import (
    ResultsFileError,
    dumps,
    read_results,
    write_json,
)
from tests.report.factory import document, mixed_records


def test_round_trip_gives_back_the_same_records(tmp_path: Path) -> None:
    records = mixed_records()
    path = write_json(tmp_path / "out" / "results.json", document(records))
    doc, back = read_results(path)
    assert back == records
    assert doc["environment"]["triton_version"] == "2.51.0"
    assert [r.verdict for r in back] == [
        "pass",
        "regression",
        "improvement",
        "inconclusive",
        "no baseline",
    ]
    # Windows survive: the CLI's compare works from them.
    assert len(back[1].result["windows"]) == 4
    assert back[1].result["windows"][0]["latency_ms"]["p99"] > 0


def test_text_is_stable_sorted_and_starts_with_the_schema_version(tmp_path: Path) -> None:
    records = mixed_records()
    a = dumps(document(records))
    b = dumps(document(list(records)))
    assert a == b
    assert a.splitlines()[1] == '  "schema_version": 1,'
    top = list(json.loads(a))
    assert top == ["schema_version", "environment", "measurements", "session"]
    first = json.loads(a)["measurements"][0]
    assert list(first) == sorted(first)


def test_non_finite_and_numpy_values_become_plain_json() -> None:
    text = dumps({"schema_version": 1, "x": float("nan"), "y": np.float64(2.5), "z": np.arange(2)})
    assert json.loads(text) == {"schema_version": 1, "x": None, "y": 2.5, "z": [0, 1]}


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    write_json(path, document(mixed_records()[:1]))
    assert json.loads(path.read_text())["schema_version"] == 1
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_json(path, {"schema_version": 1, "bad": object()})
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_invalid_json_names_the_file_and_the_position(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{\n  "schema_version": 1,\n  "measurements": [,]\n}\n')
    with pytest.raises(ResultsFileError) as e:
        read_results(path)
    assert str(path) in str(e.value)
    assert "line 3 column 20" in str(e.value)


@pytest.mark.parametrize("version", [2, None, "1"])
def test_unknown_schema_version_is_refused(tmp_path: Path, version: object) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": version, "measurements": []}))
    with pytest.raises(ResultsFileError, match="schema_version") as e:
        read_results(path)
    assert str(path) in str(e.value)
    assert "reads results files of schema_version 1" in str(e.value)


def test_a_measurement_without_a_required_key_is_named(tmp_path: Path) -> None:
    doc = document(mixed_records()[:2])
    del doc["measurements"][1]["label"]
    path = write_json(tmp_path / "results.json", doc)
    with pytest.raises(ResultsFileError, match=r"measurements\[1\] has no key 'label'"):
        read_results(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match=r"nope\.json: no such results file"):
        read_results(tmp_path / "nope.json")


def test_minimum_detectable_effects_are_stored_and_none_at_all_is_null(tmp_path: Path) -> None:
    import dataclasses
    import math

    records = mixed_records()
    shaky = records[3]
    blind = dataclasses.replace(shaky.comparisons[0], mde_pct=math.inf)
    records[3] = dataclasses.replace(shaky, comparisons=(blind,))
    doc = json.loads(dumps(document(records)))
    measurements = doc["measurements"]
    assert measurements[1]["comparisons"][1]["mde_pct"] == 6.1
    assert measurements[3]["comparisons"][0]["mde_pct"] is None
    assert measurements[0]["environment"]["host_load"] == {"load_1m": 3.24, "steal_pct": 0.0}
