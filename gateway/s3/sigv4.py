"""S3 request authentication: AWS Signature Version 4 and the legacy Version 2.

Specs followed (S3 API reference): "Authenticating Requests (AWS Signature Version 4)"
(the ``Authorization`` header, presigned ``X-Amz-*`` query parameters, and the seed of
``aws-chunked`` streaming uploads) and "Signing and Authenticating REST Requests"
(Version 2: ``Authorization: AWS key:signature`` and presigned ``AWSAccessKeyId``/
``Signature``/``Expires``). Where the prose is loose, botocore's signers (auth.py:
``S3SigV4Auth``, ``S3SigV4QueryAuth``, ``HmacV1Auth``, ``HmacV1QueryAuth``) decide.
Errors carry S3's status codes, error codes and messages.

S3's flavour of V4 signs the path as sent: no normalisation, no second encoding. The
query is canonicalised from its decoded form (``+`` is a space, as aiohttp decodes it),
so the signature covers what the handler will read.

Rejected designs:

- Trusting unsigned ``x-amz-*`` headers: they steer S3 (copy source, ACLs, metadata), so
  a V4 request carrying one it did not sign is refused, as S3 does (``AccessDenied``,
  "There were headers present in the request which were not signed").
  ``x-amz-content-sha256`` is exempt: its value is the canonical request's last line.
- Decoding the query leniently (UTF-8 with replacement): two different byte strings
  would canonicalise alike. Percent-escapes are compared as bytes.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "EMPTY_SHA256",
    "MAX_PRESIGNED_EXPIRES",
    "MAX_SKEW_SECONDS",
    "AuthResult",
    "ChunkSigningContext",
    "PayloadMode",
    "S3AuthError",
    "Scheme",
    "SecretLookup",
    "authenticate",
    "derive_signing_key",
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

MAX_SKEW_SECONDS: Final = 15 * 60.0
MAX_PRESIGNED_EXPIRES: Final = 7 * 24 * 3600
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

_V4_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TERMINAL: Final = "aws4_request"
_CONTENT_SHA256: Final = "x-amz-content-sha256"
_PAYLOAD_CONSTANTS: Final[Mapping[str, PayloadMode]] = {
    "UNSIGNED-PAYLOAD": "unsigned",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": "streaming-signed",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": "streaming-signed-trailer",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": "streaming-unsigned-trailer",
}
# fmt: off
_V4_QUERY_PARAMS: Final = (
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
    "X-Amz-SignedHeaders", "X-Amz-Expires",
)
# botocore's HmacV1Auth.QSAOfInterest: the query parameters V2 signs in the resource.
_V2_SUBRESOURCES: Final = frozenset((
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber",
    "policy", "requestPayment", "torrent", "versioning", "versionId", "versions", "website",
    "uploads", "uploadId", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "delete", "lifecycle", "tagging", "restore", "storageClass",
    "notification", "replication", "analytics", "metrics", "inventory", "select",
    "select-type", "object-lock",
))
# fmt: on
_AMZ_DATE: Final = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SHA256_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS: Final = re.compile(r"[0-9]{1,12}")
_CREDENTIAL_DATE: Final = re.compile(r"[0-9]{8}")
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


def derive_signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The V4 signing key of a day (``YYYYMMDD``), region and service."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, _TERMINAL):
        key = hmac.new(key, part.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return key


@dataclass(frozen=True, slots=True)
class _Param:
    name: str  # percent-decoded; bytes that are not UTF-8 kept as surrogates
    value: str
    has_value: bool  # "uploads=" rather than "uploads"


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    raw_path: str
    query: list[_Param]
    headers: dict[str, list[str]]  # lowercase name -> values in order received
    now: float

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return None if values is None else ",".join(values)

    def params(self, name: str) -> list[str]:
        return [param.value for param in self.query if param.name == name]


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    *,
    now: float,
    secret_for: SecretLookup,
    region: str | None = None,
    v2_resource_prefix: str = "",
    max_skew: float = MAX_SKEW_SECONDS,
) -> AuthResult | None:
    """Check a request's signature; None when it carries none (anonymous).

    ``raw_path`` is the path exactly as on the request line, without the query (in
    aiohttp: ``request.raw_path.partition("?")[0]``); ``raw_query`` the query as sent,
    without ``?``. ``headers`` may be a multidict: repeated headers are joined with ``,``
    in the order received. ``now`` is unix time. ``secret_for(access_key)`` is the key's
    secret, or None for an unknown key. ``region``, when given, is the only region a V4
    credential scope may name. ``v2_resource_prefix`` is ``/<bucket>`` for virtual-host
    style requests (V2 signs the resource as ``/bucket/key`` however it was addressed),
    empty for path style. Raises ``S3AuthError``.
    """
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(name.lower(), []).append(value)
    query = [
        _Param(_decode(name), _decode(value), bool(sep))
        for name, sep, value in (pair.partition("=") for pair in raw_query.split("&") if pair)
    ]
    request = _Request(method, raw_path, query, collected, now)
    names = {param.name for param in query}
    authorization = request.header("authorization")
    v4_query = bool(names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
    v2_query = bool(names & {"AWSAccessKeyId", "Signature"})
    if (authorization is not None) + v4_query + v2_query > 1:
        raise _bad_argument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            "Authorization",
        )
    if authorization is not None:
        if authorization.startswith(_V4_ALGORITHM + " "):
            claim = _v4_header_claim(request, authorization[len(_V4_ALGORITHM) :])
        elif authorization.startswith("AWS "):
            return _v2_header(request, authorization[4:], secret_for, v2_resource_prefix, max_skew)
        else:
            raise _bad_argument("Unsupported Authorization Type", "Authorization", authorization)
    elif v4_query:
        claim = _v4_query_claim(request, max_skew)
    elif v2_query:
        return _v2_query(request, secret_for, v2_resource_prefix)
    else:
        return None
    return _verify_v4(request, claim, secret_for, region, max_skew)


def _decode(component: str) -> str:
    return unquote_to_bytes(component.replace("+", " ")).decode("utf-8", "surrogateescape")


def _encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogateescape"), safe="-_.~")


def _canonical_paths(raw_path: str) -> tuple[str, ...]:
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


# --- Signature Version 4 ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _V4Claim:
    scheme: Literal["v4-header", "v4-query"]
    credential: str
    signed_headers: str
    signature: str
    timestamp: datetime
    payload_hash: str
    canonical_query: str

    def malformed(
        self, detail: str, details: Mapping[str, str] | None = None, *, credential: bool = True
    ) -> S3AuthError:
        if self.scheme == "v4-header":
            message = f"The authorization header is malformed; {detail}"
            return S3AuthError(400, "AuthorizationHeaderMalformed", message, details)
        if credential:
            detail = f"Error parsing the X-Amz-Credential parameter; {detail}"
        return S3AuthError(400, "AuthorizationQueryParametersError", detail, details)


def _v4_header_claim(request: _Request, fields_text: str) -> _V4Claim:
    fields: dict[str, str] = {}
    for part in fields_text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name in fields or name not in ("Credential", "SignedHeaders", "Signature"):
            raise _header_malformed(f'the authorization component "{part.strip()}" is malformed.')
        fields[name] = value
    if len(fields) != 3:
        raise _header_malformed(
            "the authorization header requires three components: "
            "Credential, SignedHeaders, and Signature."
        )
    amz_date, date = request.header("x-amz-date"), request.header("date")
    timestamp = _parse_amz_date(amz_date) if amz_date is not None else _parse_http_date(date)
    if timestamp is None:
        raise _missing_date()
    payload_hash = request.header(_CONTENT_SHA256)
    if payload_hash is None:
        raise S3AuthError(
            400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
        )
    return _V4Claim(
        "v4-header",
        fields["Credential"],
        fields["SignedHeaders"],
        fields["Signature"],
        timestamp,
        payload_hash,
        _canonical_query(request.query, exclude=None),
    )


def _v4_query_claim(request: _Request, max_skew: float) -> _V4Claim:
    values: dict[str, str] = {}
    for name in _V4_QUERY_PARAMS:
        found = request.params(name)
        if len(found) != 1:
            raise _query_error(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                "and X-Amz-Expires parameters."
            )
        values[name] = found[0]
    if values["X-Amz-Algorithm"] != _V4_ALGORITHM:
        raise _query_error(f'X-Amz-Algorithm only supports "{_V4_ALGORITHM}"')
    timestamp = _parse_amz_date(values["X-Amz-Date"])
    if timestamp is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = values["X-Amz-Expires"]
    if not _DIGITS.fullmatch(expires_text):
        raise _query_error("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if not 1 <= expires <= MAX_PRESIGNED_EXPIRES:
        raise _query_error(
            "X-Amz-Expires must be at least 1 and less than a week (in seconds) that is 604800"
        )
    signed_at = timestamp.timestamp()
    if request.now > signed_at + expires:
        raise _denied(
            "Request has expired",
            {
                "X-Amz-Expires": expires_text,
                "Expires": _iso(signed_at + expires),
                "ServerTime": _iso(request.now),
            },
        )
    if signed_at - request.now > max_skew:
        raise _denied("Request is not valid yet")
    signed_headers = values["X-Amz-SignedHeaders"]
    # A payload hash binds the body only if the presigner signed the header carrying it.
    content_sha256 = request.header(_CONTENT_SHA256)
    if content_sha256 is None or _CONTENT_SHA256 not in signed_headers.split(";"):
        content_sha256 = "UNSIGNED-PAYLOAD"
    return _V4Claim(
        "v4-query",
        values["X-Amz-Credential"],
        signed_headers,
        values["X-Amz-Signature"],
        timestamp,
        content_sha256,
        _canonical_query(request.query, exclude="X-Amz-Signature"),
    )


def _canonical_query(query: list[_Param], *, exclude: str | None) -> str:
    pairs = sorted((_encode(p.name), _encode(p.value)) for p in query if p.name != exclude)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _verify_v4(
    request: _Request,
    claim: _V4Claim,
    secret_for: SecretLookup,
    region: str | None,
    max_skew: float,
) -> AuthResult:
    parts = claim.credential.split("/")
    if len(parts) != 5 or not all(parts) or not _CREDENTIAL_DATE.fullmatch(parts[1]):
        raise claim.malformed(
            'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/'
            'aws4_request".'
        )
    access_key, date, scope_region, service, terminal = parts
    if service != "s3":
        raise claim.malformed(f'incorrect service "{service}". This endpoint belongs to "s3".')
    if terminal != _TERMINAL:
        raise claim.malformed(f'incorrect terminal "{terminal}". This endpoint uses "{_TERMINAL}".')
    if region is not None and scope_region != region:
        raise claim.malformed(
            f"the region '{scope_region}' is wrong; expecting '{region}'", {"Region": region}
        )
    amz_date = claim.timestamp.strftime("%Y%m%dT%H%M%SZ")
    if date != amz_date[:8]:
        raise claim.malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    if claim.scheme == "v4-header":
        _check_skew(claim.timestamp, request.now, max_skew)
    payload, payload_sha256 = _payload_mode(claim.payload_hash, streaming_signed=True)
    signed = claim.signed_headers.split(";")
    if not all(signed) or "host" not in signed:
        raise claim.malformed("SignedHeaders must name host, separated by ';'.", credential=False)
    if unsigned := sorted(
        name
        for name in request.headers
        if name.startswith("x-amz-") and name != _CONTENT_SHA256 and name not in signed
    ):
        raise _denied(
            "There were headers present in the request which were not signed",
            {"HeadersNotSigned": ", ".join(unsigned)},
        )

    secret = secret_for(access_key)
    if secret is None:
        raise _unknown_key(access_key)
    scope = f"{date}/{scope_region}/s3/{_TERMINAL}"
    signing_key = derive_signing_key(secret, date, scope_region)
    canonical_headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in request.headers.get(name, []))}\n"
        for name in signed
    )
    provided = claim.signature.encode("utf-8", "surrogateescape")
    tried: list[tuple[str, str]] = []
    for path in _canonical_paths(request.raw_path):
        # fmt: off
        canonical_request = "\n".join((
            request.method, path, claim.canonical_query, canonical_headers,
            claim.signed_headers, claim.payload_hash,
        ))
        # fmt: on
        string_to_sign = f"{_V4_ALGORITHM}\n{amz_date}\n{scope}\n{_sha256_hex(canonical_request)}"
        message = string_to_sign.encode("utf-8", "surrogateescape")
        expected = hmac.new(signing_key, message, hashlib.sha256).hexdigest()
        # SECURITY: constant-time compare; the expected signature is a forgery oracle.
        if hmac.compare_digest(expected.encode(), provided):
            chunk_signing = None
            if payload in ("streaming-signed", "streaming-signed-trailer"):
                chunk_signing = ChunkSigningContext(signing_key, expected, scope, amz_date)
            return AuthResult(
                access_key, claim.scheme, payload, payload_sha256, chunk_signing, scope_region
            )
        tried.append((string_to_sign, canonical_request))
    raise _signature_mismatch(access_key, claim.signature, *tried[0])


def _payload_mode(value: str, *, streaming_signed: bool) -> tuple[PayloadMode, str | None]:
    mode = _PAYLOAD_CONSTANTS.get(value)
    if mode is not None and (streaming_signed or not mode.startswith("streaming-signed")):
        return mode, None
    if mode is None and _SHA256_HEX.fullmatch(value):
        return "signed", value.lower()
    signed_modes = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], " if streaming_signed else ""
    raise _bad_argument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        f"{signed_modes}or a valid sha256 value.",
        _CONTENT_SHA256,
        value,
    )


# --- Signature Version 2 ---------------------------------------------------------------


def _v2_header(
    request: _Request,
    credential: str,
    secret_for: SecretLookup,
    resource_prefix: str,
    max_skew: float,
) -> AuthResult:
    access_key, sep, signature = credential.partition(":")
    if not (sep and access_key and signature):
        raise _bad_argument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            "Authorization",
        )
    amz_date = request.header("x-amz-date")
    date_text = amz_date if amz_date is not None else request.header("date")
    timestamp = _parse_http_date(date_text) or _parse_amz_date(date_text)
    if timestamp is None:
        raise _missing_date()
    _check_skew(timestamp, request.now, max_skew)
    # With x-amz-date present, it is signed among the amz headers and Date is left blank.
    date_line = "" if amz_date is not None else (date_text or "").strip()
    return _verify_v2(
        request, "v2-header", access_key, signature, date_line, {}, secret_for, resource_prefix
    )


def _v2_query(request: _Request, secret_for: SecretLookup, resource_prefix: str) -> AuthResult:
    values: dict[str, str] = {}
    for name in ("AWSAccessKeyId", "Signature", "Expires"):
        found = request.params(name)
        if len(found) != 1 or not found[0]:
            raise _denied(
                "Query-string authentication requires the Signature, Expires and "
                "AWSAccessKeyId parameters"
            )
        values[name] = found[0]
    expires = values["Expires"]
    if not _DIGITS.fullmatch(expires):
        raise _denied(f"Invalid date (should be seconds since epoch): {expires}")
    if request.now > int(expires):
        raise _denied(
            "Request has expired", {"Expires": _iso(int(expires)), "ServerTime": _iso(request.now)}
        )
    # Presigners move x-amz-* headers into the query (botocore's HmacV1QueryAuth): they
    # are signed as amz headers. A header of the same name wins, as it is what is acted on.
    from_query: dict[str, list[str]] = {}
    for param in request.query:
        lowered = param.name.lower()
        if lowered.startswith("x-amz-") and lowered not in request.headers:
            from_query.setdefault(lowered, []).append(param.value)
    access_key, signature = values["AWSAccessKeyId"], values["Signature"]
    return _verify_v2(
        request, "v2-query", access_key, signature, expires, from_query, secret_for, resource_prefix
    )


def _v2_resources(request: _Request, resource_prefix: str) -> list[str]:
    paths = [resource_prefix + path for path in _canonical_paths(request.raw_path)]
    # botocore signs a bucket-level request as "/bucket/" even when it sends "/bucket".
    paths += [path + "/" for path in paths if path.count("/") == 1 and len(path) > 1]
    subresources = sorted(
        (param for param in request.query if param.name in _V2_SUBRESOURCES),
        key=lambda param: param.name,
    )
    suffix = "&".join(f"{p.name}={p.value}" if p.has_value else p.name for p in subresources)
    return [f"{path}?{suffix}" if suffix else path for path in paths]


def _verify_v2(
    request: _Request,
    scheme: Literal["v2-header", "v2-query"],
    access_key: str,
    signature: str,
    date_line: str,
    query_amz_headers: Mapping[str, list[str]],
    secret_for: SecretLookup,
    resource_prefix: str,
) -> AuthResult:
    content_sha256 = request.header(_CONTENT_SHA256)
    payload: tuple[PayloadMode, str | None] = ("unsigned", None)
    if content_sha256 is not None:
        payload = _payload_mode(content_sha256, streaming_signed=False)
    secret = secret_for(access_key)
    if secret is None:
        raise _unknown_key(access_key)
    amz_headers = {
        name: values for name, values in request.headers.items() if name.startswith("x-amz-")
    } | dict(query_amz_headers)
    head = [
        request.method,
        ",".join(v.strip() for v in request.headers.get("content-md5", [])),
        ",".join(v.strip() for v in request.headers.get("content-type", [])),
        date_line,
        *(
            f"{name}:{','.join(v.strip() for v in amz_headers[name])}"
            for name in sorted(amz_headers)
        ),
    ]
    provided = signature.encode("utf-8", "surrogateescape")
    tried: list[str] = []
    for resource in _v2_resources(request, resource_prefix):
        string_to_sign = "\n".join((*head, resource)).encode("utf-8", "surrogateescape")
        digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha1).digest()
        # SECURITY: constant-time compare, as for V4.
        if hmac.compare_digest(base64.b64encode(digest), provided):
            return AuthResult(access_key, scheme, *payload)
        tried.append(string_to_sign.decode("utf-8", "surrogateescape"))
    raise _signature_mismatch(access_key, signature, tried[0], None)


# --- Shared ----------------------------------------------------------------------------


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _parse_amz_date(value: str | None) -> datetime | None:
    if value is None or not _AMZ_DATE.fullmatch(value.strip()):
        return None
    try:
        return datetime.strptime(value.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_http_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_skew(timestamp: datetime, now: float, max_skew: float) -> None:
    if abs(timestamp.timestamp() - now) > max_skew:
        raise S3AuthError(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            {
                "RequestTime": _iso(timestamp.timestamp()),
                "ServerTime": _iso(now),
                "MaxAllowedSkewMilliseconds": str(int(max_skew * 1000)),
            },
        )


def _denied(message: str, details: Mapping[str, str] | None = None) -> S3AuthError:
    return S3AuthError(403, "AccessDenied", message, details)


def _missing_date() -> S3AuthError:
    return _denied("AWS authentication requires a valid Date or x-amz-date header")


def _bad_argument(message: str, name: str, value: str | None = None) -> S3AuthError:
    details = {"ArgumentName": name} | ({} if value is None else {"ArgumentValue": value})
    return S3AuthError(400, "InvalidArgument", message, details)


def _header_malformed(detail: str) -> S3AuthError:
    message = f"The authorization header is malformed; {detail}"
    return S3AuthError(400, "AuthorizationHeaderMalformed", message)


def _query_error(message: str) -> S3AuthError:
    return S3AuthError(400, "AuthorizationQueryParametersError", message)


def _unknown_key(access_key: str) -> S3AuthError:
    message = "The AWS Access Key Id you provided does not exist in our records."
    return S3AuthError(403, "InvalidAccessKeyId", message, {"AWSAccessKeyId": access_key})


def _signature_mismatch(
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
