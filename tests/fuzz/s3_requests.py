"""Random and mutated S3 requests. Each starts from an operation of the compatibility
table (docs/s3.md §4) with what it needs (method, sub-resource, body) and what it is
often sent with, then adds parameters and headers S3 knows with random values, names
with odd bytes, escapes, U+10FFFF or great length, XML bodies (valid and mutated),
aws-chunked bodies (good and broken) and a framing; one in twelve is random through.
Most are signed as a client signs (SigV4 header or presigned URL), so that they reach
the handlers; some are anonymous, mis-signed, skewed or carry a mangled ``Authorization``.

Names come from ``S3World`` (what the setup stored) as often as at random, so requests
find buckets, keys, versions, uploads and ETags that exist.
"""

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from hypothesis import strategies as st

from tests.fuzz.s3_bodies import ALGORITHMS, XML_KINDS, checksum, content_md5, object_data, xml_body
from tests.fuzz.s3_signing import Credentials, aws_chunked, presign_query, sign_headers
from tests.fuzz.strategies import (
    digits,
    framings,
    header_values,
    mutated,
    number,
    odd_text,
    one_in,
    percent_encoded,
    pick,
    sampled,
)
from tests.fuzz.wire import Request

__all__ = ["OPERATIONS", "Operation", "S3World", "s3_requests"]


@dataclass(frozen=True)
class S3World:
    host: str
    credentials: Credentials
    buckets: tuple[str, ...]
    keys: tuple[tuple[str, str], ...]  # (bucket, key) of stored objects
    version_ids: tuple[str, ...]
    upload_ids: tuple[str, ...]  # each of the key "mp"
    etags: tuple[str, ...]


@dataclass(frozen=True)
class Operation:
    method: str
    scope: str  # service, bucket or object
    needs: tuple[str, ...] = ()  # query parameters it takes to be this operation
    takes: tuple[str, ...] = ()  # optional parameters
    headers: tuple[str, ...] = ()  # headers it is often sent with
    body: str = ""  # "data", an XML kind, or none


LISTING = ("prefix", "delimiter", "max-keys", "encoding-type")
READING = ("versionId", "partNumber", "response-content-type", "response-content-disposition")
CONDITIONS = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")
WRITING = ("Content-Type", "Content-MD5", "x-amz-meta-note", "x-amz-tagging", "x-amz-checksum-")
OPERATIONS = {
    "ListBuckets": Operation("GET", "service"),
    "CreateBucket": Operation(
        "PUT", "bucket", headers=("x-deoss-territory", "x-amz-acl"), body="location"
    ),
    "HeadBucket": Operation("HEAD", "bucket"),
    "DeleteBucket": Operation("DELETE", "bucket"),
    "GetBucketLocation": Operation("GET", "bucket", ("location",)),
    "PutBucketVersioning": Operation("PUT", "bucket", ("versioning",), body="versioning"),
    "GetBucketVersioning": Operation("GET", "bucket", ("versioning",)),
    "ListObjects": Operation("GET", "bucket", takes=(*LISTING, "marker")),
    "ListObjectsV2": Operation(
        "GET",
        "bucket",
        ("list-type",),
        (*LISTING, "continuation-token", "start-after", "fetch-owner"),
    ),
    "ListObjectVersions": Operation(
        "GET", "bucket", ("versions",), (*LISTING, "key-marker", "version-id-marker")
    ),
    "ListMultipartUploads": Operation(
        "GET", "bucket", ("uploads",), (*LISTING, "key-marker", "upload-id-marker", "max-uploads")
    ),
    "DeleteObjects": Operation(
        "POST", "bucket", ("delete",), headers=("Content-MD5",), body="delete"
    ),
    "PutBucketTagging": Operation(
        "PUT", "bucket", ("tagging",), headers=("Content-MD5",), body="tagging"
    ),
    "GetBucketTagging": Operation("GET", "bucket", ("tagging",)),
    "DeleteBucketTagging": Operation("DELETE", "bucket", ("tagging",)),
    "GetBucketAcl": Operation("GET", "bucket", ("acl",)),
    "PutBucketAcl": Operation("PUT", "bucket", ("acl",), headers=("x-amz-acl",), body="acl"),
    "PutObject": Operation(
        "PUT", "object", headers=(*WRITING, "If-None-Match", "Cache-Control", "Expect"), body="data"
    ),
    "CopyObject": Operation(
        "PUT",
        "object",
        headers=(
            "x-amz-copy-source",
            "x-amz-metadata-directive",
            "x-amz-tagging-directive",
            "x-amz-copy-source-if-match",
        ),
    ),
    "GetObject": Operation(
        "GET", "object", takes=READING, headers=("Range", *CONDITIONS, "x-amz-checksum-mode")
    ),
    "HeadObject": Operation("HEAD", "object", takes=READING, headers=("Range", *CONDITIONS)),
    "DeleteObject": Operation("DELETE", "object", takes=("versionId",)),
    "PutObjectTagging": Operation("PUT", "object", ("tagging",), ("versionId",), body="tagging"),
    "GetObjectTagging": Operation("GET", "object", ("tagging",), ("versionId",)),
    "DeleteObjectTagging": Operation("DELETE", "object", ("tagging",), ("versionId",)),
    "GetObjectAcl": Operation("GET", "object", ("acl",)),
    "PutObjectAcl": Operation("PUT", "object", ("acl",), headers=("x-amz-acl",), body="acl"),
    "CreateMultipartUpload": Operation("POST", "object", ("uploads",), headers=WRITING[:3]),
    "UploadPart": Operation(
        "PUT",
        "object",
        ("partNumber", "uploadId"),
        headers=("Content-MD5", "x-amz-checksum-"),
        body="data",
    ),
    "UploadPartCopy": Operation(
        "PUT",
        "object",
        ("partNumber", "uploadId"),
        headers=("x-amz-copy-source", "x-amz-copy-source-range"),
    ),
    "CompleteMultipartUpload": Operation("POST", "object", ("uploadId",), body="complete"),
    "AbortMultipartUpload": Operation("DELETE", "object", ("uploadId",)),
    "ListParts": Operation("GET", "object", ("uploadId",), ("max-parts", "part-number-marker")),
}
QUERY_NAMES = (
    *sorted({name for op in OPERATIONS.values() for name in (*op.needs, *op.takes)}),
    "response-expires",
    "response-cache-control",
    "X-Amz-Expires",
    "X-Amz-Credential",
    "AWSAccessKeyId",
    "Signature",
)
HEADER_NAMES = (
    *sorted({name for op in OPERATIONS.values() for name in op.headers}),
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Expires",
    "If-Range",
    "x-amz-copy-source-if-none-match",
    "x-amz-grant-read",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-server-side-encryption-customer-",
    "x-amz-copy-source-server-side-encryption-customer-",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
)
# Flags name a sub-resource by their presence; the ones documented NotImplemented (501)
# are not drawn: they are answered by design.
FLAGS = frozenset({"acl", "tagging", "versioning", "versions", "uploads", "delete", "location"})
PAYLOADS = (
    "unsigned",
    "sha256",
    "sha256",
    "sha256",
    "wrong-sha256",
    "streaming-signed",
    "streaming-signed-trailer",
    "streaming-unsigned-trailer",
)
AUTHS = ("v4",) * 10 + ("presigned", "anonymous", "bad", "mangled", "skewed")
SSE_KEY = bytes(range(32))
SSE_KEY_TEXT = base64.b64encode(SSE_KEY).decode()


_BUCKET_NAMES = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", fullmatch=True)
_HEADER_NAMES = st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True)
_ODD_BUCKETS = ("", "xn--bad", "192.168.0.1", "a..b", "a" * 64, "sthree-x")
_ODD_KEYS = ("/", "a/", "dir/", "\U0010ffff", "a\x00b", "a\nb", "k" * 1100, "%41")
_PATH_STYLES = ("strict",) * 6 + ("loose", "loose", "double", "raw")
_QUERY_STYLES = ("strict",) * 5 + ("loose", "loose", "raw")
_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE")
_SCOPES = ("service", "bucket", "object")
_NUMBERS = ("0", "1", "2", "1000")
_PARTS = ("1", "1", "2", "3")
_PREFIXES = ("", "/", "d", "dir/", "a", "é")
_OVERRIDES = ("text/plain", 'attachment; filename="x"')
_DATES = ("Sun, 06 Nov 1994 08:49:37 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "yesterday")
_RANGES = ("bytes=0-0", "bytes=2-", "bytes=-3", "bytes=5-2", "bytes=0-1,3-4", "bytes=0-99999")
_TAGGING = ("a=b", "a=b&c=", "=x", "a=b&a=c", "&".join(f"k{i}=v" for i in range(12)))
_GOOD_VALUES = {
    "x-amz-metadata-directive": ("COPY", "REPLACE", "copy"),
    "x-amz-tagging-directive": ("COPY", "REPLACE", "copy"),
    "x-amz-acl": ("private", "bucket-owner-full-control", "public-read"),
    "x-amz-tagging": _TAGGING,
    "Content-Encoding": ("gzip", "identity", "aws-chunked", "gzip, aws-chunked"),
    "x-deoss-territory": ("home", "nowhere"),
    "Expect": ("100-continue", "100-Continue", "200-ok"),
    "x-amz-checksum-mode": ("ENABLED", "enabled"),
    "If-Modified-Since": _DATES,
    "If-Unmodified-Since": _DATES,
    "Expires": _DATES,
    "If-Range": _DATES,
    "Range": (*_RANGES, "bytes=" + "9" * 30 + "-"),
    "x-amz-copy-source-range": _RANGES,
}
_ANY_VALUES = ("text/plain", "1", "", "x-amz-checksum-crc32", "CRC32")


def _either(
    draw: st.DrawFn, known: tuple[str, ...], odd: st.SearchStrategy[str], odds: int = 4
) -> str:
    """One of ``known`` mostly, one of ``odd`` one time in ``odds``."""
    return draw(odd) if not known or one_in(draw, odds) else pick(draw, known)


def _bucket(draw: st.DrawFn, world: S3World) -> str:
    choice = number(draw, 0, 6)
    if choice <= 3:
        return pick(draw, world.buckets)
    if choice == 4:
        return draw(_BUCKET_NAMES)
    return draw(odd_text(max_size=8)) if choice == 5 else pick(draw, _ODD_BUCKETS)


def _key(draw: st.DrawFn, world: S3World, bucket: str, upload: bool) -> str:
    if upload and not one_in(draw, 4):
        return "mp"
    stored = tuple(key for b, key in world.keys if b == bucket) or tuple(k for _, k in world.keys)
    choice = number(draw, 0, 4)
    if choice <= 2:
        return pick(draw, stored)
    return draw(odd_text(min_size=1, max_size=12)) if choice == 3 else pick(draw, _ODD_KEYS)


def _path(draw: st.DrawFn, bucket: str, key: str) -> str:
    style = pick(draw, _PATH_STYLES)

    def segment(text: str) -> str:
        if style == "strict":
            return percent_encoded(text)
        if style == "loose":
            return quote(text.encode("utf-8", "surrogateescape"), safe="!$&'()*+,;=:@")
        return percent_encoded(percent_encoded(text)) if style == "double" else text

    path = "/" + segment(bucket) if bucket else "/"
    if key:
        path += "/" + "/".join(segment(part) for part in key.split("/"))
    return path


def _value(draw: st.DrawFn, world: S3World, name: str) -> str:
    if name in ("max-keys", "max-uploads", "max-parts", "part-number-marker"):
        return _either(draw, _NUMBERS, digits(), 2)
    if name == "partNumber":
        return _either(draw, _PARTS, digits(), 3)
    if name in ("uploadId", "upload-id-marker"):
        return _either(draw, world.upload_ids, odd_text(max_size=8))
    if name in ("versionId", "version-id-marker"):
        return _either(draw, (*world.version_ids, "null"), odd_text(max_size=8))
    if name == "list-type":
        return pick(draw, ("2", "2", "2", "1", "3", ""))
    if name == "encoding-type":
        return pick(draw, ("url", "url", "URL", "", "xml"))
    if name in ("prefix", "delimiter", "marker", "start-after", "key-marker"):
        return _either(draw, _PREFIXES, odd_text(max_size=8), 2)
    if name.startswith("response-"):
        return _either(draw, _OVERRIDES, header_values(), 2)
    if name in FLAGS:
        return pick(draw, ("", "", "", "1"))
    return draw(odd_text(max_size=10))


def _query(draw: st.DrawFn, world: S3World, operation: Operation) -> str:
    names = [name for name in operation.needs if not one_in(draw, 16)]  # one may be missing
    if operation.takes:
        names += draw(st.lists(sampled(operation.takes), max_size=3, unique=True))
    if one_in(draw, 4):
        names += [
            _either(draw, QUERY_NAMES, odd_text(min_size=1, max_size=6))
            for _ in range(number(draw, 1, 2))
        ]
    style = pick(draw, _QUERY_STYLES)
    pairs = []
    for name in names:
        value = _value(draw, world, name)
        if name in FLAGS and not value and one_in(draw, 2):
            pairs.append(percent_encoded(name))  # "?acl", as most SDKs send it
            continue
        if style == "strict":
            name, value = percent_encoded(name), percent_encoded(value)
        elif style == "loose":
            name, value = (
                quote(t.encode("utf-8", "surrogateescape"), safe="/:,+=") for t in (name, value)
            )
        pairs.append(f"{name}={value}")
    return "&".join(pairs)


def _copy_sources(world: S3World) -> tuple[str, ...]:
    sources = [f"/{b}/{'/'.join(percent_encoded(p) for p in k.split('/'))}" for b, k in world.keys]
    return tuple(form for s in sources for form in (s, f"{s}?versionId=null", s[1:], s + "%"))


def _header(draw: st.DrawFn, world: S3World, name: str, body: bytes) -> list[tuple[str, str]]:
    """One header (a name ending in ``-`` stands for its family) with a value worth trying:
    a good one twice as often as a random one."""
    if name == "x-amz-checksum-":
        algorithm = pick(draw, ALGORITHMS)
        value = draw(header_values(20)) if one_in(draw, 3) else checksum(algorithm, body)
        return [(name + algorithm, value)]
    if name.endswith("server-side-encryption-customer-"):
        parts = [("algorithm", "AES256"), ("key", SSE_KEY_TEXT), ("key-MD5", content_md5(SSE_KEY))]
        if one_in(draw, 2):
            at = number(draw, 0, 2)
            parts[at] = (parts[at][0], draw(header_values(50)))
        return [(name + part, value) for part, value in parts]
    if name == "Content-MD5":
        good: tuple[str, ...] = (content_md5(body),)
    elif name in ("If-Match", "If-None-Match") or name.startswith("x-amz-copy-source-if-"):
        good = ("*", *(f'"{e}"' for e in world.etags), '"x", W/"y"')
    elif name == "x-amz-copy-source":
        good = _copy_sources(world)
    else:
        good = _GOOD_VALUES.get(name, _ANY_VALUES)
    return [(name, _either(draw, good, header_values(), 3))]


STREAMING = {
    "streaming-signed": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "streaming-signed-trailer": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "streaming-unsigned-trailer": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
}


def _body(draw: st.DrawFn, world: S3World, operation: Operation, key: str) -> bytes:
    if operation.body == "data":
        return object_data(draw)
    if operation.body:
        keys = tuple(k for _, k in world.keys)
        return xml_body(draw, operation.body, keys, world.version_ids, world.etags)
    if one_in(draw, 10):  # a body where none belongs
        return (
            xml_body(draw, pick(draw, XML_KINDS), (key,))
            if one_in(draw, 2)
            else b"x" * number(draw, 1, 64)
        )
    return b""


def _operation(draw: st.DrawFn) -> Operation:
    if one_in(draw, 12):  # random through
        body = pick(draw, ("", "data", *XML_KINDS))
        return Operation(
            pick(draw, _METHODS),
            pick(draw, _SCOPES),
            takes=QUERY_NAMES,
            headers=HEADER_NAMES,
            body=body,
        )
    return OPERATIONS[pick(draw, _OPERATION_NAMES)]


_OPERATION_NAMES = tuple(sorted(OPERATIONS))


def _payload(draw: st.DrawFn, mode: str, data: bytes) -> str:
    if mode in STREAMING:
        return STREAMING[mode]
    if mode == "sha256":
        return hashlib.sha256(data).hexdigest()
    if mode == "wrong-sha256":
        return (
            draw(header_values(70)) if one_in(draw, 2) else hashlib.sha256(data + b"x").hexdigest()
        )
    return "UNSIGNED-PAYLOAD"


def _streaming_headers(
    draw: st.DrawFn, mode: str, headers: list[tuple[str, str]], data: bytes
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The headers of an aws-chunked upload of ``data`` (its own framing headers replace
    any drawn before), and its trailers."""
    framing_headers = ("content-encoding", "x-amz-decoded-content-length", "x-amz-trailer")
    headers = [(n, v) for n, v in headers if n.lower() not in framing_headers]
    headers.append(
        ("Content-Encoding", pick(draw, ("aws-chunked", "aws-chunked", "gzip, aws-chunked")))
    )
    declared = draw(digits()) if one_in(draw, 5) else str(len(data))
    headers.append(("x-amz-decoded-content-length", declared))
    trailers = []
    if mode.endswith("trailer"):
        algorithm = pick(draw, ALGORITHMS)
        headers.append(("x-amz-trailer", f"x-amz-checksum-{algorithm}"))
        value = draw(header_values(12)) if one_in(draw, 3) else checksum(algorithm, data)
        trailers = [(f"x-amz-checksum-{algorithm}", value)]
    return headers, trailers


@st.composite
def s3_requests(draw: st.DrawFn, world: S3World) -> Request:
    operation = _operation(draw)
    bucket = _bucket(draw, world) if operation.scope != "service" else ""
    key = (
        _key(draw, world, bucket, "uploadId" in operation.needs)
        if operation.scope == "object"
        else ""
    )
    path = _path(draw, bucket, key)
    query = _query(draw, world, operation)
    data = _body(draw, world, operation, key)
    host = world.host if not one_in(draw, 12) else pick(draw, (f"{bucket}.s3.local", "[::1", ""))
    headers: list[tuple[str, str]] = [("Host", host)]
    if operation.headers:
        for name in draw(st.lists(sampled(operation.headers), max_size=3, unique=True)):
            headers += _header(draw, world, name, data)
    for name in draw(st.lists(sampled(HEADER_NAMES), max_size=2, unique=True)):
        headers += _header(draw, world, name, data)
    if one_in(draw, 8):
        headers.append((draw(_HEADER_NAMES), draw(header_values())))

    auth, mode = pick(draw, AUTHS), pick(draw, PAYLOADS)
    streaming = mode in STREAMING and auth in ("v4", "bad", "skewed") and bool(data)
    trailers: list[tuple[str, str]] = []
    if streaming:
        headers, trailers = _streaming_headers(draw, mode, headers, data)
    # A streaming payload hash on a body that is not aws-chunked is a case of its own.
    payload = _payload(draw, mode, data)
    body, method = data, operation.method
    if auth == "presigned":
        expires = pick(draw, ("300", "300", "300", "0", "604801", "-1", "x"))
        query = presign_query(world.credentials, method, path, query, headers, expires=expires)
    elif auth != "anonymous":
        skew = timedelta(seconds=pick(draw, (-3600, 16 * 60, 86400 * 400)))
        now = datetime.now(UTC) + skew if auth == "skewed" else None
        headers, signer = sign_headers(
            world.credentials, method, path, query, headers, payload, now=now
        )
        name, value = headers[-1]
        if auth == "bad":
            headers[-1] = (name, value[:-1] + ("1" if value.endswith("0") else "0"))
        elif auth == "mangled":
            raw = mutated(draw, value.encode()).replace(b"\r", b"").replace(b"\n", b"")
            headers[-1] = (name, raw.decode("utf-8", "surrogateescape"))
        if streaming:
            unsigned = mode == "streaming-unsigned-trailer"
            # Signed chunks but the last hold 8 KiB at least (S3's rule); unsigned ones any size.
            sizes = (
                draw(st.lists(_CHUNK_SIZES, max_size=3))
                if unsigned
                else [8192] * (len(data) // 8192)
            )
            body = aws_chunked(data, sizes, signer=None if unsigned else signer, trailers=trailers)
            if one_in(draw, 3):
                body = mutated(draw, body) if one_in(draw, 4) else b"a" * 140_000 + body
    framing = draw(framings()) if body else draw(framings(body=False))
    return Request(method, f"{path}?{query}" if query else path, tuple(headers), body, framing)


_CHUNK_SIZES = st.integers(1, 3000)
