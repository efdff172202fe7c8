"""The load options: every key has its default and its line of documentation, the engine
refuses a keyword it does not take as Python does, and a call's window overrides are split
from the engine's keywords."""

from __future__ import annotations

from typing import get_args, get_type_hints

import pytest

from pytest_triton_perf.load.driver import GRPC_CLIENTS
from pytest_triton_perf.load.schedule import ARRIVALS
from pytest_triton_perf.load.sequences import ID_TYPES
from pytest_triton_perf.load.shared_memory import KINDS
from pytest_triton_perf.measure import options
from pytest_triton_perf.measure.options import (
    LOAD_DEFAULTS,
    CallOptions,
    EngineOptions,
    LoadOptions,
    WindowOptions,
    keys,
    split_windows,
    with_defaults,
)


def test_every_option_has_one_default_and_a_line_of_documentation() -> None:
    assert list(LOAD_DEFAULTS) != [] and set(LOAD_DEFAULTS) == set(keys(LoadOptions))
    docs = options.docs()
    assert set(docs) == set(keys(LoadOptions))
    assert all(line.endswith(".") and len(line) > 15 for line in docs.values()), docs
    assert docs["prompt_length"].startswith("Length of prompt inputs in tokens: 128, (64, 512)")


def test_the_parts_add_up_to_every_option() -> None:
    assert set(keys(EngineOptions)) | set(keys(WindowOptions)) == set(keys(LoadOptions))
    assert set(keys(CallOptions)) == set(keys(LoadOptions)) - {"concurrency", "request_rate"}
    assert not set(keys(EngineOptions)) & set(keys(WindowOptions))


@pytest.mark.parametrize(
    ("key", "choices"),
    [
        ("arrival", ARRIVALS),
        ("grpc_client", GRPC_CLIENTS),
        ("sequence_id_type", ID_TYPES),
        ("shared_memory", KINDS),
        ("protocol", ("grpc", "http", "generate")),
    ],
)
def test_a_choice_is_its_literal_type(key: str, choices: tuple[str, ...]) -> None:
    assert get_args(get_type_hints(LoadOptions)[key]) == choices


def test_the_engine_takes_the_given_values_and_the_defaults_of_the_others() -> None:
    got = with_defaults({"concurrency": 4, "protocol": "http"})
    assert (got["concurrency"], got["protocol"], got["batch_size"]) == (4, "http", 1)
    assert set(got) == set(keys(EngineOptions))


@pytest.mark.parametrize("key", ["concurency", "warmup_s", "settings"])
def test_a_keyword_the_engine_does_not_take_is_a_type_error(key: str) -> None:
    with pytest.raises(
        TypeError, match=f"^prepare\\(\\) got an unexpected keyword argument '{key}'$"
    ):
        with_defaults({key: 1})


def test_a_calls_windows_are_split_from_the_engines_keywords() -> None:
    windows, rest = split_windows({"warmup_s": 0.5, "window_s": None, "protocol": "http"})
    assert (windows, rest) == ({"warmup_s": 0.5, "window_s": None}, {"protocol": "http"})
