"""The native (DeOSS-compatible) HTTP API: docs/native-api.md.

Every answer is the ``{code, msg, data}`` envelope with ``code`` equal to the real HTTP
status; errors carry their machine-readable name in ``data.error``. Domain errors are
translated here and nowhere else.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chain_client.errors import ChainError
from gateway.console import ConsoleConfig, add_console
from gateway.expect import close_if_unasked, defer_continue
from gateway.native.auth import AuthError
from gateway.native.context import NATIVE, NativeContext
from gateway.native.errors import NativeError, as_native_error, envelope
from gateway.native.files import (
    delete_file,
    download,
    list_files,
    location,
    metadata,
    open_file,
    put_file,
    put_object,
)
from gateway.native.keys import create_key, list_keys, revoke_key
from gateway.native.resume import delete_resume, get_resume, put_resume
from gateway.records import PENDING, UNPAID

__all__ = ["NATIVE", "NativeContext", "make_native_app"]

VERSION = "deoss 0.1.0"


log = logging.getLogger("deoss.native")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def _measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts every answer by route template (never the path: it holds names and fids)."""
    started = time.perf_counter()
    response = await handler(request)
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    metrics = request.app[NATIVE].metrics
    metrics.requests.labels(route, request.method, str(response.status)).inc()
    if not response.prepared:
        close_if_unasked(request, response)
    metrics.seconds.labels(route).observe(time.perf_counter() - started)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place a refusal becomes an answer (docs/native-api.md §3)."""
    request_id = secrets.token_hex(8).upper()
    request[REQUEST_ID] = request_id
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        error = NativeError(
            exc.status,
            names.get(exc.status, exc.reason.replace(" ", "")),
            exc.reason,
            headers={name: exc.headers[name] for name in ("Allow",) if name in exc.headers},
        )
    except Exception as exc:
        found = as_native_error(exc)
        if found is None:
            log.exception(
                "internal error %s %s (request %s)", request.method, request.path, request_id
            )
            found = NativeError(
                500, "InternalError", f"an internal error; please retry, quoting {request_id}"
            )
        elif isinstance(exc, AuthError):
            request.app[NATIVE].metrics.auth_refusals.labels(exc.code).inc()
        elif found.error == "IncompleteBody":
            log.info("%s %s: the body broke off: %r", request.method, request.path, exc)
        error = found
    return error.response()


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, streamed ones too, names its request (quote it when reporting)."""
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]


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


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; no signature (it names no account, object or fid)."""
    registry = request.app[NATIVE].metrics.registry
    body = await asyncio.to_thread(generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def not_implemented(request: web.Request) -> web.Response:
    raise NativeError(501, "NotImplemented", f"{request.method} {request.path} is not served")


def make_native_app(
    context: NativeContext,
    extra_routes: list[web.RouteDef] | None = None,
    console: ConsoleConfig | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_measured, _errors], client_max_size=1024**2)
    app[NATIVE] = context
    app.on_response_prepare.append(_request_id)
    # [\s\S], not ".": a name holding a newline must reach check_name, not 404.
    app.router.add_put(r"/object/{name:[\s\S]*}", put_object, expect_handler=defer_continue)
    app.router.add_put("/file", put_file, expect_handler=defer_continue)
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
    app.router.add_put(r"/resume/{name:[\s\S]*}", put_resume, expect_handler=defer_continue)
    app.router.add_get(r"/resume/{name:[\s\S]*}", get_resume)
    app.router.add_delete(r"/resume/{name:[\s\S]*}", delete_resume)
    app.router.add_put("/files", not_implemented)
    app.router.add_get("/fragment/download", not_implemented)
    add_console(app, context, console)  # the web console, under /console (docs/console.md)
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app
