"""The search space and the objective/constraint arguments: every bad value is refused
before a server is touched, with a message that names it and what is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.search.objective import breaches, parse_objective, parse_sla
from pytest_triton_perf.search.space import parse_space


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"instance_counts": [1, 2]},
            "unknown key 'instance_counts'. Did you mean 'instance_count'",
        ),
        ({"max_batch": [4]}, "Did you mean 'max_batch_size'"),
        ({"parameter.service_time_ms": ["5"]}, "Did you mean 'parameters.<key>'"),
        ({"parameters.": ["5"]}, "unknown key 'parameters.'"),
        (
            {"instance_count": 2},
            r"instance_count=2: a list of values is accepted, e.g. instance_count=\[2\]",
        ),
        ({"instance_kind": "KIND_GPU"}, "a list of values is accepted"),
        ({"instance_count": []}, r"instance_count=\[\]: give at least one value"),
        (
            {"instance_count": [0]},
            "instance_count: the value 0 is not accepted; an integer >= 1 is",
        ),
        ({"instance_count": [True]}, "the value True is not accepted; an integer >= 1"),
        ({"instance_count": [1.5]}, "the value 1.5 is not accepted"),
        ({"max_batch_size": [-1]}, "max_batch_size: the value -1 is not accepted; an integer >= 0"),
        ({"preferred_batch_size": [0]}, "preferred_batch_size: the value 0 .* an integer >= 1"),
        ({"max_queue_delay_us": [-5]}, "max_queue_delay_us: the value -5 .* an integer >= 0"),
        ({"instance_kind": ["tpu"]}, "'tpu' is not accepted; one of KIND_CPU, KIND_GPU, KIND_AUTO"),
        ({"dynamic_batching": ["yes"]}, r"dynamic_batching: the value 'yes' .* \(a bool\)"),
        ({"dynamic_batching": [1]}, "the value 1 is not accepted; true or false"),
        ({"parameters.mode": [None]}, "parameters.mode: the value None .* a string or a number"),
        ({"parameters.mode": [["a"]]}, "a string or a number"),
        ({}, "empty; name at least one key"),
        ([("instance_count", [1])], "a mapping of key -> list of values is accepted"),
    ],
)
def test_a_bad_space_names_the_key_the_value_and_what_is_accepted(space: Any, message: str) -> None:
    with pytest.raises(ArgumentError, match=message) as info:
        parse_space(space)
    assert isinstance(info.value, ValueError)


def test_a_space_is_normalised_and_repeats_dropped() -> None:
    parsed = parse_space(
        {
            "instance_kind": ["cpu", "KIND_CPU", "Gpu", "kind_auto"],
            "instance_count": [1, 2, 1],
            "dynamic_batching": [False, True, False],
            "parameters.service_time_ms": ["20", 20, 20.0],
            "max_batch_size": [0, 8],
        }
    )
    assert parsed == {
        "instance_kind": ("KIND_CPU", "KIND_GPU", "KIND_AUTO"),
        "instance_count": (1, 2),
        "dynamic_batching": (False, True),
        # a string and a number are different values of a parameter
        "parameters.service_time_ms": ("20", 20, 20.0),
        "max_batch_size": (0, 8),
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("capacity", "capacity"),
        ("perf_throughput", "throughput"),
        ("perf_latency_p99", "p99_ms"),
        ("gpu_used_memory", "gpu_memory_mb"),
        ("p99_ms", "p99_ms"),
    ],
)
def test_model_analyzers_objective_names_are_accepted(given: str, expected: str) -> None:
    assert parse_objective(given) == expected


def test_an_unknown_objective_suggests_the_closest() -> None:
    with pytest.raises(
        ArgumentError, match=r"'throughtput' is not accepted\. Did you mean 'throughput'"
    ):
        parse_objective("throughtput")


def test_sla_constraints_take_the_markers_keys_and_aliases() -> None:
    assert parse_sla({"perf_latency_p99": 30, "min_throughput": 10}) == {
        "p99_ms": 30.0,
        "min_throughput": 10.0,
    }
    with pytest.raises(ArgumentError, match="unknown sla key 'p99'"):
        parse_sla({"p99": 30})
    with pytest.raises(ArgumentError, match="the bound must be a positive finite number"):
        parse_sla({"p99_ms": -1})


def test_a_short_measurement_breaks_a_constraint_only_when_clearly_beyond_it() -> None:
    figures = {"p99_ms": 33.0, "throughput": 90.0, "error_rate": 0.0, "gpu_memory_mb": None}
    bounds = {"p99_ms": 30.0, "min_throughput": 100.0, "max_gpu_memory_mb": 10.0}
    assert breaches(figures, bounds) == (
        "p99_ms 33.00 > 30.00",
        "min_throughput 90.00 < 100.0",
        "max_gpu_memory_mb unavailable",
    )
    # Within 20% of the bounds, and a figure not measured: not clearly broken.
    assert breaches(figures, bounds, tolerance=0.2) == ()
    assert breaches({**figures, "p99_ms": 37.0}, bounds, tolerance=0.2) == ("p99_ms 37.00 > 30.00",)
