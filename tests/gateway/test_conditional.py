"""RFC 9110 preconditions against one object: ETag "abc", modified at MODIFIED."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.conditional import http_date, precondition, range_applies

ETAG = '"abc"'
MODIFIED = 1_750_000_000.7  # sub-second part: HTTP dates have whole seconds
BEFORE, AT, AFTER = http_date(MODIFIED - 60), http_date(MODIFIED), http_date(MODIFIED + 60)


def check(headers: dict[str, str], method: str = "GET") -> int | None:
    return precondition(headers, etag=ETAG, last_modified=MODIFIED, method=method)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"If-Match": ETAG}, None),
        ({"If-Match": '"x", "abc"'}, None),
        ({"If-Match": "*"}, None),
        ({"If-Match": '"x"'}, 412),
        ({"If-Match": 'W/"abc"'}, 412),  # strong comparison
        ({"If-None-Match": ETAG}, 304),
        ({"If-None-Match": 'W/"abc"'}, 304),  # weak comparison
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"x"'}, None),
        ({"If-Modified-Since": AT}, 304),
        ({"If-Modified-Since": AFTER}, 304),
        ({"If-Modified-Since": BEFORE}, None),
        ({"If-Unmodified-Since": AT}, None),
        ({"If-Unmodified-Since": BEFORE}, 412),
        ({"If-Unmodified-Since": "yesterday"}, None),  # unparsable: ignored
        ({"If-Modified-Since": "not a date"}, None),
        # If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
        ({"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, None),
        ({"If-None-Match": '"x"', "If-Modified-Since": AFTER}, None),
        ({"If-Match": '"x"', "If-None-Match": ETAG}, 412),
    ],
)
def test_get(headers: dict[str, str], expected: int | None) -> None:
    assert check(headers) == expected


def test_writes_get_412_not_304() -> None:
    assert check({"If-None-Match": "*"}, method="PUT") == 412
    assert check({"If-Modified-Since": AFTER}, method="PUT") is None


@pytest.mark.parametrize(
    ("value", "honoured"),
    [(ETAG, True), ('"x"', False), ('W/"abc"', False), (AT, True), (BEFORE, False), ("?", False)],
)
def test_if_range(value: str, honoured: bool) -> None:
    assert range_applies({"If-Range": value}, etag=ETAG, last_modified=MODIFIED) is honoured
    assert range_applies({}, etag=ETAG, last_modified=MODIFIED)


@given(
    st.dictionaries(
        st.sampled_from(
            ["If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"]
        ),
        st.text(),
    )
)
def test_any_header_values_never_raise(headers: dict[str, str]) -> None:
    assert check(headers) in (None, 304, 412)
    range_applies(headers, etag=ETAG, last_modified=MODIFIED)
