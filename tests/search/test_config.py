"""Candidate configurations: edits made on the protobuf message, the diff against the
committed config.pbtxt, the combinations that cannot be valid, the committed one as cfg0."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.search.candidates import plan
from pytest_triton_perf.search.config import apply_values, config_diff, parse_config, values_of
from pytest_triton_perf.search.space import parse_space
from tests.conftest import EXAMPLE_MODELS

SLEEPY = EXAMPLE_MODELS / "sleepy" / "config.pbtxt"


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_values_are_set_on_the_message_and_the_text_is_ready_to_commit() -> None:
    committed = parse_config(SLEEPY)
    config = apply_values(
        committed,
        {
            "instance_count": 3,
            "instance_kind": "KIND_GPU",
            "max_batch_size": 16,
            "preferred_batch_size": 4,
            "max_queue_delay_us": 500,
            "parameters.service_time_ms": 5,
            "parameters.new_key": "x",
        },
    )
    again = _parse(text_format.MessageToString(config))
    assert again.name == "sleepy"  # the original name: ready to commit
    assert [(g.count, g.kind) for g in again.instance_group] == [
        (3, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    ]
    assert again.max_batch_size == 16
    assert list(again.dynamic_batching.preferred_batch_size) == [4]
    assert again.dynamic_batching.max_queue_delay_microseconds == 500
    assert again.parameters["service_time_ms"].string_value == "5"
    assert again.parameters["new_key"].string_value == "x"
    assert committed.instance_group[0].count == 1  # the committed message is untouched
    assert not committed.HasField("dynamic_batching")


def test_every_instance_group_is_edited_and_one_is_made_where_there_is_none() -> None:
    two = _parse('name: "m" instance_group [{count: 1 kind: KIND_CPU}, {count: 2 kind: KIND_GPU}]')
    assert [g.count for g in apply_values(two, {"instance_count": 4}).instance_group] == [4, 4]
    none = _parse('name: "m"')
    made = apply_values(none, {"instance_kind": "KIND_CPU"}).instance_group
    assert [(g.count, g.kind) for g in made] == [(1, model_config_pb2.ModelInstanceGroup.KIND_CPU)]


def test_dynamic_batching_is_set_and_cleared_keeping_the_batchers_settings() -> None:
    batching = _parse(
        'name: "m" max_batch_size: 8 dynamic_batching { max_queue_delay_microseconds: 100 }'
    )
    on = apply_values(batching, {"dynamic_batching": True})
    assert on.dynamic_batching.max_queue_delay_microseconds == 100
    assert not apply_values(batching, {"dynamic_batching": False}).HasField("dynamic_batching")
    plain = _parse('name: "m" max_batch_size: 8')
    assert apply_values(plain, {"dynamic_batching": True}).HasField("dynamic_batching")
    # A batcher setting alone turns dynamic batching on.
    assert apply_values(plain, {"max_queue_delay_us": 0}).HasField("dynamic_batching")


def test_the_diff_is_a_unified_diff_of_the_text_format() -> None:
    committed = parse_config(SLEEPY)
    diff = config_diff(committed, apply_values(committed, {"instance_count": 2}))
    assert diff.startswith("--- committed/config.pbtxt\n+++ candidate/config.pbtxt\n@@")
    changed = [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    assert changed == ["-  count: 1", "+  count: 2"]
    assert config_diff(committed, committed) == ""


def test_the_candidates_skip_invalid_combinations_and_the_committed_one_is_cfg0() -> None:
    committed = parse_config(SLEEPY)  # max_batch_size 8, one instance, no dynamic batching
    space = parse_space(
        {
            "instance_count": [1, 2],
            "dynamic_batching": [False, True],
            "preferred_batch_size": [4, 16],
        }
    )
    candidates = plan("sleepy", space, committed)
    # preferred_batch_size with dynamic_batching False (4 combinations), 16 > max_batch_size 8
    # (2 more): 6 skipped; 2 left, none of them the committed configuration.
    assert len(candidates.skipped) == 6
    assert any("needs dynamic batching" in why for _, why in candidates.skipped)
    assert any("preferred_batch_size 16 > max_batch_size 8" in why for _, why in candidates.skipped)
    names = [a.name for a in candidates.arms]
    assert names == ["sleepy__cfg0", "sleepy__cfg1", "sleepy__cfg2"]
    cfg0 = candidates.arms[0]
    assert cfg0.committed and cfg0.config_diff == ""
    assert cfg0.values == {
        "instance_count": 1,
        "dynamic_batching": False,
        "preferred_batch_size": None,
    }
    assert [a.values for a in candidates.arms[1:]] == [
        {"instance_count": 1, "dynamic_batching": True, "preferred_batch_size": 4},
        {"instance_count": 2, "dynamic_batching": True, "preferred_batch_size": 4},
    ]


def test_a_combination_equal_to_the_committed_configuration_is_cfg0() -> None:
    committed = parse_config(SLEEPY)
    space = parse_space({"instance_count": [1, 2], "parameters.service_time_ms": ["20", "10"]})
    candidates = plan("sleepy", space, committed)
    assert len(candidates.arms) == 4  # 4 combinations, one of them the committed one
    assert candidates.arms[0].committed
    assert candidates.arms[0].values == {"instance_count": 1, "parameters.service_time_ms": "20"}
    assert values_of(committed, ["instance_kind", "max_batch_size"]) == {
        "instance_kind": "KIND_CPU",
        "max_batch_size": 8,
    }


def test_a_missing_or_broken_config_is_an_argument_error(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="no such file; a configuration search edits"):
        parse_config(tmp_path / "config.pbtxt")
    (tmp_path / "config.pbtxt").write_text("name: 'm' instance_group [ { count: x } ]")
    with pytest.raises(ArgumentError, match="does not parse as a model configuration"):
        parse_config(tmp_path / "config.pbtxt")
