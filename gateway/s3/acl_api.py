"""ACLs (docs/s3.md §4): the owner's ``FULL_CONTROL`` is the only grant there is, as on an
AWS bucket whose ACLs are disabled. Asking for exactly that succeeds and changes nothing;
asking for anything more is ``AccessControlListNotSupported``, never silently ignored:
nothing here is public.
"""

from collections.abc import Mapping

from aiohttp import web

from gateway.s3.context import S3Request
from gateway.s3.xml import S3Error, element, owner_element, parse_xml, xml_response
from gateway.streaming import read_up_to

__all__ = ["check_acl_headers", "get_acl", "put_acl"]

PRIVATE_ACLS = frozenset({"private", "bucket-owner-full-control"})
MAX_ACL_BODY = 64 * 1024
_XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _not_supported() -> S3Error:
    return S3Error(
        400,
        "AccessControlListNotSupported",
        "The bucket does not allow ACLs: only the owner has access (x-amz-acl: private)",
    )


def check_acl_headers(headers: Mapping[str, str]) -> None:
    """A write's ``x-amz-acl``/``x-amz-grant-*``: private, or refused."""
    canned = headers.get("x-amz-acl")
    if canned is not None and canned.strip().lower() not in PRIVATE_ACLS:
        raise _not_supported()
    if any(name.lower().startswith("x-amz-grant-") for name in headers):
        raise _not_supported()


def _target(req: S3Request) -> None:
    """The bucket, or the object version, the ACL is of: it must exist."""
    req.own_bucket()
    if req.key and req.named_version().marker:
        raise S3Error(404, "NoSuchVersion", "the version does not exist", Key=req.key)


async def get_acl(req: S3Request) -> web.StreamResponse:
    _target(req)
    grantee = element(
        "Grantee",
        element("ID", text=req.owner),
        element("DisplayName", text=req.owner),
    )
    grantee.set("xmlns:xsi", _XSI)
    grantee.set("xsi:type", "CanonicalUser")
    root = element(
        "AccessControlPolicy",
        owner_element(req.owner),
        element(
            "AccessControlList",
            element("Grant", grantee, element("Permission", text="FULL_CONTROL")),
        ),
    )
    return xml_response(root)


async def put_acl(req: S3Request) -> web.StreamResponse:
    _target(req)
    check_acl_headers(req.web.headers)
    raw = await read_up_to(req.web.content, MAX_ACL_BODY + 1)
    if len(raw) > MAX_ACL_BODY:
        raise S3Error(400, "MaxMessageLengthExceeded", "the ACL is too long")
    if raw.strip():
        root = parse_xml(raw)
        if root.tag != "AccessControlPolicy":
            raise S3Error(400, "MalformedACLError", "the body is not an AccessControlPolicy")
        for grant in root.iter("Grant"):
            if (
                grant.findtext("Grantee/ID") != req.owner
                or (grant.findtext("Permission") or "").strip() != "FULL_CONTROL"
            ):
                raise _not_supported()
    elif "x-amz-acl" not in req.web.headers:
        raise S3Error(400, "MissingSecurityHeader", "give x-amz-acl or an ACL body")
    return web.Response(status=200, headers={"x-amz-request-id": req.request_id})
