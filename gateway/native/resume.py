"""The native API's resumable uploads (docs/native-api.md §6): ``PUT|GET|HEAD|DELETE
/resume/{name}``."""

from aiohttp import web

from gateway.expect import after_continue
from gateway.native.context import NATIVE, uploaded
from gateway.native.errors import NativeError, envelope
from gateway.native.params import (
    SIGNED,
    TYPES,
    check_name,
    cipher_of,
    copies_of,
    signer,
    territory_of,
)
from gateway.native.resume_store import ResumeSession, parse_content_range
from gateway.records import NameWrite, WriteCondition

__all__ = [
    "delete_resume",
    "get_resume",
    "put_resume",
]


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
    owner = await signer(request, streamed=True)
    name = check_name(request.match_info["name"])
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
            copies = copies_of(request)
            # Before a byte is stored: a bad cipher header refused only at the commit
            # left the session holding the chunk it came with.
            secret = cipher_of(request)
            if start == 0 and (session is None or session.complete or session.total != total):
                territory = territory_of(request)
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
                after_continue(request, request.content.iter_chunked(2**20)),
                length,
                sha256=request[SIGNED].body_sha256,
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
                secret=secret,
                content_type=TYPES.guess_type(name)[0] or "application/octet-stream",
                write=NameWrite(condition=WriteCondition(if_none_match=session.create_only)),
            )
            ctx.resume.complete(session, record.fid)
            layout = await ctx.service.layout_for(session.copies)
            return uploaded(request, record, layout.n // layout.k)
        finally:
            ctx.resume.release(owner, name)


async def get_resume(request: web.Request) -> web.Response:
    ctx = request.app[NATIVE]
    owner = await signer(request)
    name = check_name(request.match_info["name"])
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
    owner = await signer(request)
    name = check_name(request.match_info["name"])
    session = ctx.resume.session(owner, name)
    if session is None:
        raise NativeError(404, "NoSuchSession", f"no upload of {name!r}")
    ctx.resume.abort(session)
    return envelope(200, {"name": name, "aborted": not session.complete})
