"""What a native signature signs (docs/native-api.md §2.1): the bound message, and the
headers a client sends.

The bound message, version 1, one line of ``|``-separated fields::

    deoss-v1|<gateway>|<METHOD>|<target>|<body>|<nonce>|<expiry>

    gateway  the SS58 address of the gateway it is meant for (either prefix)
    METHOD   the HTTP method, upper case (HEAD is not GET)
    target   the request's path and query; compared after percent-decoding
    body     sha256 of the request body as 64 hex digits, or UNSIGNED (streamed uploads)
    nonce    8..64 of [0-9A-Za-z_-]: two requests of one second differ
    expiry   unix seconds

Every field but ``target`` is free of ``|``, so a target may hold one: the fields are
taken from both ends. DeOSS's bare message (any text ending in an expiry) names none of
these, so a captured one works at any gateway, on any route: ``sign_bare`` still makes
one, for gateways that accept it for reads (``NativeAuth(bare_reads=True)``).
"""

import contextlib
import hashlib
import re
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, payload

from chain_client.keys import Keypair

__all__ = [
    "ACCOUNT_HEADER",
    "BOUND_PREFIX",
    "MAX_BARE_MESSAGE_BYTES",
    "MAX_BOUND_MESSAGE_BYTES",
    "MESSAGE_HEADER",
    "SCHEME_HEADER",
    "SIGNATURE_HEADER",
    "UNSIGNED",
    "BoundMessage",
    "body_digest",
    "gateway_account",
    "same_target",
    "sign_bare",
    "sign_request",
    "signed_session",
    "signing_middleware",
]

ACCOUNT_HEADER: Final = "Account"
MESSAGE_HEADER: Final = "Message"
SIGNATURE_HEADER: Final = "Signature"
SCHEME_HEADER: Final = "Scheme"

BOUND_PREFIX: Final = "deoss-v1"
UNSIGNED: Final = "UNSIGNED"
MAX_BARE_MESSAGE_BYTES: Final = 256  # DeOSS's form carries no path
MAX_BOUND_MESSAGE_BYTES: Final = 4096  # a 1024-byte name, percent-encoded, and the rest

_METHOD: Final = re.compile(r"[A-Z]{1,16}")
_BODY: Final = re.compile(rf"[0-9a-f]{{64}}|{UNSIGNED}")
_NONCE: Final = re.compile(r"[0-9A-Za-z_-]{8,64}")
_SECONDS: Final = re.compile(r"[1-9][0-9]{9,10}")
_NONCE_BYTES: Final = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundMessage:
    gateway: str
    method: str
    target: str
    body: str
    nonce: str
    expiry: int

    def text(self) -> str:
        fields = (self.gateway, self.method, self.target, self.body, self.nonce, self.expiry)
        return "|".join((BOUND_PREFIX, *map(str, fields)))

    @classmethod
    def parse(cls, text: str) -> "BoundMessage | None":
        """The message's fields; None for a message of another form (DeOSS's bare one).
        ValueError names the field of a bound message that does not parse."""
        head, separator, rest = text.partition("|")
        if head != BOUND_PREFIX or not separator:
            return None
        gateway, _, rest = rest.partition("|")
        method, _, rest = rest.partition("|")
        parts = rest.rsplit("|", 3)
        if len(parts) != 4:
            raise ValueError(
                "the bound message has 7 fields: deoss-v1|gateway|METHOD|target|body|nonce|expiry"
            )
        target, body, nonce, expiry = parts
        for name, value, form in (
            ("method", method, _METHOD),
            ("body", body, _BODY),
            ("nonce", nonce, _NONCE),
            ("expiry", expiry, _SECONDS),
        ):
            if not form.fullmatch(value):
                raise ValueError(f"the bound message's {name} field does not parse")
        if not gateway or not target.startswith("/"):
            raise ValueError("the bound message names no gateway or no target")
        return cls(
            gateway=gateway,
            method=method,
            target=target,
            body=body,
            nonce=nonce,
            expiry=int(expiry),
        )


def same_target(signed: str, received: str) -> bool:
    """Whether two request targets name the same path and query once percent-decoded, so
    that a client's ``a b`` and the ``a%20b`` its library sent agree."""
    signed_path, _, signed_query = signed.partition("?")
    path, _, query = received.partition("?")
    unquote = urllib.parse.unquote
    return unquote(signed_path) == unquote(path) and unquote(signed_query) == unquote(query)


def body_digest(body: bytes | None) -> str:
    """The ``body`` field: the body's sha256, or UNSIGNED for a streamed upload (None)."""
    return UNSIGNED if body is None else hashlib.sha256(body).hexdigest()


def sign_request(
    keypair: Keypair,
    *,
    gateway: str,
    method: str,
    target: str,
    body: bytes | None = b"",
    now: float | None = None,
    ttl: int = 60,
) -> dict[str, str]:
    """The headers of one request to one gateway, bound to it (``body=None``: UNSIGNED)."""
    message = BoundMessage(
        gateway=gateway,
        method=method.upper(),
        target=target,
        body=body_digest(body),
        nonce=secrets.token_hex(_NONCE_BYTES),
        expiry=_expiry(now, ttl),
    ).text()
    if len(message.encode()) > MAX_BOUND_MESSAGE_BYTES:
        raise ValueError(f"target too long: the message must fit in {MAX_BOUND_MESSAGE_BYTES} B")
    return _headers(keypair, message)


def sign_bare(
    keypair: Keypair, *, now: float | None = None, ttl: int = 60, purpose: str = ""
) -> dict[str, str]:
    """DeOSS's bare message ``[purpose|]nonce|expiry``, bound to nothing: accepted only for
    reads, and only where a gateway allows it."""
    # HTTP trims a header value's outer whitespace and forbids control characters, either
    # of which would make the received message differ from the signed one.
    if purpose and not (purpose.isascii() and purpose.isprintable() and purpose == purpose.strip()):
        raise ValueError(f"purpose must be printable ASCII without outer spaces, got {purpose!r}")
    # The nonce makes two messages of one second differ: ed25519 signatures are
    # deterministic, so without it the second request would be refused as a replay.
    tail = f"{secrets.token_hex(_NONCE_BYTES)}|{_expiry(now, ttl)}"
    message = f"{purpose}|{tail}" if purpose else tail
    if len(message.encode()) > MAX_BARE_MESSAGE_BYTES:
        raise ValueError(f"purpose too long: the message must fit in {MAX_BARE_MESSAGE_BYTES} B")
    return _headers(keypair, message)


def signing_middleware(
    keypair: Keypair, gateway: str
) -> "Callable[[ClientRequest, ClientHandlerType], Awaitable[ClientResponse]]":
    """An aiohttp client middleware that signs, for ``gateway``, every request of its
    session that names ``keypair``'s account in ``Account`` and carries no ``Message``:
    bytes bodies by their digest, streamed ones UNSIGNED. Pass the account as a session
    or request header to sign; requests without it go out as they are."""

    async def sign(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if request.headers.get(ACCOUNT_HEADER) == keypair.address and (
            MESSAGE_HEADER not in request.headers
        ):
            body = request.body
            if isinstance(body, bytes):
                data: bytes | None = body
            elif isinstance(body, payload.BytesPayload):
                data = await body.as_bytes()
            else:
                data = None
            request.headers.update(
                sign_request(
                    keypair,
                    gateway=gateway,
                    method=request.method,
                    target=request.url.raw_path_qs,
                    body=data,
                )
            )
        return await handler(request)

    return sign


async def gateway_account(url: str) -> str:
    """The account of the gateway whose native API is at ``url``, from its ``/version``."""
    async with aiohttp.ClientSession() as probe, probe.get(f"{url}/version") as response:
        answer = await response.json(content_type=None)
        if response.status != 200 or not isinstance(answer, dict):
            raise aiohttp.ClientResponseError(
                response.request_info, (), status=response.status, message="no /version"
            )
        return str(answer["data"]["gateway"])


@contextlib.asynccontextmanager
async def signed_session(url: str, keypair: Keypair) -> AsyncIterator[aiohttp.ClientSession]:
    """A session whose every request to the gateway at ``url`` (its native API) is signed
    for it by ``keypair``; the gateway's account comes from its ``/version``."""
    gateway = await gateway_account(url)
    async with aiohttp.ClientSession(
        headers={ACCOUNT_HEADER: keypair.address},
        middlewares=(signing_middleware(keypair, gateway),),
    ) as session:
        yield session


def _expiry(now: float | None, ttl: int) -> int:
    if ttl < 1:
        raise ValueError(f"ttl must be at least 1 second, got {ttl}")
    # Rounded down, so the expiry is never more than ttl ahead (a server window of ttl holds).
    return int(time.time() if now is None else now) + ttl


def _headers(keypair: Keypair, message: str) -> dict[str, str]:
    return {
        ACCOUNT_HEADER: keypair.address,
        MESSAGE_HEADER: message,
        SIGNATURE_HEADER: "0x" + keypair.sign(message.encode()).hex(),
        SCHEME_HEADER: keypair.scheme,
    }
