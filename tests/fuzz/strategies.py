"""Hypothesis strategies every surface draws from: text with the characters parsers trip
on, header values, numbers, JSON values, byte mutations of valid bodies, and framings.

Building a strategy costs more than drawing from it (Hypothesis validates it, and
``from_regex`` compiles), and the surfaces draw thousands of requests: so the builders
here are cached, and ``pick``, ``number`` and ``one_in`` draw from cached strategies.
"""

import functools
from collections.abc import Hashable
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.internal.charmap import CategoryName

from tests.fuzz.wire import Framing

__all__ = [
    "NOT_UTF8",
    "digits",
    "framings",
    "header_values",
    "json_values",
    "mutated",
    "number",
    "odd_text",
    "one_in",
    "percent_encoded",
    "pick",
    "sampled",
]

T = TypeVar("T", bound=Hashable)


@functools.cache
def sampled(options: tuple[T, ...]) -> st.SearchStrategy[T]:
    return st.sampled_from(options)


def pick(draw: st.DrawFn, options: tuple[T, ...]) -> T:
    strategy: st.SearchStrategy[T] = sampled(options)
    return draw(strategy)


@functools.cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def number(draw: st.DrawFn, low: int, high: int) -> int:
    return draw(_integers(low, high))


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True one time in ``n``."""
    return draw(_integers(1, n)) == 1


# Lone surrogates U+DC80..U+DCFF are the bytes 80..FF that are not UTF-8 (surrogateescape):
# what aiohttp hands a handler for such bytes in a header or the request line.
NOT_UTF8 = st.integers(0xDC80, 0xDCFF).map(chr)
_SPECIAL = st.sampled_from(
    [
        "\x00",
        "\t",
        "\x7f",
        "\x85",
        "\xa0",
        "\u2028",
        "\ufeff",
        "\ufffd",
        "\U0010ffff",
        "²",
        "٣",
        "é",
        "%",
        "%00",
        "%ff",
        "%zz",
        "%C2%B2",
        "/",
        "//",
        "..",
        "?",
        "#",
        "&",
        "=",
        "+",
        ";",
        ",",
        "|",
        '"',
        "'",
        "<",
        "]]>",
        "&amp;",
        "\\",
        " ",
    ]
)
_SURROGATES: tuple[CategoryName, ...] = ("Cs",)
_SURROGATES_AND_CONTROLS: tuple[CategoryName, ...] = ("Cs", "Cc")
_PLAIN = st.characters(codec="utf-8", exclude_categories=_SURROGATES)


@functools.cache
def odd_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Text of ASCII, other scripts, U+10FFFF, control characters, escapes and bytes
    that are not UTF-8 (as surrogates)."""
    piece = st.one_of(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8),
        st.text(_PLAIN, min_size=1, max_size=4),
        _SPECIAL,
        NOT_UTF8,
    )
    return st.lists(piece, min_size=min_size, max_size=max_size).map("".join)


def percent_encoded(text: str) -> str:
    """``text``'s UTF-8 bytes, every one percent-escaped but unreserved ASCII."""
    data = text.encode("utf-8", "surrogateescape")
    return "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.~") else f"%{b:02X}"
        for b in data
    )


@functools.cache
def header_values(max_size: int = 60) -> st.SearchStrategy[str]:
    """Values a header can carry on the wire (no CR or LF: those end the line): printable
    ASCII mostly, then other text, bytes that are not UTF-8, long runs, numbers, and now
    and then a control character (which HTTP parsers refuse before any handler runs)."""
    text = st.characters(codec="utf-8", exclude_categories=_SURROGATES_AND_CONTROLS)
    controls = st.characters(
        codec="utf-8", exclude_categories=_SURROGATES, exclude_characters="\r\n"
    )
    ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=max_size)
    return st.one_of(
        ascii_text,
        ascii_text,
        ascii_text,
        st.text(text, max_size=max_size // 2),
        st.lists(st.one_of(NOT_UTF8, st.sampled_from("ab /;=")), max_size=12).map("".join),
        st.builds(lambda c, n: c * n, st.sampled_from("a9%,"), st.integers(100, 9000)),
        digits(),
        st.text(controls, max_size=8),
    )


@functools.cache
def digits() -> st.SearchStrategy[str]:
    """Numbers as clients and attackers write them."""
    return st.one_of(
        st.integers(-5, 20_000).map(str),
        st.integers(0, 2**64).map(str),
        st.sampled_from(["", "0", "00001", "1_0", "+1", "-0", " 1", "1 ", "1e3", "0x10", "²", "٣"]),
        st.integers(20, 5000).map(lambda n: "9" * n),
    )


@functools.cache
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        odd_text(max_size=6),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


_EDITS = ("flip", "insert", "delete", "cut", "repeat", "splice")
_INSERTS = st.one_of(
    st.binary(min_size=1, max_size=8),
    st.sampled_from([b"<", b">", b"&", b"\x00", b"\xff", b'"', b"{", b"[", b"]]>"]),
)
_SPLICES = (
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    b'<!ENTITY a "aaaaaaaaaa">',
    b"&e;",
    b"<x>" * 300,
    b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"',
    b"9" * 400,
    b"\xef\xbb\xbf",
    b'"\\ud800"',
    b"NaN",
    b"1e999",
)


def mutated(draw: st.DrawFn, data: bytes, *, max_steps: int = 3) -> bytes:
    """``data`` after a few byte-level edits: flips, inserts, deletes, cuts, repeats and
    splices of what parsers trip on (entities, deep nesting, long numbers, a BOM)."""
    out = bytearray(data)
    for _ in range(number(draw, 1, max_steps)):
        edit = pick(draw, _EDITS)
        at = number(draw, 0, len(out))
        if edit == "flip" and at < len(out):
            out[at] ^= number(draw, 1, 255)
        elif edit == "insert":
            out[at:at] = draw(_INSERTS)
        elif edit == "delete":
            del out[at : at + number(draw, 1, 16)]
        elif edit == "cut":
            del out[at:]
        elif edit == "repeat":
            end = min(len(out), at + number(draw, 1, 64))
            out[at:at] = out[at:end] * number(draw, 1, 50)
        elif edit == "splice":
            out[at:at] = pick(draw, _SPLICES)
    return bytes(out)


@functools.cache
def framings(*, body: bool = True) -> st.SearchStrategy[Framing]:
    """Mostly a true Content-Length; then chunked, none, lies and smuggling shapes."""
    if not body:
        return st.sampled_from([Framing("length"), Framing("none")])
    broken_lines = st.sampled_from(
        [b"zz\r\n", b"-1\r\n", b"ffffffffffffffffff\r\n", b"1;" + b"e" * 9000 + b"\r\n", b"\n"]
    )
    return st.one_of(
        st.just(Framing("length")),
        st.just(Framing("length")),
        st.just(Framing("length")),
        st.builds(
            Framing, st.just("chunked"), st.lists(st.integers(1, 5000), max_size=4).map(tuple)
        ),
        st.just(Framing("none")),
        st.builds(Framing, st.just("short"), skew=st.integers(1, 100)),
        st.builds(Framing, st.just("long"), skew=st.integers(1, 100)),
        st.just(Framing("both")),
        st.builds(Framing, st.just("bad-chunked"), bad=broken_lines),
    )
