"""Bodies in and out, shared by both APIs: small request bodies read whole, and an
object's plaintext streamed into an HTTP response.

The first piece is read before the response starts, so a wrong key or a missing object
is still a clean error; after that, a read that fails ends the body short (the client
sees a truncated body, never wrong bytes); a client that hangs up just ends it. The reader
is always closed at the end, so the object service knows the file is no longer being read.
"""

from collections.abc import AsyncGenerator, Callable, Mapping

from aiohttp import StreamReader, web

from gateway.errors import ObjectError

__all__ = ["read_up_to", "stream_pieces"]


async def read_up_to(content: StreamReader, limit: int) -> bytes:
    """The body's first ``limit`` bytes, or all of it if shorter. One ``read(limit)``
    answers only what has arrived so far: a body sent in two TCP segments would be cut."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


async def stream_pieces(
    request: web.Request,
    pieces: AsyncGenerator[bytes, None],
    *,
    status: int,
    headers: Mapping[str, str],
    length: int,
    sent: Callable[[int], None] = lambda count: None,
) -> web.StreamResponse:
    try:
        first = await anext(pieces)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        await response.prepare(request)
        await response.write(first)
        sent(len(first))
        try:
            async for piece in pieces:
                await response.write(piece)
                sent(len(piece))
        except ObjectError:
            if request.transport is not None:
                request.transport.close()  # bytes are out: a short body tells the client
            return response
        except ConnectionError:
            return response  # the client went away mid-body: nobody to answer
        await response.write_eof()
        return response
    finally:
        await pieces.aclose()
