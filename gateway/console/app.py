"""The web console's routes, its two middlewares (refusals as pages; sessions and CSRF),
its static files and its security headers (docs/console.md §1).

It is a sub-application of the native API, under ``/console``: the native app's own
middlewares still count every answer and turn a crash into the logged 500.
"""

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.console.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Authorizations, Sessions
from gateway.console.config import ConsoleConfig
from gateway.console.context import CONSOLE, FORM_TYPE, SESSION, ConsoleState, form_of
from gateway.console.errors import ConsoleError
from gateway.console.events import RestoralHistory
from gateway.console.login import COOKIE_PATH, login, login_page, logout, require_session
from gateway.console.network import challenges_page, health_page, miners_page, restoral_page
from gateway.console.objects import (
    deals_page,
    delete_object,
    download_object,
    object_state,
    objects_page,
    upload_object,
)
from gateway.console.pages import SECURITY_HEADERS, error_page, html_response, redirect
from gateway.console.territories import territories_page
from gateway.native.context import NativeContext
from gateway.native.errors import as_native_error

__all__ = ["PREFIX", "add_console", "make_console_app"]

log = logging.getLogger("deoss.console")
PREFIX: Final = "/console"
STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_TYPES: Final = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
# Routes that need no session, and routes whose answers (refusals too) are JSON.
PUBLIC: Final = frozenset({"index", "index_bare", "login_page", "login", "static"})
JSON_ROUTES: Final = frozenset({"upload_object", "object_state"})
_NAMES: Final = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refusal(request: web.Request, error: ConsoleError) -> web.Response:
    state = request.app[CONSOLE]
    headers = error.headers
    route = request.match_info.route.name
    if route in JSON_ROUTES:
        body = {"error": error.code, "message": error.message}
        return web.json_response(body, status=error.status, headers=headers)
    session = request.get(SESSION)
    csrf = state.sessions.csrf_token(session) if session is not None else ""
    text = error_page(
        status=error.status,
        code=error.code,
        message=error.message,
        gateway=state.native.gateway,
        session=session,
        csrf=csrf,
    )
    return html_response(text, status=error.status, headers=headers)


@web.middleware
async def _refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal of a console route as a page (or JSON for the page's script), with
    the status it names; what no table names (a bug) goes on to the native 500."""
    try:
        return await handler(request)
    except ConsoleError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        code = _NAMES.get(exc.status, exc.reason.replace(" ", ""))
        error = ConsoleError(exc.status, code, exc.reason, headers=allow)
    except Exception as exc:
        found = as_native_error(exc)
        if found is None:
            raise
        error = ConsoleError(found.status, found.error, found.msg, headers=found.headers)
    return _refusal(request, error)


@web.middleware
async def _sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A console route but the login and the static files needs a live session, and a
    POST needs that session's CSRF token (a form field, or the upload's header)."""
    route = request.match_info.route.name
    if route is None or route in PUBLIC:  # None: no such route, a 404 anyway
        return await handler(request)
    state = request.app[CONSOLE]
    try:
        session = await require_session(request, state)
    except ConsoleError as exc:
        if exc.status == 401 and request.method in ("GET", "HEAD") and route not in JSON_ROUTES:
            response = redirect(f"{PREFIX}/login")
            if SESSION_COOKIE in request.cookies:
                response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
            return response
        raise
    request[SESSION] = session
    if request.method == "POST":
        token = request.headers.get(CSRF_HEADER)
        if token is None and request.content_type == FORM_TYPE:
            token = (await form_of(request)).get(CSRF_FIELD)
        state.sessions.check_csrf(session, token)
    return await handler(request)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def index(request: web.Request) -> web.Response:
    return redirect(f"{PREFIX}/objects")


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Each static file's bytes and ETag, read once when the app is made. A file missing
    from an installed package leaves the console without it (a 404), not the gateway
    without a native API."""
    files = {}
    for name in STATIC_TYPES:
        try:
            data = (STATIC_DIR / name).read_bytes()
        except OSError as exc:
            log.error("console: %s is missing (%s): install the package with its data", name, exc)
            continue
        files[name] = (data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
    return files


def _static_handler(files: dict[str, tuple[bytes, str]]) -> Handler:
    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:  # only the files named above: never a path on disk
            raise ConsoleError(404, "NotFound", "no such console file")
        data, etag = files[name]
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=data, content_type=STATIC_TYPES[name], charset="utf-8", headers=headers
        )

    return static


async def _follow_history(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[CONSOLE].history.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def make_console_app(native: NativeContext, config: ConsoleConfig | None = None) -> web.Application:
    config = config or ConsoleConfig()
    chain = native.service.chain

    async def is_authorized(owner: str) -> bool:
        return bool(await chain.query("oss.is_authorized", owner=owner, gateway=native.gateway))

    app = web.Application(middlewares=[_refusals, _sessions])
    app[CONSOLE] = ConsoleState(
        native=native,
        config=config,
        sessions=Sessions(ttl=config.session_ttl, login_ttl=config.login_ttl),
        authorizations=Authorizations(is_authorized),
        history=RestoralHistory(chain, history_blocks=config.history_blocks),
    )
    app.cleanup_ctx.append(_follow_history)
    app.on_response_prepare.append(_security_headers)
    for method, path, handler in (
        ("GET", "", index),
        ("GET", "/", index),
        ("GET", "/login", login_page),
        ("POST", "/login", login),
        ("POST", "/logout", logout),
        ("GET", "/objects", objects_page),
        ("GET", "/objects/download", download_object),
        ("GET", "/objects/state", object_state),
        ("POST", "/objects/upload", upload_object),
        ("POST", "/objects/delete", delete_object),
        ("GET", "/deals", deals_page),
        ("GET", "/territories", territories_page),
        ("GET", "/miners", miners_page),
        ("GET", "/challenges", challenges_page),
        ("GET", "/restoral", restoral_page),
        ("GET", "/health", health_page),
    ):
        name = handler.__name__ if path != "" else "index_bare"
        add = app.router.add_get if method == "GET" else app.router.add_post
        add(path, handler, name=name)
    app.router.add_get("/static/{name}", _static_handler(_static_files()), name="static")
    return app


def add_console(
    app: web.Application, native: NativeContext, config: ConsoleConfig | None = None
) -> None:
    """Mounts the console on the native API's ``app`` under ``/console``, unless
    ``[console] enabled = false``."""
    config = config or ConsoleConfig()
    if config.enabled:
        app.add_subapp(PREFIX, make_console_app(native, config))
