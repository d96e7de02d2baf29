"""Decoding of ``Content-Encoding: aws-chunked`` request bodies, streaming.

Follows the S3 API reference, "Signature Calculations for the Authorization Header:
Transferring Payload in Multiple Chunks" and its trailer variants. The body is::

    signed      <hex size>;chunk-signature=<64 hex>\\r\\n <data> \\r\\n   ... then
                0;chunk-signature=<64 hex>\\r\\n <trailers> \\r\\n
    unsigned    <hex size>\\r\\n <data> \\r\\n   ...   0\\r\\n <trailers> \\r\\n

where ``<trailers>`` is empty, or (trailer variants) lines ``name:value\\r\\n`` ending, when
signed, with ``x-amz-trailer-signature:<64 hex>\\r\\n``. Chunk ``i`` is signed over::

    AWS4-HMAC-SHA256-PAYLOAD \\n <amz date> \\n <scope> \\n <signature of chunk i-1,
    the seed for the first> \\n <sha256 of ""> \\n <sha256 of the chunk's data>

and the trailers over ``AWS4-HMAC-SHA256-TRAILER \\n <amz date> \\n <scope> \\n <final
chunk's signature> \\n <sha256 of the trailers' canonical form>``: ``name:value\\n`` per
trailer, names lower-cased and sorted, values trimmed (as the AWS SDKs sign them).

A chunk's signature can only be checked once all of its bytes went by, and they are
yielded as they arrive (a chunk may be 64 MiB), so bytes of a bad chunk may already have
been yielded when ``ChunkedError`` is raised: the caller must then abort the upload and
discard everything it received. Trailers are known only once iteration has ended.
"""

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from chain_client.strict import ascii_int
from gateway.s3.sigv4 import EMPTY_SHA256, AuthResult, ChunkSigningContext, PayloadMode

__all__ = [
    "TRAILER_SIGNATURE",
    "AwsChunkedDecoder",
    "ChunkLimits",
    "ChunkSource",
    "ChunkedError",
    "chunk_signature",
    "parse_decoded_content_length",
    "parse_trailer_names",
    "trailer_signature",
]

TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"
_SIGNED_HEADER: Final = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})\r\n")
# Extensions of an unsigned chunk carry nothing S3 uses; they are ignored.
_UNSIGNED_HEADER: Final = re.compile(rb"([0-9a-fA-F]{1,16})(?:;[\x20-\x7e]*)?\r\n")
_TRAILER_LINE: Final = re.compile(rb"([A-Za-z0-9-]{1,128}):[ \t]*([\x20-\x7e]*?)[ \t]*\r\n")


class ChunkedError(Exception):
    """A refused aws-chunked body: HTTP status, S3 error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def __repr__(self) -> str:
        return f"ChunkedError({self.status}, {self.code!r}, {self.message!r})"


class ChunkSource(Protocol):
    """What the decoder reads from: aiohttp's ``StreamReader`` (``request.content``)."""

    async def readline(self) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkLimits:
    """Bounds on what one body may make the gateway buffer or compute."""

    max_chunk_size: int = 64 * 1024 * 1024
    # S3's rule for signed chunks ("InvalidChunkSizeError"): each but the last holds at
    # least 8 KiB, which also bounds the HMACs computed per byte.
    min_signed_chunk_size: int = 8 * 1024
    max_line_length: int = 256
    max_trailer_bytes: int = 16 * 1024
    piece_size: int = 64 * 1024


def chunk_signature(signing: ChunkSigningContext, previous: str, data_sha256: str) -> str:
    return _sign(
        signing,
        "AWS4-HMAC-SHA256-PAYLOAD",
        previous,
        f"{EMPTY_SHA256}\n{data_sha256}",
    )


def trailer_signature(
    signing: ChunkSigningContext, previous: str, trailers: Mapping[str, str]
) -> str:
    canonical = "".join(f"{name.lower()}:{trailers[name].strip()}\n" for name in sorted(trailers))
    return _sign(
        signing,
        "AWS4-HMAC-SHA256-TRAILER",
        previous,
        hashlib.sha256(canonical.encode()).hexdigest(),
    )


def _sign(signing: ChunkSigningContext, algorithm: str, previous: str, rest: str) -> str:
    string_to_sign = f"{algorithm}\n{signing.amz_date}\n{signing.scope}\n{previous}\n{rest}"
    message = string_to_sign.encode("utf-8", "surrogateescape")
    return hmac.new(signing.signing_key, message, hashlib.sha256).hexdigest()


def parse_decoded_content_length(value: str | None) -> int:
    """The ``x-amz-decoded-content-length`` header: the size of the decoded body."""
    if value is None:
        raise ChunkedError(
            411, "MissingContentLength", "You must provide the Content-Length HTTP header."
        )
    length = ascii_int(value.strip(), max_digits=19)
    if length is None:
        raise ChunkedError(
            400, "InvalidArgument", f"x-amz-decoded-content-length is not a number: {value!r}"
        )
    return length


def parse_trailer_names(value: str | None) -> frozenset[str]:
    """The ``x-amz-trailer`` header: the trailers a request announces, lower-cased."""
    if value is None:
        return frozenset()
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _incomplete() -> ChunkedError:
    return ChunkedError(400, "IncompleteBody", "The request body terminated unexpectedly")


def _malformed(detail: str) -> ChunkedError:
    return ChunkedError(400, "InvalidRequest", f"Malformed aws-chunked body: {detail}")


def _bad_trailer(detail: str) -> ChunkedError:
    return ChunkedError(
        400,
        "MalformedTrailerError",
        "The request contained trailing data that was not well-formed or did not conform to "
        f"our published schema. ({detail})",
    )


def _signature_mismatch(what: str) -> ChunkedError:
    return ChunkedError(
        403,
        "SignatureDoesNotMatch",
        f"The {what} signature we calculated does not match the signature you provided.",
    )


class AwsChunkedDecoder:
    """Iterate over a decoded aws-chunked body; then read ``trailers``. Iterating again
    after a ``break`` resumes where it stopped (to read the final chunk and trailers).

    ``payload`` is the request's ``AuthResult.payload`` (one of the streaming modes);
    ``chunk_signing`` is required for the signed ones. ``decoded_length`` is
    ``x-amz-decoded-content-length`` (None: not enforced). Only the trailers named in
    ``announced_trailers`` (``x-amz-trailer``) are accepted, and all of them are required.
    """

    def __init__(
        self,
        stream: ChunkSource,
        *,
        payload: PayloadMode,
        decoded_length: int | None,
        chunk_signing: ChunkSigningContext | None = None,
        announced_trailers: Iterable[str] = (),
        limits: ChunkLimits = ChunkLimits(),  # frozen, shared safely
    ) -> None:
        if payload not in (
            "streaming-signed",
            "streaming-signed-trailer",
            "streaming-unsigned-trailer",
        ):
            # A request whose body only claims the encoding (the caller checks first).
            raise ChunkedError(400, "InvalidRequest", f"not an aws-chunked payload: {payload!r}")
        self._signed = payload != "streaming-unsigned-trailer"
        if self._signed and chunk_signing is None:
            raise ValueError(f"{payload} needs the request's chunk_signing context")
        self._stream = stream
        self._has_trailer = payload != "streaming-signed"
        self._signing = chunk_signing
        self._decoded_length = decoded_length
        self._announced = frozenset(name.lower() for name in announced_trailers)
        if self._announced and not self._has_trailer:
            raise ChunkedError(
                400, "InvalidRequest", f"x-amz-trailer was sent with a {payload} payload"
            )
        self._limits = limits
        self._pieces: AsyncIterator[bytes] | None = None
        self._trailers: Mapping[str, str] | None = None

    @classmethod
    def for_request(
        cls,
        stream: ChunkSource,
        auth: AuthResult,
        headers: Mapping[str, str],
        *,
        limits: ChunkLimits = ChunkLimits(),
    ) -> "AwsChunkedDecoder":
        """The decoder for a request ``authenticate`` accepted with a streaming payload;
        reads ``x-amz-decoded-content-length`` (required) and ``x-amz-trailer``."""
        return cls(
            stream,
            payload=auth.payload,
            decoded_length=parse_decoded_content_length(
                _header(headers, "x-amz-decoded-content-length")
            ),
            chunk_signing=auth.chunk_signing,
            announced_trailers=parse_trailer_names(_header(headers, "x-amz-trailer")),
            limits=limits,
        )

    @property
    def finished(self) -> bool:
        """Whether the whole body, trailers included, was read and checked."""
        return self._trailers is not None

    @property
    def trailers(self) -> Mapping[str, str]:
        """The trailers received (lower-case names, without the signature)."""
        if self._trailers is None:
            raise RuntimeError("trailers are known only once the whole body was read")
        return self._trailers

    def __aiter__(self) -> AsyncIterator[bytes]:
        # One generator: iterating again (after a break) continues where it stopped.
        if self._pieces is None:
            self._pieces = self._decode()
        return self._pieces

    async def _decode(self) -> AsyncIterator[bytes]:
        limits = self._limits
        previous = self._signing.seed_signature if self._signing else ""
        total = 0
        short_chunk = False
        while True:
            size, signature = await self._chunk_header()
            if size == 0:
                break
            if short_chunk:
                raise ChunkedError(
                    403,
                    "InvalidChunkSizeError",
                    "Only the last chunk is allowed to have a size less than "
                    f"{limits.min_signed_chunk_size} bytes",
                )
            short_chunk = self._signed and size < limits.min_signed_chunk_size
            if size > limits.max_chunk_size:
                raise _malformed(f"chunk of {size} bytes; at most {limits.max_chunk_size}")
            total += size
            if self._decoded_length is not None and total > self._decoded_length:
                raise self._length_mismatch(total)
            digest = hashlib.sha256() if self._signed else None
            remaining = size
            while remaining:
                piece = await self._read_exactly(min(limits.piece_size, remaining))
                remaining -= len(piece)
                if digest is not None:
                    digest.update(piece)
                yield piece
            if await self._read_exactly(2) != b"\r\n":
                raise _malformed("chunk data not followed by CRLF")
            if digest is not None:
                previous = self._verify(signature, previous, digest.hexdigest())
        if self._signed:
            previous = self._verify(signature, previous, EMPTY_SHA256)
        trailers = await self._read_trailers(previous)
        if self._decoded_length is not None and total != self._decoded_length:
            raise self._length_mismatch(total)
        self._trailers = MappingProxyType(trailers)

    def _verify(self, signature: str, previous: str, data_sha256: str) -> str:
        assert self._signing is not None
        expected = chunk_signature(self._signing, previous, data_sha256)
        # SECURITY: constant-time compare, as for the request's own signature.
        if not hmac.compare_digest(expected, signature):
            raise _signature_mismatch("chunk")
        return signature

    def _length_mismatch(self, total: int) -> ChunkedError:
        return ChunkedError(
            400,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the "
            f"x-amz-decoded-content-length HTTP header ({self._decoded_length}, got {total})",
        )

    async def _chunk_header(self) -> tuple[int, str]:
        line = await self._read_line(self._limits.max_line_length)
        pattern = _SIGNED_HEADER if self._signed else _UNSIGNED_HEADER
        match = pattern.fullmatch(line)
        if match is None:
            raise _malformed(f"bad chunk header {line[:80]!r}")
        signature = match.group(2).decode() if self._signed else ""
        return int(match.group(1), 16), signature

    async def _read_trailers(self, previous: str) -> dict[str, str]:
        received: dict[str, str] = {}
        signature: str | None = None
        budget = self._limits.max_trailer_bytes
        while (line := await self._read_line(budget)) != b"\r\n":
            budget -= len(line)
            if budget < 0:
                raise _bad_trailer(f"more than {self._limits.max_trailer_bytes} bytes")
            match = _TRAILER_LINE.fullmatch(line)
            if match is None:
                raise _bad_trailer(f"bad trailer line {line[:80]!r}")
            name, value = match.group(1).decode().lower(), match.group(2).decode()
            if signature is not None or name in received:
                raise _bad_trailer(f"{name} after the signature or repeated")
            if name == TRAILER_SIGNATURE and self._signed and self._has_trailer:
                signature = value
            elif name in self._announced and self._has_trailer:
                received[name] = value
            else:
                raise _bad_trailer(f"{name} was not announced in x-amz-trailer")
        if missing := self._announced - received.keys():
            raise _bad_trailer(f"announced but missing: {', '.join(sorted(missing))}")
        if self._signed and self._has_trailer:
            assert self._signing is not None
            expected = trailer_signature(self._signing, previous, received)
            # SECURITY: constant-time compare; the trailers carry the object's checksum.
            if signature is None or not hmac.compare_digest(expected, signature):
                raise _signature_mismatch("trailer")
        return received

    async def _read_line(self, limit: int) -> bytes:
        # The stream bounds what it buffers while looking for the newline (aiohttp raises
        # its LineTooLong past 128 KiB); this bound is checked once the line is read.
        line = await self._stream.readline()
        if len(line) > limit:
            raise _malformed(f"line longer than {limit} bytes")
        if not line.endswith(b"\n"):
            raise _incomplete()
        return line

    async def _read_exactly(self, size: int) -> bytes:
        try:
            return await self._stream.readexactly(size)
        except asyncio.IncompleteReadError:
            raise _incomplete() from None
