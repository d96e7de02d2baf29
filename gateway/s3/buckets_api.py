"""Bucket operations (docs/s3.md §3, §4, §5): list, create, head, delete, location, and
the versioning configuration."""

import contextlib

from aiohttp import web

from gateway.errors import InsufficientTerritorySpace
from gateway.headers import header_text
from gateway.names import check_bucket_name
from gateway.records import ENABLED, SUSPENDED
from gateway.s3.acl_api import check_acl_headers
from gateway.s3.context import S3Request
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
    "create_bucket",
    "delete_bucket",
    "get_versioning",
    "head_bucket",
    "list_buckets",
    "location",
    "put_versioning",
]

MAX_CONFIGURATION = 64 * 1024


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


async def _configuration(req: S3Request) -> bytes:
    body = await read_up_to(req.web.content, MAX_CONFIGURATION + 1)
    if len(body) > MAX_CONFIGURATION:
        raise S3Error(400, "MaxMessageLengthExceeded", "the configuration is too long")
    return body


async def create_bucket(req: S3Request) -> web.StreamResponse:
    check_bucket_name(req.bucket)
    check_acl_headers(req.web.headers)
    body = await _configuration(req)
    if body.strip():
        parse_xml(body)  # a LocationConstraint: one region here, so only checked for form
    territory = header_text(req.web.headers, "x-deoss-territory") or req.ctx.default_territory
    if not territory:
        raise S3Error(
            400, "InvalidArgument", "name a territory in x-deoss-territory (no default is set)"
        )
    existing = req.ctx.index.bucket(req.bucket)
    if existing is not None:
        if existing.owner == req.owner:
            raise S3Error(409, "BucketAlreadyOwnedByYou", "you already own this bucket")
        raise S3Error(409, "BucketAlreadyExists", "the bucket name is taken")
    with contextlib.suppress(InsufficientTerritorySpace):  # uploads will say so
        await req.ctx.service.check_upload(req.owner, territory, 0, None)
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


async def get_versioning(req: S3Request) -> web.StreamResponse:
    found = req.own_bucket()
    return xml_response(
        element("VersioningConfiguration", *leaves({"Status": found.versioning or None}))
    )


async def put_versioning(req: S3Request) -> web.StreamResponse:
    """Enabled or Suspended; a bucket never goes back to unversioned (docs/s3.md §5)."""
    req.own_bucket()
    root = parse_xml(await _configuration(req))
    if root.tag != "VersioningConfiguration":
        raise S3Error(400, "MalformedXML", "the body is not a VersioningConfiguration")
    if (root.findtext("MfaDelete") or "").strip() == "Enabled":
        raise S3Error(501, "NotImplemented", "MFA delete is not implemented")
    status = root.findtext("Status")
    if status is not None:
        if status.strip() not in (ENABLED, SUSPENDED):
            raise S3Error(400, "MalformedXML", "Status is Enabled or Suspended")
        req.ctx.index.set_versioning(req.bucket, status.strip())
    return web.Response(status=200, headers={"x-amz-request-id": req.request_id})
