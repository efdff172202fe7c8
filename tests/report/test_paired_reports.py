"""A paired A/B comparison in the reports: its interval, its design and its time to verdict."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_triton_perf.report.junit import write_junit
from pytest_triton_perf.report.text import host_load
from pytest_triton_perf.verdicts import Comparison, MeasurementRecord
from tests.report.factory import make_record, make_result

DESIGN = {
    "method": "paired",
    "pairs": 14,
    "elapsed_s": 21.4,
    "stopped": "decided",
    "confirmed": False,
}


def paired_record() -> MeasurementRecord:
    result = make_result(median_ms=20.0)
    p50 = Comparison(
        metric="p50_ms",
        verdict="pass",
        mode="ab",
        baseline=20.0,
        current=20.1,
        change_pct=0.4,
        p_value=0.3,
        note="paired t on ABBA log-ratios, Pocock repeated intervals: 14 pairs",
        mde_pct=2.9,
        change_ci=(-1.8, 2.6),
    )
    return make_record(
        result,
        comparisons=(p50,),
        baseline={"mode": "ab", "status": "compared", "note": "arms", "design": DESIGN},
        host_load={"load_1m": 0.5, "steal": 0.0},
    )


def test_the_design_and_time_to_verdict_are_told_beside_the_load() -> None:
    text = host_load(paired_record())
    assert text.startswith("paired A/B: 14 pairs in 21 s, decided")
    assert "load 0.5" in text
    confirmed = dataclasses.replace(
        paired_record(),
        baseline={"design": {**DESIGN, "stopped": "regression", "confirmed": True}},
    )
    assert "stopped at a regression, confirmed with fresh instances" in host_load(confirmed)


def test_the_change_interval_is_a_junit_property_and_survives_json(tmp_path: Path) -> None:
    path = write_junit(tmp_path / "perf.xml", [paired_record()], environment={})
    case = next(ET.parse(path).getroot().iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(props["change_pct_interval_low"]) == -1.8
    assert float(props["change_pct_interval_high"]) == 2.6
    c = paired_record().comparisons[0]
    back = Comparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.change_ci == (-1.8, 2.6)
