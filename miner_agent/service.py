"""The miner's HTTP API (docs/miner-protocol.md §2): fragment PUT (single and batch),
GET/HEAD with Range, health and metrics. Every data route needs a registered gateway's
signature."""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from chain_client.errors import ChainError
from chain_client.protocol import Chain
from chain_client.receipt import sign_receipt
from chain_client.request_auth import RequestAuthError, SignedRequest
from chain_client.strict import StrictJSONError, ascii_int, strict_json
from miner_agent.node import MinerNode
from miner_agent.store import StoreError, check_fragment_id

__all__ = ["NODE", "GatewayDirectory", "make_app", "parse_range"]

NODE = web.AppKey("node", MinerNode)
MAX_BATCH_FRAGMENTS = 256
MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MANIFEST_DEPTH = 4  # {"fragments": [{"id": ..., "size": ...}]} is 3 deep
RANGE_DIGITS = 20
GATEWAY_CACHE_SECONDS = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class GatewayDirectory:
    """Which accounts are registered gateways with a bond, and their signature scheme
    (cached). SECURITY: registering alone grants nothing; an unbonded gateway wrote junk
    to every miner and read any fragment (security review #3)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def scheme_of(self, account: str) -> str | None:
        """The gateway's scheme; None for no gateway, "" for one without its bond."""
        cached = self._cache.get(account)
        if cached is not None and time.monotonic() - cached[0] < GATEWAY_CACHE_SECONDS:
            return cached[1]
        try:
            gateway = await self.chain.query("oss.gateway", account=account)
        except ChainError:
            # Chain unreachable: serve with what was known, never with a guess.
            if cached is not None:
                return cached[1]
            raise RequestAuthError(503, "ChainUnavailable", "cannot check the sender") from None
        scheme = None if gateway is None else str(gateway["scheme"])
        if gateway is not None and not gateway["bonded"]:
            scheme = ""  # registered, but its bond does not cover gateway_bond
        self._cache[account] = (time.monotonic(), scheme)
        return scheme


GATEWAYS = web.AppKey("gateways", GatewayDirectory)


async def _authenticate(request: web.Request) -> SignedRequest:
    node = request.app[NODE]
    signed = SignedRequest.from_headers(request.headers)
    scheme = await request.app[GATEWAYS].scheme_of(signed.account)
    if scheme is None:
        raise RequestAuthError(403, "NotRegistered", f"{signed.account} is not a gateway")
    if not scheme:
        raise RequestAuthError(
            403, "NotBonded", f"{signed.account} holds no gateway bond (oss.bond)"
        )
    signed.verify(scheme, request.method, request.path_qs, node.address)
    return signed


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app[NODE]
    try:
        response = await handler(request)
    except RequestAuthError as exc:
        node.metrics.requests.labels(outcome=exc.code).inc()
        return _error(exc.status, exc.code, exc.message)
    except StoreError as exc:
        node.metrics.requests.labels(outcome=exc.code).inc()
        if exc.code == "FragmentCorrupt":
            node.on_corrupt(request.match_info.get("fragment_id", ""))
        return _error(exc.status, exc.code, exc.message)
    except ConnectionError:
        # The sender went away, or stalled (serving's BodyStalled), mid-body: the store
        # has dropped the partial fragment. Unhandled, aiohttp logged every such PUT as
        # an error with its traceback and answered 500 (found by tests/fuzz).
        node.metrics.requests.labels(outcome="IncompleteBody").inc()
        return _error(400, "IncompleteBody", "the request body broke off")
    node.metrics.requests.labels(outcome=str(response.status)).inc()
    return response


def _receipt(node: MinerNode, fragment_id: str, size: int) -> dict[str, Any]:
    return {
        "fragment_id": fragment_id,
        "miner": node.address,
        "size": size,
        "signature": "0x" + sign_receipt(node.keypair, fragment_id).hex(),
    }


async def put_fragment(request: web.Request) -> web.Response:
    node = request.app[NODE]
    fragment_id = check_fragment_id(request.match_info["fragment_id"])
    signed = await _authenticate(request)
    # The body is bound by the id (its Merkle root, checked as it streams in), so the
    # signed content hash of a fragment PUT is the id: no second pass over the bytes.
    if signed.content_sha256 != fragment_id:
        return _error(400, "BadContentHash", "a fragment PUT signs the fragment id as its hash")
    size = request.content_length
    if size is None:
        return _error(411, "LengthRequired", "Content-Length is required")
    limit = node.params.fragment_size
    if not 1 <= size <= limit:
        return _error(413, "FragmentTooLarge", f"a fragment has 1 to {limit} bytes")
    created = await node.store.receive(
        fragment_id,
        request.content.iter_chunked(256 * 1024),
        size=size,
        height=node.best_block,
    )
    node.metrics.bytes_in.inc(size)
    return web.json_response(_receipt(node, fragment_id, size), status=201 if created else 200)


def _parse_manifest(raw: bytes, body_left: int) -> list[tuple[str, int]]:
    try:
        manifest = strict_json(raw, max_depth=MAX_MANIFEST_DEPTH)
    except StrictJSONError as exc:
        raise StoreError(400, "BadBatch", f"manifest: {exc}") from None
    listed = manifest.get("fragments") if isinstance(manifest, dict) else None
    if not isinstance(listed, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("id"), str)
        and type(e.get("size")) is int  # not a float, not a bool
        for e in listed
    ):
        raise StoreError(400, "BadBatch", 'manifest: {"fragments": [{"id": str, "size": int}]}')
    entries = [(str(e["id"]), int(e["size"])) for e in listed]
    if not 1 <= len(entries) <= MAX_BATCH_FRAGMENTS:
        raise StoreError(400, "BadBatch", f"1 to {MAX_BATCH_FRAGMENTS} fragments")
    if sum(size for _, size in entries) != body_left or any(size < 1 for _, size in entries):
        raise StoreError(400, "BadBatch", "fragment sizes must add up to the rest of the body")
    return entries


async def put_batch(request: web.Request) -> web.Response:
    """Small fragments in one body (docs/miner-protocol.md): read whole (at most
    MAX_BATCH_BYTES), checked against its signed sha256 before anything is stored, then
    stored in one pass, each fragment answered on its own."""
    node = request.app[NODE]
    signed = await _authenticate(request)
    total = request.content_length
    if total is None:
        return _error(411, "LengthRequired", "Content-Length is required")
    if total > MAX_BATCH_BYTES:
        return _error(413, "BatchTooLarge", f"at most {MAX_BATCH_BYTES} bytes")
    try:
        body = await request.content.readexactly(total)
    except asyncio.IncompleteReadError:
        raise StoreError(400, "BadBatch", "body shorter than announced") from None
    digest = await asyncio.to_thread(hashlib.sha256, body)
    if digest.hexdigest() != signed.content_sha256:
        return _error(400, "ContentHashMismatch", "body does not match its signed sha256")
    length = int.from_bytes(body[:4], "big")
    if not 2 <= length <= min(MAX_MANIFEST_BYTES, total - 4):
        raise StoreError(400, "BadBatch", "bad manifest length")
    entries = _parse_manifest(body[4 : 4 + length], total - 4 - length)
    items, offset = [], 4 + length
    for fragment_id, size in entries:
        items.append((fragment_id, body[offset : offset + size]))
        offset += size
    outcomes = await asyncio.to_thread(
        node.store.receive_many,
        items,
        height=node.best_block,
        max_size=node.params.fragment_size,
    )
    results: list[dict[str, Any]] = []
    for (fragment_id, data), outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, StoreError):
            results.append(
                {
                    "id": fragment_id,
                    "status": outcome.status,
                    "error": {"code": outcome.code, "message": outcome.message},
                }
            )
            continue
        node.metrics.bytes_in.inc(len(data))
        results.append(
            {
                "id": fragment_id,
                "status": 201 if outcome else 200,
                "receipt": _receipt(node, fragment_id, len(data)),
            }
        )
    return web.json_response({"results": results})


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) for one satisfiable ``bytes=`` range; None for the whole
    body. Raises ValueError for an unsatisfiable range."""
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep or (not first and not last):
        return None
    digits = first + last
    if not (digits.isascii() and digits.isdigit()):
        return None  # not a byte range ("²" and "+1" included): the whole body

    def position(text: str) -> int:
        # Longer than RANGE_DIGITS, a position is past any fragment's end, and the
        # rules below answer what they answer for one.
        value = ascii_int(text, max_digits=RANGE_DIGITS)
        return size if value is None else value

    if not first:
        length = position(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(size - length, 0), size
    start = position(first)
    end = min(position(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise ValueError("range outside the fragment")
    return start, end


async def get_fragment(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    fragment_id = check_fragment_id(request.match_info["fragment_id"])
    await _authenticate(request)
    record = node.store.fragment(fragment_id)
    if record is None or not node.store.fragment_path(fragment_id).exists():
        return _error(404, "NoSuchFragment", fragment_id)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{fragment_id}"',
        "Content-Type": "application/octet-stream",
    }
    try:
        span = parse_range(request.headers.get("Range"), record.size)
    except ValueError:
        return web.Response(
            status=416, headers={**headers, "Content-Range": f"bytes */{record.size}"}
        )
    start, end = span or (0, record.size)
    status = 200 if span is None else 206
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    if request.method == "HEAD":
        return web.Response(status=status, headers={**headers, "Content-Length": str(end - start)})
    pieces = node.store.read_range(fragment_id, start, end)
    first = await anext(pieces)  # a corrupt first leaf still gets a proper 500
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    await response.write(first)
    try:
        async for piece in pieces:
            await response.write(piece)
    except StoreError:
        # Headers are sent: cut the body short; the reader's Merkle check rejects it.
        node.on_corrupt(fragment_id)
        if request.transport is not None:
            request.transport.close()
        return response
    node.metrics.bytes_out.inc(end - start)
    await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response(
        {
            "status": "ok",
            "account": node.address,
            "best_block": node.best_block,
            "fragments": len(node.store.fragments()),
            "free_bytes": node.store.free_bytes(),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, request.app[NODE].metrics.registry)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def make_app(node: MinerNode) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BATCH_BYTES + 1024 * 1024)
    app[NODE] = node
    app[GATEWAYS] = GatewayDirectory(node.chain)
    app.router.add_put("/fragment/{fragment_id}", put_fragment)
    app.router.add_post("/fragments", put_batch)
    app.router.add_get("/fragment/{fragment_id}", get_fragment)  # also answers HEAD
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
