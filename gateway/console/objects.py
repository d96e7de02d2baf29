"""The user's objects (docs/console.md §4.1, §4.2): listing and search by prefix,
download, delete, upload with progress (the page's script streams the file to the upload
route), and each object's deal on chain."""

import asyncio
import urllib.parse
from typing import Any, Final

from aiohttp import web

from chain_client.errors import ChainError
from gateway.console.context import CONSOLE, form_of, query_text, session_of
from gateway.console.errors import ConsoleError
from gateway.console.html import Html, bytes_text, join, render, url, when
from gateway.console.pages import cell, html_response, page, redirect, short, table
from gateway.native.context import STATES
from gateway.native.params import TERRITORY, TYPES, check_name
from gateway.records import PENDING, UNPAID, ObjectRecord
from gateway.streaming import stream_pieces

__all__ = [
    "PAGE_SIZE",
    "deals_page",
    "delete_object",
    "download_object",
    "object_state",
    "objects_page",
    "upload_object",
]

PAGE_SIZE: Final = 50
CHUNK: Final = 1024 * 1024

_UPLOAD: Final = """<section class="upload">
<h2>Upload</h2>
<form id="upload-form" data-upload="/console/objects/upload" data-state="/console/objects/state">
<label>File <input type="file" name="file" required></label>
<label>Name <input name="name" placeholder="the file's name" maxlength="1024"></label>
<label>Territory <select name="territory">{options}</select></label>
<button type="submit">Upload</button>
</form>
<p class="progress"><progress id="upload-progress" max="1" value="0"></progress>
<span id="upload-percent"></span></p>
<p id="upload-status" role="status"></p>
</section>
"""
_SEARCH: Final = """<form method="get" action="/console/objects" class="search">
<label>Names beginning with <input name="prefix" value="{prefix}" maxlength="1024"></label>
<button type="submit">Search</button>
</form>
"""
_ACTIONS: Final = """<a href="{download}" class="download">Download</a>
<form method="post" action="/console/objects/delete" class="delete" data-confirm="Delete {name}?">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="name" value="{name}">
<input type="hidden" name="prefix" value="{prefix}">
<button type="submit">Delete</button>
</form>"""


def state_of(record: ObjectRecord) -> str:
    return STATES.get(record.state, record.state)


def _state_cell(state: str) -> Html:
    return render(
        '<span class="state state-{kind}">{state}</span>', kind=state.lower(), state=state
    )


async def _territories(request: web.Request, owner: str) -> list[str]:
    """The owner's active territories, the gateway's default first; only the default
    when the chain does not answer (the page still lists objects)."""
    native = request.app[CONSOLE].native
    names = [native.default_territory] if native.default_territory else []
    try:
        found = await native.service.chain.query("storage_handler.territories", owner=owner)
    except ChainError:
        return names
    names += [t["name"] for t in found if t["state"] == "active" and t["name"] not in names]
    return names


async def objects_page(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    session = session_of(request)
    csrf = state.sessions.csrf_token(session)
    prefix = query_text(request, "prefix") or ""
    after = query_text(request, "after") or ""
    records = state.native.service.index.objects_by_name(
        session.account, after, PAGE_SIZE + 1, prefix=prefix
    )
    more, records = len(records) > PAGE_SIZE, records[:PAGE_SIZE]
    rows = [
        [
            cell(record.name, title=record.name, kind="name"),
            bytes_text(record.size),
            _state_cell(state_of(record)),
            record.territory,
            when(record.created_at),
            cell(short(record.object_id), title=record.object_id, kind="fid"),
            render(
                _ACTIONS,
                download=url("/console/objects/download", name=record.name),
                name=record.name,
                csrf=csrf,
                prefix=prefix,
            ),
        ]
        for record in records
    ]
    parts = []
    deleted = query_text(request, "deleted")
    if deleted:
        parts.append(render('<p class="notice" role="status">Deleted {name}.</p>', name=deleted))
    options = join(
        render('<option value="{name}">{name}</option>', name=name)
        for name in await _territories(request, session.account)
    )
    parts += [
        render(_UPLOAD, options=options),
        render(_SEARCH, prefix=prefix),
        table(
            ["Name", "Size", "State", "Territory", "Created", "fid", ""],
            rows,
            empty="No objects" + (" with that prefix." if prefix else " yet."),
            name="objects",
        ),
    ]
    if more:
        following = url("/console/objects", prefix=prefix, after=records[-1].name)
        parts.append(render('<p><a href="{href}" rel="next">Next page</a></p>', href=following))
    body = page(
        name="objects",
        title="Objects",
        body=join(parts),
        gateway=state.native.gateway,
        session=session,
        csrf=csrf,
    )
    return html_response(body)


def _named(request: web.Request, name: str | None) -> ObjectRecord:
    if name is None:
        raise ConsoleError(400, "MissingName", "name the object")
    record = request.app[CONSOLE].native.service.index.find(
        session_of(request).account, check_name(name)
    )
    if record is None:
        raise ConsoleError(404, "NoSuchObject", f"you have no object named {name!r}")
    return record


async def download_object(request: web.Request) -> web.StreamResponse:
    native = request.app[CONSOLE].native
    record = _named(request, query_text(request, "name"))
    filename = record.name.rsplit("/", 1)[-1] or "object"
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": (
            f"attachment; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"
        ),
        "ETag": f'"{record.object_id}"',
    }
    if record.size == 0:
        return web.Response(body=b"", headers=headers)
    # A Cipher or SSE-C object refuses here, before the answer starts (403 CipherRequired).
    return await stream_pieces(
        request,
        native.service.read(record, 0, record.size, None),
        status=200,
        headers=headers,
        length=record.size,
        sent=native.metrics.download_bytes.inc,
    )


async def delete_object(request: web.Request) -> web.Response:
    form = await form_of(request)
    record = _named(request, form.get("name"))
    await request.app[CONSOLE].native.service.delete(record)
    prefix = form.get("prefix", "")
    return redirect(url("/console/objects", prefix=prefix, deleted=record.name))


async def upload_object(request: web.Request) -> web.Response:
    """The page's script sends the file as the raw body (so that XMLHttpRequest reports
    upload progress), its name and territory in the query; the answer is JSON."""
    native = request.app[CONSOLE].native
    owner = session_of(request).account
    name = check_name(query_text(request, "name") or "")
    territory = query_text(request, "territory") or native.default_territory or ""
    if not TERRITORY.match(territory):
        raise ConsoleError(400, "InvalidTerritory", "territory is 1..63 of [A-Za-z0-9._-]")
    if request.content_length is None:
        raise ConsoleError(411, "LengthRequired", "Content-Length is required")
    with native.upload_slot(owner):
        record = await native.service.put(
            owner=owner,
            territory=territory,
            name=name,
            body=request.content.iter_chunked(CHUNK),
            size_hint=request.content_length,
            content_type=TYPES.guess_type(name)[0] or "application/octet-stream",
        )
    native.metrics.upload_bytes.inc(record.size)
    return web.json_response(_state_json(record))


async def object_state(request: web.Request) -> web.Response:
    return web.json_response(_state_json(_named(request, query_text(request, "name"))))


def _state_json(record: ObjectRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "fid": record.object_id,
        "size": record.size,
        "territory": record.territory,
        "state": state_of(record),
    }


async def deals_page(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    session = session_of(request)
    index, chain = state.native.service.index, state.native.service.chain
    after = query_text(request, "after") or ""
    records = index.objects_by_name(session.account, after, PAGE_SIZE + 1)
    more, records = len(records) > PAGE_SIZE, records[:PAGE_SIZE]
    fids = sorted({r.fid for r in records})
    files = dict(
        zip(
            fids,
            await asyncio.gather(*(chain.query("file_bank.file", fid=f) for f in fids)),
            strict=True,
        )
    )
    rows = []
    for record in records:
        file = files.get(record.fid)
        fragments = [f for s in (file or {}).get("segments", []) for f in s["fragments"]]
        reported = sum(1 for f in fragments if f["reported"])
        rows.append(
            [
                cell(record.name, title=record.name, kind="name"),
                cell(short(record.fid), title=record.fid, kind="fid"),
                _state_cell(state_of(record)),
                "not declared yet" if file is None else file["state"],
                "—" if file is None else f"{reported} / {len(fragments)}",
                "—" if file is None else file["declared_at"],
                "—" if file is None or file["state"] == "active" else file["deadline"],
                "—" if file is None else file["timeouts"],
                "—" if file is None or file["completed_at"] is None else file["completed_at"],
            ]
        )
    summary = render(
        '<p class="summary">Waiting in this gateway\'s outbox: {pending} names; '
        "unpaid (the territory was full): {unpaid}.</p>",
        pending=index.count_names(PENDING),
        unpaid=index.count_names(UNPAID),
    )
    parts = [
        summary,
        table(
            [
                "Name",
                "fid",
                "Gateway",
                "Chain",
                "Fragments reported",
                "Declared (block)",
                "Deadline (block)",
                "Timeouts",
                "Active since (block)",
            ],
            rows,
            empty="No deals: upload an object first.",
            name="deals",
        ),
    ]
    if more:
        following = url("/console/deals", after=records[-1].name)
        parts.append(render('<p><a href="{href}" rel="next">Next page</a></p>', href=following))
    csrf = state.sessions.csrf_token(session)
    body = page(
        name="deals",
        title="Deals",
        body=join(parts),
        gateway=state.native.gateway,
        session=session,
        csrf=csrf,
    )
    return html_response(body)
