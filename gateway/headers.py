"""Request headers read as text, decoded once and strictly (security review #10).

aiohttp decodes header bytes as UTF-8 with ``surrogateescape``: a value that is not UTF-8
arrives as a ``str`` holding lone surrogates, which ``str.encode()``, SQLite and
aiohttp's own response writer later refuse with an exception (a 500, and for an upload
after its data was placed). Every header a handler keeps, stores or answers back as text
is read through ``header_text``, before any work is done for the request.
"""

from collections.abc import Mapping

from gateway.errors import HeaderNotText

__all__ = ["header_text", "is_text"]


def is_text(value: str) -> bool:
    """Whether ``value`` came from valid UTF-8 (holds no lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def header_text(headers: Mapping[str, str], name: str) -> str | None:
    """Header ``name`` (None when absent); ``HeaderNotText`` when its bytes were not
    UTF-8."""
    value = headers.get(name)
    if value is not None and not is_text(value):
        raise HeaderNotText(name)
    return value
