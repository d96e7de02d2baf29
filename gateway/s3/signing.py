"""What S3's signature schemes share: the request as a verifier sees it, the result and
the refusal, payload modes, dates and clock skew, and S3's error texts.

``sigv4`` (which holds the ``authenticate`` entry point) and ``sigv2`` both build on this
module and on nothing of each other's but the dispatch, so neither imports in a cycle.

Request text is kept as received: the query is percent-decoded with bytes that are not
UTF-8 carried as surrogates (``surrogateescape``), so a signature covers the exact bytes
and two different byte strings never canonicalise alike.
"""

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

__all__ = [
    "CONTENT_SHA256",
    "DIGITS",
    "EMPTY_SHA256",
    "MAX_PRESIGNED_EXPIRES",
    "MAX_SKEW_SECONDS",
    "AuthResult",
    "ChunkSigningContext",
    "ParsedRequest",
    "PayloadMode",
    "QueryParam",
    "S3AuthError",
    "Scheme",
    "SecretLookup",
    "bad_argument",
    "canonical_paths",
    "check_skew",
    "denied",
    "iso",
    "missing_date",
    "parse_amz_date",
    "parse_http_date",
    "parse_request",
    "payload_mode",
    "signature_mismatch",
    "unknown_key",
]

Scheme = Literal["v4-header", "v4-query", "v2-header", "v2-query"]
PayloadMode = Literal[
    "signed",
    "unsigned",
    "streaming-signed",
    "streaming-signed-trailer",
    "streaming-unsigned-trailer",
]
SecretLookup = Callable[[str], str | None]

# How far ahead a presigned URL may expire, V4 and V2 alike: AWS's 7 days.
MAX_PRESIGNED_EXPIRES: Final = 7 * 24 * 3600
MAX_SKEW_SECONDS: Final = 15 * 60.0
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
CONTENT_SHA256: Final = "x-amz-content-sha256"
DIGITS: Final = re.compile(r"[0-9]{1,12}")

_PAYLOAD_CONSTANTS: Final[Mapping[str, PayloadMode]] = {
    "UNSIGNED-PAYLOAD": "unsigned",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": "streaming-signed",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": "streaming-signed-trailer",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": "streaming-unsigned-trailer",
}
_AMZ_DATE: Final = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SHA256_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")
_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
)
_HEXDIGITS: Final = frozenset(b"0123456789abcdefABCDEF")


class S3AuthError(Exception):
    """A refused request: HTTP status, S3 error code and message, and the extra elements
    S3 puts in its error document (``details``, e.g. ``HeadersNotSigned``)."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        # Request text may hold undecodable bytes (as surrogates); the XML writer needs UTF-8.
        message = _printable(message)
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = {name: _printable(value) for name, value in (details or {}).items()}

    def __repr__(self) -> str:
        return f"S3AuthError({self.status}, {self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class ChunkSigningContext:
    """What verifying ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` chunks needs."""

    signing_key: bytes = field(repr=False)  # SECURITY: a credential for the whole day
    seed_signature: str
    scope: str  # "20130524/us-east-1/s3/aws4_request"
    amz_date: str  # "20130524T000000Z"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who signed a request, and how its body must be checked.

    ``payload_sha256`` is set when ``payload == "signed"``: the body must hash to it
    (``check_payload_sha256``). ``chunk_signing`` is set for the signed streaming modes.
    ``region`` is the V4 credential scope's.
    """

    access_key: str
    scheme: Scheme
    payload: PayloadMode
    payload_sha256: str | None = None
    chunk_signing: ChunkSigningContext | None = None
    region: str | None = None

    def check_payload_sha256(self, computed_hex: str) -> None:
        """Compare the body's SHA-256 with the signed one; no-op unless ``signed``."""
        if self.payload != "signed" or self.payload_sha256 is None:
            return
        if not hmac.compare_digest(self.payload_sha256.lower(), computed_hex.lower()):
            raise S3AuthError(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                {
                    "ClientComputedContentSHA256": self.payload_sha256,
                    "S3ComputedContentSHA256": computed_hex,
                },
            )


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str  # percent-decoded; bytes that are not UTF-8 kept as surrogates
    value: str
    has_value: bool  # "uploads=" rather than "uploads"


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    method: str
    raw_path: str
    query: list[QueryParam]
    headers: dict[str, list[str]]  # lowercase name -> values in order received
    now: float

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return None if values is None else ",".join(values)

    def params(self, name: str) -> list[str]:
        return [param.value for param in self.query if param.name == name]


def parse_request(
    method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], now: float
) -> ParsedRequest:
    """``headers`` may be a multidict: repeated headers keep their order, under one name."""
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(name.lower(), []).append(value)
    query = [
        QueryParam(_decode(name), _decode(value), bool(sep))
        for name, sep, value in (pair.partition("=") for pair in raw_query.split("&") if pair)
    ]
    return ParsedRequest(method, raw_path, query, collected, now)


def _decode(component: str) -> str:
    return unquote_to_bytes(component.replace("+", " ")).decode("utf-8", "surrogateescape")


def canonical_paths(raw_path: str) -> tuple[str, ...]:
    """The path as sent, then (if different) its strict AWS encoding: valid escapes kept
    with upper-case hex, every other byte but unreserved ones and ``/`` escaped. Both
    decode to the same bytes, so accepting either changes no request's meaning."""
    data = raw_path.encode("utf-8", "surrogateescape")
    out, i = [], 0
    while i < len(data):
        byte = data[i]
        if byte == 0x25 and i + 2 < len(data) and set(data[i + 1 : i + 3]) <= _HEXDIGITS:
            out.append("%" + data[i + 1 : i + 3].decode().upper())
            i += 3
            continue
        out.append(chr(byte) if byte in _UNRESERVED or byte == 0x2F else f"%{byte:02X}")
        i += 1
    strict = "".join(out)
    return (raw_path,) if strict == raw_path else (raw_path, strict)


def payload_mode(value: str, *, streaming_signed: bool) -> tuple[PayloadMode, str | None]:
    """The mode an ``x-amz-content-sha256`` value names, and the body hash if it is one.
    The signed streaming modes need a V4 seed signature: ``streaming_signed=False``
    refuses them."""
    mode = _PAYLOAD_CONSTANTS.get(value)
    if mode is not None and (streaming_signed or not mode.startswith("streaming-signed")):
        return mode, None
    if mode is None and _SHA256_HEX.fullmatch(value):
        return "signed", value.lower()
    signed_modes = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], " if streaming_signed else ""
    raise bad_argument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        f"{signed_modes}or a valid sha256 value.",
        CONTENT_SHA256,
        value,
    )


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_amz_date(value: str | None) -> datetime | None:
    if value is None or not _AMZ_DATE.fullmatch(value.strip()):
        return None
    try:
        return datetime.strptime(value.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_http_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_skew(timestamp: datetime, now: float, max_skew: float) -> None:
    if abs(timestamp.timestamp() - now) > max_skew:
        raise S3AuthError(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            {
                "RequestTime": iso(timestamp.timestamp()),
                "ServerTime": iso(now),
                "MaxAllowedSkewMilliseconds": str(int(max_skew * 1000)),
            },
        )


def denied(message: str, details: Mapping[str, str] | None = None) -> S3AuthError:
    return S3AuthError(403, "AccessDenied", message, details)


def missing_date() -> S3AuthError:
    return denied("AWS authentication requires a valid Date or x-amz-date header")


def bad_argument(message: str, name: str, value: str | None = None) -> S3AuthError:
    details = {"ArgumentName": name} | ({} if value is None else {"ArgumentValue": value})
    return S3AuthError(400, "InvalidArgument", message, details)


def unknown_key(access_key: str) -> S3AuthError:
    message = "The AWS Access Key Id you provided does not exist in our records."
    return S3AuthError(403, "InvalidAccessKeyId", message, {"AWSAccessKeyId": access_key})


def signature_mismatch(
    access_key: str, provided: str, string_to_sign: str, canonical_request: str | None
) -> S3AuthError:
    # As S3 does: what was signed helps a client find its mistake, and reveals no secret.
    details = {"AWSAccessKeyId": access_key, "SignatureProvided": provided}
    details["StringToSign"] = string_to_sign
    if canonical_request is not None:
        details["CanonicalRequest"] = canonical_request
    return S3AuthError(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        details,
    )
