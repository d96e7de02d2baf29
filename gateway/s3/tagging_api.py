"""Object and bucket tagging (docs/s3.md §4).

An object version's tags live in its metadata (``meta["tags"]``, a list of
``[key, value]``), so they travel with the version's sealed copy on chain; a bucket's in
its index row. Tags come as a ``Tagging`` document, or on writes as the
``x-amz-tagging`` header in URL query form.
"""

import urllib.parse
import xml.etree.ElementTree as ET

from aiohttp import web

from gateway.records import ObjectRecord
from gateway.s3.context import S3Request
from gateway.s3.xml import S3Error, element, leaves, parse_xml, xml_response
from gateway.streaming import read_up_to

__all__ = [
    "delete_bucket_tagging",
    "delete_object_tagging",
    "get_bucket_tagging",
    "get_object_tagging",
    "put_bucket_tagging",
    "put_object_tagging",
    "tags_from_header",
]

OBJECT_TAGS = 10
BUCKET_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
MAX_TAGGING_BODY = 64 * 1024
Tags = list[list[str]]


def _checked(pairs: list[tuple[str, str]], limit: int) -> Tags:
    if len(pairs) > limit:
        raise S3Error(400, "InvalidTag", f"at most {limit} tags")
    seen: set[str] = set()
    for key, value in pairs:
        if not 1 <= len(key) <= MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise S3Error(
                400,
                "InvalidTag",
                f"a tag key is 1 to {MAX_TAG_KEY} characters, a value at most {MAX_TAG_VALUE}",
            )
        if key.lower().startswith("aws:"):
            raise S3Error(400, "InvalidTag", "tag keys starting with aws: are reserved")
        if key in seen:
            raise S3Error(400, "InvalidTag", f"tag key {key!r} is given twice")
        seen.add(key)
    return [[key, value] for key, value in pairs]


def tags_from_header(value: str | None) -> Tags | None:
    """``x-amz-tagging: k1=v1&k2=v2`` (None when absent)."""
    if value is None:
        return None
    try:
        pairs = urllib.parse.parse_qsl(value, keep_blank_values=True, strict_parsing=bool(value))
    except ValueError:
        raise S3Error(400, "InvalidArgument", "x-amz-tagging is key=value&…") from None
    return _checked(pairs, OBJECT_TAGS)


async def _read_tags(req: S3Request, limit: int) -> Tags:
    raw = await read_up_to(req.web.content, MAX_TAGGING_BODY + 1)
    if len(raw) > MAX_TAGGING_BODY:
        raise S3Error(400, "MaxMessageLengthExceeded", "the tag set is too long")
    root = parse_xml(raw)
    tag_set = root.find("TagSet")
    if root.tag != "Tagging" or tag_set is None:
        raise S3Error(400, "MalformedXML", "the body is not a Tagging document")
    pairs = []
    for tag in tag_set.findall("Tag"):
        key, value = tag.findtext("Key"), tag.findtext("Value")
        if key is None:
            raise S3Error(400, "MalformedXML", "each Tag has a Key")
        pairs.append((key, value or ""))
    return _checked(pairs, limit)


def _tagging(tags: Tags) -> ET.Element:
    return element(
        "Tagging",
        element(
            "TagSet",
            *(element("Tag", *leaves({"Key": key, "Value": value})) for key, value in tags),
        ),
    )


def _version(req: S3Request) -> tuple[ObjectRecord, dict[str, str]]:
    """The object version the request names, and the version header to answer with."""
    bucket = req.own_bucket()
    record = req.named_version()
    if record.marker:
        raise S3Error(
            405,
            "MethodNotAllowed",
            "the version is a delete marker",
            headers={"x-amz-delete-marker": "true", "Allow": "DELETE"},
        )
    headers = {"x-amz-request-id": req.request_id}
    if bucket.versioning:
        headers["x-amz-version-id"] = record.version_id
    return record, headers


async def get_object_tagging(req: S3Request) -> web.StreamResponse:
    record, headers = _version(req)
    return xml_response(_tagging(record.meta.get("tags") or []), headers=headers)


async def put_object_tagging(req: S3Request) -> web.StreamResponse:
    record, headers = _version(req)
    tags = await _read_tags(req, OBJECT_TAGS)
    await req.ctx.service.set_meta(record, {**record.meta, "tags": tags})
    return web.Response(status=200, headers=headers)


async def delete_object_tagging(req: S3Request) -> web.StreamResponse:
    record, headers = _version(req)
    meta = {name: value for name, value in record.meta.items() if name != "tags"}
    await req.ctx.service.set_meta(record, meta)
    return web.Response(status=204, headers=headers)


async def get_bucket_tagging(req: S3Request) -> web.StreamResponse:
    bucket = req.own_bucket()
    if bucket.tags is None:
        raise S3Error(404, "NoSuchTagSet", "The TagSet does not exist", BucketName=req.bucket)
    return xml_response(_tagging(bucket.tags))


async def put_bucket_tagging(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    tags = await _read_tags(req, BUCKET_TAGS)
    req.ctx.index.set_bucket_tags(req.bucket, tags)
    return web.Response(status=204)


async def delete_bucket_tagging(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    req.ctx.index.set_bucket_tags(req.bucket, None)
    return web.Response(status=204)
