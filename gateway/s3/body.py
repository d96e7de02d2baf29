"""An upload's body as the object service reads it: decoded (aws-chunked or plain),
counted, and checked against everything the client vouched for, the signed SHA-256, a
``Content-MD5``, an ``x-amz-checksum-*`` header or trailer, before the last byte is
handed over. A mismatch raises then, so the object service never commits the object.

Framing (docs/s3.md §2): only a ``STREAMING-*`` payload hash makes the body aws-chunked
(``aws-chunked`` in ``Content-Encoding`` alone does not, as on AWS, which stores such a
body as sent); a plain body has a ``Content-Length`` or arrives with
``Transfer-Encoding: chunked``, its length then known only at its end.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from chain_client.strict import ascii_int
from gateway.expect import send_continue
from gateway.s3 import checksums
from gateway.s3.checksums import Algorithm, Checksum
from gateway.s3.chunked import AwsChunkedDecoder
from gateway.s3.context import AUTH, S3Request
from gateway.s3.xml import S3Error

__all__ = ["UploadBody", "upload_body"]

PIECE = 1024 * 1024
LENGTH_DIGITS = 20
_STREAMING = ("streaming-signed", "streaming-signed-trailer", "streaming-unsigned-trailer")


@dataclass
class UploadBody:
    """The decoded body (``chunks``), its length, and once it has been read, the checksum
    the client sent (header or trailer), verified."""

    length: int | None  # None: chunked transfer encoding, known at the end
    chunks: AsyncIterator[bytes] = field(repr=False)
    checksum: tuple[Algorithm, str] | None = None  # (algorithm, base64 value)


def upload_body(req: S3Request, meta: dict[str, Any], max_length: int) -> UploadBody:
    """The request body of a PutObject or UploadPart. Raises for a missing length, or a
    body longer than ``max_length``. Once the body checks out, a client-sent checksum is
    put in ``meta["checksum"]`` as ``[algorithm, base64]``, before the last piece is
    handed over."""
    request = req.web
    auth = request[AUTH]
    headers = request.headers
    streaming = auth.payload in _STREAMING
    length: int | None
    if streaming:
        decoded = headers.get("x-amz-decoded-content-length", "")
        length = ascii_int(decoded, max_digits=LENGTH_DIGITS)
        if length is None:
            raise S3Error(411, "MissingContentLength", "x-amz-decoded-content-length is required")
    elif request.content_length is not None:
        length = request.content_length
    elif "chunked" in headers.get("Transfer-Encoding", "").lower():
        length = None
    else:
        raise S3Error(411, "MissingContentLength", "Content-Length is required")
    if length is not None and length > max_length:
        raise S3Error(400, "EntityTooLarge", f"an object is at most {max_length} bytes")
    announced = [
        name.strip().lower() for name in headers.get("x-amz-trailer", "").split(",") if name.strip()
    ]
    expected = checksums.checksum_from_headers(headers)
    trailer_checksum = next(
        (
            checksums.algorithm_from_header(name)
            for name in announced
            if name.startswith("x-amz-checksum-")
        ),
        None,
    )
    md5_expected = (
        checksums.decode_content_md5(headers["Content-MD5"]) if "Content-MD5" in headers else None
    )
    body = UploadBody(length, _empty())

    async def chunks() -> AsyncIterator[bytes]:
        await send_continue(req.web)
        algorithm = expected[0] if expected else trailer_checksum
        summer = Checksum(algorithm) if algorithm else None
        md5 = hashlib.md5(usedforsecurity=False) if md5_expected is not None else None
        sha256 = hashlib.sha256() if auth.payload == "signed" else None
        decoder = None
        if streaming:
            decoder = AwsChunkedDecoder.for_request(request.content, auth, headers)
            source: AsyncIterator[bytes] = decoder.__aiter__()
        else:
            source = request.content.iter_chunked(PIECE)
        received, held = 0, b""
        async for piece in source:
            received += len(piece)
            if length is None and received > max_length:
                raise S3Error(400, "EntityTooLarge", f"an object is at most {max_length} bytes")
            if length is not None and received > length:
                raise S3Error(400, "IncompleteBody", "the body is longer than its length")
            await asyncio.to_thread(_update, piece, md5, sha256, summer)
            if held:
                yield held
            held = piece  # the last piece goes only once everything matched
        if length is not None and received != length:
            raise S3Error(400, "IncompleteBody", f"got {received} of {length} bytes")
        if sha256 is not None:
            auth.check_payload_sha256(sha256.hexdigest())
        if md5 is not None:
            checksums.check_content_md5(headers["Content-MD5"], md5.digest())
        if summer is not None:
            value: bytes | str
            if expected is not None:
                value = expected[1]
            else:
                assert decoder is not None
                assert trailer_checksum is not None
                value = decoder.trailers.get(checksums.header_name(trailer_checksum), "")
                if not value:
                    raise S3Error(
                        400, "InvalidRequest", "the announced checksum trailer is missing"
                    )
            summer.verify(value)
            body.checksum = (summer.algorithm, summer.b64())
            meta["checksum"] = [summer.algorithm, summer.b64()]
        if held:
            yield held

    body.chunks = chunks()
    return body


def _update(
    piece: bytes,
    md5: "hashlib._Hash | None",
    sha256: "hashlib._Hash | None",
    summer: Checksum | None,
) -> None:
    if md5 is not None:
        md5.update(piece)
    if sha256 is not None:
        sha256.update(piece)
    if summer is not None:
        summer.update(piece)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""
