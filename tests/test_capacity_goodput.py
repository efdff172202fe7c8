"""Capacity by goodput (issue 22, part 3): the highest load at which at least a share of the
requests meets every per-request SLO (DistServe's capacity). The decision rule on a computed
queue (pure logic), the argument checks, the A/B rule's limiting figure, then one search
through the fixture on the real embedded server with a model that serves its streams one
at a time, so that the attainment knee is known by construction."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf import sla
from pytest_triton_perf.baseline.ab import ABPlan, merge_blocks
from pytest_triton_perf.baseline.capacity_ab import compare_capacity, same_capacity
from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.capacity import (
    ATTAINMENT_KEY,
    CapacityResult,
    bound_metric,
    find_capacity,
    goodput_bounds,
)
from pytest_triton_perf.errors import ArgumentError, ConfigError
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.measure.figures import SloFigures, StreamFigures, StreamWindow
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, WindowResult, Workload
from pytest_triton_perf.report.analysis import capacity_headline, capacity_table
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.suite.loader import SuiteError, load_suite
from pytest_triton_perf.verdicts import PASS, REGRESSION, Comparison
from tests.conftest import FAST_OPTIONS, TEST_MODELS

# -- the decision rule, on a computed queue ---------------------------------------------------

SERVICE_MS, E2E_MS, SPAN_S = 20.0, 60.0, 2.0


def attained(rate: float) -> tuple[int, int]:
    """(met, requests) of a constant-rate open loop into one server of ``SERVICE_MS`` over
    ``SPAN_S`` seconds, with an end-to-end SLO of ``E2E_MS``: below the service rate (50/s)
    every request meets it; above, request k waits k * (S - 1/r) and the queue soon breaks
    it. Computed, not measured."""
    n = max(1, round(rate * SPAN_S))
    lag = SERVICE_MS - 1000 / rate
    if lag <= 0:
        return n, n
    return min(n, math.floor((E2E_MS - SERVICE_MS) / lag) + 1), n


def stream_result(rate: float, met: int, requests: int) -> PerfResult:
    """A result of a streaming model at ``rate`` whose ``met`` of ``requests`` requests met
    the SLO."""
    slo = SloFigures((("e2e_ms", E2E_MS),), requests, met, (("e2e_ms", requests - met),), SPAN_S)
    stream = StreamFigures(
        None, None, None, None, requests * 4, 4.0, requests * 2.0, None, None, requests=requests,
        slo=slo,
    )  # fmt: skip
    lat = LatencyStats(*[SERVICE_MS] * 7, requests)
    thr = requests / SPAN_S
    window = WindowResult(0, SPAN_S, requests, 0, requests, thr, lat)
    workload = Workload("serial", concurrency=None, request_rate=rate, arrival="constant")
    return PerfResult(
        "serial", None, workload, thr, lat, requests, 0, (window,), SPAN_S, True, stream=stream
    )


def queue() -> Any:
    def run(level: Mapping[str, Any]) -> PerfResult:
        rate = float(level["request_rate"])
        return stream_result(rate, *attained(rate))

    return run


def test_the_highest_rate_whose_attainment_reaches_the_target() -> None:
    found = find_capacity(
        queue(), {ATTAINMENT_KEY: 0.9}, over="request_rate", start=10, model="serial"
    )
    # Growth 10, 20, 40, 80 (breaks), then bisection down to 5% around the 50/s knee.
    assert [s.load for s in found.steps][:4] == [10, 20, 40, 80]
    assert found.limited_by == ATTAINMENT_KEY, found.step_table()
    assert found.load is not None and 47.5 <= found.load <= 50, found.step_table()
    assert found.next_load is not None and found.next_load / found.load <= 1.05
    broken = next(s for s in found.steps if not s.passed)
    assert broken.breached[0].startswith("min_slo_attainment 0.")
    assert " < 0.9 (95% interval " in broken.breached[0]
    assert "e2e_ms <= 60 missed by " in broken.breached[0]
    # The report says what held and what broke at each level.
    assert "attained" in found.step_table().splitlines()[0]
    assert "limited by min_slo_attainment >= 0.9" in found.describe()
    assert ", SLO attainment 1.00 (95% interval 0.96-1.00), goodput 49.50 requests/s" in (
        found.describe()
    )
    d = json.loads(json.dumps(found.to_dict()))
    assert d["bounds"] == {ATTAINMENT_KEY: 0.9, "max_error_rate": 0.0}
    assert d["steps"][0]["slo_attainment"] == 1.0 and d["steps"][0]["goodput"] == 10.0
    assert len(d["steps"][0]["slo_attainment_interval"]) == 2
    header, rows = capacity_table(d)
    assert header[-2] == "SLO attained" and rows[0][-2] == "1.00"
    assert "limited by min_slo_attainment >= 0.9, broken at request rate" in capacity_headline(d)


def test_the_point_estimate_decides_and_a_straddling_interval_is_noted() -> None:
    """A level whose attainment is exactly the target holds, though its interval reaches
    below it; the capacity then says it is marginal."""

    def run(level: Mapping[str, Any]) -> PerfResult:
        rate = float(level["request_rate"])
        return stream_result(rate, 36 if rate <= 20 else 20, 40)

    found = find_capacity(run, {ATTAINMENT_KEY: 0.9}, over="request_rate", start=20)
    assert found.load == 20 and found.result is not None
    assert found.result.slo_attainment == pytest.approx(0.9)
    low, high = found.result.slo_attainment_interval or (0, 0)
    assert low < 0.9 < high
    assert any(
        n.startswith("marginal: at the capacity level the SLO attainment") for n in found.notes
    )


def test_attainment_alone_is_a_bound_to_search_under_and_latency_bounds_still_hold() -> None:
    found = find_capacity(
        queue(), {ATTAINMENT_KEY: 0.5, "p99_ms": 15}, over="request_rate", start=10
    )
    # Every level answers in 20 ms: the latency bound breaks first, attainment is not at fault.
    assert found.capacity is None and found.limited_by == "p99_ms"


def test_over_concurrency_the_most_streams_at_which_the_share_holds() -> None:
    """Accepted over concurrency too: a closed loop of c streams into one server of 20 ms
    answers in c x 20 ms, so an end-to-end SLO of 60 ms holds up to c = 3."""

    def run(level: Mapping[str, Any]) -> PerfResult:
        c = int(level["concurrency"])
        met = 40 if c * SERVICE_MS <= E2E_MS else 0
        return stream_result(1000 / SERVICE_MS, met, 40)

    found = find_capacity(run, {ATTAINMENT_KEY: 0.9}, over="concurrency")
    assert [s.load for s in found.steps] == [1, 2, 4, 3]
    assert found.load == 3 and found.limited_by == ATTAINMENT_KEY


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, 90, "0.9", True, math.nan])
def test_an_attainment_outside_0_1_names_the_value(bad: Any) -> None:
    with pytest.raises(ArgumentError) as info:
        goodput_bounds({}, attainment=bad, slo={"e2e_ms": 60})
    assert str(info.value).startswith(f"capacity(attainment={bad!r}): a share of requests in")
    assert "(0, 1] is accepted, e.g. attainment=0.9" in str(info.value)


def test_an_attainment_needs_slos_whoever_states_it() -> None:
    with pytest.raises(ArgumentError, match=r"^capacity of model 'llm': attainment=0.9 is the"):
        goodput_bounds({"p99_ms": 30}, attainment=0.9, slo=None, model="llm")
    with pytest.raises(ArgumentError, match=r"the sla marker's min_slo_attainment=0\.8 is the sha"):
        goodput_bounds({ATTAINMENT_KEY: 0.8}, slo={}, model="llm")
    # The argument overrides the marker's; both axes are accepted; 1 means every request.
    assert goodput_bounds({ATTAINMENT_KEY: 0.8}, attainment=1, slo={"e2e_ms": 60}) == {
        ATTAINMENT_KEY: 1.0
    }
    assert goodput_bounds({"p99_ms": 30}, slo=None) == {"p99_ms": 30}


def test_min_capacity_may_be_searched_under_an_attainment_alone() -> None:
    spec = sla.merge_markers("t", [((), {"min_capacity": 10, "min_slo_attainment": 0.9})])
    assert spec is not None and dict(spec.bounds)["min_slo_attainment"] == 0.9
    with pytest.raises(ConfigError, match=r"min_slo_attainment=0\.9 with capacity"):
        sla.merge_markers("t", [((), {"min_capacity": 10})])


def test_ab_same_level_rule_decides_on_the_attainment_when_it_limits() -> None:
    """In A/B mode a capacity limited by attainment is compared on attainment (then p95
    and p50) at the reference's capacity, as a latency-limited one on its latency."""
    assert bound_metric(ATTAINMENT_KEY) == "slo_attainment"
    assert bound_metric("max_error_rate") == "error_rate"
    worse = {"slo_attainment": Comparison("slo_attainment", REGRESSION, "ab", change_pct=-8.0)}
    decided = same_capacity("request_rate", worse, ATTAINMENT_KEY)
    assert decided.verdict == REGRESSION and "slo_attainment regression" in decided.note
    same = {"slo_attainment": Comparison("slo_attainment", PASS, "ab", change_pct=0.5)}
    assert same_capacity("request_rate", same, ATTAINMENT_KEY).verdict == PASS


def test_ab_a_candidate_that_breaks_the_attainment_at_the_references_capacity_regressed() -> None:
    """A/B mode, end to end on computed arms (Mann-Whitney over their windows): the search
    runs on the reference (20 ms: 50/s), both arms are measured at its capacity rate, where
    the candidate (25 ms: 40/s) misses the SLO; its attainment is significantly worse
    there, so its capacity is below the reference's."""
    service = {"ref": 20.0, "cand": 25.0}
    calls = [0]

    def level(name: str, rate: float, windows: int) -> PerfResult:
        out = []
        for i in range(windows):
            calls[0] += 1
            n = round(rate * 0.5)
            lag = service[name] - 1000 / rate
            met = n if lag <= 0 else min(n, math.floor((E2E_MS - service[name]) / lag) + 1)
            met = max(0, met - calls[0] % 2)  # a little noise between windows
            slo = SloFigures((("e2e_ms", E2E_MS),), n, met, (("e2e_ms", n - met),), 0.5)
            lat = LatencyStats(*[service[name] + calls[0] % 3] * 7, n)
            window = WindowResult(
                i, 0.5, n, 0, n, n / 0.5, lat,
                stream=StreamWindow(None, None, n * 4, n * 8.0, None, slo_attainment=met / n,
                                    goodput=met / 0.5),
            )  # fmt: skip
            stream = StreamFigures(
                None, None, None, None, n * 4, 4.0, n * 8.0, None, None, requests=n, slo=slo
            )
            workload = Workload(name, concurrency=None, request_rate=rate, arrival="constant")
            out.append(
                PerfResult(
                    name, None, workload, n / 0.5, lat, n, 0, (window,), 0.5, True, stream=stream
                )
            )
        return merge_blocks(out)

    def measure_level(name: str, lvl: Mapping[str, Any], **kwargs: Any) -> PerfResult:
        settings = kwargs.get("settings")
        return level(name, float(lvl["request_rate"]), settings.windows if settings else 1)

    def search(name: str) -> CapacityResult:
        def run(lvl: Mapping[str, Any]) -> PerfResult:
            return level(name, float(lvl["request_rate"]), 2)

        return find_capacity(run, {ATTAINMENT_KEY: 0.9}, over="request_rate", start=10)

    outcome = compare_capacity(
        measure_level,
        search,
        reference="ref",
        candidate="cand",
        model="serial",
        plan=ABPlan(method="mann-whitney", blocks=8, warmup_s=0.0, window_s=0.5),
        gate=GateSettings(),
    )
    assert outcome is not None and outcome.search.limited_by == ATTAINMENT_KEY
    capacity = outcome.comparisons[0]
    assert capacity.metric == "capacity" and capacity.verdict == REGRESSION, capacity.note
    assert "the candidate breaks min_slo_attainment 0" in capacity.note
    assert "its slo_attainment" in capacity.note and "is significantly worse" in capacity.note


# -- the real server: a model that serves its streams one at a time ----------------------

#: 4 tokens 5 ms apart, one request at a time: the model serves at most 50 requests/s.
TOKENS, TOKEN_MS = 4, 5
SLO_E2E_MS = 60


@pytest.fixture(scope="module")
def serial(server: LocalTritonServer) -> Iterator[str]:
    """`stream_errors` without errors, loaded as a copy through the repository API: one
    instance that streams each request in its execute, so requests queue behind each other."""
    import tritonclient.http
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    src = TEST_MODELS / "stream_errors"
    config = text_format.Parse((src / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = "serial_stream"
    config.parameters["tokens"].string_value = str(TOKENS)
    config.parameters["token_ms"].string_value = str(TOKEN_MS)
    config.parameters["fail_every"].string_value = str(10**9)
    client = tritonclient.http.InferenceServerClient(server.http_url, network_timeout=60)
    files = {"file:1/model.py": (src / "1" / "model.py").read_bytes()}
    client.load_model("serial_stream", config=json_format.MessageToJson(config), files=files)
    try:
        yield "serial_stream"
    finally:
        client.unload_model("serial_stream")
        client.close()


#: Short levels: a warm-up, then two windows at most (an overloaded level never settles).
SHORT = MeasureSettings(warmup_s=0.3, windows=2, window_s=0.4, max_windows=2)


def test_the_attainment_knee_of_a_serial_model_is_its_service_rate(
    server: LocalTritonServer, serial: str
) -> None:
    """Past 1 / (4 x 5 ms) = 50 requests/s the queue grows without end, and the end-to-end
    SLO of 60 ms (three services) is soon missed by most requests: the search stops below
    that rate, on attainment (no latency bound is given)."""

    def run(level: Mapping[str, Any]) -> PerfResult:
        # At most 8 in flight: an overloaded level drains in a few services, not seconds.
        return measure(
            server, serial, settings=SHORT, slo={"e2e_ms": SLO_E2E_MS}, max_in_flight=8, **level
        )

    found = find_capacity(
        run, {ATTAINMENT_KEY: 0.9}, over="request_rate", start=20, resolution=4, model=serial
    )
    table = found.step_table()
    assert found.limited_by == ATTAINMENT_KEY, table
    # Overheads (and a loaded machine) make the service slower than 20 ms, never faster.
    assert found.load is not None and 25 <= found.load <= 50 * 1.05, table
    # Above the service rate no level holds; every level that broke broke on attainment.
    assert not any(s.passed for s in found.steps if s.load > 50 * 1.05), table
    broken = [s for s in found.steps if not s.passed]
    assert broken and all(s.breached[0].startswith("min_slo_attainment 0") for s in broken)
    assert all((s.result.slo_attainment or 0) < 0.9 for s in broken), table
    assert found.result is not None and (found.result.slo_attainment or 0) >= 0.9


GOODPUT_TEST = """
import pytest

# The marker's min_slo_attainment lets min_capacity be searched; attainment= overrides it.
@pytest.mark.sla(min_capacity=10, min_slo_attainment=0.5)
def test_goodput_capacity(triton_perf):
    found = triton_perf.capacity(
        "serial_stream", over="request_rate", attainment=0.9, slo={"e2e_ms": 200},
        start=10, limit=20, windows=2, window_s=0.4, warmup_s=0.3, method="search",
    )
    assert found.bounds["min_slo_attainment"] == 0.9 and found.limited_by == "limit"

def test_attainment_without_slo(triton_perf):
    with pytest.raises(ValueError, match="attainment=0.9 is the share of requests"):
        triton_perf.capacity("serial_stream", over="request_rate", attainment=0.9)
"""


def test_a_goodput_capacity_through_the_fixture_is_recorded_checked_and_saved(
    server: LocalTritonServer, serial: str, pytester: pytest.Pytester
) -> None:
    """The fixture's path, well below the knee (two levels, a loose SLO: what is tested
    here is the path, the knee is tested above): the record carries the search
    with each level's attainment, min_capacity and min_slo_attainment are checked on it,
    it is saved as a baseline and compared with it, and its energy says why it is absent
    here."""
    pytester.makepyfile(test_goodput=GOODPUT_TEST)
    common = (
        f"--triton-url={server.http_url}",
        f"--triton-grpc-url={server.grpc_url}",
        *FAST_OPTIONS,
        "--triton-perf-compare-windows=2",
        "-p",
        "no:cacheprovider",
    )
    result = pytester.runpytest_inprocess(
        *common, "--triton-perf-json=out.json", "--triton-perf-save"
    )
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "out.json").read_text())
    [record] = [r for r in doc["measurements"] if r["test"].endswith("test_goodput_capacity")]
    cap = record["analysis"]["capacity"]
    assert cap["over"] == "request_rate" and cap["bounds"]["min_slo_attainment"] == 0.9
    assert [s["load"] for s in cap["steps"]] == [10, 20]
    assert all(s["passed"] and s["slo_attainment"] >= 0.9 for s in cap["steps"]), cap
    res = record["result"]
    assert res["capacity"] is not None and res["slo_attainment"] >= 0.9
    assert res["goodput"] == pytest.approx(
        res["slo_attainment"] * res["requests"] / res["duration_s"]
    )
    checked = [c["key"] for c in record["sla"] if c["passed"]]
    assert sorted(checked) == ["max_error_rate", "min_capacity", "min_slo_attainment"], checked
    saved = list((pytester.path / ".triton-perf").rglob("*.json"))
    assert any('"capacity"' in p.read_text() for p in saved), saved
    # Compared with it in history mode, on its capacity (and errors), as any capacity.
    again = pytester.runpytest_inprocess(
        *common, "--triton-perf-compare", "--triton-perf-json=again.json", "-k", "capacity"
    )
    assert again.ret == 0, "\n".join(again.outlines[-40:])
    doc = json.loads((pytester.path / "again.json").read_text())
    comps = {c["metric"] for c in doc["measurements"][0]["comparisons"]}
    assert comps == {"capacity", "error_rate"}, comps
    # The server is reached at a loopback address: this host's GPUs are read, and where
    # it has none the energy says why it is absent (the real NVML's answer).
    if res["energy_j"] is None:
        reason = res["unavailable"]["energy_j"]
        assert res["tokens_per_joule"] is None, res["tokens_per_joule"]
        assert reason.startswith("no NVIDIA GPU: NVML not found"), reason
        assert res["unavailable"]["tokens_per_joule"] == reason
    else:  # a machine with a GPU: the stream's tokens per joule of its energy
        assert res["energy_j"] > 0 and res["tokens_per_joule"] > 0


def test_a_suite_states_a_goodput_capacity(tmp_path: Path) -> None:
    path = tmp_path / "triton-perf-x.yaml"
    path.write_text(
        "tests:\n"
        "  - name: goodput\n    model: llm\n    slo: {ttft_ms: 200, tpot_ms: 50}\n"
        "    load: {capacity: {over: request_rate, attainment: 0.9}}\n"
        "    sla: {min_capacity: 5, min_slo_attainment: 0.5}\n"
    )
    (test,) = load_suite(path, shown_as="x.yaml").tests
    assert test.call == "capacity"
    assert test.arguments == {
        "slo": {"ttft_ms": 200, "tpot_ms": 50},
        "over": "request_rate",
        "attainment": 0.9,
    }
    path.write_text(
        "tests:\n  - name: a\n    model: llm\n"
        "    load: {capacity: {over: request_rate, attainment: 1.5}}\n"
        "  - name: b\n    model: llm\n    load: {capacity: {attainment: 0.9}}\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(path, shown_as="x.yaml")
    lines = str(info.value).splitlines()
    assert any(
        "a: load.capacity.attainment: 1.5 is not accepted; a number > 0 and <= 1 is." in x
        for x in lines
    ), lines
    assert any(
        "b: load: capacity: attainment=0.9 is the share of requests that meet the per-request "
        "SLOs, but no SLOs were given" in x
        for x in lines
    ), lines
