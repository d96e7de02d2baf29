"""What every S3 handler needs: the services, the caller, and the parsed request target
(docs/s3.md §1, §2)."""

import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.access_keys import AccessKeyStore
from gateway.headers import header_text
from gateway.index import MetadataIndex
from gateway.names import MAX_NAME_BYTES
from gateway.objects import ObjectService
from gateway.records import BucketRecord, ObjectRecord, is_version_id
from gateway.s3.sigv4 import AuthResult
from gateway.s3.xml import S3Error

__all__ = [
    "AUTH",
    "INT_DIGITS",
    "S3",
    "CopySource",
    "S3Context",
    "S3Request",
    "copy_source",
    "object_name",
]


@dataclass
class S3Context:
    service: ObjectService
    keys: AccessKeyStore
    is_authorized: Callable[[str], Awaitable[bool]]
    gateway: str  # the gateway's own account
    region: str = "us-east-1"
    domain: str = ""  # virtual-host style under this domain when set
    default_territory: str = ""
    skew: float = 15 * 60.0
    multipart_ttl: float = 86_400.0  # below the miners' orphan time-to-live
    min_part_size: int = 5 * 1024 * 1024

    @property
    def index(self) -> MetadataIndex:
        return self.service.index


S3 = web.AppKey("s3", S3Context)
# S3's integer parameters are 32-bit: more digits are refused (chain_client.strict).
INT_DIGITS = 10
AUTH = web.RequestKey("s3_auth", AuthResult)  # who signed the request, and how


@dataclass
class S3Request:
    """One request, its target parsed and its caller authenticated."""

    web: web.Request
    owner: str
    bucket: str  # "" for the service (ListBuckets)
    key: str  # "" for a bucket operation
    request_id: str = field(default_factory=lambda: secrets.token_hex(8).upper())

    @property
    def ctx(self) -> S3Context:
        return self.web.app[S3]

    @property
    def name(self) -> str:
        return object_name(self.bucket, self.key)

    def own_bucket(self) -> BucketRecord:
        """The bucket, which must exist and be the caller's."""
        return own_bucket(self, self.bucket)

    def version_id(self) -> str | None:
        """The request's ``versionId``, checked for form (None when it has none)."""
        raw = self.web.query.get("versionId")
        if raw is None:
            return None
        if not is_version_id(raw):
            raise S3Error(400, "InvalidArgument", "Invalid version id specified")
        return raw

    def named_version(self, source: "CopySource | None" = None) -> ObjectRecord:
        """The object the request (or its copy ``source``) names: the current one, or the
        version its ``versionId`` gives, which may be a delete marker (what that means is
        the caller's to say). NoSuchKey or NoSuchVersion when there is none."""
        if source is None:
            name, key, version_id, what = self.name, self.key, self.version_id(), ""
        else:
            name, key, version_id, what = source.name, source.key, source.version_id, "source "
        index = self.ctx.index
        found = (
            index.find(self.owner, name)
            if version_id is None
            else index.version(self.owner, name, version_id)
        )
        if found is not None:
            return found
        if version_id is None:
            raise S3Error(404, "NoSuchKey", f"the {what}key does not exist", Key=key)
        raise S3Error(404, "NoSuchVersion", f"the {what}version does not exist", Key=key)


def own_bucket(req: S3Request, bucket: str) -> BucketRecord:
    found = req.ctx.index.bucket(bucket)
    if found is None:
        raise S3Error(404, "NoSuchBucket", "the bucket does not exist", BucketName=bucket)
    if found.owner != req.owner:
        raise S3Error(403, "AccessDenied", "the bucket belongs to another account")
    return found


@dataclass(frozen=True, slots=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None  # None: the current version

    @property
    def name(self) -> str:
        return object_name(self.bucket, self.key)


def copy_source(req: S3Request) -> CopySource:
    """``x-amz-copy-source``: ``[/]<bucket>/<percent-encoded key>[?versionId=<id>]``. The
    query is split off before the key is decoded, so a key with an encoded ``?`` (or
    anything else) survives, as every SDK sends it."""
    raw = header_text(req.web.headers, "x-amz-copy-source") or ""
    path, _, query = raw.partition("?")
    bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error(400, "InvalidArgument", "x-amz-copy-source is /bucket/key")
    version_id = None
    if query:
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        if set(params) != {"versionId"} or len(params["versionId"]) != 1:
            raise S3Error(400, "InvalidArgument", "x-amz-copy-source takes only ?versionId=")
        version_id = params["versionId"][0]
        if not is_version_id(version_id):
            raise S3Error(400, "InvalidArgument", "Invalid version id specified")
    own_bucket(req, bucket)
    return CopySource(bucket, key, version_id)


def object_name(bucket: str, key: str) -> str:
    name = f"{bucket}/{key}"
    if "\x00" in key:  # SECURITY: a version's chain key is its name, U+0000 and its id
        raise S3Error(400, "InvalidArgument", "keys cannot contain U+0000")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise S3Error(
            400,
            "KeyTooLongError",
            f"keys in this bucket are at most {MAX_NAME_BYTES - len(bucket) - 1} bytes",
        )
    return name


def split_target(request: web.Request, domain: str) -> tuple[str, str, bool]:
    """(bucket, key, whether virtual-host style) from the Host header (a subdomain of
    ``domain``) or the path; the key percent-decoded once, as S3 does."""
    path = request.raw_path.split("?", 1)[0]
    host = request.headers.get("Host", "").rsplit(":", 1)[0].lower()
    if domain and host.endswith("." + domain):
        return host[: -len(domain) - 1], urllib.parse.unquote(path[1:]), True
    bucket, _, key = path[1:].partition("/")
    return urllib.parse.unquote(bucket), urllib.parse.unquote(key), False
