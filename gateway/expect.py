"""``Expect: 100-continue`` for both APIs: the client's body is asked for only once the
request has passed what can be checked without it (auth, headers, bucket, territory,
quota), so a refused upload never travels.

aiohttp's default would answer ``100 Continue`` before any handler runs; routes use
``defer_continue`` instead, and handlers call ``send_continue`` when they start reading.
A request answered without ever asking leaves the client free to send its body or not,
so that connection is closed after the answer (``close_if_unasked``).
"""

from collections.abc import AsyncIterable, AsyncIterator

from aiohttp import web

__all__ = ["after_continue", "close_if_unasked", "defer_continue", "send_continue"]

CONTINUED = web.RequestKey("continued", bool)


def _expects(request: web.Request) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


async def defer_continue(request: web.Request) -> None:
    """The routes' Expect handler: no ``100 Continue`` yet."""


async def send_continue(request: web.Request) -> None:
    if _expects(request) and not request.get(CONTINUED) and request.writer:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request[CONTINUED] = True


async def after_continue(request: web.Request, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``body``, asked for (100 Continue) only when it is first read."""
    await send_continue(request)
    async for chunk in body:
        yield chunk


def close_if_unasked(request: web.Request, response: web.StreamResponse) -> None:
    """The client held its body back and we answered without asking for it: it may or
    may not send it now, so this connection cannot carry another request."""
    if _expects(request) and not request.get(CONTINUED) and request.content_length:
        response.force_close()
