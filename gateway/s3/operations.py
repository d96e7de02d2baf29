"""Which S3 operation a request is (the names of docs/s3.md §4), and the middleware that
counts and times every answer by it (docs/native-api.md §8).

The router picks a handler; the handler and, where one handler serves two operations, the
request's resource or copy header give the name. The set is bounded: a request the
router refuses (405, 501) is ``Unknown``. No bucket, key or account reaches a label.
"""

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.metrics import GatewayMetrics
from gateway.s3 import acl_api, buckets_api, listing, multipart_api, objects_api, tagging_api
from gateway.s3.context import S3Request

__all__ = ["OPERATION", "OPERATIONS", "S3_METRICS", "UNKNOWN", "Handler", "measured", "operation"]

Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]
UNKNOWN = "Unknown"
OPERATION = web.RequestKey("s3_operation", str)
S3_METRICS = web.AppKey("s3_metrics", GatewayMetrics)

OPERATIONS: dict[Handler, str] = {
    buckets_api.list_buckets: "ListBuckets",
    buckets_api.create_bucket: "CreateBucket",
    buckets_api.head_bucket: "HeadBucket",
    buckets_api.delete_bucket: "DeleteBucket",
    buckets_api.location: "GetBucketLocation",
    buckets_api.get_versioning: "GetBucketVersioning",
    buckets_api.put_versioning: "PutBucketVersioning",
    listing.list_v1: "ListObjects",
    listing.list_v2: "ListObjectsV2",
    listing.list_versions: "ListObjectVersions",
    objects_api.put_object: "PutObject",
    objects_api.get_object: "GetObject",
    objects_api.head_object: "HeadObject",
    objects_api.delete_object: "DeleteObject",
    objects_api.delete_objects: "DeleteObjects",
    multipart_api.create_upload: "CreateMultipartUpload",
    multipart_api.upload_part: "UploadPart",
    multipart_api.list_parts: "ListParts",
    multipart_api.complete_upload: "CompleteMultipartUpload",
    multipart_api.abort_upload: "AbortMultipartUpload",
    multipart_api.list_uploads: "ListMultipartUploads",
    tagging_api.get_object_tagging: "GetObjectTagging",
    tagging_api.put_object_tagging: "PutObjectTagging",
    tagging_api.delete_object_tagging: "DeleteObjectTagging",
    tagging_api.get_bucket_tagging: "GetBucketTagging",
    tagging_api.put_bucket_tagging: "PutBucketTagging",
    tagging_api.delete_bucket_tagging: "DeleteBucketTagging",
    acl_api.get_acl: "GetBucketAcl",
    acl_api.put_acl: "PutBucketAcl",
}
# One handler, two operations: the copy header or the resource tells them apart.
COPIES = {"PutObject": "CopyObject", "UploadPart": "UploadPartCopy"}
OBJECT_ACLS = {"GetBucketAcl": "GetObjectAcl", "PutBucketAcl": "PutObjectAcl"}


def operation(handler: Handler, request: S3Request) -> str:
    name = OPERATIONS.get(handler, UNKNOWN)
    if name in COPIES and "x-amz-copy-source" in request.web.headers:
        return COPIES[name]
    if name in OBJECT_ACLS and request.key:
        return OBJECT_ACLS[name]
    return name


@web.middleware
async def measured(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Counts every answer by operation and status, timed to the handler's return (a
    streamed body has been sent by then). The dispatcher names the operation."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _record(request, exc.status, started)
        raise
    _record(request, response.status, started)
    return response


def _record(request: web.Request, status: int, started: float) -> None:
    metrics, name = request.app[S3_METRICS], request.get(OPERATION, UNKNOWN)
    metrics.s3_requests.labels(name, str(status)).inc()
    metrics.s3_seconds.labels(name).observe(time.perf_counter() - started)
