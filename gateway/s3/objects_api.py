"""Object operations (docs/s3.md §4, §5): put, copy, get, head, delete, multi-delete.

An S3 object is a version of its owner's name ``<bucket>/<key>``; its content headers,
user metadata, tags and checksum live in the version's ``meta`` (``{"headers": …,
"user": …, "tags": …, "checksum": …}``). Writes carry their bucket and conditions into the
index, which checks them in the transaction that writes the version.
"""

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from chain_client.strict import ascii_int
from gateway.conditional import http_date, parse_byte_range, precondition, range_applies
from gateway.errors import HeaderNotText
from gateway.headers import header_text, is_text
from gateway.records import BucketRecord, NameWrite, ObjectRecord, WriteCondition, is_version_id
from gateway.s3 import checksums, sse
from gateway.s3.acl_api import check_acl_headers
from gateway.s3.body import upload_body
from gateway.s3.context import INT_DIGITS, CopySource, S3Request, copy_source, object_name
from gateway.s3.errors import as_s3_error
from gateway.s3.tagging_api import tags_from_header
from gateway.s3.xml import (
    S3Error,
    children_text,
    element,
    iso_time,
    leaves,
    parse_xml,
    xml_response,
)
from gateway.streaming import read_up_to, stream_pieces

__all__ = [
    "content_type",
    "delete_object",
    "delete_objects",
    "get_object",
    "head_object",
    "object_headers",
    "put_object",
    "source_version",
    "sse_c_key",
    "stored_meta",
    "version_headers",
    "write_condition",
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
# What a version keeps from its source whatever the metadata directive: its bytes' facts.
_CONTENT_FACTS = ("checksum", "sse_c", "parts")
# An override is answered as a header, and aiohttp refuses to write these (HTAB is fine).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def content_type(headers: Mapping[str, str], default: str) -> str:
    """The ``Content-Type`` an upload stores, checked before any byte is placed."""
    return header_text(headers, "Content-Type") or default


def stored_meta(headers: Mapping[str, str]) -> dict[str, Any]:
    """What an upload's headers say to keep with the object: every value valid text
    (``InvalidArgument`` otherwise, before the body is read), since each is stored and
    answered back."""
    user: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower().startswith("x-amz-meta-"):
            if not is_text(value):  # names are tokens: ASCII, or aiohttp refuses them
                raise HeaderNotText(name)
            user[name[len("x-amz-meta-") :].lower()] = value
    if sum(len(k) + len(v) for k, v in user.items()) > MAX_USER_METADATA:
        raise S3Error(
            400, "MetadataTooLarge", f"user metadata is at most {MAX_USER_METADATA} bytes"
        )
    kept: dict[str, str] = {}
    for name in CONTENT_HEADERS:
        if (text := header_text(headers, name)) is not None:
            kept[name] = text
    if "Content-Encoding" in kept:
        # aws-chunked says how this request's body was framed, not what the object is.
        codings = [
            coding.strip()
            for coding in kept["Content-Encoding"].split(",")
            if coding.strip() and coding.strip().lower() != "aws-chunked"
        ]
        if codings:
            kept["Content-Encoding"] = ", ".join(codings)
        else:
            del kept["Content-Encoding"]
    meta: dict[str, Any] = {"headers": kept, "user": user}
    tags = tags_from_header(header_text(headers, "x-amz-tagging"))
    if tags:
        meta["tags"] = tags
    return meta


def version_headers(bucket: BucketRecord, record: ObjectRecord) -> dict[str, str]:
    """``x-amz-version-id``, which a bucket that has had versioning always answers."""
    return {"x-amz-version-id": record.version_id} if bucket.versioning else {}


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
    if record.meta.get("tags"):
        headers["x-amz-tagging-count"] = str(len(record.meta["tags"]))
    checksum = record.meta.get("checksum")
    if checksum_mode and checksum:
        headers[checksums.header_name(checksum[0])] = checksum[1]
    return headers


def write_condition(headers: Mapping[str, str]) -> WriteCondition:
    """A write's ``If-Match`` / ``If-None-Match: *`` (S3 takes no other If-None-Match)."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3Error(501, "NotImplemented", "a write takes only If-None-Match: *")
    return WriteCondition(headers.get("If-Match"), if_none_match is not None)


def _deleted(record: ObjectRecord, headers: dict[str, str]) -> S3Error:
    return S3Error(
        404,
        "NoSuchKey",
        "the key does not exist",
        headers={**headers, "x-amz-delete-marker": "true"},
    )


def _marker_named(record: ObjectRecord) -> S3Error:
    return S3Error(
        405,
        "MethodNotAllowed",
        "the version is a delete marker",
        headers={
            "x-amz-delete-marker": "true",
            "x-amz-version-id": record.version_id,
            "Allow": "DELETE",
        },
    )


def _object(req: S3Request, bucket: BucketRecord) -> ObjectRecord:
    """The version a GET or HEAD reads: ``versionId``'s, or the current one."""
    version_id = req.version_id()
    if version_id is not None:
        found = req.ctx.index.version(req.owner, req.name, version_id)
        if found is None:
            raise S3Error(404, "NoSuchVersion", "the version does not exist", Key=req.key)
        if found.marker:
            raise _marker_named(found)
        return found
    current = req.ctx.index.current(req.owner, req.name)
    if current is None:
        raise S3Error(404, "NoSuchKey", "the key does not exist", Key=req.key)
    if current.marker:
        raise _deleted(current, version_headers(bucket, current))
    return current


def source_version(req: S3Request, source: CopySource) -> ObjectRecord:
    """The version a copy reads (CopyObject, UploadPartCopy)."""
    version = req.named_version(source)
    if version.marker:
        raise S3Error(
            400,
            "InvalidRequest",
            "The source of a copy request may not specifically refer to a delete marker",
        )
    return version


async def put_object(req: S3Request) -> web.StreamResponse:
    if "x-amz-copy-source" in req.web.headers:
        return await copy_object(req)
    bucket = req.own_bucket()
    name = req.name
    headers = req.web.headers
    check_acl_headers(headers)
    condition = write_condition(headers)
    req.ctx.index.check_condition(req.owner, name, condition)  # before the body is read
    meta = stored_meta(headers)
    stored_type = content_type(headers, "binary/octet-stream")
    key = sse.customer_key(headers)
    if key is not None:
        meta["sse_c"] = sse.key_md5(key)
    service = req.ctx.service
    body = upload_body(req, meta, service.max_object_size(await service.layout_for(None)))
    await service.check_upload(req.owner, bucket.territory, body.length or 0, None)
    record = await service.put(
        secret=key,
        owner=req.owner,
        territory=bucket.territory,
        name=name,
        body=body.chunks,
        size_hint=body.length,
        content_type=stored_type,
        meta=meta,  # the body adds the verified checksum as it ends
        write=NameWrite(bucket=bucket.bucket, condition=condition),
        packable=True,  # S3 shows no fid: a small object may share a pack
    )
    answer = {
        "ETag": f'"{record.etag}"',
        "x-amz-request-id": req.request_id,
        **sse.response_headers(meta.get("sse_c")),
        **version_headers(bucket, record),
    }
    if meta.get("checksum"):
        algorithm, value = meta["checksum"]
        answer[checksums.header_name(algorithm)] = value
    return web.Response(status=200, headers=answer)


def _copy_conditions(req: S3Request, source: ObjectRecord) -> None:
    conditions = {
        {
            "if-match": "If-Match",
            "if-none-match": "If-None-Match",
            "if-modified-since": "If-Modified-Since",
            "if-unmodified-since": "If-Unmodified-Since",
        }.get(name.lower()[len("x-amz-copy-source-") :], name): value
        for name, value in req.web.headers.items()
        if name.lower().startswith("x-amz-copy-source-if-")
    }
    if conditions and (
        precondition(conditions, etag=f'"{source.etag}"', last_modified=source.created_at)
        is not None
    ):
        raise S3Error(412, "PreconditionFailed", "a copy-source condition does not hold")


def _directive(req: S3Request, header: str) -> str:
    directive = req.web.headers.get(header, "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error(400, "InvalidArgument", f"{header} is COPY or REPLACE")
    return directive


async def copy_object(req: S3Request) -> web.StreamResponse:
    """A new version naming the same stored file: no data moves (the chain adds a
    reference and charges the destination's territory)."""
    bucket = req.own_bucket()
    headers = req.web.headers
    check_acl_headers(headers)
    named = copy_source(req)
    source = source_version(req, named)
    _copy_conditions(req, source)
    # The copy shares the source's wrapped data keys, so it is readable with the same
    # SSE-C key (or none) only: no re-keying of shared units.
    source_sse = sse_c_key(headers, source, sse.COPY_SOURCE)
    if source_sse is not None:
        await req.ctx.service.check_secret(source, source_sse)
    if sse.customer_key(headers) != source_sse:
        raise S3Error(
            400,
            "InvalidRequest",
            "a copy keeps the source's encryption: give it the source's SSE-C key, or none",
        )
    metadata, tagging = (
        _directive(req, "x-amz-metadata-directive"),
        _directive(req, "x-amz-tagging-directive"),
    )
    onto_itself = source.name == req.name and source.latest
    if onto_itself and metadata == "COPY" and tagging == "COPY":
        raise S3Error(
            400,
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata (x-amz-metadata-directive: REPLACE)",
        )
    facts = {name: source.meta[name] for name in _CONTENT_FACTS if name in source.meta}
    if metadata == "REPLACE":
        meta = {**stored_meta(headers), **facts}
        stored_type = content_type(headers, source.content_type)
    else:
        meta = {name: value for name, value in source.meta.items() if name != "tags"}
        stored_type = source.content_type
    tags = tags_from_header(header_text(headers, "x-amz-tagging")) if tagging == "REPLACE" else None
    if tagging == "COPY":
        tags = source.meta.get("tags")
    meta.pop("tags", None)
    if tags:
        meta["tags"] = tags
    condition = write_condition(headers)
    record = await req.ctx.service.copy(
        source,
        owner=req.owner,
        territory=bucket.territory,
        name=req.name,
        content_type=stored_type,
        meta=meta,
        write=NameWrite(bucket=bucket.bucket, condition=condition),
    )
    answer = version_headers(bucket, record)
    source_bucket = req.ctx.index.bucket(named.bucket)
    if named.version_id is not None or (source_bucket is not None and source_bucket.versioning):
        answer["x-amz-copy-source-version-id"] = source.version_id
    root = element(
        "CopyObjectResult",
        *leaves({"LastModified": iso_time(record.created_at), "ETag": f'"{record.etag}"'}),
    )
    return xml_response(root, headers=answer)


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
        number = ascii_int(part, max_digits=INT_DIGITS)
        if number is None or not 1 <= number <= len(parts):
            raise S3Error(416, "InvalidPartNumber", "the part number is out of range")
        start = sum(parts[: number - 1])
        return start, start + parts[number - 1], len(parts) > 1
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


def _overrides(req: S3Request) -> dict[str, str]:
    """The ``response-*`` headers asked for: text a header can carry, else
    ``InvalidArgument`` (a CR or LF would otherwise fail as the answer is written)."""
    wanted = {}
    for parameter, header in RESPONSE_OVERRIDES.items():
        value = req.web.query.get(parameter)
        if value is not None:
            if _CONTROL.search(value):
                raise S3Error(400, "InvalidArgument", f"{parameter} holds a control character")
            wanted[header] = value
    return wanted


async def _read(req: S3Request, *, body: bool) -> web.StreamResponse:
    bucket = req.own_bucket()
    overrides = _overrides(req)
    record = _object(req, bucket)
    checksum_mode = req.web.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    headers = object_headers(record, checksum_mode=checksum_mode)
    headers.update(version_headers(bucket, record))
    headers["x-amz-request-id"] = req.request_id
    try:
        _conditions(req, record)
    except _NotModified:
        keep = (
            "ETag",
            "Last-Modified",
            "Cache-Control",
            "Expires",
            "x-amz-request-id",
            "x-amz-version-id",
        )
        return web.Response(status=304, headers={k: headers[k] for k in keep if k in headers})
    key = sse_c_key(req.web.headers, record)
    if key is not None:
        await req.ctx.service.check_secret(record, key)  # a wrong key: 403 before any byte
        headers.update(sse.response_headers(record.meta["sse_c"]))
    start, end, partial = _span(req, record)
    headers.update(overrides)
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
    return await stream_pieces(req.web, pieces, status=status, headers=headers, length=end - start)


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


async def _delete(
    req: S3Request, bucket: BucketRecord, key: str, version_id: str | None
) -> dict[str, str]:
    """Deletes ``key`` (or its ``version_id``); the delete-marker facts S3 answers."""
    name = object_name(bucket.bucket, key)
    service = req.ctx.service
    if version_id is None:
        outcome = await service.delete_object(req.owner, name, bucket.bucket)
    else:
        gone = await service.delete_version(req.owner, name, version_id)
        return {"x-amz-version-id": version_id} | (
            {"x-amz-delete-marker": "true"} if gone is not None and gone.marker else {}
        )
    if outcome.marker and outcome.version_id is not None:
        return {"x-amz-delete-marker": "true", "x-amz-version-id": outcome.version_id}
    return {}


async def delete_object(req: S3Request) -> web.StreamResponse:
    bucket = req.own_bucket()
    object_name(bucket.bucket, req.key)
    facts = await _delete(req, bucket, req.key, req.version_id())
    return web.Response(status=204, headers={"x-amz-request-id": req.request_id, **facts})


async def delete_objects(req: S3Request) -> web.StreamResponse:
    bucket = req.own_bucket()
    raw = await read_up_to(req.web.content, MAX_XML_BODY + 1)
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
        version_id = item.findtext("VersionId")
        try:
            if version_id is not None and not is_version_id(version_id):
                raise S3Error(400, "InvalidArgument", "Invalid version id specified")
            facts = await _delete(req, bucket, key, version_id)
        except Exception as exc:
            error = as_s3_error(exc)
            if error is None:
                raise
            failed = {
                "Key": key,
                "VersionId": version_id,
                "Code": error.code,
                "Message": error.message,
            }
            results.append(element("Error", *leaves(failed)))
            continue
        if not quiet:
            marker = facts.get("x-amz-delete-marker") == "true"
            results.append(
                element(
                    "Deleted",
                    *leaves(
                        {
                            "Key": key,
                            "VersionId": version_id,
                            "DeleteMarker": "true" if marker else None,
                            "DeleteMarkerVersionId": (
                                facts.get("x-amz-version-id") if marker else None
                            ),
                        }
                    ),
                )
            )
    return xml_response(element("DeleteResult", *results))
