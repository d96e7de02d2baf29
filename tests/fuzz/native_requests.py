"""Random and mutated native API requests (docs/native-api.md): every route with random
names, fids, parameters, headers and bodies (objects, multipart forms, resume chunks,
key requests), most of them signed as a client signs, the deoss-v1 message bound to
this gateway, the method, the target and the body (UNSIGNED for streamed uploads); the
rest unsigned, signed for another request or body, by a stranger, expired, bare or with
mangled headers.

Names, fids, resume sessions and access keys come from ``NativeWorld`` (what the setup
stored) as often as at random.
"""

import functools
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

from chain_client.keys import Keypair
from gateway.native.signing import sign_bare, sign_request
from tests.fuzz.s3_bodies import object_data
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
    sampled,
)
from tests.fuzz.wire import Request

__all__ = ["ROUTES", "NativeWorld", "native_requests"]


@dataclass(frozen=True)
class NativeWorld:
    host: str
    gateway: str  # the gateway's account: what a bound message names
    user: Keypair  # authorized the gateway
    stranger: Keypair  # did not
    names: tuple[str, ...]  # of stored objects
    fids: tuple[str, ...]
    resume_names: tuple[str, ...]  # of sessions in progress
    access_keys: tuple[str, ...]


# (method, route): the route is filled in by _target.
ROUTES = (
    ("PUT", "object"),
    ("PUT", "object"),
    ("PUT", "file"),
    ("GET", "download"),
    ("GET", "download"),
    ("GET", "open"),
    ("HEAD", "download"),
    ("DELETE", "file"),
    ("GET", "metadata"),
    ("GET", "location"),
    ("GET", "list"),
    ("GET", "version"),
    ("GET", "health"),
    ("GET", "metrics"),
    ("POST", "keys"),
    ("GET", "keys"),
    ("DELETE", "key"),
    ("PUT", "resume"),
    ("PUT", "resume"),
    ("GET", "resume"),
    ("DELETE", "resume"),
)
STREAMED = frozenset({"object", "file", "resume"})
AUTHS = ("signed",) * 12 + (
    "unsigned-body",
    "wrong-target",
    "wrong-body",
    "stranger",
    "mangled",
    "expired",
    "bare",
    "none",
)
_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS")
_ODD_NAMES = ("", "/", "..", "a/../b", "\U0010ffff", "a\x00b", "n" * 1100, "%41", "a?b", "a#b")
_STYLES = ("strict",) * 5 + ("loose", "loose", "raw")
_HEADERS = {
    "object": ("Copies", "Cipher", "Territory", "If-None-Match", "Content-Type", "Expect"),
    "file": ("Filename", "Copies", "Territory", "Cipher"),
    "download": (
        "Range",
        "Content-Range",
        "If-None-Match",
        "If-Match",
        "If-Modified-Since",
        "If-Range",
        "Cipher",
    ),
    "open": ("Range", "Format", "Cipher", "If-None-Match"),
    "resume": ("Copies", "Territory", "If-None-Match", "Cipher"),
}
_ANY_HEADERS = tuple(
    sorted({h for names in _HEADERS.values() for h in names} | {"Territory", "Account"})
)
_GOOD = {
    "Copies": ("1", "2", "3", "0", "99"),
    "Cipher": ("secret", "x" * 300),
    "Territory": ("home", "nowhere", "a b"),
    "If-None-Match": ("*", '"x"'),
    "If-Match": ("*", '"x"'),
    "Content-Type": ("application/octet-stream", "multipart/form-data; boundary=B"),
    "Expect": ("100-continue",),
    "Range": (
        "bytes=0-0",
        "bytes=2-",
        "bytes=-3",
        "bytes=5-2",
        "bytes=0-1,3-4",
        "bytes=" + "9" * 30 + "-",
    ),
    "Content-Range": ("bytes 0-0/*", "bytes */10"),
    "If-Modified-Since": ("Sun, 06 Nov 1994 08:49:37 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"),
    "If-Range": ("Sun, 06 Nov 1994 08:49:37 GMT", '"x"'),
    "Format": ("jpg", "txt", "html", "x" * 40),
    "Filename": ("a.txt", "a%20b.txt", "%ff", "..", ""),
    "Account": ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "x"),
}


_HEX_FIDS = st.text("0123456789abcdef", min_size=64, max_size=64)


@functools.cache
def _exactly(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def _either(
    draw: st.DrawFn, known: tuple[str, ...], odd: st.SearchStrategy[str], odds: int = 4
) -> str:
    return draw(odd) if not known or one_in(draw, odds) else pick(draw, known)


def _encoded(draw: st.DrawFn, text: str) -> str:
    style = pick(draw, _STYLES)
    if style == "strict":
        return "/".join(percent_encoded(part) for part in text.split("/"))
    if style == "loose":
        return quote(text.encode("utf-8", "surrogateescape"), safe="/!$&'()*+,;=:@")
    return text


def _fid(draw: st.DrawFn, world: NativeWorld) -> str:
    choice = number(draw, 0, 6)
    if choice <= 3:
        fid = pick(draw, world.fids)
        return fid.upper() if choice == 3 else fid
    if choice == 4:
        return draw(_HEX_FIDS)
    return (
        draw(odd_text(max_size=70))
        if choice == 5
        else pick(draw, world.fids) + pick(draw, (".jpg", "x", "/x", ".."))
    )


def _query(draw: st.DrawFn, names: tuple[str, ...], world: NativeWorld) -> str:
    pairs = []
    for name in names:
        if one_in(draw, 3):
            continue
        if name == "limit":
            value = _either(draw, ("1", "2", "100", "1000"), digits(), 2)
        elif name == "name":
            value = _either(draw, world.names, odd_text(max_size=8))
        elif name == "wait":
            value = pick(draw, ("0", "0", "0", "false", "", "1"))
        else:
            value = _either(draw, ("", "home", world.names[0]), odd_text(max_size=8))
        pairs.append(f"{percent_encoded(name)}={percent_encoded(value)}")
    if one_in(draw, 6):
        name, value = draw(odd_text(min_size=1, max_size=6)), draw(odd_text(max_size=6))
        pairs.append(f"{percent_encoded(name)}={_encoded(draw, value)}")
    return "&".join(pairs)


def _target(draw: st.DrawFn, world: NativeWorld, route: str) -> str:
    if route in ("object", "resume"):
        names = world.resume_names if route == "resume" else world.names
        name = _either(draw, (*names, *world.names), odd_text(min_size=1, max_size=12), 3)
        if one_in(draw, 8):
            name = pick(draw, _ODD_NAMES)
        return f"/{route}/{_encoded(draw, name)}"
    if route in ("download", "open", "metadata", "location"):
        return f"/file/{route}/{_fid(draw, world)}"
    if route == "file":
        return "/file"
    if route == "list":
        query = _query(draw, ("limit", "start_after", "territory", "Account"), world)
        return "/file/list" + (f"?{query}" if query else "")
    if route == "key":
        return "/keys/" + _encoded(draw, _either(draw, world.access_keys, odd_text(max_size=24), 3))
    if route in ("version", "health", "metrics", "keys"):
        return f"/{route}"
    return "/" + _encoded(draw, draw(odd_text(max_size=20)))


def _form(draw: st.DrawFn, data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    boundary = pick(draw, ("B", "----x", "é", "a" * 80))
    filename = _either(draw, ("form.txt", "a b.bin", "dir/x"), odd_text(max_size=8), 3)
    field = pick(draw, ("file", "file", "other"))
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n"
    body = head.encode("utf-8", "surrogateescape") + data + tail.encode()
    if one_in(draw, 4):
        body = mutated(draw, body)
    content_type = f"multipart/form-data; boundary={boundary}"
    return [("Content-Type", content_type if not one_in(draw, 8) else draw(header_values()))], body


_FORM_DATA = st.binary(max_size=1500)


def _resume_chunk(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    """A chunk of a 300-byte upload (the setup's session has stored bytes 0-99), or a
    Content-Range of another shape."""
    start = pick(draw, (0, 100, 100, 100, 150, 299, 350))
    end = min(start + pick(draw, (0, 49, 99, 199, 299)), 299 if start < 300 else start + 1)
    total = pick(draw, (300, 300, 300, 1, 10**12))
    content_range = f"bytes {start}-{end}/{total}"
    if one_in(draw, 5):
        content_range = _either(
            draw, ("bytes */300", "bytes 0-0/0", "bytes 5-1/300", "items 0-1/2"), header_values(), 2
        )
    data = draw(_exactly(max(0, end - start + 1)))
    if one_in(draw, 6):
        data = data[: number(draw, 0, len(data))] if data else b"x"
    return [("Content-Range", content_range)], data


def _body(draw: st.DrawFn, route: str) -> tuple[list[tuple[str, str]], bytes]:
    if route == "object":
        return [], object_data(draw)
    if route == "file":
        return _form(draw, draw(_FORM_DATA))
    if route == "resume":
        return _resume_chunk(draw)
    if route == "keys":
        kind = number(draw, 0, 4)
        if kind == 0:
            return [], b""
        if kind <= 2:
            return [], json.dumps({"label": draw(odd_text(max_size=70))}).encode()
        if kind == 3:
            return [], json.dumps(draw(json_values())).encode()
        return [], mutated(draw, b'{"label": "fuzz"}')
    return [], b"x" * number(draw, 1, 32) if one_in(draw, 12) else b""


def _header(draw: st.DrawFn, name: str) -> tuple[str, str]:
    return name, _either(draw, _GOOD.get(name, ()), header_values(), 3)


def _auth(
    draw: st.DrawFn, world: NativeWorld, method: str, target: str, body: bytes, streamed: bool
) -> list[tuple[str, str]]:
    mode = pick(draw, AUTHS)
    if mode == "none":
        return []
    if mode == "bare":
        return list(sign_bare(world.user).items())
    signed_body: bytes | None = None if streamed and not one_in(draw, 3) else body
    signed_method, signed_target, signer, now = method, target, world.user, None
    if mode == "unsigned-body":
        signed_body = None
    elif mode == "wrong-target":
        signed_method, signed_target = pick(
            draw, ((method, target + "x"), (pick(draw, _METHODS), target), (method, "/version"))
        )
    elif mode == "wrong-body":
        signed_body = body + b"x"
    elif mode == "stranger":
        signer = world.stranger
    elif mode == "expired":
        now = time.time() - pick(draw, (61, 3600))
    try:
        headers = sign_request(
            signer,
            gateway=world.gateway,
            method=signed_method,
            target=signed_target,
            body=signed_body,
            now=now,
        )
    except ValueError:  # a target too long to sign: sent as it is
        return []
    signed = list(headers.items())
    if mode == "mangled":
        at = number(draw, 0, len(signed) - 1)
        raw = mutated(draw, signed[at][1].encode()).replace(b"\r", b"").replace(b"\n", b"")
        signed[at] = (signed[at][0], raw.decode("utf-8", "surrogateescape"))
    return signed


@st.composite
def native_requests(draw: st.DrawFn, world: NativeWorld) -> Request:
    method, route = pick(draw, ROUTES)
    if one_in(draw, 15):
        method = pick(draw, _METHODS)
    target = _target(draw, world, route)
    headers, body = _body(draw, route)
    known = _HEADERS.get(route, ())
    names = draw(st.lists(sampled(known), max_size=3, unique=True)) if known else []
    if one_in(draw, 4):
        names.append(pick(draw, _ANY_HEADERS))
    headers += [_header(draw, name) for name in names]
    streamed = route in STREAMED and method == "PUT"
    sent = [("Host", world.host), *headers, *_auth(draw, world, method, target, body, streamed)]
    framing = draw(framings()) if body else draw(framings(body=False))
    return Request(method, target, tuple(sent), body, framing)
