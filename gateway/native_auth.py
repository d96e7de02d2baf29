"""The native (DeOSS-style) identity signature: headers ``Account``, ``Message``, ``Signature``.

What a request carries (DESIGN.md §9; reference/cess-deoss.md §1.3)::

    Account:   SS58 address, CESS prefix 11330 ("cX...") or generic 42 ("5...")   <= 64 chars
    Message:   text whose expiry is its last "|"-separated part                   <= 256 bytes
    Signature: 64-byte signature as hex, optionally "0x"-prefixed                 <= 200 chars
    Scheme:    "sr25519" (default) or "ed25519"

The expiry (the whole message, or the part after its last ``|``) is parsed in DeOSS's
order: an integer of unix seconds (1e9 <= v < 1e12), of unix milliseconds
(1e12 <= v < 1e15), then ``YYYY-MM-DD HH:MM:SS`` in UTC. sr25519 signatures may cover the
raw message or ``<Bytes>message</Bytes>`` (polkadot.js ``signRaw``); ed25519 the raw one.

Rejected designs (what DeOSS does and we deliberately do not):

- A message without an expiry ("123", "hello") that never expires: a captured header
  triple would then be a bearer credential forever. The expiry is required, and bounded
  by the configured window so a client cannot mint a year-long credential either.
- No replay protection: within its validity, a captured triple could be replayed at will.
  Here a verified (account, signature) is accepted once; ``ReplayCache`` remembers it
  until its expiry, after which the expiry check alone refuses it, and appends it to
  ``replay.log`` so that a restart forgets none.
- Accepting dev accounts (//Alice...) on any network: their secrets are public, so anyone
  can sign as them. They are refused unless ``NativeAuth(dev=True)``.
"""

import asyncio
import contextlib
import functools
import hashlib
import heapq
import logging
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

from chain_client.files import fsync_directory, write_atomically
from chain_client.keys import DEV_ACCOUNT_NAMES, SCHEMES, Keypair, dev_keypair, verify
from chain_client.ss58 import InvalidAddress, ss58_decode, ss58_encode

__all__ = [
    "ACCOUNT_HEADER",
    "DEFAULT_MAX_REPLAY_ENTRIES",
    "DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT",
    "DEFAULT_WINDOW",
    "MAX_ACCOUNT_LENGTH",
    "MAX_MESSAGE_BYTES",
    "MAX_SIGNATURE_LENGTH",
    "MESSAGE_HEADER",
    "SCHEME_HEADER",
    "SIGNATURE_HEADER",
    "AccountReplayCacheFull",
    "AuthError",
    "NativeAuth",
    "ReplayCache",
    "ReplayCacheFull",
    "message_expiry",
    "sign_headers",
]

ACCOUNT_HEADER: Final = "Account"
MESSAGE_HEADER: Final = "Message"
SIGNATURE_HEADER: Final = "Signature"
SCHEME_HEADER: Final = "Scheme"

MAX_ACCOUNT_LENGTH: Final = 64
MAX_MESSAGE_BYTES: Final = 256
MAX_SIGNATURE_LENGTH: Final = 200
DEFAULT_WINDOW: Final = 300.0
DEFAULT_MAX_REPLAY_ENTRIES: Final = 100_000
DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT: Final = 10_000

log = logging.getLogger("deoss.native_auth")

_DEFAULT_SCHEME: Final = "sr25519"
_SIGNATURE_HEX: Final = re.compile(r"(?:0x)?([0-9a-fA-F]{128})")
# [0-9], not \d: \d also matches other scripts' digits, which int() would then accept.
_INTEGER: Final = re.compile(r"[0-9]{1,20}")
_DATETIME: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_SECONDS_RANGE: Final = range(10**9, 10**12)
_MILLISECONDS_RANGE: Final = range(10**12, 10**15)
_NONCE_BYTES: Final = 8

# The replay log, version 1: ASCII lines, appended one per claim.
#
#     deoss-replay-log 1\n                        header, written atomically with the file
#     <key: 32 hex> <public key: 64 hex> <expiry: unix seconds, 6 decimals>\n   per claim
#
# key = blake2b-128(public key || signature), as the cache keys it; the public key lets a
# reload restore the per-account counts. Lines are flushed but not fsynced: a process
# crash loses none (they are in the page cache), an OS crash perhaps the last few, whose
# replay window is at most the auth window. A last line without its "\n" is a write cut
# short by a crash and is dropped; any other line that does not parse is skipped with a
# warning. Once most lines are expired, the live ones are rewritten to a new file that
# atomically replaces the log.
_REPLAY_LOG_HEADER: Final = b"deoss-replay-log 1\n"
_REPLAY_RECORD: Final = re.compile(rb"([0-9a-f]{32}) ([0-9a-f]{64}) ([0-9]{1,16}\.[0-9]{6})\n")
# Below this many lines the log is never compacted: a small file is cheap to reload.
_COMPACTION_MIN_LINES: Final = 1024


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


class ReplayCacheFull(Exception):
    """Every slot of the replay cache holds a signature that has not expired yet."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.max_entries = max_entries

    def __str__(self) -> str:
        return f"replay cache full: {self.max_entries} unexpired signatures"


class AccountReplayCacheFull(Exception):
    """One account holds its whole share of the replay cache with unexpired signatures."""

    def __init__(self, max_per_account: int) -> None:
        super().__init__(max_per_account)
        self.max_per_account = max_per_account

    def __str__(self) -> str:
        return f"replay cache full for this account: {self.max_per_account} unexpired signatures"


class ReplayCache:
    """The signatures accepted recently, each kept until its message expires.

    Bounded two ways. Time: an entry is dropped once its expiry passes, because from then
    on the expiry check refuses the message anyway; since an accepted expiry is at most
    ``window`` ahead, no entry lives longer than the window. Count: at most
    ``max_per_account`` unexpired entries per public key (beyond that ``claim`` raises
    ``AccountReplayCacheFull``, answered with 429) and ``max_entries`` in all
    (``ReplayCacheFull``, 503); a live entry is never forgotten to make room, which would
    reopen replay. Size it as peak accepted requests per second times the window: 100k
    covers 333/s sustained over 300 s, in about 30 MB. Only verified signatures of
    accounts that authorized this gateway are stored, so only such an account can fill it.

    With a ``path``, every claim is also appended to that log (format above) and the log
    is reloaded here, skipping entries expired by ``clock()``; ``close()`` it when done.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_REPLAY_ENTRIES,
        max_per_account: int = DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_per_account < 1:
            raise ValueError(f"max_per_account must be at least 1, got {max_per_account}")
        self.max_entries = max_entries
        self.max_per_account = max_per_account
        self.path = path
        self._keys: set[bytes] = set()
        # Invariant: exactly one heap item per key in _keys, and _live_by_account counts
        # them per public key, because a key is only inserted when absent and only removed
        # by eviction; so eviction needs no lazy-deletion checks.
        self._by_expiry: list[tuple[float, bytes, bytes]] = []  # (expires_at, key, public key)
        self._live_by_account: dict[bytes, int] = {}
        self._log: BinaryIO | None = None
        self._log_lines = 0
        self._compaction_floor = _COMPACTION_MIN_LINES
        if path is not None:
            self._load(path, clock())
            self._log = path.open("ab")
            self._compact_if_mostly_expired()

    def __len__(self) -> int:
        return len(self._keys)

    def claim(self, public_key: bytes, signature: bytes, expires_at: float, now: float) -> bool:
        """Records the signature; False if it is already recorded. Synchronous on purpose:
        no await between the lookup and the insert, so two concurrent requests with the
        same signature cannot both pass."""
        self.evict_expired(now)
        # Keyed by the public key, not the address text: "cX..." and "5..." spellings of
        # one account must not give one signature two lives. A 128-bit digest keeps entries
        # small; a collision would need a 2^64 birthday search over valid signatures.
        key = hashlib.blake2b(public_key + signature, digest_size=16).digest()
        if key in self._keys:
            return False
        if self._live_by_account.get(public_key, 0) >= self.max_per_account:
            raise AccountReplayCacheFull(self.max_per_account)
        if len(self._keys) >= self.max_entries:
            raise ReplayCacheFull(self.max_entries)
        self._insert(key, public_key, expires_at)
        # An entry already expired needs no record: its message is refused as expired.
        if self._log is not None and expires_at > now:
            self._log.write(_replay_record(key, public_key, expires_at))
            # Flushed to the kernel so that a process crash loses nothing; not fsynced,
            # which would cost a disk round trip per request on the event loop.
            self._log.flush()
            self._log_lines += 1
            self._compact_if_mostly_expired()
        return True

    def evict_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] <= now:
            _, key, public_key = heapq.heappop(self._by_expiry)
            self._keys.remove(key)
            remaining = self._live_by_account[public_key] - 1
            if remaining:
                self._live_by_account[public_key] = remaining
            else:
                del self._live_by_account[public_key]

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def _insert(self, key: bytes, public_key: bytes, expires_at: float) -> None:
        self._keys.add(key)
        heapq.heappush(self._by_expiry, (expires_at, key, public_key))
        self._live_by_account[public_key] = self._live_by_account.get(public_key, 0) + 1

    def _load(self, path: Path, now: float) -> None:
        if not path.exists() or path.stat().st_size == 0:
            write_atomically(path, _REPLAY_LOG_HEADER)
            return
        with path.open("rb") as handle:
            header = handle.readline()
            if header != _REPLAY_LOG_HEADER:
                raise ValueError(f"replay log {path}: not a version 1 log (header {header[:40]!r})")
            intact = len(header)
            for line_number, line in enumerate(handle, start=2):
                if not line.endswith(b"\n"):
                    break  # the last line, cut short by a crash
                intact += len(line)
                self._log_lines += 1
                match = _REPLAY_RECORD.fullmatch(line)
                if match is None:
                    log.warning("replay log %s line %d: not a record; skipped", path, line_number)
                    continue
                key = bytes.fromhex(match[1].decode())
                expires_at = float(match[3])
                if expires_at > now and key not in self._keys:
                    self._insert(key, bytes.fromhex(match[2].decode()), expires_at)
        if path.stat().st_size > intact:
            log.info("replay log %s: dropping a partial last line", path)
            # Cut it off, or the next record appended would extend it into one bad line.
            os.truncate(path, intact)

    def _compact_if_mostly_expired(self) -> None:
        # Amortized O(1) per claim: a compaction writes fewer lines than it removes.
        if self._log is None or self.path is None:
            return
        if self._log_lines < self._compaction_floor or 2 * len(self._keys) >= self._log_lines:
            return
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        compacted = os.fdopen(fd, "wb")
        try:
            compacted.write(_REPLAY_LOG_HEADER)
            for expires_at, key, public_key in self._by_expiry:
                compacted.write(_replay_record(key, public_key, expires_at))
            compacted.flush()
            os.fsync(compacted.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            compacted.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            # The old log is still whole: keep appending to it, and retry once it doubles.
            log.warning("replay log %s: compaction failed: %s", self.path, exc)
            self._compaction_floor = 2 * self._log_lines
            return
        # From the rename on, the compacted file is the log: append to it.
        self._log.close()
        self._log = compacted
        self._log_lines = len(self._keys)
        self._compaction_floor = _COMPACTION_MIN_LINES
        try:
            fsync_directory(self.path.parent)
        except OSError as exc:
            # The rename may not survive an OS crash; the old log then returns, lacking
            # only appends that were not fsynced anyway.
            log.warning("replay log %s: directory fsync failed: %s", self.path, exc)


class NativeAuth:
    """Checks the native signature headers of a request and who may use this gateway.

    ``gateway`` is this gateway's account address, named in the 403 answer.
    ``is_authorized(owner)`` tells whether the owner authorized this gateway on chain
    (``oss.is_authorized(owner, gateway)``, cached by the caller); its exceptions (chain
    unreachable) propagate unchanged. ``dev`` is true on a dev network only: elsewhere the
    well-known dev accounts are refused.
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
    ) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self.gateway = gateway
        self.window = window
        self.replay = replay
        self.dev = dev
        self._is_authorized = is_authorized
        self._clock = clock
        # Derived here, at startup, so the first request does not block the event loop.
        self._refused_keys = frozenset[bytes]() if dev else _dev_public_keys()

    async def authenticate(self, headers: Mapping[str, str]) -> str:
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
        return account

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


def sign_headers(
    keypair: Keypair, *, now: float | None = None, ttl: int = 60, purpose: str = ""
) -> dict[str, str]:
    """The headers a client sends: message ``[purpose|]nonce|expiry``, signed raw."""
    if ttl < 1:
        raise ValueError(f"ttl must be at least 1 second, got {ttl}")
    # HTTP trims a header value's outer whitespace and forbids control characters, either
    # of which would make the received message differ from the signed one.
    if purpose and not (purpose.isascii() and purpose.isprintable() and purpose == purpose.strip()):
        raise ValueError(f"purpose must be printable ASCII without outer spaces, got {purpose!r}")
    # Rounded down, so the expiry is never more than ttl ahead (a server window of ttl holds).
    expires_at = int(time.time() if now is None else now) + ttl
    # The nonce makes two messages of one second differ: ed25519 signatures are
    # deterministic, so without it the second request would be refused as a replay.
    nonce = secrets.token_hex(_NONCE_BYTES)
    message = f"{purpose}|{nonce}|{expires_at}" if purpose else f"{nonce}|{expires_at}"
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        raise ValueError(f"purpose too long: the message must fit in {MAX_MESSAGE_BYTES} bytes")
    return {
        ACCOUNT_HEADER: keypair.address,
        MESSAGE_HEADER: message,
        SIGNATURE_HEADER: "0x" + keypair.sign(message.encode()).hex(),
        SCHEME_HEADER: keypair.scheme,
    }


def _replay_record(key: bytes, public_key: bytes, expires_at: float) -> bytes:
    return f"{key.hex()} {public_key.hex()} {expires_at:.6f}\n".encode()


@functools.cache
def _dev_public_keys() -> frozenset[bytes]:
    # Only sr25519 dev keys: chain_client.keys derives no ed25519 ones.
    return frozenset(dev_keypair(name).public_key for name in DEV_ACCOUNT_NAMES)


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
        400, "HeaderTooLarge", f"{MESSAGE_HEADER} is longer than {MAX_MESSAGE_BYTES} bytes"
    )
    # Each character is at least one byte: refuse a huge header before encoding it.
    if len(message) > MAX_MESSAGE_BYTES:
        raise too_large
    try:
        # surrogateescape undoes aiohttp's decoding of header bytes that are not UTF-8,
        # giving back exactly the bytes the client sent (and signed).
        encoded = message.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise AuthError(400, "InvalidMessage", f"{MESSAGE_HEADER} is not encodable text") from None
    if len(encoded) > MAX_MESSAGE_BYTES:
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
