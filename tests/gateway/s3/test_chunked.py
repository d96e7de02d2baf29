"""gateway.s3.chunked: AWS's published streaming example, round trips through an encoder
written here (with its own signature code), and refused bodies, read through aiohttp's
own StreamReader."""

import asyncio
import hashlib
import hmac
import io
import time
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from aiohttp import StreamReader
from botocore.awsrequest import AWSResponse
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.s3.checksums import Checksum
from gateway.s3.chunked import (
    AwsChunkedDecoder,
    ChunkedError,
    ChunkLimits,
    chunk_signature,
    parse_decoded_content_length,
    parse_trailer_names,
)
from gateway.s3.sigv4 import (
    EMPTY_SHA256,
    AuthResult,
    ChunkSigningContext,
    PayloadMode,
    authenticate,
    derive_signing_key,
)

EXAMPLE_SECRETS = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
EXAMPLE_NOW = datetime(2013, 5, 24, tzinfo=UTC).timestamp()
EXAMPLE_HEADERS = {
    "Host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
    "aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
    "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
    "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "Content-Length": "66824",
}
EXAMPLE_CHUNKS = [
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]
SIGNING = ChunkSigningContext(
    derive_signing_key("secret", "20260102", "us-east-1"),
    "5eed" * 16,
    "20260102/us-east-1/s3/aws4_request",
    "20260102T030405Z",
)
ANY_LENGTH = ChunkLimits(min_signed_chunk_size=1)


def stream(body: bytes, feed: int = 7919) -> StreamReader:
    """aiohttp's StreamReader, fed ``body`` in pieces of ``feed`` bytes."""
    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16)
    for start in range(0, len(body), feed):
        reader.feed_data(body[start : start + feed])
    reader.feed_eof()
    return reader


def _reference_signature(kind: str, previous: str, last: str) -> str:
    string_to_sign = "\n".join((kind, SIGNING.amz_date, SIGNING.scope, previous, last))
    return hmac.new(SIGNING.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def encode(chunks: list[bytes], *, signed: bool, trailers: dict[str, str] | None = None) -> bytes:
    """An aws-chunked body as the AWS SDKs write it."""
    out = bytearray()
    previous = SIGNING.seed_signature
    for data in [*chunks, b""]:
        if signed:
            last = f"{EMPTY_SHA256}\n{hashlib.sha256(data).hexdigest()}"
            previous = _reference_signature("AWS4-HMAC-SHA256-PAYLOAD", previous, last)
            out += b"%x;chunk-signature=%s\r\n" % (len(data), previous.encode())
        else:
            out += b"%x\r\n" % len(data)
        if data:
            out += data + b"\r\n"
    for name, value in (trailers or {}).items():
        out += f"{name}:{value}\r\n".encode()
    if signed and trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        signature = _reference_signature("AWS4-HMAC-SHA256-TRAILER", previous, digest)
        out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return bytes(out + b"\r\n")


def _mode(signed: bool, trailer: bool) -> PayloadMode:
    if signed:
        return "streaming-signed-trailer" if trailer else "streaming-signed"
    return "streaming-unsigned-trailer"


async def decode(
    body: bytes,
    *,
    payload: PayloadMode,
    decoded_length: int | None,
    trailers: tuple[str, ...] = (),
    limits: ChunkLimits = ANY_LENGTH,
    feed: int = 7919,
) -> tuple[list[bytes], AwsChunkedDecoder]:
    decoder = AwsChunkedDecoder(
        stream(body, feed),
        payload=payload,
        decoded_length=decoded_length,
        chunk_signing=SIGNING if payload != "streaming-unsigned-trailer" else None,
        announced_trailers=trailers,
        limits=limits,
    )
    return [piece async for piece in decoder], decoder


async def refused(body: bytes, **options: Any) -> ChunkedError:
    with pytest.raises(ChunkedError) as caught:
        await decode(body, **options)
    return caught.value


# --- AWS's example ---------------------------------------------------------------------


def _example_body(*, tamper_data: bool = False) -> bytes:
    out = bytearray()
    for size, signature in EXAMPLE_CHUNKS:
        out += b"%x;chunk-signature=%s\r\n" % (size, signature.encode())
        if size:
            data = b"a" * size
            if tamper_data and size == 1024:
                data = b"b" + data[1:]
            out += data + b"\r\n"
    return bytes(out + b"\r\n")


def _example_auth() -> AuthResult:
    auth = authenticate(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        EXAMPLE_HEADERS,
        now=EXAMPLE_NOW,
        secret_for=EXAMPLE_SECRETS.get,
    )
    assert auth is not None
    return auth


async def test_aws_documentation_streaming_example() -> None:
    body = _example_body()
    assert len(body) == int(EXAMPLE_HEADERS["Content-Length"])
    auth = _example_auth()
    decoder = AwsChunkedDecoder.for_request(stream(body), auth, CIMultiDict(EXAMPLE_HEADERS))
    pieces = [piece async for piece in decoder]
    assert b"".join(pieces) == b"a" * 66560
    assert max(map(len, pieces)) <= ChunkLimits().piece_size
    assert decoder.finished and decoder.trailers == {}


def test_aws_documentation_chunk_signatures() -> None:
    signing = _example_auth().chunk_signing
    assert signing is not None
    previous = signing.seed_signature
    for size, expected in EXAMPLE_CHUNKS:
        previous = chunk_signature(signing, previous, hashlib.sha256(b"a" * size).hexdigest())
        assert previous == expected


async def test_aws_documentation_example_tampered() -> None:
    auth = _example_auth()
    headers = CIMultiDict(EXAMPLE_HEADERS)
    for body in (
        _example_body(tamper_data=True),
        _example_body().replace(b"0055627c", b"0055627d"),
        _example_body().replace(b"b6c6ea8a", b"b6c6ea8b"),
    ):
        decoder = AwsChunkedDecoder.for_request(stream(body), auth, headers)
        with pytest.raises(ChunkedError) as caught:
            async for _ in decoder:
                pass
        assert (caught.value.status, caught.value.code) == (403, "SignatureDoesNotMatch")
        assert not decoder.finished


# --- Round trips -----------------------------------------------------------------------

SHAPES = [[], [b"x"], [b"hello ", b"world"], [bytes(range(256)) * 300, b"tail"]]


@pytest.mark.parametrize("chunks", SHAPES)
@pytest.mark.parametrize(("signed", "trailer"), [(True, False), (True, True), (False, True)])
async def test_round_trip(chunks: list[bytes], signed: bool, trailer: bool) -> None:
    data = b"".join(chunks)
    checksum = Checksum("CRC32C")
    checksum.update(data)
    trailers = {checksum.header_name: checksum.b64()} if trailer else None
    body = encode(chunks, signed=signed, trailers=trailers)
    pieces, decoder = await decode(
        body,
        payload=_mode(signed, trailer),
        decoded_length=len(data),
        trailers=tuple(trailers or ()),
    )
    assert b"".join(pieces) == data
    assert decoder.trailers == (trailers or {})
    if trailers:
        checksum.verify(decoder.trailers["x-amz-checksum-crc32c"])


async def test_pieces_are_bounded_and_come_before_the_chunk_ends() -> None:
    data = bytes(200 * 1024)
    limits = ChunkLimits(piece_size=16 * 1024)
    pieces, _ = await decode(
        encode([data], signed=True),
        payload="streaming-signed",
        decoded_length=len(data),
        limits=limits,
    )
    assert len(pieces) == 13 and max(map(len, pieces)) == 16 * 1024


async def test_several_trailers_signed_in_canonical_order() -> None:
    trailers = {"x-amz-checksum-sha256": "X" * 43 + "=", "x-amz-checksum-crc32": "AAAAAA=="}
    _, decoder = await decode(
        encode([b"data"], signed=True, trailers=trailers),
        payload="streaming-signed-trailer",
        decoded_length=4,
        trailers=tuple(trailers),
    )
    assert decoder.trailers == trailers


async def test_unsigned_chunk_extensions_are_ignored() -> None:
    body = b"4;ext=1\r\ndata\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    pieces, _ = await decode(
        body,
        payload="streaming-unsigned-trailer",
        decoded_length=4,
        trailers=("x-amz-checksum-crc32",),
    )
    assert pieces == [b"data"]


async def test_botocore_streaming_upload() -> None:
    """A real boto3 PutObject over https: STREAMING-UNSIGNED-PAYLOAD-TRAILER with CRC32."""
    sent: list[tuple[Any, bytes]] = []

    def before_send(request: Any, **_: Any) -> Any:
        sent.append((request, request.body.read()))

        class Raw:
            def stream(self, **_: Any) -> Any:
                return iter([b""])

        return AWSResponse(request.url, 200, {}, Raw())

    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://s3.local:9443",
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
    )
    client.meta.events.register("before-send", before_send)
    data = bytes(range(256)) * 5000
    client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(data))
    request, body = sent[0]
    url = urlsplit(request.url)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        headers.add(name, value.decode() if isinstance(value, bytes) else value)
    assert headers["Host"] == url.netloc  # botocore sets it for signing
    auth = authenticate(
        "PUT", url.path, url.query, headers, now=time.time(), secret_for={"AK": "SK"}.get
    )
    assert auth is not None and auth.payload == "streaming-unsigned-trailer"
    decoder = AwsChunkedDecoder.for_request(stream(body), auth, headers)
    assert b"".join([piece async for piece in decoder]) == data
    checksum = Checksum("CRC32")
    checksum.update(data)
    checksum.verify(decoder.trailers["x-amz-checksum-crc32"])


# --- Refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [0, 10, 12])
async def test_decoded_length_must_match(declared: int) -> None:
    error = await refused(
        encode([b"hello", b" world"], signed=True),
        payload="streaming-signed",
        decoded_length=declared,
    )
    assert (error.status, error.code) == (400, "IncompleteBody")


async def test_tampered_trailers() -> None:
    trailers = {"x-amz-checksum-crc32": "AAAAAA=="}
    body = encode([b"data"], signed=True, trailers=trailers)
    options: dict[str, Any] = {
        "payload": "streaming-signed-trailer",
        "decoded_length": 4,
        "trailers": ("x-amz-checksum-crc32",),
    }
    for tampered in (
        body.replace(b"AAAAAA==", b"AAAAAQ=="),
        body.replace(b"x-amz-trailer-signature:", b"x-amz-trailer-signature:0"),
    ):
        error = await refused(tampered, **options)
        assert (error.status, error.code) == (403, "SignatureDoesNotMatch")
    unsigned = body.replace(body[body.index(b"x-amz-trailer-signature") : -2], b"")
    assert (await refused(unsigned, **options)).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("trailers", "announced", "payload"),
    [
        ({"x-amz-checksum-crc32": "AAAAAA=="}, (), "streaming-unsigned-trailer"),
        ({}, ("x-amz-checksum-crc32",), "streaming-unsigned-trailer"),
        (
            {"x-amz-checksum-crc32": "AAAAAA=="},
            ("x-amz-checksum-sha1",),
            "streaming-signed-trailer",
        ),
        ({"x-amz-trailer-signature": "0" * 64}, (), "streaming-unsigned-trailer"),
        ({"x-amz-checksum-crc32": "AAAAAA=="}, (), "streaming-signed"),
        ({"not a header": "x"}, (), "streaming-unsigned-trailer"),
    ],
)
async def test_unexpected_or_missing_trailers(
    trailers: dict[str, str], announced: tuple[str, ...], payload: PayloadMode
) -> None:
    body = encode([b"data"], signed=payload != "streaming-unsigned-trailer")
    body = body[:-2] + b"".join(f"{k}:{v}\r\n".encode() for k, v in trailers.items()) + b"\r\n"
    error = await refused(body, payload=payload, decoded_length=4, trailers=announced)
    assert (error.status, error.code) == (400, "MalformedTrailerError")


async def test_trailers_are_bounded() -> None:
    body = encode([b"data"], signed=False)[:-2] + b"x-amz-meta:" + b"a" * 20000 + b"\r\n\r\n"
    error = await refused(body, payload="streaming-unsigned-trailer", decoded_length=4)
    assert error.code in ("MalformedTrailerError", "InvalidRequest")
    repeated = encode([b"data"], signed=False)[:-2] + b"x-amz-meta:aaaaaaaa\r\n" * 3000 + b"\r\n"
    error = await refused(
        repeated, payload="streaming-unsigned-trailer", decoded_length=4, trailers=("x-amz-meta",)
    )
    assert error.code == "MalformedTrailerError"


SIG = b"ab" * 32


@pytest.mark.parametrize(
    "body",
    [
        b"zz;chunk-signature=" + SIG + b"\r\n",
        b"-1;chunk-signature=" + SIG + b"\r\n",
        b"0x4;chunk-signature=" + SIG + b"\r\n",
        b" 4;chunk-signature=" + SIG + b"\r\n",
        b"4;chunk-signature=abc\r\n",
        b"4\r\ndata\r\n",
        b"4;chunk-signature=" + SIG + b"\n",
        b"4;chunk-signature=" + SIG + b";more=1\r\n",
        b"11111111111111111;chunk-signature=" + SIG + b"\r\n",
        b"4000001;chunk-signature=" + SIG + b"\r\n",
        b"4;chunk-signature=" + SIG + b"\r\ndataXX",
        b"4;chunk-signature=" + b"a" * 300 + b"\r\n",
    ],
)
async def test_malformed_chunk_headers(body: bytes) -> None:
    error = await refused(body, payload="streaming-signed", decoded_length=None)
    assert (error.status, error.code) == (400, "InvalidRequest")


async def test_signed_chunks_but_the_last_hold_8_kib() -> None:
    small = encode([b"x" * 100, b"y" * 100], signed=True)
    error = await refused(
        small, payload="streaming-signed", decoded_length=200, limits=ChunkLimits()
    )
    assert (error.status, error.code) == (403, "InvalidChunkSizeError")
    fine = encode([b"x" * 8192, b"y" * 100], signed=True)
    pieces, _ = await decode(
        fine, payload="streaming-signed", decoded_length=8292, limits=ChunkLimits()
    )
    assert len(b"".join(pieces)) == 8292


async def test_iteration_resumes_and_trailers_come_at_the_end() -> None:
    trailers = {"x-amz-checksum-crc32": "AAAAAA=="}
    decoder = AwsChunkedDecoder(
        stream(encode([b"abc", b"def"], signed=False, trailers=trailers)),
        payload="streaming-unsigned-trailer",
        decoded_length=6,
        announced_trailers=trailers,
    )
    async for piece in decoder:
        assert piece == b"abc"
        break
    assert not decoder.finished
    with pytest.raises(RuntimeError):
        _ = decoder.trailers
    assert [piece async for piece in decoder] == [b"def"]
    assert decoder.finished and decoder.trailers == trailers
    assert [piece async for piece in decoder] == []


def test_construction_errors() -> None:
    reader = mock.Mock()
    with pytest.raises(ChunkedError, match="not an aws-chunked") as refused:
        AwsChunkedDecoder(reader, payload="signed", decoded_length=1)
    assert (refused.value.status, refused.value.code) == (400, "InvalidRequest")
    with pytest.raises(ValueError, match="chunk_signing"):
        AwsChunkedDecoder(reader, payload="streaming-signed", decoded_length=1)
    with pytest.raises(ChunkedError) as caught:
        AwsChunkedDecoder(
            reader,
            payload="streaming-signed",
            decoded_length=1,
            chunk_signing=SIGNING,
            announced_trailers=["x-amz-checksum-crc32"],
        )
    assert caught.value.code == "InvalidRequest"
    unsigned = AuthResult("AK", "v4-header", "unsigned")
    with pytest.raises(ChunkedError, match="not an aws-chunked"):
        AwsChunkedDecoder.for_request(reader, unsigned, {"x-amz-decoded-content-length": "1"})


def test_header_parsers() -> None:
    assert parse_decoded_content_length(" 66560 ") == 66560
    with pytest.raises(ChunkedError) as caught:
        parse_decoded_content_length(None)
    assert (caught.value.status, caught.value.code) == (411, "MissingContentLength")
    for bad in ("-1", "1e3", "", "0x10", "²", "1_0", "9" * 20, "5" * 5000):
        with pytest.raises(ChunkedError):
            parse_decoded_content_length(bad)
    assert parse_trailer_names(None) == frozenset()
    assert parse_trailer_names("X-Amz-Checksum-CRC32, x-amz-checksum-sha1,") == {
        "x-amz-checksum-crc32",
        "x-amz-checksum-sha1",
    }


# --- Properties ------------------------------------------------------------------------

CHUNK_LISTS = st.lists(st.binary(min_size=1, max_size=3000), max_size=6)


@given(
    chunks=CHUNK_LISTS,
    mode=st.sampled_from([(True, False), (True, True), (False, True)]),
    feed=st.integers(1, 5000),
    piece_size=st.integers(1, 4096),
)
def test_any_chunking_round_trips(
    chunks: list[bytes], mode: tuple[bool, bool], feed: int, piece_size: int
) -> None:
    signed, trailer = mode
    trailers = {"x-amz-checksum-crc32": "AAAAAA=="} if trailer else None
    data = b"".join(chunks)
    pieces, decoder = asyncio.run(
        decode(
            encode(chunks, signed=signed, trailers=trailers),
            payload=_mode(signed, trailer),
            decoded_length=len(data),
            trailers=tuple(trailers or ()),
            limits=ChunkLimits(min_signed_chunk_size=1, piece_size=piece_size),
            feed=feed,
        )
    )
    assert b"".join(pieces) == data
    assert all(0 < len(piece) <= piece_size for piece in pieces)
    assert decoder.trailers == (trailers or {})


@given(chunks=CHUNK_LISTS, signed=st.booleans(), data=st.data())
def test_any_truncation_is_incomplete(
    chunks: list[bytes], signed: bool, data: st.DataObject
) -> None:
    trailers = None if signed else {"x-amz-checksum-crc32": "AAAAAA=="}
    body = encode(chunks, signed=signed, trailers=trailers)
    cut = data.draw(st.integers(0, len(body) - 1))
    error = asyncio.run(
        refused(
            body[:cut],
            payload=_mode(signed, not signed),
            decoded_length=len(b"".join(chunks)),
            trailers=tuple(trailers or ()),
        )
    )
    assert (error.status, error.code) == (400, "IncompleteBody")
