"""What the console's handlers share: the native API's context (the object service, the
chain, the access keys, the metrics), the sessions, and the request's parameters read
once, with their bounds."""

import urllib.parse
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from gateway.console.auth import Authorizations, Session, Sessions
from gateway.console.config import ConsoleConfig
from gateway.console.errors import ConsoleError
from gateway.console.events import RestoralHistory
from gateway.headers import is_text
from gateway.native.context import NativeContext
from gateway.streaming import read_up_to

__all__ = [
    "CONSOLE",
    "FORM",
    "MAX_FORM_BYTES",
    "SESSION",
    "ConsoleState",
    "form_of",
    "query_int",
    "query_text",
    "session_of",
]

MAX_FORM_BYTES: Final = 16 * 1024
MAX_FORM_FIELDS: Final = 16
FORM_TYPE: Final = "application/x-www-form-urlencoded"


@dataclass(slots=True, kw_only=True)
class ConsoleState:
    native: NativeContext
    config: ConsoleConfig
    sessions: Sessions
    authorizations: Authorizations
    history: RestoralHistory
    endpoint_is_https: bool | None = None  # the gateway's registered endpoint, once read


CONSOLE = web.AppKey("console", ConsoleState)
SESSION = web.RequestKey("console_session", Session)
FORM = web.RequestKey("console_form", dict[str, str])


def session_of(request: web.Request) -> Session:
    return request[SESSION]


async def form_of(request: web.Request) -> dict[str, str]:
    """The request's urlencoded form, read once: each field once, UTF-8, within bounds."""
    if FORM in request:
        return request[FORM]
    if request.content_type != FORM_TYPE:
        raise ConsoleError(415, "UnsupportedMediaType", f"a form is sent as {FORM_TYPE}")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise ConsoleError(413, "FormTooLarge", f"a form is at most {MAX_FORM_BYTES} bytes")
    body = await read_up_to(request.content, MAX_FORM_BYTES + 1)
    if len(body) > MAX_FORM_BYTES:
        raise ConsoleError(413, "FormTooLarge", f"a form is at most {MAX_FORM_BYTES} bytes")
    form: dict[str, str] = {}
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise ConsoleError(400, "MalformedForm", "the form is not urlencoded UTF-8") from None
    for name, value in pairs:
        if name in form:
            raise ConsoleError(400, "MalformedForm", f"field {name!r} is sent twice")
        form[name] = value
    request[FORM] = form
    return form


def query_text(request: web.Request, name: str, *, max_bytes: int = 1024) -> str | None:
    """A query parameter given at most once, as text of at most ``max_bytes``."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise ConsoleError(400, "InvalidQuery", f"{name} is given more than once")
    value = values[0]
    if not is_text(value) or len(value.encode()) > max_bytes:
        raise ConsoleError(400, "InvalidQuery", f"{name} is at most {max_bytes} bytes of text")
    return value


def query_int(request: web.Request, name: str, *, low: int, high: int) -> int | None:
    text = query_text(request, name, max_bytes=20)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ConsoleError(400, "InvalidQuery", f"{name} is a whole number, {low}..{high}")
    return int(text)
