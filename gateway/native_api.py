"""The native (DeOSS-compatible) HTTP API: docs/native-api.md.

Every answer is the ``{code, msg, data}`` envelope with ``code`` equal to the real HTTP
status; errors carry their machine-readable name in ``data.error``. Domain errors are
translated here and nowhere else.
"""

import asyncio
import contextlib
import json
import mimetypes
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import BodyPartReader, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chain_client.errors import ChainError
from gateway.conditional import (
    NOT_MODIFIED,
    http_date,
    parse_byte_range,
    precondition,
    range_applies,
)
from gateway.index import PENDING, UNPAID, ObjectRecord
from gateway.metrics import GatewayMetrics
from gateway.native_auth import AuthError, NativeAuth
from gateway.objects import ObjectError, ObjectService
from gateway.resume import ResumeError, ResumeSession, ResumeStore, parse_content_range
from gateway.s3.access_keys import AccessKeyError, AccessKeyStore
from gateway.tracker import DealTracker

__all__ = ["NATIVE", "NativeContext", "make_native_app"]

VERSION = "deoss 0.1.0"
DELETE_WAIT = 60.0  # DELETE ?wait=1: how long to wait for the chain
MAX_NAME_BYTES = 1024
_FID = re.compile(r"^[0-9a-f]{64}")
_TERRITORY = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,16}$")
_TYPES = mimetypes.MimeTypes(filenames=())  # the built-in table only, not the host's files
_STATES = {
    "pending": "Pending",
    "declared": "Pending",
    "active": "Active",
    "unpaid": "Unpaid",
    "refused": "Refused",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NativeContext:
    def __init__(
        self,
        *,
        service: ObjectService,
        auth: NativeAuth,
        gateway: str,
        default_territory: str | None,
        genesis_hash: str,
        resume: ResumeStore,
        tracker: DealTracker,
        keys: AccessKeyStore | None = None,
        metrics: GatewayMetrics | None = None,
        max_uploads_per_account: int = 8,
        max_uploads: int = 64,
    ) -> None:
        self.max_uploads_per_account = max_uploads_per_account
        self.max_uploads = max_uploads
        self._uploads: dict[str, int] = {}
        self.service = service
        self.tracker = tracker
        self.keys = keys
        self.metrics = metrics or GatewayMetrics()
        self.metrics.gauge(
            "deoss_replay_cache_entries", "Signatures remembered", lambda: len(auth.replay)
        )
        self.metrics.gauge(
            "deoss_resume_sessions", "Resumable uploads open", lambda: resume.open_sessions()
        )
        self.metrics.counter(
            "deoss_fragments_reported",
            "Fragments reported to the chain as failed or corrupt",
            lambda: service.fragments_reported,
        )
        self.resume = resume
        self.auth = auth
        self.gateway = gateway
        self.default_territory = default_territory
        self.genesis_hash = genesis_hash

    @contextlib.contextmanager
    def upload_slot(self, owner: str) -> Iterator[None]:
        """One upload in flight (body being read or placed), within the §1 limits."""
        if sum(self._uploads.values()) >= self.max_uploads:
            raise NativeError(503, "Busy", "the gateway is at its upload limit")
        if self._uploads.get(owner, 0) >= self.max_uploads_per_account:
            raise NativeError(
                429, "TooManyRequests", f"at most {self.max_uploads_per_account} uploads at once"
            )
        self._uploads[owner] = self._uploads.get(owner, 0) + 1
        try:
            yield
        finally:
            self._uploads[owner] -= 1
            if not self._uploads[owner]:
                del self._uploads[owner]


NATIVE = web.AppKey("native", NativeContext)


def envelope(status: int, data: Any, msg: str = "ok", **kwargs: Any) -> web.Response:
    return web.json_response({"code": status, "msg": msg, "data": data}, status=status, **kwargs)


class NativeError(Exception):
    def __init__(self, status: int, error: str, msg: str, **data: Any) -> None:
        super().__init__(msg)
        self.status, self.error, self.msg, self.data = status, error, msg, data


@web.middleware
async def _measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts every answer by route template (never the path: it holds names and fids)."""
    started = time.perf_counter()
    response = await handler(request)
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    metrics = request.app[NATIVE].metrics
    metrics.requests.labels(route, request.method, str(response.status)).inc()
    if (
        request.headers.get("Expect", "").lower() == "100-continue"
        and not request.get("continued")
        and request.content_length
        and not response.prepared
    ):
        response.force_close()  # the body we never asked for may or may not follow
    metrics.seconds.labels(route).observe(time.perf_counter() - started)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NativeError as exc:
        busy = {"Retry-After": "5"} if exc.status in (429, 503) else {}
        return envelope(exc.status, {"error": exc.error, **exc.data}, exc.msg, headers=busy)
    except AuthError as exc:
        request.app[NATIVE].metrics.auth_refusals.labels(exc.code).inc()
        headers = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'DeOSS-Signature realm="deoss"'
        elif exc.status in (429, 503):
            headers["Retry-After"] = "5"
        return envelope(exc.status, {"error": exc.code}, exc.message, headers=headers)
    except (ObjectError, ResumeError) as exc:
        busy = {"Retry-After": "5"} if exc.status in (429, 503) else {}
        return envelope(exc.status, {"error": exc.code}, exc.message, headers=busy)
    except ChainError as exc:
        return envelope(503, {"error": "ChainUnavailable"}, str(exc), headers={"Retry-After": "2"})
    except web.HTTPException as exc:
        if exc.status >= 400:
            error = (
                "MethodNotAllowed"
                if exc.status == 405
                else "NotFound"
                if exc.status == 404
                else exc.reason.replace(" ", "")
            )
            return envelope(exc.status, {"error": error}, exc.reason)
        raise


async def _signer(request: web.Request) -> str:
    return await request.app[NATIVE].auth.authenticate(request.headers)


def _territory(request: web.Request) -> str:
    territory = request.headers.get("Territory") or request.app[NATIVE].default_territory
    if not territory:
        raise NativeError(400, "MissingTerritory", "header Territory is required")
    if not _TERRITORY.match(territory):
        raise NativeError(400, "InvalidTerritory", "Territory is 1..63 of [A-Za-z0-9._-]")
    return territory


def _copies(request: web.Request) -> int | None:
    raw = request.headers.get("Copies")
    if raw is None:
        return None
    if not raw.isdigit():
        raise NativeError(400, "InvalidCopies", "Copies is an integer")
    return int(raw)


def _cipher(request: web.Request) -> str | None:
    cipher = request.headers.get("Cipher")
    if cipher is not None and not 1 <= len(cipher.encode()) <= 256:
        raise NativeError(400, "InvalidCipher", "Cipher is 1..256 bytes")
    return cipher


def _check_name(name: str) -> str:
    if not name:
        raise NativeError(400, "MissingName", "an object needs a name")
    if len(name.encode()) > MAX_NAME_BYTES or "\x00" in name:
        raise NativeError(400, "InvalidName", f"a name is 1..{MAX_NAME_BYTES} bytes")
    return name


def _uploaded(request: web.Request, record: ObjectRecord, copies: int) -> web.Response:
    request.app[NATIVE].metrics.upload_bytes.inc(record.size)
    return envelope(
        200,
        {
            "fid": record.fid,
            "name": record.name,
            "territory": record.territory,
            "size": record.size,
            "stored_bytes": record.stored,
            "copies": copies,
            "state": _STATES.get(record.state, record.state),
        },
    )


async def _defer_continue(request: web.Request) -> None:
    """The routes' Expect handler: no ``100 Continue`` yet. The handler sends it itself
    (``_continue``) once auth, headers, territory and quota have passed, so a refused
    client never sends its body."""


async def _continue(request: web.Request) -> None:
    if request.headers.get("Expect", "").lower() == "100-continue" and request.writer:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request["continued"] = True


async def _after_continue(request: web.Request, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``body``, asking the client for it (100 Continue) only when it is first read: the
    object service reads it after its checks."""
    await _continue(request)
    async for chunk in body:
        yield chunk


async def _store(
    request: web.Request, owner: str, name: str, body: AsyncIterator[bytes], size: int | None
) -> web.Response:
    ctx = request.app[NATIVE]
    territory, copies, cipher = _territory(request), _copies(request), _cipher(request)
    existing = ctx.service.index.find(owner, name)
    if request.headers.get("If-None-Match") == "*" and existing is not None:
        raise NativeError(412, "PreconditionFailed", f"{name!r} exists", fid=existing.fid)
    with ctx.upload_slot(owner):
        record = await ctx.service.put(
            owner=owner,
            territory=territory,
            name=name,
            body=body,
            size_hint=size,
            copies=copies,
            password=cipher,
            content_type=_TYPES.guess_type(name)[0] or "application/octet-stream",
        )
    layout = await ctx.service.layout_for(copies)
    return _uploaded(request, record, layout.n // layout.k)


async def put_object(request: web.Request) -> web.Response:
    owner = await _signer(request)
    name = _check_name(request.match_info["name"])
    if request.content_length is None:
        raise NativeError(411, "LengthRequired", "Content-Length is required")
    body = _after_continue(request, request.content.iter_chunked(1024 * 1024))
    return await _store(request, owner, name, body, request.content_length)


async def put_file(request: web.Request) -> web.Response:
    owner = await _signer(request)
    if request.content_length is None:
        raise NativeError(411, "LengthRequired", "Content-Length is required")
    # The name is inside the form: what can be checked before the body is, then 100.
    await request.app[NATIVE].service.check_upload(
        owner, _territory(request), request.content_length, _copies(request)
    )
    await _continue(request)
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and getattr(part, "name", None) != "file":
            part = await reader.next()
    except (ValueError, AssertionError) as exc:
        raise NativeError(400, "MalformedForm", f"not a multipart form: {exc}") from None
    if not isinstance(part, BodyPartReader):
        raise NativeError(400, "MalformedForm", "no part named file")
    filename = request.headers.get("Filename")
    if filename is not None and "%" in filename:
        filename = urllib.parse.unquote(filename)
    name = _check_name(filename or part.filename or "")

    async def chunks() -> AsyncIterator[bytes]:
        while data := await part.read_chunk(1024 * 1024):
            yield data

    return await _store(request, owner, name, chunks(), request.content_length)


def _fid(request: web.Request) -> tuple[str, str | None]:
    raw = request.match_info["fid"]
    if not _FID.match(raw):
        raise NativeError(400, "InvalidFid", "a fid is 64 lowercase hex characters")
    extension = raw[64:].lstrip(".") or None
    return raw[:64], extension


def _open_type(extension: str | None, format_header: str | None, name: str) -> str:
    """``/file/open``'s Content-Type: from the path's extension, else the DeOSS ``Format``
    header, else the object's name; Python's own table, so every gateway agrees."""
    for candidate in (extension, format_header and format_header.strip().lstrip(".")):
        if candidate and _EXTENSION.match(candidate):
            guess = _TYPES.guess_type(f"x.{candidate}")[0]
            if guess:
                return guess
    return _TYPES.guess_type(name)[0] or "application/octet-stream"


async def _download(request: web.Request, *, inline: bool) -> web.StreamResponse:
    ctx = request.app[NATIVE]
    _, record = await _owned(request)
    fid, extension = _fid(request)
    cipher = _cipher(request)
    unit = ctx.service.index.units(fid)[0]
    if cipher is not None and '"scheme":"cipher"' not in unit.wrapped_key.replace(" ", ""):
        raise NativeError(400, "CipherNotUsed", "this object was stored without a Cipher")
    etag, modified = f'"{fid}"', record.created_at
    validators = {"ETag": etag, "Last-Modified": http_date(modified)}
    failed = precondition(request.headers, etag=etag, last_modified=modified, method=request.method)
    if failed == NOT_MODIFIED:
        return web.Response(
            status=304, headers={**validators, "Cache-Control": "private, no-store"}
        )
    if failed is not None:
        raise NativeError(412, "PreconditionFailed", "a precondition header does not hold")
    header = request.headers.get("Range") or request.headers.get("Content-Range")
    if not range_applies(request.headers, etag=etag, last_modified=modified):
        header = None  # If-Range no longer describes the object: send all of it
    try:
        span = parse_byte_range(header, record.size)
    except ValueError:
        return envelope(
            416,
            {"error": "RangeNotSatisfiable"},
            "range outside the object",
            headers={"Content-Range": f"bytes */{record.size}"},
        )
    start, end = span or (0, record.size)
    content_type = "application/octet-stream"
    if inline:
        content_type = _open_type(extension, request.headers.get("Format"), record.name)
    quoted = urllib.parse.quote(record.name, safe="")
    headers = {
        **validators,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Type": content_type,
        "Content-Disposition": f"{'inline' if inline else 'attachment'}; filename*=UTF-8''{quoted}",
    }
    if inline:
        headers["Content-Security-Policy"] = "sandbox"
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    status = 206 if span is not None else 200
    if request.method == "HEAD":
        return web.Response(status=status, headers={**headers, "Content-Length": str(end - start)})
    if end == start:
        return web.Response(status=status, body=b"", headers=headers)
    pieces = ctx.service.read(record, start, end, cipher)
    first = await anext(pieces)  # a wrong Cipher or no fragments: a clean error, not bytes
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    await response.write(first)
    sent = ctx.metrics.download_bytes
    sent.inc(len(first))
    try:
        async for piece in pieces:
            await response.write(piece)
            sent.inc(len(piece))
    except ObjectError:
        # Bytes are out already: close short so the client sees a truncated body.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def download(request: web.Request) -> web.StreamResponse:
    return await _download(request, inline=False)


async def open_file(request: web.Request) -> web.StreamResponse:
    return await _download(request, inline=True)


async def delete_file(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner, record = await _owned(request)
    fid = record.fid
    records = ctx.service.index.names_of(fid, owner)
    name = request.query.get("name")
    if name is not None:
        records = [r for r in records if r.name == name]
        if not records:
            raise NativeError(404, "NoSuchFile", f"no name {name!r} for {fid}")
    wait = request.query.get("wait", "0")
    if wait not in ("0", "1", "true", "false"):
        raise NativeError(400, "InvalidHeader", "wait is 0 or 1")
    for each in records:
        await ctx.service.delete(each)
    state, block_hash = "deleting", None
    if wait in ("1", "true"):
        done, block_hash = await ctx.tracker.wait_deleted(fid, DELETE_WAIT)
        state = "deleted" if done else "deleting"
    names = [r.name for r in records]
    return envelope(200, {"fid": fid, "names": names, "state": state, "block hash": block_hash})


async def _owned(request: web.Request) -> tuple[str, ObjectRecord]:
    """The signer and the object the path names, which must be the signer's."""
    owner = await _signer(request)
    fid, _ = _fid(request)
    try:
        return owner, request.app[NATIVE].service.lookup(fid, owner)
    except ObjectError:
        raise NativeError(404, "NoSuchFile", f"no file {fid}") from None


def _record_json(record: ObjectRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "fid": record.fid,
        "territory": record.territory,
        "size": record.size,
        "stored_bytes": record.stored,
        "state": _STATES.get(record.state, record.state),
        "created": record.created_at,
    }


async def metadata(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner, record = await _owned(request)
    fid = record.fid
    names = ctx.service.index.names_of(fid, owner)
    unit = ctx.service.index.units(fid)[0]
    return envelope(
        200,
        {
            **_record_json(record),
            "owner": [
                {"user": owner, "file_name": r.name, "territory": r.territory} for r in names
            ],
            "names": [r.name for r in names],
            "copies": record.total_shards // record.data_shards,
            "data_shards": record.data_shards,
            "total_shards": record.total_shards,
            "segments": len(ctx.service.index.segments(fid)),
            "content_type": record.content_type,
            "cipher": '"scheme":"cipher"' in unit.wrapped_key.replace(" ", ""),
        },
    )


async def location(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    _, record = await _owned(request)
    fid = record.fid
    segments = []
    for segment in ctx.service.index.segments(fid):
        fragments = []
        for placement in ctx.service.index.fragments(fid, segment.seg_no):
            miner = (await ctx.service.directory.miners()).get(placement.miner)
            fragments.append(
                {
                    "index": placement.idx,
                    "id": placement.fragment_id,
                    "size": placement.size,
                    "miner": placement.miner,
                    "endpoint": miner.endpoint if miner else None,
                }
            )
        segments.append({"index": segment.seg_no, "id": segment.segment_id, "fragments": fragments})
    return envelope(
        200, {"fid": fid, "state": _STATES.get(record.state, record.state), "segments": segments}
    )


async def list_files(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner = await _signer(request)
    claimed = request.query.get("Account") or request.headers.get("Account")
    if claimed is not None and claimed != owner and not owner.endswith(claimed[-8:]):
        raise NativeError(403, "NotOwner", "list your own files")
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise NativeError(400, "InvalidPagination", "limit is 1..1000")
    territory = request.query.get("territory") or request.headers.get("Territory")
    start_after = request.query.get("start_after", "")
    records = [
        r
        for r in ctx.service.index.objects_by_name(owner, start_after, int(raw_limit) + 1)
        if territory is None or r.territory == territory
    ]
    more = len(records) > int(raw_limit)
    records = records[: int(raw_limit)]
    headers = {}
    if more and records:
        following = urllib.parse.urlencode({"start_after": records[-1].name, "limit": raw_limit})
        headers["Link"] = f'</file/list?{following}>; rel="next"'
    return envelope(200, [_record_json(r) for r in records], headers=headers)


def _progress(session: ResumeSession, content_range: str | None) -> web.Response:
    """Where a resumable upload stands: 308 until every byte is stored."""
    headers = {"Range": f"bytes=0-{session.stored - 1}"} if session.stored else {}
    if content_range:
        headers["Content-Range"] = content_range
    return envelope(
        308,
        {"stored": session.stored, "total": session.total},
        "resume incomplete",
        headers=headers,
    )


async def put_resume(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner = await _signer(request)
    name = _check_name(request.match_info["name"])
    content_range = request.headers.get("Content-Range")
    start, end, total = parse_content_range(content_range)
    session = ctx.resume.session(owner, name)
    if start is None or end is None:  # "bytes */total": where does it stand?
        if session is None:
            raise NativeError(404, "NoSuchSession", f"no upload of {name!r} in progress")
        if session.complete:
            return envelope(200, {"fid": session.fid, "name": name, "state": "Pending"})
        return _progress(session, None)
    length = end - start + 1
    if request.content_length != length:
        raise NativeError(400, "IncompleteBody", f"Content-Length must be {length}")
    with ctx.upload_slot(owner):
        ctx.resume.acquire(owner, name)
        try:
            copies = _copies(request)
            if start == 0 and (session is None or session.complete or session.total != total):
                territory = _territory(request)
                await ctx.service.check_upload(owner, territory, total, copies)
                session = ctx.resume.open(
                    owner,
                    name,
                    total,
                    territory,
                    copies,
                    request.headers.get("If-None-Match") == "*",
                )
            elif session is None or session.complete:
                raise NativeError(409, "ChunkGap", "no upload in progress: start at byte 0")
            elif (
                total != session.total
                or (request.headers.get("Territory") not in (None, session.territory))
                or (copies is not None and copies != session.copies)
            ):
                raise NativeError(409, "SessionMismatch", "total, Territory and Copies are fixed")
            session = await ctx.resume.append(
                session,
                start,
                _after_continue(request, request.content.iter_chunked(2**20)),
                length,
            )
            if session.stored < session.total:
                return _progress(session, content_range)
            if session.create_only and ctx.service.index.find(owner, name) is not None:
                raise NativeError(412, "PreconditionFailed", f"{name!r} exists")
            record = await ctx.service.put(
                owner=owner,
                territory=session.territory,
                name=name,
                body=ctx.resume.plaintext(session),
                size_hint=session.total,
                copies=session.copies,
                password=_cipher(request),
                content_type=_TYPES.guess_type(name)[0] or "application/octet-stream",
            )
            ctx.resume.complete(session, record.fid)
            layout = await ctx.service.layout_for(session.copies)
            return _uploaded(request, record, layout.n // layout.k)
        finally:
            ctx.resume.release(owner, name)


async def get_resume(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner = await _signer(request)
    name = _check_name(request.match_info["name"])
    session = ctx.resume.session(owner, name)
    if session is None:
        raise NativeError(404, "NoSuchSession", f"no upload of {name!r}")
    headers = {"Range": f"bytes=0-{session.stored - 1}"} if session.stored else {}
    return envelope(
        200,
        {
            "name": name,
            "total": session.total,
            "stored": session.stored,
            "territory": session.territory,
            "copies": session.copies,
            "complete": session.complete,
            "fid": session.fid,
            "expires": int(session.updated_at + ctx.resume.ttl),
        },
        headers=headers,
    )


async def delete_resume(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner = await _signer(request)
    name = _check_name(request.match_info["name"])
    session = ctx.resume.session(owner, name)
    if session is None:
        raise NativeError(404, "NoSuchSession", f"no upload of {name!r}")
    ctx.resume.abort(session)
    return envelope(200, {"name": name, "aborted": not session.complete})


async def version(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    params = ctx.service.params
    return envelope(
        200,
        {
            "version": VERSION,
            "api": 1,
            "gateway": ctx.gateway,
            "genesis_hash": ctx.genesis_hash,
            "data_shards": params.data_shards,
            "total_shards": params.total_shards,
        },
    )


async def health(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    service = ctx.service
    reasons, best = [], None
    try:
        best = (await service.chain.head()).best_block
        positive = len(await service.directory.miners())
    except ChainError:
        reasons.append("chain unreachable")
        positive = 0
    if positive < service.params.data_shards:
        reasons.append(f"{positive} positive miners, fewer than k = {service.params.data_shards}")
    status = 503 if reasons else 200
    return envelope(
        status,
        {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "gateway": ctx.gateway,
            "best_block": best,
            "chain_reachable": best is not None,
            "positive_miners": positive,
            "outbox_pending": service.index.count_names(PENDING),
            "unpaid_objects": service.index.count_names(UNPAID),
            "resume_sessions": ctx.resume.open_sessions(),
        },
    )


def _key_store(request: web.Request) -> AccessKeyStore:
    keys = request.app[NATIVE].keys
    if keys is None:
        raise NativeError(501, "NotImplemented", "this gateway serves no S3 API")
    return keys


async def create_key(request: web.Request) -> web.Response:
    """A new S3 access key of the signer (docs/s3.md §2): the secret is shown once."""
    owner = await _signer(request)
    raw = await request.content.read(4097)
    label = ""
    if raw.strip():
        try:
            body = json.loads(raw) if len(raw) <= 4096 else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("label", ""), str):
            raise NativeError(400, "InvalidBody", 'the body is {"label": "<text>"} or empty')
        label = body.get("label", "")
    try:
        access_key, secret = _key_store(request).create(owner, label)
    except AccessKeyError as exc:
        raise NativeError(exc.status, exc.code, exc.message) from None
    return envelope(200, {"access_key": access_key, "secret_key": secret, "owner": owner})


async def list_keys(request: web.Request) -> web.Response:
    owner = await _signer(request)
    rows = _key_store(request).list(owner)
    return envelope(
        200,
        [
            {
                "access_key": r.access_key,
                "label": r.label,
                "created": r.created_at,
                "revoked": r.revoked,
            }
            for r in rows
        ],
    )


async def revoke_key(request: web.Request) -> web.Response:
    owner = await _signer(request)
    access_key = request.match_info["access_key"]
    try:
        _key_store(request).revoke(owner, access_key)
    except AccessKeyError as exc:
        raise NativeError(exc.status, exc.code, exc.message) from None
    return envelope(200, {"access_key": access_key, "revoked": True})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; no signature (it names no account, object or fid)."""
    registry = request.app[NATIVE].metrics.registry
    body = await asyncio.to_thread(generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def not_implemented(request: web.Request) -> web.Response:
    raise NativeError(501, "NotImplemented", f"{request.method} {request.path} is not served")


def make_native_app(
    context: NativeContext, extra_routes: list[web.RouteDef] | None = None
) -> web.Application:
    app = web.Application(middlewares=[_measured, _errors], client_max_size=1024**2)
    app[NATIVE] = context
    app.router.add_put("/object/{name:.*}", put_object, expect_handler=_defer_continue)
    app.router.add_put("/file", put_file, expect_handler=_defer_continue)
    app.router.add_get("/file/download/{fid}", download)
    app.router.add_get("/file/open/{fid}", open_file)
    app.router.add_delete("/file/{fid}", delete_file)
    app.router.add_get("/file/metadata/{fid}", metadata)
    app.router.add_get("/file/location/{fid}", location)
    app.router.add_get("/file/list", list_files)
    app.router.add_get("/version", version)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/keys", create_key)
    app.router.add_get("/keys", list_keys)
    app.router.add_delete("/keys/{access_key}", revoke_key)
    app.router.add_put("/resume/{name:.*}", put_resume, expect_handler=_defer_continue)
    app.router.add_get("/resume/{name:.*}", get_resume)
    app.router.add_delete("/resume/{name:.*}", delete_resume)
    app.router.add_put("/files", not_implemented)
    app.router.add_get("/fragment/download", not_implemented)
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app
