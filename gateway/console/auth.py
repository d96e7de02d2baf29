"""Console sessions (docs/console.md §2, §3): signed cookies, login challenges and CSRF
tokens, all MACed with one key the gateway process holds.

A token, the cookie's value, is ``v1.<payload>.<mac>``: the payload is compact JSON in
unpadded base64url, the mac HMAC-SHA256 over ``purpose ‖ 0x00 ‖ payload`` (purposes
``session``, ``login`` and ``csrf``, so no token passes for another kind), also base64url.

    session  {"a": account, "e": expiry, "i": issued, "k": access key id or "",
              "m": "signature" | "access_key", "s": session id (32 hex)}
    login    {"c": challenge (32 hex), "e": expiry}

Rejected designs:

- A key derived from the master key, so sessions outlive a restart: so would the cookies
  of those who logged out, unless every logout were written down. The key is random per
  process instead; a restart ends every session, and a logout, kept in memory until the
  session would have expired, ends one for good.
- Sessions kept server-side: a table to bound and expire for what a MAC proves alone.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from gateway.console.errors import ConsoleError

__all__ = [
    "ACCESS_KEY",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "MAX_REVOKED",
    "SESSION_COOKIE",
    "SIGNATURE",
    "Authorizations",
    "Session",
    "Sessions",
]

SESSION_COOKIE: Final = "deoss_console"
LOGIN_COOKIE: Final = "deoss_console_login"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SIGNATURE: Final = "signature"
ACCESS_KEY: Final = "access_key"
MAX_TOKEN_CHARS: Final = 1024
MAX_REVOKED: Final = 100_000  # logouts remembered; past it the key changes (all log out)

_VERSION: Final = "v1"
_B64: Final = re.compile(r"[A-Za-z0-9_-]{1,1000}")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_AUTHORIZED_TTL, _REFUSED_TTL = 30.0, 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    account: str
    method: str  # SIGNATURE or ACCESS_KEY: how the user logged in
    access_key: str  # the S3 key id it logged in with ("" for a signature)
    session_id: str
    issued: int
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    if not _B64.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:  # a length no encoder writes (one char past a multiple of four)
        return None


class Sessions:
    """Issues and checks the console's tokens; ``clock`` gives unix seconds."""

    def __init__(
        self,
        *,
        ttl: float,
        login_ttl: float,
        clock: Callable[[], float] = time.time,
        max_revoked: int = MAX_REVOKED,
    ) -> None:
        self.ttl, self.login_ttl = int(ttl), int(login_ttl)
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._revoked: dict[str, int] = {}  # session id -> its expiry
        self._max_revoked = max_revoked

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()

    def _seal(self, purpose: str, fields: dict[str, Any]) -> str:
        payload = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return f"{_VERSION}.{_b64(payload)}.{_b64(self._mac(purpose, payload))}"

    def _unseal(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        """The token's fields when it is one of ours, of this purpose, not expired."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        version, _, rest = token.partition(".")
        encoded, _, mac_text = rest.partition(".")
        payload, mac = _unb64(encoded), _unb64(mac_text)
        if version != _VERSION or payload is None or mac is None:
            return None
        # SECURITY: constant-time compare, so timing does not tell a forger how much of a
        # MAC it got right.
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return None
        fields: dict[str, Any] = json.loads(payload)  # ours, as the MAC proves
        if not isinstance(fields.get("e"), int) or fields["e"] <= self._clock():
            return None
        return fields

    # -- sessions ------------------------------------------------------------------------

    def issue(self, account: str, method: str, access_key: str = "") -> tuple[Session, str]:
        now = int(self._clock())
        session = Session(
            account=account,
            method=method,
            access_key=access_key,
            session_id=secrets.token_hex(16),
            issued=now,
            expires=now + self.ttl,
        )
        fields = {
            "a": account,
            "e": session.expires,
            "i": now,
            "k": access_key,
            "m": method,
            "s": session.session_id,
        }
        return session, self._seal("session", fields)

    def open(self, token: str | None) -> Session:
        """The session a cookie carries; 401 when there is none, it is not ours, it has
        expired or it was logged out."""
        if not token:
            raise ConsoleError(401, "NoSession", "log in first")
        fields = self._unseal("session", token)
        if fields is None:
            raise ConsoleError(401, "BadSession", "the session cookie is forged or expired")
        session = Session(
            account=str(fields["a"]),
            method=str(fields["m"]),
            access_key=str(fields["k"]),
            session_id=str(fields["s"]),
            issued=int(fields["i"]),
            expires=int(fields["e"]),
        )
        if session.session_id in self._revoked:
            raise ConsoleError(401, "SessionEnded", "this session was logged out")
        return session

    def revoke(self, session: Session) -> None:
        now = self._clock()
        self._revoked = {s: e for s, e in self._revoked.items() if e > now}
        if len(self._revoked) >= self._max_revoked:
            # SECURITY: never forget a live logout to make room: change the key, which
            # ends every session at once, the logged-out ones included.
            self._key = secrets.token_bytes(32)
            self._revoked.clear()
            return
        self._revoked[session.session_id] = session.expires

    # -- CSRF ----------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        """The token every state-changing request of the session carries: a MAC of the
        session id, so it is good for this session only."""
        return _b64(self._mac("csrf", session.session_id.encode()))

    def check_csrf(self, session: Session, token: str | None) -> None:
        expected = self.csrf_token(session)
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise ConsoleError(
                403, "CsrfRefused", "the form's CSRF token is missing or not this session's"
            )

    # -- login challenges ----------------------------------------------------------------

    def challenge(self) -> tuple[str, str]:
        """A fresh login challenge and the cookie that ties it to this browser."""
        challenge = secrets.token_hex(16)
        expires = int(self._clock()) + self.login_ttl
        return challenge, self._seal("login", {"c": challenge, "e": expires})

    def check_challenge(self, token: str | None, given: str | None) -> None:
        """The login form's challenge must be the one this browser was given."""
        fields = self._unseal("login", token)
        if fields is None:
            raise ConsoleError(
                403,
                "LoginChallengeRefused",
                "no login challenge for this browser, or it expired: open the login page again",
            )
        if not given or not _HEX32.fullmatch(given):
            raise ConsoleError(400, "InvalidChallenge", "challenge is 32 hex digits")
        if not hmac.compare_digest(given.encode(), str(fields["c"]).encode()):
            raise ConsoleError(
                403,
                "LoginChallengeRefused",
                "this challenge is not the one this browser was given: open the login page again",
            )


class Authorizations:
    """Whether an account authorized this gateway on chain (``oss.is_authorized``),
    cached as the native API caches it: 30 s when yes, 5 s when no."""

    def __init__(
        self,
        query: Callable[[str], Awaitable[bool]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._query = query
        self._clock = clock
        self._cache: dict[str, tuple[float, bool]] = {}

    async def __call__(self, owner: str) -> bool:
        cached = self._cache.get(owner)
        if cached is not None:
            ttl = _AUTHORIZED_TTL if cached[1] else _REFUSED_TTL
            if self._clock() - cached[0] < ttl:
                return cached[1]
        allowed = await self._query(owner)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[owner] = (self._clock(), allowed)
        return allowed
