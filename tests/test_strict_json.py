"""files.strict_json, through which every spec, sidecar and run record is parsed: json.loads less what a
spec must not hold (a duplicate key, NaN, an infinity, an integer beyond 64 bits), at its exact bounds."""

from __future__ import annotations

import json

import pytest

from surgery.io import files

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _refused(text: str) -> str:
    with pytest.raises(files.StrictJSONError) as refused:
        files.strict_json(text)
    return str(refused.value)


def test_the_64_bit_range_is_accepted_to_its_last_integer_on_either_side():
    assert files.strict_json(f"[{INT64_MIN}, {INT64_MAX}, 0, -1]") == [INT64_MIN, INT64_MAX, 0, -1]
    assert _refused(str(INT64_MAX + 1)) == "9223372036854775808 is beyond the 64-bit integer range"
    assert _refused(str(INT64_MIN - 1)) == "-9223372036854775809 is beyond the 64-bit integer range"


def test_a_long_integer_is_shown_by_its_first_24_characters():
    assert _refused("1" * 24 + "0") == "1" * 24 + "... is beyond the 64-bit integer range"
    assert _refused("9" * 24) == "9" * 24 + " is beyond the 64-bit integer range"  # 24 exactly: all of it


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_are_refused(constant):
    assert _refused(f'{{"lr": {constant}}}') == f"{constant} is not a number JSON allows; give a finite number"


def test_a_float_too_large_is_refused_and_one_that_fits_is_kept():
    assert _refused('{"lr": 1e999}') == "1e999 is too large to be a finite number"
    assert files.strict_json("[1.5e308, -2.5, 0.1]") == [1.5e308, -2.5, 0.1]


def test_a_duplicate_key_is_refused_at_any_depth_and_distinct_keys_keep_their_order():
    assert _refused('{"a": {"b": 1, "b": 2}}') == 'duplicate key "b" in one object (the second would silently win)'
    assert list(files.strict_json('{"z": 1, "a": {"y": 2, "b": 3}}')) == ["z", "a"]
    with pytest.raises(json.JSONDecodeError):
        files.strict_json('{"a": 1,}')
