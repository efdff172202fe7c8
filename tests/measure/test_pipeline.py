"""Pipelines measured per step: the `pipeline` ensemble of the example models (`scale` then
`sleepy`) and the `bls_caller` test model (one BLS call to `scale` per request) on the real
server; the step accounting from statistics snapshots; the sentence that names the step of
a regression."""

from __future__ import annotations

import pytest

from pytest_triton_perf.baseline.steps import locate_step, name_regressed_step
from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.measure.pipeline import StepPlan, assess
from pytest_triton_perf.measure.server_stats import StatsSnapshot
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.verdicts import PASS, REGRESSION, Comparison

FAST = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.4)


def snap(count: int, infer_ms: float = 1.0) -> StatsSnapshot:
    """Counters of a model that completed ``count`` requests of ``infer_ms`` each."""
    ns = int(count * infer_ms * 1e6)
    durations = {
        "queue": (count, count * 100_000),
        "compute_input": (count, 0),
        "compute_infer": (count, ns),
        "compute_output": (count, 0),
    }
    return StatsSnapshot(success=count, durations=durations)


def spec(name: str, *, backend: str = "python", steps: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(
        name=name,
        version=None,
        max_batch_size=8,
        inputs=(),
        outputs=(),
        platform="ensemble" if steps else "",
        backend="" if steps else backend,
        ensemble_steps=steps,
    )


def test_ensemble_steps_are_parsed_from_the_configuration() -> None:
    config = {
        "platform": "ensemble",
        "ensemble_scheduling": {
            "step": [{"model_name": "scale"}, {"model_name": "sleepy"}, {"model_name": "scale"}]
        },
    }
    parsed = ModelSpec.from_metadata({"name": "p"}, config)
    assert parsed.ensemble and parsed.ensemble_steps == ("scale", "sleepy", "scale")
    plain = ModelSpec.from_metadata({"name": "m"}, {"backend": "python"})
    assert not plain.ensemble and plain.ensemble_steps == () and plain.backend == "python"


def test_an_ensemble_step_that_served_others_too_reports_the_excess_as_other_traffic() -> None:
    plan = StepPlan("ensemble", "config", ("a", "b"), {"a": 1, "b": 2})
    before = {"p": snap(0), "a": snap(0), "b": snap(0), "x": snap(0)}
    after = {"p": snap(50), "a": snap(50), "b": snap(130), "x": snap(7)}
    seen = assess(plan, spec("p", steps=("a", "b", "b")), before, after)
    assert seen.pipeline is not None
    assert [s.model for s in seen.pipeline.steps] == ["a", "b"]
    b = seen.pipeline.step("b")
    assert b is not None and b.calls_per_request == pytest.approx(130 / 50)
    assert b.time_ms == pytest.approx(1.1)  # queue 0.1 + infer 1.0 per request of the step
    assert b.share_ms == pytest.approx(1.1 * 130 / 50)
    # b was sent 2 per request (100); 30 more came from elsewhere, like x's 7.
    assert seen.other_traffic == (("b", 30), ("x", 7))
    assert any("step 'b' completed 30 request(s) more" in n for n in seen.notes)


def test_declared_bls_steps_are_the_pipelines_whatever_their_count() -> None:
    plan = StepPlan("bls", "declared", ("a",))
    seen = assess(plan, spec("m"), {"m": snap(0), "a": snap(0)}, {"m": snap(40), "a": snap(97)})
    assert seen.pipeline is not None and seen.pipeline.source == "declared"
    assert seen.other_traffic == ()


@pytest.mark.parametrize(
    ("count", "backend", "inferred"),
    [(120, "python", True), (121, "python", False), (120, "onnxruntime", False)],
)
def test_bls_steps_are_inferred_from_whole_multiples_and_stay_other_traffic(
    count: int, backend: str, inferred: bool
) -> None:
    before = {"m": snap(0), "a": snap(0)}
    after = {"m": snap(40), "a": snap(count)}
    seen = assess(None, spec("m", backend=backend), before, after)
    assert seen.other_traffic == (("a", count),)
    if inferred:
        assert seen.pipeline is not None and seen.pipeline.source == "traffic"
        assert seen.pipeline.steps[0].calls_per_request == 3.0
        assert any("composing_models=['a']" in n for n in seen.notes)
    else:
        assert seen.pipeline is None and seen.notes == ()


def test_the_ensemble_is_broken_down_per_step(server: LocalTritonServer) -> None:
    r = measure(server, "pipeline", concurrency=2, settings=FAST)
    assert r.errors == 0 and r.requests > 0
    assert r.pipeline is not None
    assert (r.pipeline.kind, r.pipeline.source) == ("ensemble", "config")
    assert [s.model for s in r.pipeline.steps] == ["scale", "sleepy"]
    for step in r.pipeline.steps:
        # Every request of the pipeline ran each step once, over the same span.
        assert step.calls_per_request == 1.0, step
        assert step.server.requests == r.server.requests if r.server else step
    scale, sleepy = r.pipeline.steps
    assert sleepy.server.compute_infer_ms >= 15  # sleeps 20 ms per execution
    assert scale.share_ms < sleepy.share_ms / 4
    assert r.other_traffic == ()  # the steps' traffic is the pipeline's own
    steps = r.to_dict()["pipeline"]["steps"]
    assert steps[1]["model"] == "sleepy" and steps[1]["share_ms"] == sleepy.share_ms


def test_a_bls_model_is_broken_down_per_declared_and_inferred_step(
    server: LocalTritonServer,
) -> None:
    declared = measure(server, "bls_caller", composing_models=["scale"], settings=FAST)
    assert declared.errors == 0 and declared.pipeline is not None
    assert (declared.pipeline.kind, declared.pipeline.source) == ("bls", "declared")
    (step,) = declared.pipeline.steps
    assert step.model == "scale" and step.calls_per_request == 1.0
    assert declared.other_traffic == ()
    inferred = measure(server, "bls_caller", settings=FAST)
    assert inferred.pipeline is not None and inferred.pipeline.source == "traffic"
    assert [s.model for s in inferred.pipeline.steps] == ["scale"]
    assert dict(inferred.other_traffic)["scale"] == inferred.server.requests  # type: ignore[union-attr]


def test_composing_models_are_checked(server: LocalTritonServer) -> None:
    with pytest.raises(InputSpecError, match="is an ensemble: its steps come from its config"):
        measure(server, "pipeline", composing_models=["scale"], settings=FAST)
    with pytest.raises(InputSpecError, match="composing model 'nope' is not ready"):
        measure(server, "bls_caller", composing_models=["nope"], settings=FAST)
    with pytest.raises(InputSpecError, match="composing_models must be a non-empty list"):
        measure(server, "bls_caller", composing_models="scale", settings=FAST)  # type: ignore[arg-type]


# --- naming the step of a regression --------------------------------------------------------


def result(scale_infer_ms: float, mean_ms: float, queue_ms: float = 0.1) -> dict[str, object]:
    """``PerfResult.to_dict()`` of the pipeline, as far as the step sentence reads it."""

    def step(model: str, infer: float) -> dict[str, object]:
        server = {
            "queue_ms": queue_ms,
            "compute_input_ms": 0.0,
            "compute_infer_ms": infer,
            "compute_output_ms": 0.0,
        }
        return {
            "model": model,
            "calls_per_request": 1.0,
            "share_ms": queue_ms + infer,
            "server": server,
        }

    return {
        "latency_ms": {"avg": mean_ms},
        "pipeline": {
            "kind": "ensemble",
            "source": "config",
            "steps": [step("scale", scale_infer_ms), step("sleepy", 5.0)],
        },
    }


def test_the_step_whose_server_time_grew_is_named() -> None:
    baseline = [result(0.4, 6.0), result(0.5, 6.2)]
    text = locate_step(baseline, result(10.4, 16.3))
    assert text is not None
    assert text.startswith("located in step 'scale': server time 0.55 -> 10.5 ms")
    assert "mostly compute infer +9.95 ms" in text
    assert "98% of the +10.2 ms change in mean latency" in text
    assert text.endswith("the largest growth of the pipeline's 2 steps")


def test_no_step_is_named_when_the_steps_do_not_explain_the_change() -> None:
    text = locate_step([result(0.4, 6.0)], result(0.41, 12.0))
    assert text is not None and text.startswith("no step of the pipeline explains it")
    assert locate_step([{"latency_ms": {"avg": 1.0}}], result(0.4, 6.0)) is None


def test_only_regressions_get_the_step_sentence() -> None:
    comps = [
        Comparison("p50_ms", REGRESSION, "history", note="Mann-Whitney U"),
        Comparison("throughput", PASS, "history", note="x"),
    ]
    named = name_regressed_step(comps, [result(0.4, 6.0)], result(10.4, 16.4))
    assert named[0].note.startswith("located in step 'scale'")
    assert named[0].note.endswith("; Mann-Whitney U")
    assert named[1] == comps[1]
