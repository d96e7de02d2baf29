"""The chain's JSON-over-HTTP RPC, served over a ``LocalChain`` (spec: docs/chain.md).

Every error answers JSON ``{"error": {"code": ..., "message": ...}}`` with a real HTTP
status: 400 for anything wrong with the request, 404 for unknown routes, queries and
records, 403 for dev-only routes on a production node, 503 when the pool is full.
"""

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chain_client.errors import InvalidArguments, Rejected, UnknownCall
from chain_client.extrinsic import Extrinsic, MalformedExtrinsic
from chain_client.local import LocalChain
from chain_client.ss58 import InvalidAddress
from chain_client.strict import StrictJSONError, ascii_int, strict_json

__all__ = ["CHAIN", "MAX_EVENT_WAIT", "MAX_SUBMIT_WAIT", "make_app"]

CHAIN = web.AppKey("chain", LocalChain)
METRICS = web.AppKey("metrics", CollectorRegistry)
REQUESTS = web.AppKey("requests", Counter)
QUERIES = web.AppKey("queries", Counter)
EVENT_BODIES = web.AppKey("event_bodies", dict)  # (from, next) -> the page's JSON
EVENT_BODIES_KEPT = 64
MAX_SUBMIT_WAIT = 120.0
MAX_EVENT_WAIT = 60.0
_REJECTION_STATUS = {"PoolFull": 503, "DevOnly": 403, "NotManual": 409}
_HEIGHT_DIGITS = 18
# Seconds as str(float) writes them, but no "nan", "inf", "1_0", spaces or other scripts'
# digits, which float() also takes.
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,3})?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[REQUESTS].labels(
        route=request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    ).inc()
    try:
        return await handler(request)
    except Rejected as exc:
        return _error(_REJECTION_STATUS.get(exc.code, 400), exc.code, exc.message)
    except UnknownCall as exc:
        return _error(404, "UnknownQuery", str(exc))
    except (InvalidArguments, InvalidAddress) as exc:
        return _error(400, "InvalidArguments", str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
        raise
    except ConnectionError:
        # The client went away, or stalled past the body-idle timeout, while its body was
        # read: nobody reads this answer. Unhandled, aiohttp logged a traceback and
        # answered 500 (found by tests/fuzz).
        return _error(400, "IncompleteBody", "the request body broke off")


async def _json_body(request: web.Request) -> Any:
    # Bounded depth and numbers, no NaN: what is admitted can be written canonically.
    try:
        return strict_json(await request.read())
    except StrictJSONError as exc:
        raise Rejected("Malformed", f"body is not JSON: {exc}") from None


def _seconds(request: web.Request, name: str, default: float, *, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _SECONDS.fullmatch(raw):
        raise Rejected("Malformed", f"query parameter {name}={raw[:40]!r} is not a number")
    value = float(raw)
    if value > high:
        raise Rejected("Malformed", f"query parameter {name} must be 0..{high}")
    return value


def _integer(raw: str, what: str, *, low: int = 0, high: int | None = None) -> int:
    value = ascii_int(raw, max_digits=_HEIGHT_DIGITS)
    if value is None or value < low or (high is not None and value > high):
        raise Rejected("Malformed", f"{raw[:40]!r} is not {what}")
    return value


async def health(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    head = await chain.head()
    genesis_hash, genesis = await chain.genesis()
    return web.json_response(
        {
            "best_block": head.best_block,
            "best_hash": head.best_hash,
            "genesis_hash": "0x" + genesis_hash.hex(),
            "chain": genesis.params.chain_name,
            "dev": genesis.dev,
            "manual": chain.manual,
            "pool": chain.node.pool_size(),
        }
    )


async def genesis(request: web.Request) -> web.Response:
    genesis_hash, spec = await request.app[CHAIN].genesis()
    return web.json_response({"hash": "0x" + genesis_hash.hex(), "genesis": spec.to_json()})


async def submit(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    try:
        extrinsic = Extrinsic.from_json(await _json_body(request))
    except MalformedExtrinsic as exc:
        raise Rejected("Malformed", str(exc)) from None
    wait = request.query.get("wait", "0") not in ("0", "false", "")
    if not wait:
        tx_hash = await chain.submit(extrinsic)
        return web.json_response({"hash": tx_hash, "status": "pending"}, status=202)
    timeout = _seconds(request, "timeout", 60.0, high=MAX_SUBMIT_WAIT)
    try:
        result = await chain.submit_and_wait(extrinsic, timeout=timeout)
    except TimeoutError:
        tx_hash = extrinsic.hash(chain.node.genesis_hash)
        return web.json_response({"hash": tx_hash, "status": "pending"}, status=202)
    return web.json_response({**result.to_json(), "status": "included"})


async def receipt(request: web.Request) -> web.Response:
    result = await request.app[CHAIN].receipt(request.match_info["hash"])
    if result is None:
        return _error(404, "NotIncluded", "no block includes that extrinsic (yet)")
    return web.json_response({**result.to_json(), "status": "included"})


async def nonce(request: web.Request) -> web.Response:
    account = request.match_info["account"]
    return web.json_response(
        {"account": account, "nonce": await request.app[CHAIN].next_nonce(account)}
    )


async def query_post(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise Rejected("Malformed", 'expected {"name": "module.query", "args": {...}}')
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise Rejected("Malformed", "args must be an object")
    result = await request.app[CHAIN].query(body["name"], **args)
    request.app[QUERIES].labels(name=body["name"]).inc()  # a known name: it answered
    return web.json_response({"result": result})


async def query_get(request: web.Request) -> web.Response:
    result = await request.app[CHAIN].query_lax(request.match_info["name"], dict(request.query))
    request.app[QUERIES].labels(name=request.match_info["name"]).inc()
    return web.json_response({"result": result})


async def block(request: web.Request) -> web.Response:
    chain = request.app[CHAIN]
    raw = request.match_info["height"]
    height = (await chain.head()).best_block if raw == "latest" else _integer(raw, "a block height")
    header = request.query.get("header", "0")
    if header not in ("0", "1"):
        return _error(400, "InvalidArguments", "header is 0 or 1")
    found = await chain.block(height, header_only=header == "1")
    if found is None:
        return _error(404, "NoSuchBlock", f"no block {height} yet")
    return web.json_response(found)


async def events(request: web.Request) -> web.Response:
    start = _integer(request.query.get("from", "0"), "a block height")
    timeout = _seconds(request, "timeout", 0.0, high=MAX_EVENT_WAIT)
    max_blocks = _integer(request.query.get("max_blocks", "100"), "1..1000", low=1, high=1000)
    page = await request.app[CHAIN].events(start, timeout=timeout, max_blocks=max_blocks)
    # Blocks from..next-1 are committed: their page is encoded once for all followers.
    bodies: dict[tuple[int, int], bytes] = request.app[EVENT_BODIES]
    body = bodies.get((start, page.next))
    if body is None:
        body = json.dumps({"events": list(page.events), "next": page.next}).encode()
        bodies[start, page.next] = body
        while len(bodies) > EVENT_BODIES_KEPT:
            del bodies[next(iter(bodies))]
    return web.Response(body=body, content_type="application/json")


async def produce_block(request: web.Request) -> web.Response:
    height = await request.app[CHAIN].produce_block()
    return web.json_response({"height": height})


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, request.app[METRICS])
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


class _NodeCollector(Collector):
    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    def collect(self) -> Any:
        node = self.chain.node
        height, _ = node.best()
        stats = node.stats
        for name, value, text in (
            ("deoss_chain_best_block", height, "Height of the best block"),
            ("deoss_chain_pool_extrinsics", node.pool_size(), "Extrinsics waiting in the pool"),
            (
                "deoss_chain_extrinsics_submitted",
                stats.submitted,
                "Extrinsics accepted into the pool",
            ),
            ("deoss_chain_extrinsics_rejected", stats.rejected, "Extrinsics refused at submission"),
            ("deoss_chain_extrinsics_applied", stats.applied, "Extrinsics applied successfully"),
            ("deoss_chain_extrinsics_failed", stats.failed, "Extrinsics included but failed"),
            ("deoss_chain_hook_failures", stats.hook_failures, "Per-block hooks that failed"),
            ("deoss_chain_last_block_seconds", stats.block_seconds, "Time to build the last block"),
        ):
            yield GaugeMetricFamily(name, text, value=value)


def make_app(chain: LocalChain) -> web.Application:
    params = chain.node.params
    app = web.Application(
        middlewares=[_errors], client_max_size=params.max_extrinsic_bytes + 64 * 1024
    )
    app[CHAIN] = chain
    app[EVENT_BODIES] = {}
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_NodeCollector(chain))
    app[METRICS] = registry
    app[REQUESTS] = Counter(
        "deoss_chain_rpc_requests", "RPC requests by route", ["route"], registry=registry
    )
    app[QUERIES] = Counter(
        "deoss_chain_queries", "Queries answered, by name", ["name"], registry=registry
    )
    Gauge("deoss_chain_dev", "1 on a dev network", registry=registry).set(int(chain.node.dev))
    app.router.add_get("/health", health)
    app.router.add_get("/genesis", genesis)
    app.router.add_post("/extrinsic", submit)
    app.router.add_get("/extrinsic/{hash}", receipt)
    app.router.add_get("/nonce/{account}", nonce)
    app.router.add_post("/query", query_post)
    app.router.add_get("/query/{name}", query_get)
    app.router.add_get("/block/{height}", block)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", metrics)
    if chain.node.dev:
        # SECURITY: the route does not exist on a production node.
        app.router.add_post("/dev/produce_block", produce_block)
    return app
