"""The shared input constraints (core/types.py) on their own: JSON shape limits, the NUL rule,
time windows. The endpoints that use them are tested in test_hostile.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rts_monitor.core import types as c
from rts_monitor.core.errors import BadRequest, PayloadTooLarge, ValidationFailed

# JSON values whose strings are full of the characters the scan must not be fooled by.
_tricky_text = st.text(alphabet=st.sampled_from(list('[]{},"\\ab\x00u')), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky_text, inner, max_size=4),
    max_leaves=60,
)


def depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    return 0


def count(v: Any) -> int:
    if isinstance(v, list):
        return max(1, len(v)) + sum(count(x) for x in v)
    if isinstance(v, dict):
        return max(1, len(v)) + sum(count(x) for x in v.values())
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=6))
def test_depth_limit_agrees_with_the_real_depth(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    if depth(value) > limit:
        with pytest.raises(BadRequest):
            c.check_json_shape(body, max_depth=limit)
    else:
        c.check_json_shape(body, max_depth=limit)


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(min_value=1, max_value=40))
def test_value_limit_bounds_the_real_count(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    real = count(value) + 1
    try:
        c.check_json_shape(body, max_depth=100, max_values=limit)
    except PayloadTooLarge:
        assert real > limit // 2  # the estimate never refuses a body far below the limit
    else:
        assert real <= limit + 1


def test_hostile_shapes() -> None:
    deep = b'{"token":"x","z":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(BadRequest, match="nested deeper than 32"):
        c.check_json_shape(deep)
    # truncated or mismatched: the decoder would still descend 10,000 levels before failing
    with pytest.raises(BadRequest):
        c.check_json_shape(b"[" * 10_000)
    with pytest.raises(BadRequest):
        c.check_json_shape(b"[" * 5_000 + b"}" + b"]" * 5_000)
    # brackets inside strings are not structure
    c.check_json_shape(json.dumps({"s": "[" * 10_000, "t": "]]]" * 1000}).encode())
    with pytest.raises(PayloadTooLarge):
        c.check_json_shape(b"[" + b"0," * 600_000 + b"0]")
    with pytest.raises(PayloadTooLarge):
        c.check_json_shape(b"[" + b"[]," * 600_000 + b"[]]")
    c.check_json_shape(json.dumps({"software": [{"name": f"p{i}", "version": "1"} for i in range(40_000)]}).encode())


def test_nul_is_replaced_in_json_text_and_strings() -> None:
    assert msgspec.json.decode(c.scrub_json(b'{"a":"x\\u0000y"}')) == {"a": "x\ufffdy"}
    # an escaped backslash followed by the text u0000 is no NUL
    assert msgspec.json.decode(c.scrub_json(b'["\\\\u0000", "\\\\\\u0000"]')) == ["\\u0000", "\\\ufffd"]
    body = b'{"a":"plain"}'
    assert c.scrub_json(body) is body
    assert c.scrub("a\x00b") == "a\ufffdb"


def test_time_windows() -> None:
    now = datetime.now(UTC)
    c.reported_time(now, "t")
    c.reported_time(now + c.MAX_CLOCK_SKEW - timedelta(seconds=5), "t")
    c.reported_time(datetime(2000, 1, 1, tzinfo=UTC), "t")
    c.reported_time(datetime(2020, 1, 1), "t")  # naive: read as UTC
    for bad in (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))),
                datetime(1999, 12, 31, 23, 59, tzinfo=UTC), now + c.MAX_CLOCK_SKEW + timedelta(seconds=5),
                datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))):
        with pytest.raises(ValidationFailed) as info:
            c.reported_time(bad, "started_at")
        assert info.value.field == "started_at"
    c.planned_time(now + timedelta(days=3650), "ends_at")
    with pytest.raises(ValidationFailed):
        c.planned_time(datetime(2100, 1, 1, tzinfo=UTC), "ends_at")
