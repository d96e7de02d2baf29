"""The S3 HTTP front (docs/s3.md): one catch-all route that authenticates the request,
parses its target, and dispatches on method, bucket, key and sub-resource.

Errors of every layer become S3 XML here and nowhere else; anything unforeseen is a
500 ``InternalError`` with the request id, logged with its traceback.
"""

import logging
import time

from aiohttp import web

from chain_client.errors import ChainError
from gateway.expect import close_if_unasked, defer_continue
from gateway.metrics import GatewayMetrics
from gateway.s3 import acl_api, buckets_api, listing, multipart_api, objects_api, tagging_api
from gateway.s3.context import AUTH, S3, S3Context, S3Request, split_target
from gateway.s3.errors import as_s3_error
from gateway.s3.operations import OPERATION, S3_METRICS, UNKNOWN, Handler, measured, operation
from gateway.s3.sigv4 import authenticate
from gateway.s3.xml import S3Error, error_response

__all__ = ["make_s3_app"]

log = logging.getLogger("deoss.s3")

# Sub-resources S3 has that this gateway does not serve (docs/s3.md §4).
UNSUPPORTED = frozenset(
    {
        "analytics",
        "accelerate",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "torrent",
        "website",
        "attributes",
    }
)


Table = dict[str, Handler]  # method -> handler

# Routing: the first sub-resource of the table that the query names, else the resource
# itself. Buckets and objects alike take only the private ACL (docs/s3.md §3).
ACL: Table = {"GET": acl_api.get_acl, "PUT": acl_api.put_acl}
BUCKET_SUBRESOURCES: dict[str, Table] = {
    "location": {"GET": buckets_api.location},
    "versioning": {"GET": buckets_api.get_versioning, "PUT": buckets_api.put_versioning},
    "versions": {"GET": listing.list_versions},
    "uploads": {"GET": multipart_api.list_uploads},
    "delete": {"POST": objects_api.delete_objects},
    "tagging": {
        "GET": tagging_api.get_bucket_tagging,
        "PUT": tagging_api.put_bucket_tagging,
        "DELETE": tagging_api.delete_bucket_tagging,
    },
    "acl": ACL,
}
BUCKET: Table = {
    "GET": listing.list_v1,
    "PUT": buckets_api.create_bucket,
    "HEAD": buckets_api.head_bucket,
    "DELETE": buckets_api.delete_bucket,
}
OBJECT_SUBRESOURCES: dict[str, Table] = {
    "tagging": {
        "GET": tagging_api.get_object_tagging,
        "PUT": tagging_api.put_object_tagging,
        "DELETE": tagging_api.delete_object_tagging,
    },
    "acl": ACL,
    "uploads": {"POST": multipart_api.create_upload},
    "uploadId": {
        "PUT": multipart_api.upload_part,
        "GET": multipart_api.list_parts,
        "POST": multipart_api.complete_upload,
        "DELETE": multipart_api.abort_upload,
    },
}
OBJECT: Table = {
    "PUT": objects_api.put_object,
    "GET": objects_api.get_object,
    "HEAD": objects_api.head_object,
    "DELETE": objects_api.delete_object,
}


def _route(request: S3Request) -> Handler:
    method, query = request.web.method, request.web.query
    if not request.bucket:
        if method == "GET":
            return buckets_api.list_buckets
        raise S3Error(405, "MethodNotAllowed", f"{method} is not allowed on the service")
    if UNSUPPORTED.intersection(query):
        raise S3Error(501, "NotImplemented", "this sub-resource is not implemented")
    if request.key:
        subresources, table = OBJECT_SUBRESOURCES, OBJECT
    elif query.get("list-type") == "2":
        subresources, table = BUCKET_SUBRESOURCES, {"GET": listing.list_v2}
    else:
        subresources, table = BUCKET_SUBRESOURCES, BUCKET
    table = next((t for name, t in subresources.items() if name in query), table)
    handler = table.get(method)
    if handler is None:
        raise S3Error(
            405,
            "MethodNotAllowed",
            f"{method} is not allowed on this resource",
            headers={"Allow": ", ".join(table)},
        )
    return handler


def _operation(request: S3Request) -> str:
    """The operation the request asks for, known before it is authenticated (a refusal
    counts under it too); routing is pure, so routing twice costs nothing. Whatever
    routing raises, the dispatcher's own call answers it."""
    try:
        return operation(_route(request), request)
    except Exception:
        return UNKNOWN


async def _authenticate(
    request: web.Request, ctx: S3Context, bucket: str, virtual_host: bool
) -> str:
    path, _, query = request.raw_path.partition("?")

    def secret_for(access_key: str) -> str | None:
        found = ctx.keys.lookup(access_key)
        return found[1] if found else None

    found = authenticate(
        request.method,
        path,
        query,
        request.headers,
        now=time.time(),
        secret_for=secret_for,
        region=ctx.region,
        v2_resource_prefix=f"/{bucket}" if virtual_host else "",
        max_skew=ctx.skew,
    )
    if found is None:
        raise S3Error(403, "AccessDenied", "anonymous requests are refused: sign the request")
    owner_secret = ctx.keys.lookup(found.access_key)
    if owner_secret is None:  # revoked between the two lookups
        raise S3Error(403, "InvalidAccessKeyId", "the access key does not exist")
    owner = owner_secret[0]
    request[AUTH] = found
    if owner != ctx.gateway:
        try:
            allowed = await ctx.is_authorized(owner)
        except ChainError:
            raise S3Error(503, "ServiceUnavailable", "the chain is unreachable") from None
        if not allowed:
            raise S3Error(
                403, "AccessDenied", f"the account has not authorized gateway {ctx.gateway}"
            )
    return owner


async def _dispatch(request: web.Request) -> web.StreamResponse:
    ctx = request.app[S3]
    bucket, key, virtual_host = split_target(request, ctx.domain)  # pure text: cannot fail
    resource = f"/{bucket}/{key}" if bucket else "/"
    target = S3Request(request, "", bucket, key)
    request[OPERATION] = _operation(target)
    try:
        target.owner = await _authenticate(request, ctx, bucket, virtual_host)
        response = await _route(target)(target)
    except web.HTTPException:
        raise
    except Exception as exc:
        error = as_s3_error(exc)
        if error is None:
            log.exception(
                "internal error %s %s (request %s)", request.method, request.path, target.request_id
            )
            error = S3Error(500, "InternalError", "We encountered an internal error. Please retry.")
        elif error.code == "IncompleteBody":
            log.info("%s %s: the body broke off: %r", request.method, request.path, exc)
        response = error_response(error, resource, target.request_id)
    if not response.prepared:
        response.headers["x-amz-request-id"] = target.request_id
        close_if_unasked(request, response)
        if response.status in (503,):
            response.headers.setdefault("Retry-After", "5")
    return response


def make_s3_app(ctx: S3Context, *, metrics: GatewayMetrics | None = None) -> web.Application:
    # The handlers stream bodies themselves; XML bodies are read with explicit limits.
    app = web.Application(middlewares=[measured], client_max_size=1024**2)
    app[S3] = ctx
    app[S3_METRICS] = metrics or GatewayMetrics()
    # [\s\S], not ".": a key may hold a newline, which "." does not match.
    app.router.add_route("*", r"/{tail:[\s\S]*}", _dispatch, expect_handler=defer_continue)
    return app
