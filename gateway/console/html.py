"""HTML built from constant templates with every value escaped (docs/console.md §5).

``Html`` marks text known to be markup; anything else that reaches a template through
``render`` is escaped, quotes included, so a name such as ``<script>`` or ``" onload=``
is text in an element and in an attribute alike. Templates are constants of the code:
never build one from a value.
"""

import html
import re
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, datetime

__all__ = [
    "Html",
    "bytes_text",
    "escape",
    "join",
    "render",
    "shown_text",
    "url",
    "when",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class Html(str):
    """Markup, safe to place in a page as it is."""

    __slots__ = ()


def escape(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape(shown_text(str(value)), quote=True))


def render(template: str, /, **values: object) -> Html:
    """``template`` (a constant) with ``{name}`` fields filled by escaped values."""
    return Html(template.format_map({name: escape(value) for name, value in values.items()}))


def join(parts: Iterable[object], separator: str = "") -> Html:
    return Html(separator.join(escape(part) for part in parts))


def shown_text(text: str) -> str:
    """``text`` with its control characters (S3 keys may hold them) as visible escapes,
    and any lone surrogate as ``?``, so that the page can be encoded and read."""
    shown = _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02x}", text)
    return shown.encode("utf-8", "replace").decode("utf-8")


def url(path: str, /, **query: object) -> str:
    """A console path with its query percent-encoded (``escape`` it for an attribute)."""
    pairs = [(name, str(value)) for name, value in query.items() if value not in (None, "")]
    if not pairs:
        return path
    return f"{path}?{urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)}"


def bytes_text(count: int) -> str:
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
