"""Listings (docs/s3.md §4, §5): ListObjects v1 and v2 over current objects, and
ListObjectVersions over every version and delete marker.

Both read the owner's names ``<bucket>/<key>`` from the index in UTF-8 byte order
(SQLite's BINARY collation), so keys come in S3's order however they were written; a
delimiter folds keys into common prefixes, each counted once against ``max-keys``. The
scan's bounds are exact for every key (``records.prefix_end``), U+10FFFF included.
"""

import base64
import binascii
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from chain_client.strict import ascii_int
from gateway.index import MetadataIndex
from gateway.records import ObjectRecord, is_version_id, prefix_end
from gateway.s3.context import INT_DIGITS, S3Request
from gateway.s3.xml import S3Error, element, iso_time, leaves, owner_element, xml_response

__all__ = [
    "Cursor",
    "Listing",
    "after_marker",
    "all_versions",
    "current_objects",
    "list_v1",
    "list_v2",
    "list_versions",
    "scan",
]

MAX_KEYS = 1000
PAGE = 1000  # names read from the index at a time


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a scan goes on: after name ``after`` (at it, with ``inclusive``); with
    ``older_than``, after the version of ``after`` with that seq (versions only)."""

    after: str = ""
    inclusive: bool = False
    older_than: int | None = None


@dataclass
class Listing:
    entries: list[ObjectRecord]
    prefixes: list[str]
    truncated: bool
    last: str  # the last key or prefix returned (relative to the bucket), "" if none
    last_entry: ObjectRecord | None  # the last entry, when it came after every prefix


Fetch = Callable[[Cursor, int], list[ObjectRecord]]


def scan(
    fetch: Fetch,
    base: str,
    prefix: str,
    delimiter: str,
    start: Cursor,
    max_keys: int,
    *,
    versions: bool = False,
    page_size: int = PAGE,
) -> Listing:
    """Up to ``max_keys`` entries and common prefixes of the names under ``base + prefix``,
    from ``start``; ``fetch(cursor, limit)`` reads the index (every version of a name,
    newest first, with ``versions``)."""
    listing = Listing([], [], False, "", None)
    if max_keys == 0:
        return listing  # an empty page, and not truncated: S3's answer
    cursor = start
    while True:
        page = fetch(cursor, page_size)
        for record in page:
            key = record.name[len(base) :]
            count = len(listing.entries) + len(listing.prefixes)
            found = key.find(delimiter, len(prefix)) if delimiter else -1
            if count == max_keys:
                listing.truncated = True
                return listing
            if found >= 0:
                common = key[: found + len(delimiter)]
                listing.prefixes.append(common)
                listing.last, listing.last_entry = common, None
                end = prefix_end(base + common)
                if end is None:
                    return listing  # nothing sorts after the folded keys
                cursor = Cursor(end, inclusive=True)
                break  # read on after the folded keys
            listing.entries.append(record)
            listing.last, listing.last_entry = key, record
            cursor = Cursor(record.name, older_than=record.seq if versions else None)
        else:
            if len(page) < page_size:
                return listing


def current_objects(index: MetadataIndex, owner: str, prefix: str) -> Fetch:
    def fetch(cursor: Cursor, limit: int) -> list[ObjectRecord]:
        return index.objects_by_name(
            owner, cursor.after, limit, prefix=prefix, inclusive=cursor.inclusive
        )

    return fetch


def all_versions(index: MetadataIndex, owner: str, prefix: str) -> Fetch:
    def fetch(cursor: Cursor, limit: int) -> list[ObjectRecord]:
        return index.versions_by_name(
            owner,
            cursor.after,
            limit,
            prefix=prefix,
            inclusive=cursor.inclusive,
            older_than=cursor.older_than,
        )

    return fetch


def after_marker(base: str, prefix: str, delimiter: str, marker: str) -> Cursor:
    """After ``marker`` (relative); a marker that is itself a common prefix skips every
    key it folds."""
    if not marker:
        return Cursor()
    if delimiter and marker.startswith(prefix):
        rest = marker[len(prefix) :]
        if rest.endswith(delimiter) and rest.find(delimiter) == len(rest) - len(delimiter):
            end = prefix_end(base + marker)
            return Cursor(end, inclusive=True) if end is not None else Cursor(base + marker)
    return Cursor(base + marker)


def _max_keys(req: S3Request) -> int:
    count = ascii_int(req.web.query.get("max-keys", str(MAX_KEYS)), max_digits=INT_DIGITS)
    if count is None:
        raise S3Error(400, "InvalidArgument", "max-keys is a non-negative integer")
    return min(count, MAX_KEYS)


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


def _list_objects(req: S3Request, after: str) -> tuple[Listing, str, str, int]:
    req.own_bucket()
    query = req.web.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    base = req.bucket + "/"
    max_keys = _max_keys(req)
    fetch = current_objects(req.ctx.index, req.owner, base + prefix)
    listing = scan(
        fetch, base, prefix, delimiter, after_marker(base, prefix, delimiter, after), max_keys
    )
    return listing, prefix, delimiter, max_keys


async def list_v1(req: S3Request) -> web.StreamResponse:
    marker, encode = req.web.query.get("marker", ""), _encoder(req)
    listing, prefix, delimiter, max_keys = _list_objects(req, marker)
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
                "EncodingType": req.web.query.get("encoding-type"),
            }
        ),
        *(_contents(r, req.bucket, encode, True) for r in listing.entries),
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
    query = req.web.query
    encode = _encoder(req)
    token = query.get("continuation-token")
    start_after = query.get("start-after", "")
    listing, prefix, delimiter, max_keys = _list_objects(
        req, _untoken(token) if token is not None else start_after
    )
    owner = query.get("fetch-owner", "false").lower() == "true"
    root = element(
        "ListBucketResult",
        *leaves(
            {
                "Name": req.bucket,
                "Prefix": encode(prefix),
                "Delimiter": encode(delimiter) if delimiter else None,
                "MaxKeys": max_keys,
                "KeyCount": len(listing.entries) + len(listing.prefixes),
                "IsTruncated": str(listing.truncated).lower(),
                "ContinuationToken": token,
                "NextContinuationToken": _token(listing.last) if listing.truncated else None,
                "StartAfter": encode(start_after) if start_after else None,
                "EncodingType": query.get("encoding-type"),
            }
        ),
        *(_contents(r, req.bucket, encode, owner) for r in listing.entries),
        *_common(listing.prefixes, encode),
    )
    return xml_response(root)


def _version_element(record: ObjectRecord, bucket: str, encode: Callable[[str], str]) -> ET.Element:
    common = {
        "Key": encode(record.name[len(bucket) + 1 :]),
        "VersionId": record.version_id,
        "IsLatest": str(record.latest).lower(),
        "LastModified": iso_time(record.created_at),
    }
    if record.marker:
        return element("DeleteMarker", *leaves(common), owner_element(record.owner))
    return element(
        "Version",
        *leaves(
            {
                **common,
                "ETag": f'"{record.etag}"',
                "Size": record.size,
                "StorageClass": "STANDARD",
            }
        ),
        owner_element(record.owner),
    )


async def list_versions(req: S3Request) -> web.StreamResponse:
    """Every version and delete marker, in key order and newest first."""
    req.own_bucket()
    query = req.web.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    key_marker, id_marker = query.get("key-marker", ""), query.get("version-id-marker", "")
    max_keys, encode = _max_keys(req), _encoder(req)
    base = req.bucket + "/"
    if id_marker and not key_marker:
        raise S3Error(
            400, "InvalidArgument", "A version-id marker cannot be specified without a key marker."
        )
    if id_marker and not is_version_id(id_marker):
        raise S3Error(400, "InvalidArgument", "Invalid version id specified")
    start = after_marker(base, prefix, delimiter, key_marker)
    if id_marker:
        # Within the marker's key: its versions older than the marked one, then on.
        marked = req.ctx.index.version(req.owner, base + key_marker, id_marker)
        if marked is not None:
            start = Cursor(base + key_marker, older_than=marked.seq)
    fetch = all_versions(req.ctx.index, req.owner, base + prefix)
    listing = scan(fetch, base, prefix, delimiter, start, max_keys, versions=True)
    next_version = None
    if listing.truncated and listing.last_entry is not None:
        next_version = listing.last_entry.version_id
    root = element(
        "ListVersionsResult",
        *leaves(
            {
                "Name": req.bucket,
                "Prefix": encode(prefix),
                "KeyMarker": encode(key_marker),
                "VersionIdMarker": id_marker,
                "NextKeyMarker": encode(listing.last) if listing.truncated else None,
                "NextVersionIdMarker": next_version,
                "MaxKeys": max_keys,
                "Delimiter": encode(delimiter) if delimiter else None,
                "IsTruncated": str(listing.truncated).lower(),
                "EncodingType": query.get("encoding-type"),
            }
        ),
        *(_version_element(r, req.bucket, encode) for r in listing.entries),
        *_common(listing.prefixes, encode),
    )
    return xml_response(root)
