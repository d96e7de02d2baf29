"""Multipart uploads (docs/s3.md §5).

Each part is its own encoding unit: encrypted under a fresh data key, encoded and placed
on miners as it arrives, and recorded (with its placements) against the upload. Complete
names the chosen parts' units, in order, as one object: no data moves; the object and the
upload's completion are one index transaction, and the completion's answer is kept so a
retried Complete gets it again. Parts nobody completes stay orphans on their miners,
which drop them after ``orphan_ttl``; uploads expire after ``multipart_ttl`` (shorter)
so a completion never names dropped fragments.
"""

import hashlib
import re
import time
import urllib.parse
from typing import Any

from aiohttp import web

from chain_client.strict import ascii_int
from gateway.objects import PlacedUnit
from gateway.records import NameWrite, PartRecord, UploadCompleted, UploadRecord, new_upload_id
from gateway.s3 import checksums, sse
from gateway.s3.acl_api import check_acl_headers
from gateway.s3.body import upload_body
from gateway.s3.context import INT_DIGITS, S3Request, copy_source
from gateway.s3.objects_api import (
    content_type,
    source_version,
    sse_c_key,
    stored_meta,
    write_condition,
)
from gateway.s3.xml import (
    S3Error,
    element,
    iso_time,
    leaves,
    owner_element,
    parse_xml,
    xml_response,
)
from gateway.streaming import read_up_to

__all__ = [
    "abort_upload",
    "complete_upload",
    "create_upload",
    "list_parts",
    "list_uploads",
    "upload_part",
]

MAX_PARTS = 10_000
MAX_LISTED = 1000
MAX_COMPLETE_BODY = 2 * 1024 * 1024
_COPY_RANGE = re.compile(r"bytes=([0-9]{1,20})-([0-9]{1,20})")


def _sweep(req: S3Request) -> None:
    req.ctx.index.expire_uploads(time.time() - req.ctx.multipart_ttl)


def _no_upload(upload_id: str) -> S3Error:
    return S3Error(404, "NoSuchUpload", "the upload does not exist", UploadId=upload_id)


def _upload(req: S3Request, *, completed: bool = False) -> UploadRecord:
    """The request's upload, unfinished (or, with ``completed``, also a completed one)."""
    upload_id = req.web.query["uploadId"]
    found = req.ctx.index.upload(upload_id)
    if (
        found is None
        or found.owner != req.owner
        or found.name != req.name
        or found.created_at < time.time() - req.ctx.multipart_ttl
        or (found.completed is not None and not completed)
    ):
        raise _no_upload(upload_id)
    return found


async def create_upload(req: S3Request) -> web.StreamResponse:
    bucket = req.own_bucket()
    check_acl_headers(req.web.headers)
    _sweep(req)
    upload = UploadRecord(
        upload_id=new_upload_id(),
        owner=req.owner,
        name=req.name,
        territory=bucket.territory,
        content_type=content_type(req.web.headers, "binary/octet-stream"),
        meta=stored_meta(req.web.headers),
        created_at=time.time(),
    )
    key = sse.customer_key(req.web.headers)
    if key is not None:
        upload.meta["sse_c"] = sse.key_md5(key)
    req.ctx.index.create_upload(upload)
    root = element(
        "InitiateMultipartUploadResult",
        *leaves({"Bucket": req.bucket, "Key": req.key, "UploadId": upload.upload_id}),
    )
    return xml_response(root)


def _part_number(req: S3Request) -> int:
    number = ascii_int(req.web.query.get("partNumber", ""), max_digits=INT_DIGITS)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise S3Error(400, "InvalidArgument", f"partNumber is 1 to {MAX_PARTS}")
    return number


async def upload_part(req: S3Request) -> web.StreamResponse:
    upload = _upload(req)
    number = _part_number(req)
    service = req.ctx.service
    layout = await service.layout_for(None)
    if "x-amz-copy-source" in req.web.headers:
        return await _upload_part_copy(req, upload, number)
    meta: dict[str, object] = {}
    key = _part_key(req, upload)
    body = upload_body(req, meta, service.max_object_size(layout))
    async with service.reserving_upload(req.owner, upload.territory, body.length or 0, None):
        unit = await service.encode_unit(body.chunks, layout, key)
        if body.length is None:
            await service.check_unit(req.owner, upload.territory, layout, unit)
        _record_part(req, upload, number, unit)
    headers = {
        "ETag": f'"{unit.md5}"',
        "x-amz-request-id": req.request_id,
        **sse.response_headers(upload.meta.get("sse_c")),
    }
    if body.checksum:
        headers[checksums.header_name(body.checksum[0])] = body.checksum[1]
    return web.Response(status=200, headers=headers)


def _part_key(req: S3Request, upload: UploadRecord) -> bytes | None:
    """A part is encrypted under the upload's SSE-C key, which every part repeats."""
    key = sse.customer_key(req.web.headers)
    expected = upload.meta.get("sse_c")
    if (key is None) != (expected is None) or (key is not None and sse.key_md5(key) != expected):
        raise S3Error(
            400, "InvalidRequest", "each part carries the SSE-C key the upload was created with"
        )
    return key


def _record_part(req: S3Request, upload: UploadRecord, number: int, unit: PlacedUnit) -> None:
    part = PartRecord(
        upload.upload_id, number, unit.md5, unit.plain_size, unit.to_json(), time.time()
    )
    req.ctx.index.put_part(part)


async def _upload_part_copy(
    req: S3Request, upload: UploadRecord, number: int
) -> web.StreamResponse:
    """A part made of a range of an object the caller owns: read and encoded again
    (a part needs its own data key), never through the client."""
    source = source_version(req, copy_source(req))
    span = (0, source.size)
    wanted = req.web.headers.get("x-amz-copy-source-range")
    if wanted is not None:
        match = _COPY_RANGE.fullmatch(wanted.strip())
        if match is None or int(match[1]) > int(match[2]):
            raise S3Error(400, "InvalidArgument", "x-amz-copy-source-range is bytes=first-last")
        first, last = int(match[1]), int(match[2])
        if last >= source.size:
            raise S3Error(
                400,
                "InvalidRange",
                f"the range {wanted} is not inside the source's {source.size} bytes",
            )
        span = (first, last + 1)
    service = req.ctx.service
    source_sse = sse_c_key(req.web.headers, source, sse.COPY_SOURCE)
    part_sse = _part_key(req, upload)
    layout = await service.layout_for(None)
    async with service.reserving_upload(req.owner, upload.territory, span[1] - span[0], None):
        plaintext = service.read(source, span[0], span[1], source_sse)
        try:
            unit = await service.encode_unit(plaintext, layout, part_sse)
        finally:
            await plaintext.aclose()
        _record_part(req, upload, number, unit)
    root = element(
        "CopyPartResult",
        *leaves({"LastModified": iso_time(time.time()), "ETag": f'"{unit.md5}"'}),
    )
    return xml_response(root)


def _listed_parts(raw: bytes) -> list[tuple[int, str]]:
    """The Complete body's (part number, ETag) list: non-decreasing numbers, a number
    listed more than once counting once with its last entry (the part uploaded again
    last wins, as on AWS)."""
    root = parse_xml(raw)
    listed: list[tuple[int, str]] = []
    for node in root.findall("Part"):
        text, etag = node.findtext("PartNumber"), node.findtext("ETag")
        # XML text may be indented around the number (S3 SDKs write it bare).
        number = ascii_int((text or "").strip(), max_digits=INT_DIGITS)
        if number is None or etag is None:
            raise S3Error(400, "MalformedXML", "each Part has a PartNumber and an ETag")
        listed.append((number, etag.strip().strip('"')))
    if not listed:
        raise S3Error(400, "MalformedXML", "the part list is empty")
    numbers = [number for number, _ in listed]
    if numbers != sorted(numbers):
        raise S3Error(400, "InvalidPartOrder", "parts must be listed in ascending order")
    last = dict(listed)
    return [(number, last[number]) for number in sorted(last)]


def _multipart_etag(etags: list[str]) -> str:
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags), usedforsecurity=False)
    return f"{digest.hexdigest()}-{len(etags)}"


def _completed(req: S3Request, result: dict[str, Any], etag: str) -> web.StreamResponse:
    """The answer to a completion: the first one's, for a retry with the same parts."""
    if result["etag"] != etag:
        raise _no_upload(req.web.query["uploadId"])  # completed, with other parts
    bucket = req.own_bucket()
    root = element(
        "CompleteMultipartUploadResult",
        *leaves(
            {
                "Location": f"/{req.bucket}/{urllib.parse.quote(req.key)}",
                "Bucket": req.bucket,
                "Key": req.key,
                "ETag": f'"{etag}"',
            }
        ),
    )
    headers = {"x-amz-version-id": result["version_id"]} if bucket.versioning else {}
    return xml_response(root, headers=headers)


async def complete_upload(req: S3Request) -> web.StreamResponse:
    upload = _upload(req, completed=True)
    raw = await read_up_to(req.web.content, MAX_COMPLETE_BODY + 1)
    if len(raw) > MAX_COMPLETE_BODY:
        raise S3Error(400, "MaxMessageLengthExceeded", "the part list is too long")
    listed = _listed_parts(raw)
    etag = _multipart_etag([part_etag for _, part_etag in listed])
    if upload.completed is not None:
        return _completed(req, upload.completed, etag)
    bucket = req.own_bucket()
    condition = write_condition(req.web.headers)
    stored = {part.part_no: part for part in req.ctx.index.parts(upload.upload_id)}
    chosen: list[PartRecord] = []
    for position, (number, part_etag) in enumerate(listed):
        part = stored.get(number)
        if part is None or part.etag != part_etag:
            raise S3Error(400, "InvalidPart", f"part {number} was not uploaded or its ETag differs")
        if position < len(listed) - 1 and part.size < req.ctx.min_part_size:
            raise S3Error(
                400,
                "EntityTooSmall",
                f"part {number} is {part.size} bytes; all but the last are at least "
                f"{req.ctx.min_part_size}",
            )
        chosen.append(part)
    service = req.ctx.service
    try:
        record = await service.commit(
            owner=req.owner,
            territory=upload.territory,
            name=upload.name,
            layout=await service.layout_for(None),
            units=[PlacedUnit.from_json(p.unit) for p in chosen],
            content_type=upload.content_type,
            meta={**upload.meta, "parts": [p.size for p in chosen]},
            etag=etag,
            write=NameWrite(bucket=bucket.bucket, condition=condition, completes=upload.upload_id),
        )
    except UploadCompleted as done:  # a retry that raced the first completion
        return _completed(req, done.result, etag)
    return _completed(req, {"etag": record.etag, "version_id": record.version_id}, etag)


async def abort_upload(req: S3Request) -> web.StreamResponse:
    upload = _upload(req)
    if not req.ctx.index.delete_upload(upload.upload_id):
        raise _no_upload(upload.upload_id)
    return web.Response(status=204, headers={"x-amz-request-id": req.request_id})


def _limit(req: S3Request, name: str) -> int:
    count = ascii_int(req.web.query.get(name, str(MAX_LISTED)), max_digits=INT_DIGITS)
    if count is None:
        raise S3Error(400, "InvalidArgument", f"{name} is a non-negative integer")
    return min(count, MAX_LISTED)


async def list_parts(req: S3Request) -> web.StreamResponse:
    upload = _upload(req)
    marker = req.web.query.get("part-number-marker", "0")
    after = ascii_int(marker, max_digits=INT_DIGITS)
    if after is None:
        raise S3Error(400, "InvalidArgument", "part-number-marker is an integer")
    limit = _limit(req, "max-parts")
    parts = req.ctx.index.parts(upload.upload_id, after, limit + 1)
    truncated = len(parts) > limit
    parts = parts[:limit]
    root = element(
        "ListPartsResult",
        *leaves(
            {
                "Bucket": req.bucket,
                "Key": req.key,
                "UploadId": upload.upload_id,
                "PartNumberMarker": marker,
                "NextPartNumberMarker": parts[-1].part_no if parts else None,
                "MaxParts": limit,
                "IsTruncated": str(truncated).lower(),
                "StorageClass": "STANDARD",
            }
        ),
        owner_element(req.owner),
        element("Initiator", element("ID", text=req.owner), element("DisplayName", text=req.owner)),
        *(
            element(
                "Part",
                *leaves(
                    {
                        "PartNumber": p.part_no,
                        "LastModified": iso_time(p.created_at),
                        "ETag": f'"{p.etag}"',
                        "Size": p.size,
                    }
                ),
            )
            for p in parts
        ),
    )
    return xml_response(root)


async def list_uploads(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    _sweep(req)
    query = req.web.query
    prefix = query.get("prefix", "")
    key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
    limit = _limit(req, "max-uploads")
    base = req.bucket + "/"
    after_name = base + key_marker if key_marker else ""
    if key_marker and not id_marker:
        # Upload ids are ASCII: U+10FFFF sorts past every upload of the key marker.
        after_name, id_marker = base + key_marker, "\U0010ffff"
    uploads = req.ctx.index.uploads(req.owner, base + prefix, after_name, id_marker, limit + 1)
    truncated = len(uploads) > limit
    uploads = uploads[:limit]
    last = uploads[-1] if uploads else None
    root = element(
        "ListMultipartUploadsResult",
        *leaves(
            {
                "Bucket": req.bucket,
                "KeyMarker": key_marker,
                "UploadIdMarker": query.get("upload-id-marker", ""),
                "NextKeyMarker": last.name[len(base) :] if truncated and last else None,
                "NextUploadIdMarker": last.upload_id if truncated and last else None,
                "Prefix": prefix,
                "MaxUploads": limit,
                "IsTruncated": str(truncated).lower(),
            }
        ),
        *(
            element(
                "Upload",
                *leaves(
                    {
                        "Key": u.name[len(base) :],
                        "UploadId": u.upload_id,
                        "StorageClass": "STANDARD",
                        "Initiated": iso_time(u.created_at),
                    }
                ),
                element("Initiator", element("ID", text=u.owner)),
                owner_element(u.owner),
            )
            for u in uploads
        ),
    )
    return xml_response(root)
