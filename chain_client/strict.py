"""Strict parsers for what arrives over the network: integers from headers, query strings,
paths and XML, and JSON bodies. Every role (chain RPC, gateway, miner) parses with these,
so no input reaches ``int()`` or ``json.loads`` in a form that raises something other
than a refusal.

Why not the built-ins alone: ``str.isdigit`` admits "²" (which ``int`` refuses) and
``int`` admits " 7", "+7", "1_000" and other scripts' digits; ``int`` and ``json.loads``
raise ``ValueError`` past 4300 digits; ``json.loads`` recurses once per nesting level
(``RecursionError``) and turns ``NaN``, ``Infinity`` and ``1e999`` into floats that
``json.dumps(allow_nan=False)`` then refuses, and "\\udcff" into a string that nothing
can encode.
"""

import json
import math
import re
from typing import Any, Final

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_NUMBER",
    "StrictJSONError",
    "ascii_int",
    "strict_json",
]

MAX_JSON_DEPTH: Final = 64
MAX_JSON_NUMBER: Final = 64  # characters of one number literal: a u128 has 39 digits
# Below 4300, the digits int() converts before it refuses (sys.get_int_max_str_digits).
_MAX_DIGITS_ALLOWED: Final = 4000

_ESCAPE: Final = re.compile(rb"\\.", re.DOTALL)
# Once escapes are gone a string holds no quote: each match is linear, never backtracks.
_STRING: Final = re.compile(rb'"[^"]*"')
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
# \ud800-\udfff: json.loads turns a lone one into a str that no encoder takes.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_ONE_KIND: Final = bytes.maketrans(b"{}", b"[]")


def ascii_int(text: str, *, max_digits: int) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits
    (no sign, space or underscore); None otherwise."""
    if not 0 < max_digits <= _MAX_DIGITS_ALLOWED:
        raise ValueError(f"max_digits is 1..{_MAX_DIGITS_ALLOWED}, not {max_digits}")
    if not 0 < len(text) <= max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


class StrictJSONError(ValueError):
    """A body ``strict_json`` refuses: not UTF-8 JSON, or past one of its limits."""


def _nesting_within(data: bytes, max_depth: int) -> bool:
    """Whether brackets nest at most ``max_depth`` deep (and balance), counted without
    recursion: strings removed, one kind of bracket kept, then one innermost level
    removed per pass (``replace`` does not see the pairs its own removals form)."""
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data)).translate(_ONE_KIND, _NOT_BRACKET)
    for _ in range(max_depth):
        if not brackets:
            return True
        brackets = brackets.replace(b"[]", b"")
    return not brackets


def strict_json(
    data: bytes | str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_number: int = MAX_JSON_NUMBER,
) -> Any:
    """One JSON document, UTF-8, nested at most ``max_depth`` deep, with no ``NaN`` or
    infinities, no number literal longer than ``max_number`` characters and no string
    escaping half a surrogate pair. Raises ``StrictJSONError`` (a ``ValueError``) for
    anything else."""
    if not 0 < max_number <= _MAX_DIGITS_ALLOWED:
        raise ValueError(f"max_number is 1..{_MAX_DIGITS_ALLOWED}, not {max_number}")
    try:
        raw = data.encode() if isinstance(data, str) else data
        text = raw.decode() if isinstance(data, bytes) else data
    except UnicodeError:
        raise StrictJSONError("the body is not UTF-8") from None
    if not _nesting_within(raw, max_depth):
        raise StrictJSONError(f"brackets unbalanced or nested deeper than {max_depth}")

    def integer(literal: str) -> int:
        if len(literal) > max_number:
            raise StrictJSONError(f"a number longer than {max_number} characters")
        return int(literal)

    def real(literal: str) -> float:
        # 1e999 parses as inf, which no canonical form (allow_nan=False) can write back.
        if len(literal) > max_number or not math.isfinite(value := float(literal)):
            raise StrictJSONError(f"a number longer than {max_number} characters or infinite")
        return value

    def constant(name: str) -> Any:
        raise StrictJSONError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_int=integer, parse_float=real, parse_constant=constant)
    except StrictJSONError:
        raise
    except ValueError as exc:  # JSONDecodeError, with its position
        raise StrictJSONError(f"not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw):  # rare: only then is every string checked
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise StrictJSONError("a string holds half of a surrogate pair") from None
    return value
