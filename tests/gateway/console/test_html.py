"""Escaping (docs/console.md §5): every value is text in an element and in an
attribute, markup only when marked so; control characters show; sizes and times read."""

import html

from hypothesis import given
from hypothesis import strategies as st

from gateway.console.html import Html, bytes_text, escape, join, render, shown_text, url
from gateway.console.login import pasted_headers


@given(st.text())
def test_any_text_reads_back_from_an_attribute_and_holds_no_markup(text: str) -> None:
    rendered = render('<input value="{v}"><p>{v}</p>', v=text)
    assert rendered.count("<") == 3 and rendered.count('"') == 2
    value = rendered[len('<input value="') : rendered.index('"><p>')]
    assert html.unescape(value) == shown_text(text)
    rendered.encode()  # always encodable, lone surrogates too


def test_markup_is_kept_only_when_marked() -> None:
    assert render("<p>{v}</p>", v="<b>") == "<p>&lt;b&gt;</p>"
    assert render("<p>{v}</p>", v=Html("<b>")) == "<p><b></p>"
    assert join([Html("<i>"), "<i>"]) == "<i>&lt;i&gt;"
    assert escape('it\'s "x" & y') == "it&#x27;s &quot;x&quot; &amp; y"
    assert render("{v}", v="{other}") == "{other}"  # a value is never a template


def test_control_characters_and_surrogates_are_shown() -> None:
    assert shown_text("a\x00b\x1f\x7f") == "a\\x00b\\x1f\\x7f"
    assert shown_text("bad \udcff") == "bad ?"


def test_urls_sizes() -> None:
    assert url("/console/objects", prefix="a b&c", after="") == "/console/objects?prefix=a%20b%26c"
    assert url("/console/objects") == "/console/objects"
    assert [bytes_text(n) for n in (0, 1023, 1024, 3 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "3.0 GiB",
    ]


def test_a_pasted_line_reads_as_deoss_sign_or_curl_writes_it() -> None:
    expected = {"Account": "cX1", "Message": "deoss-v1|g|POST|/x|e3|n|1", "Signature": "0xab"}
    printed = "-HAccount:cX1 -HMessage:deoss-v1|g|POST|/x|e3|n|1 -HSignature:0xab"
    assert pasted_headers(printed) == expected
    assert (
        pasted_headers(
            "curl -H Account:cX1 -H Message:deoss-v1|g|POST|/x|e3|n|1\n -H signature:0xab"
        )
        == expected
    )
