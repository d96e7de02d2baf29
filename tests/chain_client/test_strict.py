"""The strict parsers every role uses on network input (chain_client/strict.py): they
answer a value or refuse with their own error, whatever the text; never another
exception (issue 12, security review #8 and #12)."""

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain_client.strict import (
    MAX_JSON_DEPTH,
    MAX_JSON_NUMBER,
    StrictJSONError,
    ascii_int,
    strict_json,
)

# --- ascii_int -------------------------------------------------------------------------


@given(value=st.integers(min_value=0, max_value=10**30))
def test_ascii_int_reads_every_decimal_it_bounds(value: int) -> None:
    text = str(value)
    assert ascii_int(text, max_digits=31) == value
    assert ascii_int(text.zfill(31), max_digits=31) == value
    assert ascii_int(text, max_digits=len(text) - 1 or 1) == (value if len(text) == 1 else None)


@given(text=st.text())
def test_ascii_int_answers_an_int_only_for_ascii_digits(text: str) -> None:
    parsed = ascii_int(text, max_digits=20)
    digits = 0 < len(text) <= 20 and all("0" <= c <= "9" for c in text)
    assert (parsed is not None) == digits
    if parsed is not None:
        assert parsed == int(text)


@pytest.mark.parametrize(
    "text",
    ["", "²", "١٢", "+1", "-1", " 1", "1 ", "1_000", "0x1", "1e3", "1.0", "\udcff", "5" * 4301],
)
def test_ascii_int_refuses(text: str) -> None:
    assert ascii_int(text, max_digits=4000) is None


def test_ascii_int_bounds_its_own_bound() -> None:
    with pytest.raises(ValueError, match="max_digits"):
        ascii_int("1", max_digits=5000)  # int() itself would refuse such strings


# --- strict_json -----------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**39), 10**39) | finite | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(document=documents)
def test_strict_json_reads_what_json_writes(document: Any) -> None:
    text = json.dumps(document, allow_nan=False)
    if _depth(document) <= MAX_JSON_DEPTH:
        assert strict_json(text.encode()) == json.loads(text)
        assert strict_json(text) == json.loads(text)


@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_strict_json_answers_a_value_or_its_own_refusal(data: bytes) -> None:
    try:
        value = strict_json(data)
    except StrictJSONError:
        return
    # What it accepts, json accepts alike, and writes back without NaN.
    assert json.loads(data) == value
    json.dumps(value, allow_nan=False)


@given(depth=st.integers(1, 300), kinds=st.text("[{", min_size=1, max_size=300))
def test_strict_json_bounds_nesting(depth: int, kinds: str) -> None:
    opening = "".join(kinds[i % len(kinds)] for i in range(depth))
    inner = ""
    for kind in reversed(opening):
        inner = f"[{inner}]" if kind == "[" else f'{{"k":{inner or 0}}}'
    text = inner
    if depth <= MAX_JSON_DEPTH:
        assert _depth(strict_json(text)) == depth
    else:
        with pytest.raises(StrictJSONError, match="nested deeper"):
            strict_json(text)


@given(text=st.text(alphabet='[]{}"\\, :0a', max_size=80))
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    quoted = json.dumps(text)  # a string holding anything, escapes included
    assert strict_json(f"[{quoted}, {{{quoted}: [{quoted}]}}]") == [text, {text: [text]}]


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b'{"args": {"x": NaN}}',
        b"[Infinity]",
        b"-Infinity",
        b"1e999",
        b"-1e999",
        b"1" * (MAX_JSON_NUMBER + 1),
        b"[" + b"5" * 5000 + b"]",  # int() refuses it too, with a plain ValueError
        b"[" * 100_000,  # json.loads: RecursionError
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b"\xff",
        b"[1",
        b"",
        b'"\\',
        b'["\\udcff"]',  # json.loads gives a str that no encoder takes
        b'{"\\ud83d": 1}',
        b'["\\ude00\\ud83d"]',
    ],
)
def test_strict_json_refuses(body: bytes) -> None:
    with pytest.raises(StrictJSONError):
        strict_json(body)


def test_strict_json_keeps_big_finite_numbers() -> None:
    u128 = 2**128 - 1
    assert strict_json(json.dumps({"amount": u128, "ratio": 1e300})) == {
        "amount": u128,
        "ratio": 1e300,
    }
    assert math.isfinite(strict_json("1e308"))


def test_strict_json_keeps_escaped_pairs_and_backslashes() -> None:
    assert strict_json(b'["\\ud83d\\ude00", "\\\\udcff"]') == ["\U0001f600", "\\udcff"]
