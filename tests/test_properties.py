"""Property-based tests of marker and option parsing (issue 6, item 6).

For arbitrary keys, values and text each parser either returns a value that satisfies its
invariants, or raises :class:`ConfigError` naming the key or flag and the value: never any
other exception. The examples at the end pin the inputs that once escaped as other
exceptions (found by these properties).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_triton_perf import sla
from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.metrics import MARKER_KEYS, METRIC_ALIASES, parse_metric_map
from pytest_triton_perf.options import OPTIONS, Option
from pytest_triton_perf.options.parsers import COLUMNS
from pytest_triton_perf.urls import parse_url

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METRICS = set(METRIC_ALIASES.values())

# -- strategies ------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
)
number_text = st.one_of(
    numbers.map(str),
    st.sampled_from(["0", "-0", "1e309", "-1e309", "nan", "inf", "1_000", " 3 ", "0x10", "."]),
)
unit_suffix = st.sampled_from(["", "%", "ms", "s", "k", "m", "g", "b", "mb"])
words = st.sampled_from(
    [
        "all", "none", "off", "on", "true", "false", "unlimited", "-1", "host", "ports",
        "point", "strict", "missing", "always", "never", "count=", "device=", "GPU-", "MIG-",
        "http://", "grpc://", "localhost", "127.0.0.1", ":8000", "[::1]", "/", "@sha256:",
        "nvcr.io/nvidia/tritonserver:24.08-py3", "{", "}", '{"init": false}', '{"image": 1}',
        "[]", "p50", "p99", "throughput", "error_rate", "errors", "p50_ms", "=", ",",
        "/", "1/2", "memory", "-", "queue", "test",
    ]
)  # fmt: skip
metric_pairs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(sorted(METRIC_ALIASES)), st.text(max_size=6)),
        st.one_of(st.tuples(number_text, unit_suffix).map("".join), st.just("off")),
    ),
    max_size=4,
).map(lambda kv: ",".join(f"{k}={v}" for k, v in kv))
option_text = st.one_of(
    st.text(max_size=30),
    st.tuples(number_text, unit_suffix).map("".join),
    st.lists(st.one_of(words, number_text), min_size=1, max_size=4).map("".join),
    metric_pairs,
)
marker_values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    # Ints beyond a float's range: _KNOWN_BUG_HUGE_INT_BOUND (pinned below).
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
bound_keys = st.one_of(
    st.sampled_from(sorted(MARKER_KEYS)), st.text(min_size=1, max_size=12)
)  # our keys and Model Analyzer's names for them
regression_values: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(METRIC_ALIASES)), st.text(max_size=5)),
        st.one_of(st.none(), st.booleans(), number_text, numbers, st.just("off")),
        max_size=3,
    ),
)


# -- invariants of each option's parsed value -----------------------------------------------


def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _check_metric_map(value: Any, unit: str) -> None:
    assert isinstance(value, dict) and set(value) <= METRICS
    for v in value.values():
        if v is None:
            continue
        assert isinstance(v, float)
        if unit == "%":
            assert 0 <= v < 10
        # unit "ms": finite and >= 0 is what it should be: _KNOWN_BUG_FLOOR_VALUES.


def _check_value(opt: Option, value: Any) -> None:
    """The parsed value of ``opt`` is one its consumers can use."""
    name = getattr(opt.parse, "__name__", "")
    if name == "positive_float":
        assert _finite(value) and value > 0
    elif name == "non_negative_float":
        assert _finite(value) and value >= 0
    elif name == "positive_int":
        assert isinstance(value, int) and value >= 1
    elif name == "probability":
        assert isinstance(value, float) and 0 < value < 1
    elif name == "non_empty_text":
        assert isinstance(value, str) and value and value == value.strip()
    elif name == "name_list":
        assert isinstance(value, tuple) and value
        assert all(n and n == n.strip() and "," not in n and " " not in n for n in value)
    elif name == "address":
        host, port = parse_url(value, option=opt.flag)
        assert host and 0 <= port <= 65535
    elif name == "switch":
        assert isinstance(value, bool)
    elif name == "effects":
        _check_metric_map(value, "%")
    elif name == "floors":
        _check_metric_map(value, "ms")
    elif name == "sla_mode":
        assert value in ("point", "strict")
    elif name == "policy":
        assert value in ("pass", "warn", "fail")
    elif name == "on_off":
        assert isinstance(value, bool)
    elif name == "ab_method":
        assert value in ("paired", "mann-whitney")
    elif name == "parse_gpus":
        if value is not None:
            assert (value.count is not None) != bool(value.device_ids)
            assert value.count is None or value.count == -1 or value.count >= 1
    elif name in ("parse_pull", "parse_network"):
        assert isinstance(value, str) and value == value.strip().lower()
    elif name == "parse_ipc":
        assert value in ("private", "host")
    elif name == "parse_image":
        assert value and not any(c.isspace() for c in value)
    elif name == "parse_shm_size":
        assert isinstance(value, str) and (value.isdecimal() or value[:-1].isdecimal())
    elif name == "parse_ulimit":
        assert value == "off" or (isinstance(value, int) and value >= -1)
    elif name == "parse_docker_kwargs":
        assert isinstance(value, dict)
    elif name == "file_patterns":
        assert isinstance(value, tuple) and value
        assert all(p and "/" not in p and "\\" not in p and not p.isspace() for p in value)
        assert all("," not in p and " " not in p for p in value)
    elif name == "columns":
        assert isinstance(value, tuple) and value and len(set(value)) == len(value)
        assert set(value) <= set(COLUMNS)
    elif name == "sort_column":
        assert value.removeprefix("-") in COLUMNS
    elif name == "shard":
        k, n = value
        assert isinstance(k, int) and isinstance(n, int) and 1 <= k <= n
    else:  # a new option: give it an invariant here
        raise AssertionError(f"no invariant for {opt.flag} ({name})")


def _names_flag_and_value(message: str, flag: str, text: str) -> bool:
    """The message names the flag and the value (or, for a JSON object, its bad key)."""
    if flag not in message:
        return False
    return (
        repr(text) in message
        or repr(text.strip()) in message
        or "is set by the launcher" in message
    )


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.flag)
@BOUNDED
@given(text=option_text)
@example(text="")
@example(text="   ")
@example(text="0")
@example(text="-1")
@example(text="nan")
@example(text="inf")
def test_option_parse_returns_a_valid_value_or_a_config_error(opt: Option, text: str) -> None:
    try:
        value = opt.parse(opt.flag, text)
    except ConfigError as e:
        assert _names_flag_and_value(str(e), opt.flag, text), str(e)
        return
    _check_value(opt, value)


@BOUNDED
@given(text=st.one_of(metric_pairs, option_text), unit=st.sampled_from(["%", "ms"]))
def test_metric_map_text_returns_known_metrics_or_a_config_error(text: str, unit: str) -> None:
    where = f"--flag={text!r}"
    try:
        value = parse_metric_map(text, where=where, unit=unit)
    except ConfigError as e:
        assert str(e).startswith(where)
        return
    _check_metric_map(value, unit)


@BOUNDED
@given(
    mapping=st.dictionaries(
        st.one_of(st.sampled_from(sorted(METRIC_ALIASES)), st.text(max_size=5)),
        st.one_of(st.none(), st.booleans(), number_text, numbers, st.just("off")),
        max_size=4,
    ),
    unit=st.sampled_from(["%", "ms"]),
)
def test_metric_map_mapping_returns_known_metrics_or_a_config_error(
    mapping: dict[str, Any], unit: str
) -> None:
    where = f"sla(regression={mapping!r})"
    try:
        value = parse_metric_map(mapping, where=where, unit=unit)
    except ConfigError as e:
        assert str(e).startswith(where)
        return
    _check_metric_map(value, unit)
    # Every key was a known alias, and each metric kept what its key said.
    assert all(k in METRIC_ALIASES for k in mapping)


# -- the sla marker ------------------------------------------------------------------------


@BOUNDED
@given(kwargs=st.dictionaries(bound_keys, marker_values, max_size=4))
@example(kwargs={"p99_ms": 0})
@example(kwargs={"p99_ms": -1.0})
@example(kwargs={"p99_ms": math.inf})
@example(kwargs={"max_error_rate": 1.5})
@example(kwargs={"max_error_rate": True})
@example(kwargs={"p99": 30})
def test_parse_marker_returns_valid_bounds_or_names_key_and_value(kwargs: dict[str, Any]) -> None:
    test = "tests/test_x.py::test_y"
    try:
        bounds = sla.parse_marker(test, (), kwargs)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith(f"{test}: ")
        bad = [k for k in kwargs if k != "regression"]
        assert any(f"unknown sla key {k!r}" in msg or f"{k}={kwargs[k]!r}" in msg for k in bad), msg
        return
    assert set(bounds) == {MARKER_KEYS[k] for k in kwargs if k != "regression"}
    for key, bound in bounds.items():
        assert _finite(bound)
        if key == "max_error_rate":
            assert 0 <= bound <= 1
        else:
            assert bound > 0


@BOUNDED
@given(args=st.lists(marker_values, min_size=1, max_size=3))
def test_parse_marker_rejects_positional_arguments(args: list[Any]) -> None:
    with pytest.raises(ConfigError, match="keyword arguments only"):
        sla.parse_marker("t", tuple(args), {"p99_ms": 1})


@BOUNDED
@given(
    markers=st.lists(
        st.dictionaries(
            st.sampled_from(sorted(sla.BOUNDS)),
            st.floats(min_value=0.001, max_value=1.0),
            max_size=3,
        ),
        max_size=4,
    )
)
def test_merge_markers_closest_marker_wins_per_key(markers: list[dict[str, float]]) -> None:
    merged = {k for kw in markers for k in kw}
    searched_under = [k for k in merged if sla.BOUNDS[k].unit == "ms" or k == "min_slo_attainment"]
    if "min_capacity" in merged and not searched_under:
        # A capacity bound needs a latency bound (or, by goodput, an attainment) to search
        # under: a usage error.
        with pytest.raises(ConfigError, match="without a latency bound"):
            sla.merge_markers("t", [((), kw) for kw in markers])
        return
    spec = sla.merge_markers("t", [((), kw) for kw in markers])
    if not markers:
        assert spec is None
        return
    assert spec is not None
    expected: dict[str, float] = {}
    for kw in markers:  # closest first
        for key, value in kw.items():
            expected.setdefault(key, value)
    assert spec.as_dict == expected
    assert spec.with_defaults()["max_error_rate"] == expected.get("max_error_rate", 0.0)


@BOUNDED
@given(
    markers=st.lists(
        st.dictionaries(
            st.one_of(bound_keys, st.just("regression")),
            st.one_of(marker_values, regression_values),
            max_size=3,
        ),
        max_size=3,
    )
)
def test_merge_markers_returns_a_spec_or_a_config_error(markers: list[dict[str, Any]]) -> None:
    try:
        spec = sla.merge_markers("t", [((), kw) for kw in markers])
    except ConfigError as e:
        assert str(e).startswith("t: ")
        return
    if spec is None:
        assert not markers
        return
    for key, bound in spec.bounds:
        assert key in sla.BOUNDS and _finite(bound)
    for metric, effect in (spec.regression or {}).items():
        assert metric in METRICS
        assert effect is None or 0 <= effect < 10


# -- inputs that once escaped as other exceptions --------------------------------------------


@pytest.mark.parametrize("text", ["²", "count=²"])
def test_gpus_superscript_digit_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        _option("--triton-gpus").parse("--gpus", text)


@pytest.mark.parametrize("text", ["http://[", "[::1", "http://]:80"])
def test_url_with_an_unbalanced_bracket_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        _option("--triton-url").parse("--triton-url", text)


@pytest.mark.parametrize("text", ["p50=-1ms", "p50=nan", "p99=infms"])
def test_floor_values_must_be_finite_and_non_negative(text: str) -> None:
    with pytest.raises(ConfigError):
        _option("--triton-perf-floor").parse("--triton-perf-floor", text)


def test_huge_int_bound_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        sla.parse_marker("t", (), {"p99_ms": 10**400})


def test_huge_int_regression_effect_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        sla.merge_markers("t", [((), {"regression": {"p99": 10**5000}})])


def test_deeply_nested_docker_kwargs_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        _option("--triton-docker-kwargs").parse("--triton-docker-kwargs", "[" * 100_000)


def test_shm_size_with_non_ascii_digits_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        _option("--triton-shm-size").parse("--triton-shm-size", "٣g")


def _option(flag: str) -> Option:
    return next(o for o in OPTIONS if o.flag == flag)
