"""Random and mutated requests to a miner (docs/miner-protocol.md §2): fragment PUTs
whose id is (mostly) the body's Merkle root, batches with good, broken and hostile
manifests, GET and HEAD of stored and unknown fragments with random ranges; most are
signed as a registered gateway signs them, the rest unsigned, for another miner, stale,
by a stranger, for another request, or with mangled headers."""

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from chain_client.keys import Keypair
from chain_client.merkle import merkle_root
from chain_client.request_auth import sign_request
from tests.fuzz.strategies import (
    digits,
    framings,
    header_values,
    json_values,
    mutated,
    number,
    odd_text,
    one_in,
    percent_encoded,
    pick,
)
from tests.fuzz.wire import Request

__all__ = ["MinerWorld", "miner_requests"]


@dataclass(frozen=True)
class MinerWorld:
    miners: tuple[tuple[str, str, int], ...]  # (account, host, port)
    gateway: Keypair  # registered on chain
    stranger: Keypair  # not
    fragments: tuple[str, ...]  # ids stored on the miners
    leaf_size: int
    fragment_size: int


ROUTES = ("put", "put", "put", "batch", "batch", "get", "get", "head", "health", "metrics", "other")
AUTHS = ("signed",) * 10 + (
    "none",
    "receiver",
    "stale",
    "stranger",
    "wrong-path",
    "mangled",
    "hash",
)
_RANGES = (
    "bytes=0-0",
    "bytes=2-",
    "bytes=-3",
    "bytes=5-2",
    "bytes=0-1,3-4",
    "bytes=-0",
    "items=0-1",
)
_ODD_IDS = ("", "AB" * 32, "ab" * 31, "ab" * 33, "../" + "ab" * 31, "%61" * 64)
_SMALL = st.binary(min_size=1, max_size=4096)
_HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
_ODD_VALUES = st.one_of(digits(), header_values())


def _data(draw: st.DrawFn, world: MinerWorld) -> bytes:
    if one_in(draw, 12):  # at and past a fragment's limit
        return b"f" * pick(
            draw, (world.fragment_size, world.fragment_size + 1, world.fragment_size * 2)
        )
    return draw(_SMALL)


def _id_for(draw: st.DrawFn, world: MinerWorld, data: bytes) -> str:
    if not one_in(draw, 6):
        return merkle_root(data, world.leaf_size).hex()
    choice = number(draw, 0, 3)
    if choice == 0:
        return draw(_HEX)
    if choice == 1:
        return pick(draw, world.fragments)
    return pick(draw, _ODD_IDS) if choice == 2 else draw(odd_text(max_size=70))


def _manifest(draw: st.DrawFn, entries: list[tuple[str, int]]) -> bytes:
    kind = number(draw, 0, 7)
    manifest: Any = {"fragments": [{"id": fid, "size": size} for fid, size in entries]}
    if kind == 1 and entries:  # a size that is not an integer, or that lies
        entry = manifest["fragments"][number(draw, 0, len(entries) - 1)]
        entry["size"] = pick(draw, (1.0, True, "1", None, -1, 0, 2**64, entry["size"] + 1))
    elif kind == 2:
        manifest = draw(json_values())
    elif kind == 3:
        manifest = {"fragments": [{"id": fid, "size": size, "x": [[[]]]} for fid, size in entries]}
    text = json.dumps(manifest).encode()
    if kind == 4:
        text = mutated(draw, text)
    elif kind == 5:
        text = b"[" * number(draw, 5, 60_000) + text
    return text


def _batch(draw: st.DrawFn, world: MinerWorld) -> bytes:
    pieces = [draw(_SMALL) for _ in range(number(draw, 0, 4))]
    entries = [(_id_for(draw, world, piece), len(piece)) for piece in pieces]
    manifest = _manifest(draw, entries)
    length = len(manifest)
    if one_in(draw, 8):
        length = pick(draw, (0, 1, 2**32 - 1, length + 1, max(0, length - 1)))
    body = length.to_bytes(4, "big") + manifest + b"".join(pieces)
    return mutated(draw, body) if one_in(draw, 10) else body


def _auth(
    draw: st.DrawFn, world: MinerWorld, receiver: str, method: str, path: str, content_sha256: str
) -> list[tuple[str, str]]:
    mode = pick(draw, AUTHS)
    if mode == "none":
        return []
    signer, now, signed_method, signed_path = world.gateway, None, method, path
    if mode == "receiver":
        receiver = world.stranger.address
    elif mode == "stale":
        now = time.time() - pick(draw, (301, 86400))
    elif mode == "stranger":
        signer = world.stranger
    elif mode == "wrong-path":
        signed_method, signed_path = pick(draw, ((method, path + "?x=1"), ("DELETE", path)))
    elif mode == "hash":
        content_sha256 = draw(_HEX)
    headers = sign_request(
        signer, signed_method, signed_path, receiver, content_sha256=content_sha256, now=now
    )
    signed = list(headers.items())
    if mode == "mangled":
        at = number(draw, 0, len(signed) - 1)
        value = _either_text(draw, signed[at][1])
        signed[at] = (signed[at][0], value)
    return signed


def _either_text(draw: st.DrawFn, value: str) -> str:
    if one_in(draw, 2):
        return draw(_ODD_VALUES)
    raw = mutated(draw, value.encode()).replace(b"\r", b"").replace(b"\n", b"")
    return raw.decode("utf-8", "surrogateescape")


@st.composite
def miner_requests(draw: st.DrawFn, world: MinerWorld) -> tuple[tuple[str, int], Request]:
    """(the miner's address, the request)."""
    account, host, port = pick(draw, world.miners)
    route = pick(draw, ROUTES)
    body, headers = b"", [("Host", f"{host}:{port}")]
    if route == "put":
        body = _data(draw, world)
        # A fragment PUT signs its id as the content hash (an odd one as it is sent).
        fragment_id = percent_encoded(_id_for(draw, world, body))
        method, path, content_sha256 = "PUT", f"/fragment/{fragment_id}", fragment_id
    elif route == "batch":
        body = _batch(draw, world)
        method, path, content_sha256 = "POST", "/fragments", hashlib.sha256(body).hexdigest()
    elif route in ("get", "head"):
        fragment_id = (
            pick(draw, world.fragments) if not one_in(draw, 4) else _id_for(draw, world, b"x")
        )
        method, path = route.upper(), f"/fragment/{percent_encoded(fragment_id)}"
        content_sha256 = hashlib.sha256(b"").hexdigest()
        if one_in(draw, 2):
            headers.append(
                (
                    "Range",
                    pick(draw, _RANGES)
                    if one_in(draw, 2)
                    else "bytes=" + draw(digits()) + "-" + draw(digits()),
                )
            )
    else:
        method = pick(draw, ("GET", "GET", "POST", "DELETE"))
        path = "/" + (route if route != "other" else percent_encoded(draw(odd_text(max_size=12))))
        content_sha256 = hashlib.sha256(b"").hexdigest()
    if route not in ("health", "metrics"):
        headers += _auth(draw, world, account, method, path, content_sha256)
    framing = draw(framings()) if body else draw(framings(body=False))
    return (host, port), Request(method, path, tuple(headers), body, framing)
