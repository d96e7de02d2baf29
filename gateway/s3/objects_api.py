"""Object operations (docs/s3.md §4): put, copy, get, head, delete, multi-delete.

An S3 object is its owner's name ``<bucket>/<key>``; its content headers, user metadata
and checksum live in the name's ``meta`` (``{"headers": …, "user": …, "checksum": …}``).
"""

import hashlib
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.conditional import http_date, parse_byte_range, precondition, range_applies
from gateway.index import ObjectRecord
from gateway.objects import ObjectError
from gateway.s3 import checksums, sse
from gateway.s3.body import upload_body
from gateway.s3.context import S3Request, object_name
from gateway.s3.xml import (
    S3Error,
    children_text,
    element,
    iso_time,
    leaves,
    parse_xml,
    xml_response,
)

__all__ = [
    "delete_object",
    "delete_objects",
    "get_object",
    "head_object",
    "object_headers",
    "put_object",
    "stored_meta",
]

CONTENT_HEADERS = (
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
MAX_USER_METADATA = 2048
MAX_DELETE_KEYS = 1000
MAX_XML_BODY = 1024 * 1024
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def stored_meta(headers: Mapping[str, str]) -> dict[str, Any]:
    """What an upload's headers say to keep with the object."""
    user = {
        name[len("x-amz-meta-") :].lower(): value
        for name, value in headers.items()
        if name.lower().startswith("x-amz-meta-")
    }
    if sum(len(k) + len(v) for k, v in user.items()) > MAX_USER_METADATA:
        raise S3Error(
            400, "MetadataTooLarge", f"user metadata is at most {MAX_USER_METADATA} bytes"
        )
    kept = {name: headers[name] for name in CONTENT_HEADERS if name in headers}
    return {"headers": kept, "user": user}


def object_headers(record: ObjectRecord, *, checksum_mode: bool) -> dict[str, str]:
    headers = {
        "ETag": f'"{record.etag}"',
        "Last-Modified": http_date(record.created_at),
        "Content-Type": record.content_type,
        "Accept-Ranges": "bytes",
        **record.meta.get("headers", {}),
    }
    for name, value in record.meta.get("user", {}).items():
        headers[f"x-amz-meta-{name}"] = value
    checksum = record.meta.get("checksum")
    if checksum_mode and checksum:
        headers[checksums.header_name(checksum[0])] = checksum[1]
    return headers


def _find(req: S3Request) -> ObjectRecord:
    req.own_bucket()
    record = req.ctx.index.find(req.owner, req.name)
    if record is None:
        raise S3Error(404, "NoSuchKey", "the key does not exist", Key=req.key)
    return record


async def put_object(req: S3Request) -> web.StreamResponse:
    if "x-amz-copy-source" in req.web.headers:
        return await copy_object(req)
    bucket = req.own_bucket()
    name = req.name
    headers = req.web.headers
    if headers.get("If-None-Match") == "*" and req.ctx.index.find(req.owner, name):
        raise S3Error(412, "PreconditionFailed", "the key exists (If-None-Match: *)")
    meta = stored_meta(headers)
    key = sse.customer_key(headers)
    if key is not None:
        meta["sse_c"] = sse.key_md5(key)
    body = upload_body(req, meta)
    await req.ctx.service.check_upload(req.owner, bucket.territory, body.length, None)
    record = await req.ctx.service.put(
        secret=key,
        owner=req.owner,
        territory=bucket.territory,
        name=name,
        body=body.chunks,
        size_hint=body.length,
        content_type=headers.get("Content-Type") or "binary/octet-stream",
        meta=meta,  # the body adds the verified checksum as it ends
    )
    answer = {
        "ETag": f'"{record.etag}"',
        "x-amz-request-id": req.request_id,
        **sse.response_headers(meta.get("sse_c")),
    }
    if meta.get("checksum"):
        algorithm, value = meta["checksum"]
        answer[checksums.header_name(algorithm)] = value
    return web.Response(status=200, headers=answer)


def _copy_source(req: S3Request) -> tuple[str, str]:
    raw = urllib.parse.unquote(req.web.headers["x-amz-copy-source"]).lstrip("/")
    source, _, version = raw.partition("?versionId=")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise S3Error(400, "InvalidArgument", "x-amz-copy-source is /bucket/key")
    if version and version != "null":
        raise S3Error(400, "InvalidArgument", "this gateway keeps no versions")
    return bucket, key


async def copy_object(req: S3Request) -> web.StreamResponse:
    """A new name for the same stored file: no data moves (the chain adds a reference
    and charges the destination's territory)."""
    bucket = req.own_bucket()
    source_bucket, source_key = _copy_source(req)
    found = req.ctx.index.bucket(source_bucket)
    if found is None or found.owner != req.owner:
        raise S3Error(404, "NoSuchBucket", "the source bucket does not exist")
    source = req.ctx.index.find(req.owner, object_name(source_bucket, source_key))
    if source is None:
        raise S3Error(404, "NoSuchKey", "the source key does not exist", Key=source_key)
    conditions = {
        name[len("x-amz-copy-source-") :]: value
        for name, value in req.web.headers.items()
        if name.lower().startswith("x-amz-copy-source-if-")
    }
    if conditions:
        normalized = {
            {
                "if-match": "If-Match",
                "if-none-match": "If-None-Match",
                "if-modified-since": "If-Modified-Since",
                "if-unmodified-since": "If-Unmodified-Since",
            }.get(k.lower(), k): v
            for k, v in conditions.items()
        }
        if (
            precondition(
                normalized, etag=f'"{source.etag}"', last_modified=source.created_at, method="PUT"
            )
            is not None
        ):
            raise S3Error(412, "PreconditionFailed", "a copy-source condition does not hold")
    # The copy shares the source's wrapped data keys, so it is readable with the same
    # SSE-C key (or none) only: no re-keying of shared units.
    source_sse = sse_c_key(req.web.headers, source, sse.COPY_SOURCE)
    if source_sse is not None:
        await req.ctx.service.check_secret(source, source_sse)
    if sse.customer_key(req.web.headers) != source_sse:
        raise S3Error(
            400,
            "InvalidRequest",
            "a copy keeps the source's encryption: give it the source's SSE-C key, or none",
        )
    directive = req.web.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error(400, "InvalidArgument", "x-amz-metadata-directive is COPY or REPLACE")
    if directive == "COPY" and source.name == req.name:
        raise S3Error(
            400,
            "InvalidRequest",
            "copying an object to itself needs new metadata (x-amz-metadata-directive: REPLACE)",
        )
    if directive == "REPLACE":
        meta = {
            **stored_meta(req.web.headers),
            "checksum": source.meta.get("checksum"),
            "sse_c": source.meta.get("sse_c"),
        }
        content_type = req.web.headers.get("Content-Type") or source.content_type
    else:
        meta, content_type = source.meta, source.content_type
    record = await req.ctx.service.copy(
        source,
        owner=req.owner,
        territory=bucket.territory,
        name=req.name,
        content_type=content_type,
        meta=meta,
    )
    root = element(
        "CopyObjectResult",
        *leaves({"LastModified": iso_time(record.created_at), "ETag": f'"{record.etag}"'}),
    )
    return xml_response(root)


def _conditions(req: S3Request, record: ObjectRecord) -> None:
    failed = precondition(
        req.web.headers,
        etag=f'"{record.etag}"',
        last_modified=record.created_at,
        method=req.web.method,
    )
    if failed == 304:
        raise _NotModified(record)
    if failed is not None:
        raise S3Error(412, "PreconditionFailed", "a precondition does not hold")


class _NotModified(Exception):
    def __init__(self, record: ObjectRecord) -> None:
        super().__init__("not modified")
        self.record = record


def _span(req: S3Request, record: ObjectRecord) -> tuple[int, int, bool]:
    """(start, end exclusive, partial) for Range or partNumber."""
    part = req.web.query.get("partNumber")
    if part is not None:
        parts = record.meta.get("parts") or [record.size]
        if not part.isdigit() or not 1 <= int(part) <= len(parts):
            raise S3Error(416, "InvalidPartNumber", "the part number is out of range")
        start = sum(parts[: int(part) - 1])
        return start, start + parts[int(part) - 1], len(parts) > 1
    header = req.web.headers.get("Range")
    if header is not None and not range_applies(
        req.web.headers, etag=f'"{record.etag}"', last_modified=record.created_at
    ):
        header = None
    try:
        span = parse_byte_range(header, record.size)
    except ValueError:
        raise S3Error(
            416, "InvalidRange", "the range is not satisfiable", RangeRequested=header or ""
        ) from None
    if span is None:
        return 0, record.size, False
    return span[0], span[1], True


async def _read(req: S3Request, *, body: bool) -> web.StreamResponse:
    record = _find(req)
    checksum_mode = req.web.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    headers = object_headers(record, checksum_mode=checksum_mode)
    headers["x-amz-request-id"] = req.request_id
    try:
        _conditions(req, record)
    except _NotModified:
        keep = ("ETag", "Last-Modified", "Cache-Control", "Expires", "x-amz-request-id")
        return web.Response(status=304, headers={k: headers[k] for k in keep if k in headers})
    key = sse_c_key(req.web.headers, record)
    if key is not None:
        await req.ctx.service.check_secret(record, key)  # a wrong key: 403 before any byte
        headers.update(sse.response_headers(record.meta["sse_c"]))
    start, end, partial = _span(req, record)
    for parameter, header in RESPONSE_OVERRIDES.items():
        if parameter in req.web.query:
            headers[header] = req.web.query[parameter]
    if "partNumber" in req.web.query:
        headers["x-amz-mp-parts-count"] = str(len(record.meta.get("parts") or [1]))
    status = 206 if partial else 200
    if partial:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
        if record.meta.get("checksum"):  # the whole object's: not this range's
            headers.pop(checksums.header_name(record.meta["checksum"][0]), None)
    if not body or end == start:
        headers["Content-Length"] = str(end - start)
        return web.Response(status=status, headers=headers)
    pieces = req.ctx.service.read(record, start, end, key)
    first = await anext(pieces)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(req.web)
    await response.write(first)
    try:
        async for piece in pieces:
            await response.write(piece)
    except ObjectError:
        if req.web.transport is not None:
            req.web.transport.close()  # bytes are out: a short body tells the client
        return response
    await response.write_eof()
    return response


def sse_c_key(
    headers: Mapping[str, str], record: ObjectRecord, prefix: str = sse.PREFIX
) -> bytes | None:
    """The SSE-C key a read of ``record`` must and does carry (S3: 400 without it, or
    with one for an object stored without)."""
    key = sse.customer_key(headers, prefix)
    stored = record.meta.get("sse_c")
    if stored and key is None:
        raise S3Error(
            400,
            "InvalidRequest",
            "The object was stored using a form of Server Side Encryption. "
            "The correct parameters must be provided to retrieve the object.",
        )
    if key is not None and not stored:
        raise S3Error(400, "InvalidRequest", "the object was not stored with an SSE-C key")
    return key


async def get_object(req: S3Request) -> web.StreamResponse:
    return await _read(req, body=True)


async def head_object(req: S3Request) -> web.StreamResponse:
    return await _read(req, body=False)


async def delete_object(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    record = req.ctx.index.find(req.owner, req.name)
    if record is not None:
        await req.ctx.service.delete(record)
    return web.Response(status=204, headers={"x-amz-request-id": req.request_id})


async def delete_objects(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    raw = await req.web.content.read(MAX_XML_BODY + 1)
    if len(raw) > MAX_XML_BODY:
        raise S3Error(400, "MaxMessageLengthExceeded", "the request is too long")
    if "Content-MD5" in req.web.headers:
        checksums.check_content_md5(
            req.web.headers["Content-MD5"], hashlib.md5(raw, usedforsecurity=False).digest()
        )
    expected = checksums.checksum_from_headers(req.web.headers)
    if expected is not None:
        summer = checksums.Checksum(expected[0])
        summer.update(raw)
        summer.verify(expected[1])
    root = parse_xml(raw)
    if root.tag != "Delete":
        raise S3Error(400, "MalformedXML", "the body is not a Delete document")
    quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise S3Error(400, "MalformedXML", f"1 to {MAX_DELETE_KEYS} objects per request")
    results = []
    for item in objects:
        key = next(iter(children_text(item, "Key")), "")
        try:
            record = req.ctx.index.find(req.owner, object_name(req.bucket, key))
            if record is not None:
                await req.ctx.service.delete(record)
        except (S3Error, ObjectError) as exc:
            results.append(
                element("Error", *leaves({"Key": key, "Code": exc.code, "Message": exc.message}))
            )
            continue
        if not quiet:
            results.append(element("Deleted", element("Key", text=key)))
    return xml_response(element("DeleteResult", *results))
