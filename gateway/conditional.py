"""RFC 9110 §13-14, shared by the native and S3 APIs: the preconditions of a request,
evaluated against an object's strong ETag and its Last-Modified time, and byte ranges.

Evaluation order (RFC 9110 §13.2.2): If-Match, else If-Unmodified-Since; then
If-None-Match, else If-Modified-Since (GET and HEAD only). A failed If-Match or
If-Unmodified-Since is 412; a failed If-None-Match is 304 on GET and HEAD (412 on other
methods); a failed If-Modified-Since is 304. If-Range decides only whether a Range header
is honoured. Unparsable dates make their header ignored, as the RFC says.
"""

import email.utils
import re
from collections.abc import Mapping

from chain_client.strict import ascii_int

__all__ = [
    "NOT_MODIFIED",
    "PRECONDITION_FAILED",
    "etag_matches",
    "http_date",
    "parse_byte_range",
    "precondition",
    "range_applies",
]

NOT_MODIFIED = 304
PRECONDITION_FAILED = 412
RANGE_DIGITS = 20  # any object's size fits in fewer
# [0-9], not \d: \d also matches other scripts' digits.
_BYTE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def http_date(timestamp: float) -> str:
    """The IMF-fixdate form of a unix time (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return email.utils.formatdate(int(timestamp), usegmt=True)


def _date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # RFC 850 and asctime forms carry no zone: they are GMT
        return None
    return parsed.timestamp()


def _tags(value: str) -> list[tuple[str, bool]]:
    """The entity tags of a list header, each with whether it was weak."""
    tags = []
    for item in value.split(","):
        tag = item.strip()
        weak = tag.startswith("W/")
        if weak:
            tag = tag[2:]
        if tag:
            tags.append((tag, weak))
    return tags


def _matches(header: str, etag: str, *, weak: bool) -> bool:
    """``header`` (a list of tags, or ``*``) against our strong ``etag``: the strong
    comparison (If-Match) never matches a weak tag; the weak one (If-None-Match) may."""
    if header.strip() == "*":
        return True
    return any(tag == etag and (weak or not is_weak) for tag, is_weak in _tags(header))


def etag_matches(header: str, etag: str) -> bool:
    """If-Match's strong comparison of ``header`` (tags, or ``*``) with a quoted ``etag``."""
    return _matches(header, etag, weak=False)


def precondition(
    headers: Mapping[str, str], *, etag: str, last_modified: float, method: str = "GET"
) -> int | None:
    """The status a failed precondition answers (304 or 412), or None to go on.

    ``etag`` is the quoted strong tag the object answers with; ``last_modified`` its unix
    time (compared at whole seconds, the resolution of HTTP dates)."""
    modified = int(last_modified)
    reading = method in ("GET", "HEAD")
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _matches(if_match, etag, weak=False):
            return PRECONDITION_FAILED
    else:
        since = _date(headers.get("If-Unmodified-Since"))
        if since is not None and modified > since:
            return PRECONDITION_FAILED
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _matches(if_none_match, etag, weak=True):
            return NOT_MODIFIED if reading else PRECONDITION_FAILED
    elif reading:
        since = _date(headers.get("If-Modified-Since"))
        if since is not None and modified <= since:
            return NOT_MODIFIED
    return None


def range_applies(headers: Mapping[str, str], *, etag: str, last_modified: float) -> bool:
    """Whether a Range header is honoured: always without If-Range; with it, only when
    its validator (a strong tag, or an exact date) still describes the object."""
    if_range = headers.get("If-Range")
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag  # a weak tag never matches here (RFC 9110 §13.1.5)
    since = _date(value)
    return since is not None and int(last_modified) == int(since)


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) for one ``bytes=`` range; None means the whole object.
    Raises ValueError when the range cannot be satisfied."""
    if header is None:
        return None
    match = _BYTE_RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None

    def position(digits: str) -> int:
        # Longer than RANGE_DIGITS, a position is past any object's end, and the rules
        # below answer what they answer for one.
        value = ascii_int(digits, max_digits=RANGE_DIGITS)
        return size if value is None else value

    if not match[1]:
        suffix = position(match[2])
        if suffix == 0 or size == 0:
            raise ValueError("empty suffix")
        return max(size - suffix, 0), size
    start = position(match[1])
    end = min(position(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        raise ValueError("outside the object")
    return start, end
