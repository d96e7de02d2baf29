"""Signed HTTP requests between nodes (gateway -> miner), docs/miner-protocol.md §1.

The signature covers the method, the path with its query, the time, the body's sha256 and
the receiver's address, so a request can be neither altered, moved to another receiver,
nor replayed outside a short window.
"""

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from chain_client.keys import Keypair, verify
from chain_client.ss58 import InvalidAddress, canonical_address, ss58_decode
from chain_client.strict import ascii_int

__all__ = [
    "ACCOUNT",
    "CONTENT_SHA256",
    "EMPTY_SHA256",
    "MAX_SKEW",
    "SIGNATURE",
    "TIME",
    "RequestAuthError",
    "SignedRequest",
    "request_message",
    "sign_request",
]

ACCOUNT = "X-Deoss-Account"
TIME = "X-Deoss-Time"
CONTENT_SHA256 = "X-Deoss-Content-SHA256"
SIGNATURE = "X-Deoss-Signature"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = 300


class RequestAuthError(Exception):
    """Why a request's signature was refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def request_message(
    method: str, path_qs: str, timestamp: int, content_sha256: str, receiver: str
) -> bytes:
    return "\n".join(
        [
            "deoss/request\0" + method.upper(),
            path_qs,
            str(timestamp),
            content_sha256,
            canonical_address(receiver),
        ]
    ).encode()


def sign_request(
    keypair: Keypair,
    method: str,
    path_qs: str,
    receiver: str,
    *,
    content_sha256: str = EMPTY_SHA256,
    now: float | None = None,
) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    message = request_message(method, path_qs, timestamp, content_sha256, receiver)
    return {
        ACCOUNT: keypair.address,
        TIME: str(timestamp),
        CONTENT_SHA256: content_sha256,
        SIGNATURE: "0x" + keypair.sign(message).hex(),
    }


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parsed signature headers of a request, not yet verified."""

    account: str
    timestamp: int
    content_sha256: str
    signature: bytes

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, now: float | None = None
    ) -> "SignedRequest":
        missing = [
            name for name in (ACCOUNT, TIME, CONTENT_SHA256, SIGNATURE) if name not in headers
        ]
        if missing:
            raise RequestAuthError(401, "Unsigned", f"missing header {missing[0]}")
        try:
            account = canonical_address(headers[ACCOUNT])
        except InvalidAddress as exc:
            raise RequestAuthError(401, "BadAccount", str(exc)) from None
        raw_time, digest, raw_signature = headers[TIME], headers[CONTENT_SHA256], headers[SIGNATURE]
        timestamp = ascii_int(raw_time, max_digits=12)
        if timestamp is None:
            raise RequestAuthError(401, "BadTime", f"{TIME} must be unix seconds")
        current = time.time() if now is None else now
        if abs(current - timestamp) > MAX_SKEW:
            raise RequestAuthError(401, "RequestTimeSkewed", f"more than {MAX_SKEW} s from now")
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise RequestAuthError(400, "BadContentHash", f"{CONTENT_SHA256} must be 64 hex")
        if not raw_signature.startswith("0x") or len(raw_signature) != 130:
            raise RequestAuthError(401, "BadSignature", "0x followed by 128 hex digits")
        try:
            signature = bytes.fromhex(raw_signature[2:])
        except ValueError:
            raise RequestAuthError(401, "BadSignature", "not hex") from None
        return cls(account, timestamp, digest, signature)

    def verify(self, scheme: str, method: str, path_qs: str, receiver: str) -> None:
        public_key, _ = ss58_decode(self.account)
        message = request_message(method, path_qs, self.timestamp, self.content_sha256, receiver)
        if not verify(scheme, public_key, message, self.signature):
            raise RequestAuthError(
                401, "BadSignature", f"signature does not verify for {self.account}"
            )
