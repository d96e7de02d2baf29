"""Bucket operations and listings (docs/s3.md §3, §4).

Listings read the owner's names ``<bucket>/<key>`` from the index in UTF-8 byte order
(SQLite's BINARY collation), so keys come in S3's order however they were written; a
delimiter folds keys into common prefixes, each counted once against ``max-keys``.
"""

import base64
import binascii
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.index import ObjectRecord
from gateway.objects import ObjectError
from gateway.s3.context import S3Request, check_bucket_name
from gateway.s3.xml import S3Error, element, iso_time, leaves, parse_xml, xml_response

__all__ = [
    "create_bucket",
    "delete_bucket",
    "head_bucket",
    "list_buckets",
    "list_v1",
    "list_v2",
    "list_versions",
    "location",
    "versioning",
]

MAX_KEYS = 1000
PAGE = 1000  # names read from the index at a time
_AFTER_ALL = "\U0010ffff"  # sorts after every key continuing a prefix (see MetadataIndex)


def owner_element(owner: str) -> ET.Element:
    return element("Owner", element("ID", text=owner), element("DisplayName", text=owner))


async def list_buckets(req: S3Request) -> web.StreamResponse:
    buckets = req.ctx.index.buckets(req.owner)
    root = element(
        "ListAllMyBucketsResult",
        owner_element(req.owner),
        element(
            "Buckets",
            *(
                element(
                    "Bucket",
                    element("Name", text=b.bucket),
                    element("CreationDate", text=iso_time(b.created_at)),
                )
                for b in buckets
            ),
        ),
    )
    return xml_response(root)


async def create_bucket(req: S3Request) -> web.StreamResponse:
    check_bucket_name(req.bucket)
    body = await req.web.content.read(64 * 1024 + 1)
    if len(body) > 64 * 1024:
        raise S3Error(400, "MaxMessageLengthExceeded", "the configuration is too long")
    if body.strip():
        parse_xml(body)  # a LocationConstraint: one region here, so only checked for form
    territory = req.web.headers.get("x-deoss-territory") or req.ctx.default_territory
    if not territory:
        raise S3Error(
            400, "InvalidArgument", "name a territory in x-deoss-territory (no default is set)"
        )
    existing = req.ctx.index.bucket(req.bucket)
    if existing is not None:
        if existing.owner == req.owner:
            raise S3Error(409, "BucketAlreadyOwnedByYou", "you already own this bucket")
        raise S3Error(409, "BucketAlreadyExists", "the bucket name is taken")
    try:
        await req.ctx.service.check_upload(req.owner, territory, 0, None)
    except ObjectError as exc:
        if exc.code == "InsufficientTerritorySpace":
            pass  # a full territory may still hold a bucket: uploads will say so
        else:
            raise
    if req.ctx.index.create_bucket(req.bucket, req.owner, territory) is None:
        raise S3Error(409, "BucketAlreadyExists", "the bucket name is taken")
    return web.Response(status=200, headers={"Location": f"/{req.bucket}"})


async def head_bucket(req: S3Request) -> web.StreamResponse:
    found = req.own_bucket()
    return web.Response(
        headers={"x-amz-bucket-region": req.ctx.region, "x-deoss-territory": found.territory}
    )


async def delete_bucket(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    if not req.ctx.index.delete_bucket(req.bucket, req.owner):
        raise S3Error(409, "BucketNotEmpty", "the bucket is not empty")
    return web.Response(status=204)


async def location(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    region = req.ctx.region
    # AWS answers an empty constraint for us-east-1.
    return xml_response(
        element("LocationConstraint", text=None if region == "us-east-1" else region)
    )


async def versioning(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    return xml_response(element("VersioningConfiguration"))


# -- listing ---------------------------------------------------------------------------------


@dataclass
class _Listing:
    keys: list[ObjectRecord]
    prefixes: list[str]
    truncated: bool
    last: str  # the last key or prefix returned (relative to the bucket), "" if none


def _scan(req: S3Request, prefix: str, delimiter: str, after: str, max_keys: int) -> _Listing:
    """Keys of the bucket after ``after`` (relative), folded by ``delimiter``."""
    base = req.bucket + "/"
    keys: list[ObjectRecord] = []
    prefixes: list[str] = []
    last = ""
    cursor = base + after if after else ""
    # A marker that is itself a common prefix: skip everything under it.
    if after and delimiter and after.startswith(prefix):
        rest = after[len(prefix) :]
        if rest.endswith(delimiter) and delimiter in rest:
            cursor = base + after + _AFTER_ALL
    while True:
        page = req.ctx.index.objects_by_name(req.owner, cursor, PAGE, prefix=base + prefix)
        if not page:
            return _Listing(keys, prefixes, False, last)
        for record in page:
            key = record.name[len(base) :]
            cursor = record.name
            if delimiter:
                found = key.find(delimiter, len(prefix))
                if found >= 0:
                    common = key[: found + len(delimiter)]
                    if len(keys) + len(prefixes) == max_keys:
                        return _Listing(keys, prefixes, True, last)
                    prefixes.append(common)
                    last = common
                    cursor = base + common + _AFTER_ALL
                    break  # read on after the folded keys
            if len(keys) + len(prefixes) == max_keys:
                return _Listing(keys, prefixes, True, last)
            keys.append(record)
            last = key
        else:
            if len(page) < PAGE:
                return _Listing(keys, prefixes, False, last)


def _max_keys(req: S3Request) -> int:
    raw = req.web.query.get("max-keys", str(MAX_KEYS))
    if not raw.isdigit():
        raise S3Error(400, "InvalidArgument", "max-keys is a non-negative integer")
    return min(int(raw), MAX_KEYS)


def _encoder(req: S3Request) -> Callable[[str], str]:
    kind = req.web.query.get("encoding-type")
    if kind is None:
        return lambda value: value
    if kind != "url":
        raise S3Error(400, "InvalidArgument", "encoding-type is url")
    return lambda value: urllib.parse.quote(value, safe="/")


def _contents(
    record: ObjectRecord, bucket: str, encode: Callable[[str], str], owner: bool
) -> ET.Element:
    return element(
        "Contents",
        *leaves(
            {
                "Key": encode(record.name[len(bucket) + 1 :]),
                "LastModified": iso_time(record.created_at),
                "ETag": f'"{record.etag}"',
                "Size": record.size,
                "StorageClass": "STANDARD",
            }
        ),
        owner_element(record.owner) if owner else None,
    )


def _common(prefixes: list[str], encode: Callable[[str], str]) -> list[ET.Element]:
    return [element("CommonPrefixes", element("Prefix", text=encode(p))) for p in prefixes]


async def list_v1(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    query = req.web.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    marker, max_keys, encode = query.get("marker", ""), _max_keys(req), _encoder(req)
    listing = _scan(req, prefix, delimiter, marker, max_keys)
    root = element(
        "ListBucketResult",
        *leaves(
            {
                "Name": req.bucket,
                "Prefix": encode(prefix),
                "Marker": encode(marker),
                "NextMarker": encode(listing.last) if listing.truncated and delimiter else None,
                "MaxKeys": max_keys,
                "Delimiter": encode(delimiter) if delimiter else None,
                "IsTruncated": str(listing.truncated).lower(),
                "EncodingType": query.get("encoding-type"),
            }
        ),
        *(_contents(r, req.bucket, encode, True) for r in listing.keys),
        *_common(listing.prefixes, encode),
    )
    return xml_response(root)


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error(400, "InvalidArgument", "the continuation token is invalid") from None


async def list_v2(req: S3Request) -> web.StreamResponse:
    req.own_bucket()
    query = req.web.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    max_keys, encode = _max_keys(req), _encoder(req)
    token = query.get("continuation-token")
    start_after = query.get("start-after", "")
    after = _untoken(token) if token is not None else start_after
    listing = _scan(req, prefix, delimiter, after, max_keys)
    owner = query.get("fetch-owner", "false").lower() == "true"
    root = element(
        "ListBucketResult",
        *leaves(
            {
                "Name": req.bucket,
                "Prefix": encode(prefix),
                "Delimiter": encode(delimiter) if delimiter else None,
                "MaxKeys": max_keys,
                "KeyCount": len(listing.keys) + len(listing.prefixes),
                "IsTruncated": str(listing.truncated).lower(),
                "ContinuationToken": token,
                "NextContinuationToken": _token(listing.last) if listing.truncated else None,
                "StartAfter": encode(start_after) if start_after else None,
                "EncodingType": query.get("encoding-type"),
            }
        ),
        *(_contents(r, req.bucket, encode, owner) for r in listing.keys),
        *_common(listing.prefixes, encode),
    )
    return xml_response(root)


async def list_versions(req: S3Request) -> web.StreamResponse:
    """Current objects only, each as its one ``null`` version (no versioning here)."""
    req.own_bucket()
    query = req.web.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    marker, max_keys, encode = query.get("key-marker", ""), _max_keys(req), _encoder(req)
    listing = _scan(req, prefix, delimiter, marker, max_keys)
    versions = [
        element(
            "Version",
            *leaves(
                {
                    "Key": encode(r.name[len(req.bucket) + 1 :]),
                    "VersionId": "null",
                    "IsLatest": "true",
                    "LastModified": iso_time(r.created_at),
                    "ETag": f'"{r.etag}"',
                    "Size": r.size,
                    "StorageClass": "STANDARD",
                }
            ),
            owner_element(r.owner),
        )
        for r in listing.keys
    ]
    root = element(
        "ListVersionsResult",
        *leaves(
            {
                "Name": req.bucket,
                "Prefix": encode(prefix),
                "KeyMarker": encode(marker),
                "VersionIdMarker": "",
                "NextKeyMarker": encode(listing.last) if listing.truncated else None,
                "NextVersionIdMarker": "null" if listing.truncated else None,
                "MaxKeys": max_keys,
                "Delimiter": encode(delimiter) if delimiter else None,
                "IsTruncated": str(listing.truncated).lower(),
                "EncodingType": query.get("encoding-type"),
            }
        ),
        *versions,
        *_common(listing.prefixes, encode),
    )
    return xml_response(root)
