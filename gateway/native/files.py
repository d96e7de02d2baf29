"""The native API's object routes (docs/native-api.md §5, §7, §8): uploads, downloads
with ranges and conditionals, delete, metadata, location, listing."""

import urllib.parse
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from chain_client.strict import ascii_int
from gateway.conditional import (
    NOT_MODIFIED,
    http_date,
    parse_byte_range,
    precondition,
    range_applies,
)
from gateway.expect import after_continue, send_continue
from gateway.native.context import NATIVE, STATES, record_json, uploaded
from gateway.native.errors import NativeError, envelope
from gateway.native.params import (
    EXTENSION,
    TYPES,
    check_name,
    cipher_of,
    copies_of,
    digest_checked,
    fid_in_path,
    owned,
    signer,
    territory_of,
    unsigned_stream,
)
from gateway.records import NameWrite, WriteCondition
from gateway.streaming import stream_pieces

__all__ = [
    "DELETE_WAIT",
    "delete_file",
    "download",
    "list_files",
    "location",
    "metadata",
    "open_file",
    "put_file",
    "put_object",
]

DELETE_WAIT = 60.0  # DELETE ?wait=1: how long to wait for the chain


async def _store(
    request: web.Request, owner: str, name: str, body: AsyncIterator[bytes], size: int | None
) -> web.Response:
    ctx = request.app[NATIVE]
    territory, copies, cipher = territory_of(request), copies_of(request), cipher_of(request)
    existing = ctx.service.index.find(owner, name)
    create_only = request.headers.get("If-None-Match") == "*"
    if create_only and existing is not None:
        raise NativeError(412, "PreconditionFailed", f"{name!r} exists", fid=existing.object_id)
    with ctx.upload_slot(owner):
        record = await ctx.service.put(
            owner=owner,
            territory=territory,
            name=name,
            body=body,
            size_hint=size,
            copies=copies,
            secret=cipher,
            content_type=TYPES.guess_type(name)[0] or "application/octet-stream",
            write=NameWrite(condition=WriteCondition(if_none_match=create_only)),
        )
    layout = await ctx.service.layout_for(copies)
    return uploaded(request, record, layout.n // layout.k)


async def put_object(request: web.Request) -> web.Response:
    owner = await signer(request, streamed=True)
    name = check_name(request.match_info["name"])
    if request.content_length is None:
        raise NativeError(411, "LengthRequired", "Content-Length is required")
    body = digest_checked(
        request, after_continue(request, request.content.iter_chunked(1024 * 1024))
    )
    return await _store(request, owner, name, body, request.content_length)


async def put_file(request: web.Request) -> web.Response:
    owner = await signer(request, streamed=True)
    unsigned_stream(request)
    if request.content_length is None:
        raise NativeError(411, "LengthRequired", "Content-Length is required")
    # The name is inside the form: what can be checked before the body is, then 100.
    await request.app[NATIVE].service.check_upload(
        owner, territory_of(request), request.content_length, copies_of(request)
    )
    await send_continue(request)
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
    name = check_name(filename or part.filename or "")

    async def chunks() -> AsyncIterator[bytes]:
        while data := await part.read_chunk(1024 * 1024):
            yield data

    return await _store(request, owner, name, chunks(), request.content_length)


def _open_type(extension: str | None, format_header: str | None, name: str) -> str:
    """``/file/open``'s Content-Type: from the path's extension, else the DeOSS ``Format``
    header, else the object's name; Python's own table, so every gateway agrees."""
    for candidate in (extension, format_header and format_header.strip().lstrip(".")):
        if candidate and EXTENSION.match(candidate):
            guess = TYPES.guess_type(f"x.{candidate}")[0]
            if guess:
                return guess
    return TYPES.guess_type(name)[0] or "application/octet-stream"


async def _download(request: web.Request, *, inline: bool) -> web.StreamResponse:
    ctx = request.app[NATIVE]
    _, record = await owned(request)
    fid, extension = fid_in_path(request)
    cipher = cipher_of(request)
    unit = ctx.service.index.units(record.fid, record.slot)[0]
    if cipher is not None and unit.wrapped_key.scheme != "cipher":
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
    return await stream_pieces(
        request,
        ctx.service.read(record, start, end, cipher),
        status=status,
        headers=headers,
        length=end - start,
        sent=ctx.metrics.download_bytes.inc,
    )


async def download(request: web.Request) -> web.StreamResponse:
    return await _download(request, inline=False)


async def open_file(request: web.Request) -> web.StreamResponse:
    return await _download(request, inline=True)


async def delete_file(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    _, record = await owned(request)
    fid = record.object_id
    records = ctx.service.index.names_of(record)
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
        done, block_hash = await ctx.tracker.wait_deleted(record.fid, DELETE_WAIT)
        state = "deleted" if done else "deleting"
    names = [r.name for r in records]
    return envelope(200, {"fid": fid, "names": names, "state": state, "block hash": block_hash})


async def metadata(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner, record = await owned(request)
    fid = record.fid
    names = ctx.service.index.names_of(record)
    unit = ctx.service.index.units(fid, record.slot)[0]
    return envelope(
        200,
        {
            **record_json(record),
            "owner": [
                {"user": owner, "file_name": r.name, "territory": r.territory} for r in names
            ],
            "names": [r.name for r in names],
            "copies": record.total_shards // record.data_shards,
            "data_shards": record.data_shards,
            "total_shards": record.total_shards,
            "segments": len(ctx.service.index.segments(fid)),
            "content_type": record.content_type,
            "cipher": unit.wrapped_key.scheme == "cipher",
        },
    )


async def location(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    _, record = await owned(request)
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
        200, {"fid": fid, "state": STATES.get(record.state, record.state), "segments": segments}
    )


async def list_files(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner = await signer(request)
    claimed = request.query.get("Account") or request.headers.get("Account")
    if claimed is not None and claimed != owner and not owner.endswith(claimed[-8:]):
        raise NativeError(403, "NotOwner", "list your own files")
    limit = ascii_int(request.query.get("limit", "100"), max_digits=4)
    if limit is None or not 1 <= limit <= 1000:
        raise NativeError(400, "InvalidPagination", "limit is 1..1000")
    territory = request.query.get("territory") or request.headers.get("Territory")
    start_after = request.query.get("start_after", "")
    records = [
        r
        for r in ctx.service.index.objects_by_name(owner, start_after, limit + 1)
        if territory is None or r.territory == territory
    ]
    more = len(records) > limit
    records = records[:limit]
    headers = {}
    if more and records:
        following = urllib.parse.urlencode({"start_after": records[-1].name, "limit": limit})
        headers["Link"] = f'</file/list?{following}>; rel="next"'
    return envelope(200, [record_json(r) for r in records], headers=headers)
