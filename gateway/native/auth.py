"""The native (DeOSS-style) identity signature: headers ``Account``, ``Message``, ``Signature``.

What a request carries (DESIGN.md §9; reference/cess-deoss.md §1.3)::

    Account:   SS58 address, CESS prefix 11330 ("cX...") or generic 42 ("5...")   <= 64 chars
    Message:   the bound message of ``gateway.native.signing``                      <= 4096 bytes
               (or, where allowed, for reads, DeOSS's bare one ending in an expiry)  <= 256 bytes
    Signature: 64-byte signature as hex, optionally "0x"-prefixed                 <= 200 chars
    Scheme:    "sr25519" (default) or "ed25519"

The expiry (the whole message, or the part after its last ``|``) is parsed in DeOSS's
order: an integer of unix seconds (1e9 <= v < 1e12), of unix milliseconds
(1e12 <= v < 1e15), then ``YYYY-MM-DD HH:MM:SS`` in UTC. sr25519 signatures may cover the
raw message or ``<Bytes>message</Bytes>`` (polkadot.js ``signRaw``); ed25519 the raw one.

Rejected designs (what DeOSS does and we deliberately do not):

- A message bound to nothing: headers that one gateway, a proxy or a log saw worked once
  at every other gateway the user authorized, on any route; sent to ``POST /keys`` they
  minted a permanent S3 key (security review #1). The bound message names this gateway,
  the method, the target and the body; DeOSS's bare form is refused unless the operator
  allows it, and then for reads only.
- A message without an expiry ("123", "hello") that never expires: a captured header
  triple would then be a bearer credential forever. The expiry is required, and bounded
  by the configured window so a client cannot mint a year-long credential either.
- No replay protection: within its validity, a captured triple could be replayed at will.
  Here a verified (account, signature) is accepted once; ``gateway.native.replay_cache``
  remembers it until its expiry, after which the expiry check alone refuses it, and
  appends it to ``replay.log`` so that a restart forgets none.
- Accepting dev accounts (//Alice...) on any network: their secrets are public, so anyone
  can sign as them. They are refused, sr25519 and ed25519 alike, unless
  ``NativeAuth(dev=True)``.
"""

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from chain_client.keys import SCHEMES, dev_public_keys, verify
from chain_client.ss58 import InvalidAddress, ss58_decode, ss58_encode
from gateway.native.replay_cache import AccountReplayCacheFull, ReplayCache, ReplayCacheFull
from gateway.native.signing import (
    ACCOUNT_HEADER,
    MAX_BARE_MESSAGE_BYTES,
    MAX_BOUND_MESSAGE_BYTES,
    MESSAGE_HEADER,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    UNSIGNED,
    BoundMessage,
    same_target,
)

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_ACCOUNT_LENGTH",
    "MAX_SIGNATURE_LENGTH",
    "AuthError",
    "NativeAuth",
    "Signed",
    "message_expiry",
]

MAX_ACCOUNT_LENGTH: Final = 64
MAX_SIGNATURE_LENGTH: Final = 200
DEFAULT_WINDOW: Final = 300.0
READS: Final = frozenset({"GET", "HEAD"})

_DEFAULT_SCHEME: Final = "sr25519"
_SIGNATURE_HEX: Final = re.compile(r"(?:0x)?([0-9a-fA-F]{128})")
# [0-9], not \d: \d also matches other scripts' digits, which int() would then accept.
_INTEGER: Final = re.compile(r"[0-9]{1,20}")
_DATETIME: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_SECONDS_RANGE: Final = range(10**9, 10**12)
_MILLISECONDS_RANGE: Final = range(10**12, 10**15)


@dataclass(frozen=True, slots=True)
class Signed:
    """Who signed a request, and the body digest they signed: None when the body is
    UNSIGNED (a streamed upload) or the message is DeOSS's bare one (reads only)."""

    account: str
    body_sha256: str | None


class AuthError(Exception):
    """Why a request was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"AuthError(status={self.status}, code={self.code!r}, message={self.message!r})"


class NativeAuth:
    """Checks the native signature headers of a request and who may use this gateway.

    ``gateway`` is this gateway's account address: a bound message must name it, and the
    403 answer does. ``is_authorized(owner)`` tells whether the owner authorized this
    gateway on chain (``oss.is_authorized(owner, gateway)``, cached by the caller); its
    exceptions (chain unreachable) propagate unchanged. ``dev`` is true on a dev network
    only: elsewhere the well-known dev accounts are refused. ``bare_reads`` accepts
    DeOSS's bare message for GET and HEAD (docs/native-api.md §2.2); off by default.
    """

    def __init__(
        self,
        *,
        gateway: str,
        window: float = DEFAULT_WINDOW,
        replay: ReplayCache,
        is_authorized: Callable[[str], Awaitable[bool]],
        clock: Callable[[], float] = time.time,
        dev: bool = False,
        bare_reads: bool = False,
    ) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self.gateway = gateway
        self.window = window
        self.replay = replay
        self.dev = dev
        self.bare_reads = bare_reads
        self._gateway_key = ss58_decode(gateway)[0]
        self._is_authorized = is_authorized
        self._clock = clock
        # Derived here, at startup, so the first request does not block the event loop.
        self._refused_keys = frozenset[bytes]() if dev else dev_public_keys()

    async def authenticate(
        self, headers: Mapping[str, str], *, method: str, target: str, streamed: bool = False
    ) -> Signed:
        """The signer of a request ``method target`` (the path and query as received);
        ``streamed`` routes (uploads whose body is read as it arrives) may sign UNSIGNED."""
        account_text = _required(headers, ACCOUNT_HEADER)
        message_text = _required(headers, MESSAGE_HEADER)
        signature_text = _required(headers, SIGNATURE_HEADER)
        scheme = _header(headers, SCHEME_HEADER) or _DEFAULT_SCHEME

        if len(account_text) > MAX_ACCOUNT_LENGTH:
            raise AuthError(
                400, "HeaderTooLarge", f"{ACCOUNT_HEADER} is longer than {MAX_ACCOUNT_LENGTH} chars"
            )
        if len(signature_text) > MAX_SIGNATURE_LENGTH:
            raise AuthError(
                400,
                "HeaderTooLarge",
                f"{SIGNATURE_HEADER} is longer than {MAX_SIGNATURE_LENGTH} chars",
            )
        message = _message_bytes(message_text)
        if scheme not in SCHEMES:
            raise AuthError(
                400, "UnsupportedScheme", f"{SCHEME_HEADER} must be one of {', '.join(SCHEMES)}"
            )
        try:
            public_key, _ = ss58_decode(account_text)
        except InvalidAddress as exc:
            raise AuthError(400, "InvalidAccount", str(exc)) from None
        account = ss58_encode(public_key)
        signature = _signature_bytes(signature_text)
        body = self._check_binding(message_text, len(message), method, target, streamed)

        expires_at = self._check_expiry(message_text)
        # SECURITY: no constant-time compare is needed here. Verification recomputes a
        # public value (the commitment R) from public inputs and compares it with the one
        # in the signature; no secret takes part, so timing reveals nothing an attacker
        # could not compute. Never log the signature: until it expires it is a credential.
        if not await asyncio.to_thread(_signature_verifies, scheme, public_key, message, signature):
            raise AuthError(401, "InvalidSignature", f"signature does not verify for {account}")
        # SECURITY: a dev account's secret is public, so its signature proves nothing off a
        # dev network. Checked once the signature verified, as the spec orders (step 3).
        if public_key in self._refused_keys:
            raise AuthError(
                401, "DevAccountRefused", f"{account} is a dev account; only dev networks accept it"
            )
        # SECURITY: authorization only after the signature verified, so unauthenticated
        # requests cannot make this gateway query the chain about arbitrary accounts.
        if not await self._is_authorized(account):
            raise AuthError(
                403, "GatewayNotAuthorized", f"authorize this gateway first: {self.gateway}"
            )
        # Claimed last, after every await, so a request refused above (e.g. 403 before the
        # owner authorized the gateway) does not use up the signature.
        try:
            fresh = self.replay.claim(public_key, signature, expires_at, self._clock())
        except AccountReplayCacheFull as exc:
            raise AuthError(
                429,
                "TooManyRequests",
                f"{exc.max_per_account} unexpired signatures of {account} are in use; "
                "retry once some expire",
            ) from None
        except ReplayCacheFull:
            raise AuthError(
                503, "ReplayCacheFull", "too many recent signatures; retry in a few seconds"
            ) from None
        if not fresh:
            raise AuthError(401, "SignatureUsed", "signature already used")
        return Signed(account, body)

    def _check_binding(
        self, text: str, size: int, method: str, target: str, streamed: bool
    ) -> str | None:
        """The signed body digest, once the message is known to be meant for this request."""
        try:
            bound = BoundMessage.parse(text)
        except ValueError as exc:
            raise AuthError(401, "InvalidMessage", str(exc)) from None
        if bound is None:
            # SECURITY: DeOSS's bare message names no gateway or request, so a captured one
            # would work anywhere: at most a read, and only where the operator allows it.
            if not (self.bare_reads and method in READS):
                raise AuthError(
                    401,
                    "UnboundSignature",
                    "sign the deoss-v1 message naming this gateway, the method, the path "
                    "and the body (docs/native-api.md §2.1)"
                    + ("; DeOSS's bare message serves reads only" if self.bare_reads else ""),
                )
            if size > MAX_BARE_MESSAGE_BYTES:
                raise AuthError(
                    400,
                    "HeaderTooLarge",
                    f"a bare {MESSAGE_HEADER} is at most {MAX_BARE_MESSAGE_BYTES} bytes",
                )
            return None
        try:
            named = ss58_decode(bound.gateway)[0]
        except InvalidAddress:
            named = b""
        if named != self._gateway_key:
            raise AuthError(
                401,
                "WrongGateway",
                f"the message is signed for another gateway; this is {self.gateway}",
            )
        if bound.method != method or not same_target(bound.target, target):
            raise AuthError(
                401, "WrongRequest", f"the message is signed for another request than {method}"
            )
        if bound.body == UNSIGNED:
            if not streamed:
                raise AuthError(
                    401, "BodyNotSigned", "only streamed uploads may sign their body UNSIGNED"
                )
            return None
        return bound.body

    def _check_expiry(self, message: str) -> float:
        expires_at = message_expiry(message)
        if expires_at is None:
            raise AuthError(
                401,
                "NoExpiry",
                "message carries no expiry: end it with unix seconds, unix milliseconds or "
                "'YYYY-MM-DD HH:MM:SS' (UTC), after a '|' if anything precedes it",
            )
        now = self._clock()
        if now >= expires_at:
            raise AuthError(401, "Expired", f"message expired at {_utc(expires_at)}")
        if expires_at - now > self.window:
            raise AuthError(
                401,
                "ExpiryTooFar",
                f"message expires {expires_at - now:.0f} s from now; "
                f"at most {self.window:g} s ahead is accepted",
            )
        return expires_at


def message_expiry(message: str) -> float | None:
    """The unix time the message expires at, or None if it names none."""
    text = message.rpartition("|")[2]
    if _INTEGER.fullmatch(text):
        value = int(text)
        if value in _SECONDS_RANGE:
            return float(value)
        if value in _MILLISECONDS_RANGE:
            return value / 1000
    if match := _DATETIME.fullmatch(text):
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:  # month 13, February 30, year 0...
            return None
        return moment.timestamp()
    return None


def _signature_verifies(scheme: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    if verify(scheme, public_key, message, signature):
        return True
    return scheme == "sr25519" and verify(
        scheme, public_key, b"<Bytes>" + message + b"</Bytes>", signature
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp hands over a case-insensitive mapping; a plain dict (tests, other callers)
    # may spell the name in any case too.
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def _required(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if not value:
        raise AuthError(401, "MissingHeader", f"missing header {name}")
    return value


def _message_bytes(message: str) -> bytes:
    too_large = AuthError(
        400, "HeaderTooLarge", f"{MESSAGE_HEADER} is longer than {MAX_BOUND_MESSAGE_BYTES} bytes"
    )
    # Each character is at least one byte: refuse a huge header before encoding it.
    if len(message) > MAX_BOUND_MESSAGE_BYTES:
        raise too_large
    try:
        # surrogateescape undoes aiohttp's decoding of header bytes that are not UTF-8,
        # giving back exactly the bytes the client sent (and signed).
        encoded = message.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise AuthError(400, "InvalidMessage", f"{MESSAGE_HEADER} is not encodable text") from None
    if len(encoded) > MAX_BOUND_MESSAGE_BYTES:
        raise too_large
    return encoded


def _signature_bytes(text: str) -> bytes:
    match = _SIGNATURE_HEX.fullmatch(text)
    if match is None:
        # SECURITY: the value itself stays out of the message (and so out of logs).
        raise AuthError(
            401, "InvalidSignature", "signature must be 64 bytes as hex, optionally 0x-prefixed"
        )
    return bytes.fromhex(match.group(1))


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(sep=" ", timespec="seconds")
