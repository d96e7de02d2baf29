"""An upload's framing (docs/s3.md §2), through a real aiohttp server: a chunked body
without a length is read to its end and cut at the size limit; no length at all is 411;
``aws-chunked`` in Content-Encoding alone leaves the body as it is."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.s3.body import upload_body
from gateway.s3.context import AUTH, S3Request
from gateway.s3.signing import AuthResult
from gateway.s3.xml import S3Error

LIMIT = 1000


async def _read(request: web.Request) -> web.Response:
    payload = request.headers.get("payload", "unsigned")
    digest = request.headers.get("digest")
    request[AUTH] = AuthResult("AK", "v4-header", payload, digest)  # type: ignore[arg-type]
    try:
        body = upload_body(S3Request(request, "owner", "b", "k"), {}, LIMIT)
        data = b"".join([piece async for piece in body.chunks])
    except S3Error as exc:
        return web.Response(status=exc.status, text=exc.code)
    return web.Response(text=f"{body.length} {len(data)} {hashlib.md5(data).hexdigest()}")


@pytest.fixture
async def server(aiohttp_client: Any) -> Any:
    app = web.Application()
    app.router.add_put("/", _read)
    return await aiohttp_client(app)


async def chunked(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_a_chunked_body_is_read_to_its_end(server: Any) -> None:
    response = await server.put("/", data=chunked(b"a" * 300, b"b" * 300))
    md5 = hashlib.md5(b"a" * 300 + b"b" * 300).hexdigest()
    assert (response.status, await response.text()) == (200, f"None 600 {md5}")


async def test_a_chunked_body_past_the_limit_is_too_large(server: Any) -> None:
    response = await server.put("/", data=chunked(b"a" * 600, b"b" * 600))
    assert (response.status, await response.text()) == (400, "EntityTooLarge")
    response = await server.put("/", data=b"x" * (LIMIT + 1))
    assert (response.status, await response.text()) == (400, "EntityTooLarge")


async def test_a_body_with_no_length_and_no_chunks_is_refused(server: Any) -> None:
    # By hand: aiohttp's client always sends a Content-Length.
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 411") and answer.endswith(b"MissingContentLength")


@pytest.mark.parametrize("payload", ["unsigned", "signed"])
async def test_aws_chunked_in_content_encoding_alone_is_a_plain_body(
    server: Any, payload: str
) -> None:
    # Security review #9: this was a 500. As on AWS, the body is stored as sent (the
    # payload hash, or its absence, says it is not aws-chunked framed).
    body = b"1f\r\nnot aws-chunked framing at all\r\n"
    headers = {"Content-Encoding": "gzip, aws-chunked", "payload": payload}
    if payload == "signed":
        headers["digest"] = hashlib.sha256(body).hexdigest()
    response = await server.put("/", data=body, headers=headers)
    md5 = hashlib.md5(body).hexdigest()
    assert (response.status, await response.text()) == (200, f"{len(body)} {len(body)} {md5}")
