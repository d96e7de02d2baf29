"""S3 request authentication, AWS Signature Version 4, and the entry point for all schemes.

Spec followed (S3 API reference): "Authenticating Requests (AWS Signature Version 4)" —
the ``Authorization`` header, presigned ``X-Amz-*`` query parameters, and the seed of
``aws-chunked`` streaming uploads. Where the prose is loose, botocore's signers (auth.py:
``S3SigV4Auth``, ``S3SigV4QueryAuth``) decide. Errors carry S3's status codes, error codes
and messages. ``authenticate`` hands the legacy Version 2 to ``sigv2``; what both share
(the result, the refusal, dates, payload modes) lives in ``signing``.

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

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from urllib.parse import quote

from gateway.s3.signing import (
    CONTENT_SHA256,
    EMPTY_SHA256,
    MAX_PRESIGNED_EXPIRES,
    MAX_SKEW_SECONDS,
    AuthResult,
    ChunkSigningContext,
    ParsedRequest,
    PayloadMode,
    QueryParam,
    S3AuthError,
    Scheme,
    SecretLookup,
    bad_argument,
    canonical_paths,
    check_skew,
    denied,
    iso,
    missing_date,
    parse_amz_date,
    parse_http_date,
    parse_request,
    payload_mode,
    signature_mismatch,
    unknown_key,
)
from gateway.s3.sigv2 import verify_v2_header, verify_v2_query

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

_EXPIRES: Final = re.compile(r"-?[0-9]{1,12}")

_V4_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TERMINAL: Final = "aws4_request"
# fmt: off
_V4_QUERY_PARAMS: Final = (
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
    "X-Amz-SignedHeaders", "X-Amz-Expires",
)
# fmt: on
_CREDENTIAL_DATE: Final = re.compile(r"[0-9]{8}")


def derive_signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The V4 signing key of a day (``YYYYMMDD``), region and service."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, _TERMINAL):
        key = hmac.new(key, part.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return key


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
    request = parse_request(method, raw_path, raw_query, headers, now)
    names = {param.name for param in request.query}
    authorization = request.header("authorization")
    v4_query = bool(names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
    v2_query = bool(names & {"AWSAccessKeyId", "Signature"})
    if (authorization is not None) + v4_query + v2_query > 1:
        raise bad_argument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            "Authorization",
        )
    if authorization is not None:
        if authorization.startswith(_V4_ALGORITHM + " "):
            claim = _v4_header_claim(request, authorization[len(_V4_ALGORITHM) :])
        elif authorization.startswith("AWS "):
            return verify_v2_header(
                request, authorization[4:], secret_for, v2_resource_prefix, max_skew
            )
        else:
            raise bad_argument("Unsupported Authorization Type", "Authorization", authorization)
    elif v4_query:
        claim = _v4_query_claim(request, max_skew)
    elif v2_query:
        return verify_v2_query(request, secret_for, v2_resource_prefix)
    else:
        return None
    return _verify_v4(request, claim, secret_for, region, max_skew)


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


def _v4_header_claim(request: ParsedRequest, fields_text: str) -> _V4Claim:
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
    timestamp = parse_amz_date(amz_date) if amz_date is not None else parse_http_date(date)
    if timestamp is None:
        raise missing_date()
    payload_hash = request.header(CONTENT_SHA256)
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


def _v4_query_claim(request: ParsedRequest, max_skew: float) -> _V4Claim:
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
    timestamp = parse_amz_date(values["X-Amz-Date"])
    if timestamp is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = values["X-Amz-Expires"]
    if not _EXPIRES.fullmatch(expires_text):
        raise _query_error("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if not 1 <= expires <= MAX_PRESIGNED_EXPIRES:
        # AWS: an URL that can never be valid is refused as an expired one is.
        raise denied(
            "X-Amz-Expires must be at least 1 and less than a week (in seconds) that is 604800",
            {"X-Amz-Expires": expires_text},
        )
    signed_at = timestamp.timestamp()
    if request.now > signed_at + expires:
        raise denied(
            "Request has expired",
            {
                "X-Amz-Expires": expires_text,
                "Expires": iso(signed_at + expires),
                "ServerTime": iso(request.now),
            },
        )
    if signed_at - request.now > max_skew:
        raise denied("Request is not valid yet")
    signed_headers = values["X-Amz-SignedHeaders"]
    # A payload hash binds the body only if the presigner signed the header carrying it.
    content_sha256 = request.header(CONTENT_SHA256)
    if content_sha256 is None or CONTENT_SHA256 not in signed_headers.split(";"):
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


def _canonical_query(query: list[QueryParam], *, exclude: str | None) -> str:
    pairs = sorted((_encode(p.name), _encode(p.value)) for p in query if p.name != exclude)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogateescape"), safe="-_.~")


def _verify_v4(
    request: ParsedRequest,
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
        check_skew(claim.timestamp, request.now, max_skew)
    payload, payload_sha256 = payload_mode(claim.payload_hash, streaming_signed=True)
    signed = claim.signed_headers.split(";")
    if not all(signed) or "host" not in signed:
        raise claim.malformed("SignedHeaders must name host, separated by ';'.", credential=False)
    if unsigned := sorted(
        name
        for name in request.headers
        if name.startswith("x-amz-") and name != CONTENT_SHA256 and name not in signed
    ):
        raise denied(
            "There were headers present in the request which were not signed",
            {"HeadersNotSigned": ", ".join(unsigned)},
        )

    secret = secret_for(access_key)
    if secret is None:
        raise unknown_key(access_key)
    scope = f"{date}/{scope_region}/s3/{_TERMINAL}"
    signing_key = derive_signing_key(secret, date, scope_region)
    canonical_headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in request.headers.get(name, []))}\n"
        for name in signed
    )
    provided = claim.signature.encode("utf-8", "surrogateescape")
    tried: list[tuple[str, str]] = []
    for path in canonical_paths(request.raw_path):
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
    raise signature_mismatch(access_key, claim.signature, *tried[0])


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _header_malformed(detail: str) -> S3AuthError:
    message = f"The authorization header is malformed; {detail}"
    return S3AuthError(400, "AuthorizationHeaderMalformed", message)


def _query_error(message: str) -> S3AuthError:
    return S3AuthError(400, "AuthorizationQueryParametersError", message)
