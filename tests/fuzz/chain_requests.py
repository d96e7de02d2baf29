"""Random and mutated chain RPC requests (docs/chain.md): extrinsics of every call with
random arguments, signed by a funded account at its next nonce (so that they reach the
runtime's argument checks and admission), or by an unfunded one, at stale and future
nonces, with fields changed or dropped after signing; mutated signed extrinsics and
hostile JSON; queries by name with random arguments; blocks, events, nonces and
receipts with random heights, hashes and parameters; and now and then a block, so that
what was admitted is applied.

Extrinsics are signed when they are sent (``ChainWorld.body``), at the nonce the chain
expects then, from what the strategy drew (``SignedCall``).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair
from tests.fuzz.strategies import (
    digits,
    framings,
    json_values,
    mutated,
    number,
    odd_text,
    one_in,
    percent_encoded,
    pick,
)
from tests.fuzz.wire import Request

__all__ = ["ChainWorld", "SignedCall", "chain_requests"]


@dataclass(frozen=True)
class ChainWorld:
    host: str
    genesis_hash: bytes
    funded: Keypair
    unfunded: Keypair
    calls: tuple[tuple[str, tuple[str, ...]], ...]  # call name, its argument names
    queries: tuple[tuple[str, tuple[str, ...]], ...]
    samples: tuple[bytes, ...]  # extrinsics signed at setup, as JSON
    tx_hashes: tuple[str, ...]


@dataclass(frozen=True)
class SignedCall:
    """An extrinsic to sign at send time: ``nonce`` is an offset from the next nonce of
    ``signer`` (0: the one it expects), or an absolute value when ``absolute``."""

    call: str
    args: dict[str, Any] = field(hash=False)
    signer: str  # funded, unfunded
    nonce: int
    absolute: bool
    tweak: str  # what is changed after signing: "" for nothing
    variant: int  # which change of that kind

    def envelope(self, world: ChainWorld, next_nonce: int) -> bytes:
        keypair = world.funded if self.signer == "funded" else world.unfunded
        nonce = self.nonce if self.absolute else max(0, next_nonce + self.nonce)
        signed = Extrinsic.sign(keypair, world.genesis_hash, self.call, self.args, nonce).to_json()
        if self.tweak == "signature":
            signed["signature"] = signed["signature"][:-1] + (
                "1" if signed["signature"][-1] == "0" else "0"
            )
        elif self.tweak == "args":
            signed["args"] = {**signed["args"], "extra": 1}
        elif self.tweak == "nonce":
            signed["nonce"] = _nth(self.variant, (True, 1.5, "1", -1, 2**64, None))
        elif self.tweak == "scheme":
            signed["scheme"] = _nth(self.variant, ("ed25519", "ecdsa", "", None))
        elif self.tweak == "drop":
            del signed[_nth(self.variant, tuple(signed))]
        elif self.tweak == "extra":
            signed["tip"] = 10
        return json.dumps(signed).encode()


def _nth(variant: int, options: tuple[Any, ...]) -> Any:
    return options[variant % len(options)]


_INTEGER_WORDS = (
    "amount",
    "space",
    "collateral",
    "gib",
    "days",
    "segment",
    "index",
    "id",
    "block",
    "bond",
)
_ACCOUNT_WORDS = ("dest", "gateway", "miner", "owner")
_INTEGERS = (0, 1, 2, 10**6, 10**30, -1, 2**64, 2**128)
_TEXTS = ("home", "", "x" * 300, "http://127.0.0.1:1", "é")
TWEAKS = ("",) * 8 + ("signature", "args", "nonce", "scheme", "drop", "extra")


def _argument(draw: st.DrawFn, world: ChainWorld, name: str) -> Any:
    if one_in(draw, 5):
        return draw(json_values())
    if any(word in name for word in _INTEGER_WORDS):
        return pick(draw, _INTEGERS) if one_in(draw, 2) else number(draw, 0, 1000)
    if any(word in name for word in _ACCOUNT_WORDS):
        return pick(draw, (world.funded.address, world.unfunded.address, "5" + "x" * 47, ""))
    if "fid" in name:
        return (
            pick(draw, ("ab" * 32, "AB" * 32, "ab" * 31)) if not name.endswith("s") else ["ab" * 32]
        )
    return pick(draw, _TEXTS)


def _signed_call(draw: st.DrawFn, world: ChainWorld) -> SignedCall:
    call, fields = pick(draw, world.calls)
    args = {name: _argument(draw, world, name) for name in fields if not one_in(draw, 8)}
    if one_in(draw, 10):
        args[draw(odd_text(min_size=1, max_size=6))] = 1
    offset = 0 if not one_in(draw, 5) else pick(draw, (-1, 1, 5))
    absolute = one_in(draw, 20)
    nonce = pick(draw, (0, 2**64 - 1, 2**64)) if absolute else offset
    signer = "funded" if not one_in(draw, 6) else "unfunded"
    return SignedCall(call, args, signer, nonce, absolute, pick(draw, TWEAKS), number(draw, 0, 99))


def _hostile_body(draw: st.DrawFn, world: ChainWorld) -> bytes:
    kind = number(draw, 0, 5)
    if kind == 0:
        return mutated(draw, pick(draw, world.samples))
    if kind == 1:
        return json.dumps(draw(json_values())).encode()
    if kind == 2:
        return b"[" * number(draw, 100, 100_000)
    if kind == 3:
        return pick(
            draw, (b"NaN", b'{"call": Infinity}', b"1e999", b"9" * 5000, b'"\\udcff"', b"\xff\xfe")
        )
    if kind == 4:
        return b""
    return draw(_BINARY)


_BINARY = st.binary(max_size=200)
_WAITS = ("",) * 6 + (
    "wait=0",
    "wait=false",
    "wait=1&timeout=0",
    "wait=1&timeout=0.01",
    "wait=1&timeout=nan",
    "wait=1&timeout=1e9",
)
_EVENT_TIMEOUTS = ("", "0", "0.01", "nan", "inf", "1_0", "-1", "٣", "61")


def _query_body(draw: st.DrawFn, world: ChainWorld) -> bytes:
    name, fields = pick(draw, world.queries)
    if one_in(draw, 8):
        name = draw(odd_text(max_size=20))
    args = {field: _argument(draw, world, field) for field in fields if not one_in(draw, 4)}
    body: Any = {"name": name, "args": args}
    if one_in(draw, 8):
        shapes: list[Any] = [{"name": name}, {"name": name, "args": []}, {"args": args}, [name]]
        body = shapes[number(draw, 0, len(shapes) - 1)]
    raw = json.dumps(body).encode()
    return mutated(draw, raw) if one_in(draw, 8) else raw


def _get_target(draw: st.DrawFn, world: ChainWorld) -> str:
    route = pick(
        draw,
        (
            "block",
            "block",
            "events",
            "nonce",
            "receipt",
            "query",
            "genesis",
            "health",
            "metrics",
            "other",
        ),
    )
    if route == "block":
        height = (
            pick(draw, ("0", "1", "latest", "2", "99999"))
            if not one_in(draw, 3)
            else percent_encoded(draw(digits()))
        )
        header = pick(draw, ("", "?header=1", "?header=0", "?header=x"))
        return f"/block/{height}{header}"
    if route == "events":
        start = draw(digits()) if one_in(draw, 3) else pick(draw, ("0", "1", "5"))
        most = draw(digits()) if one_in(draw, 3) else pick(draw, ("1", "100"))
        params = [
            f"from={percent_encoded(start)}",
            f"timeout={percent_encoded(pick(draw, _EVENT_TIMEOUTS))}",
            f"max_blocks={percent_encoded(most)}",
        ]
        return "/events?" + "&".join(p for p in params if not one_in(draw, 3))
    if route == "nonce":
        account = (
            pick(draw, (world.funded.address, world.unfunded.address))
            if not one_in(draw, 3)
            else percent_encoded(draw(odd_text(max_size=50)))
        )
        return f"/nonce/{account}"
    if route == "receipt":
        tx = (
            pick(draw, world.tx_hashes)
            if not one_in(draw, 3)
            else percent_encoded(draw(odd_text(max_size=70)))
        )
        return f"/extrinsic/{tx}"
    if route == "query":
        name, fields = pick(draw, world.queries)
        query = "&".join(
            f"{f}={percent_encoded(str(_argument(draw, world, f)))}"
            for f in fields
            if not one_in(draw, 3)
        )
        return f"/query/{name}" + (f"?{query}" if query else "")
    if route == "other":
        return "/" + percent_encoded(draw(odd_text(max_size=20)))
    return f"/{route}"


@st.composite
def chain_requests(draw: st.DrawFn, world: ChainWorld) -> tuple[SignedCall | None, Request]:
    """(the extrinsic to sign into the body at send time, if any; the request)."""
    host = ("Host", world.host)
    kind = number(draw, 0, 19)
    if kind <= 8:  # an extrinsic
        wait = pick(draw, _WAITS)
        target = "/extrinsic" + (f"?{wait}" if wait else "")
        if kind <= 5:
            return _signed_call(draw, world), Request("POST", target, (host,))
        body = _hostile_body(draw, world)
        return None, Request("POST", target, (host,), body, draw(framings()))
    if kind <= 12:
        body = _query_body(draw, world)
        return None, Request("POST", "/query", (host,), body, draw(framings()))
    if kind == 13:
        return None, Request("POST", "/dev/produce_block", (host,))
    if kind == 14:
        method = pick(draw, ("PUT", "DELETE", "PATCH", "GET", "POST"))
        return None, Request(
            method,
            pick(draw, ("/extrinsic", "/query", "/dev/produce_block", "/health")),
            (host,),
            draw(_BINARY),
        )
    return None, Request("GET", _get_target(draw, world), (host,))
