"""S3 request authentication, legacy AWS Signature Version 2.

Spec followed (S3 API reference): "Signing and Authenticating REST Requests" —
``Authorization: AWS key:signature`` and presigned ``AWSAccessKeyId``/``Signature``/
``Expires``. Where the prose is loose, botocore's signers (auth.py: ``HmacV1Auth``,
``HmacV1QueryAuth``) decide. ``sigv4.authenticate`` dispatches here.

V2 signs only part of a request: method, ``Content-MD5``, ``Content-Type``, the date (or
``Expires``), the ``x-amz-*`` headers, and the resource — the path plus the query
parameters in the sub-resource list. Other query parameters are not covered.
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final, Literal

from gateway.s3.signing import (
    CONTENT_SHA256,
    DIGITS,
    MAX_PRESIGNED_EXPIRES,
    AuthResult,
    ParsedRequest,
    PayloadMode,
    SecretLookup,
    bad_argument,
    canonical_paths,
    check_skew,
    denied,
    iso,
    missing_date,
    parse_amz_date,
    parse_http_date,
    payload_mode,
    signature_mismatch,
    unknown_key,
)

__all__ = ["verify_v2_header", "verify_v2_query"]

# fmt: off
# botocore's HmacV1Auth.QSAOfInterest: the query parameters V2 signs in the resource.
_SUBRESOURCES: Final = frozenset((
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber",
    "policy", "requestPayment", "torrent", "versioning", "versionId", "versions", "website",
    "uploads", "uploadId", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "delete", "lifecycle", "tagging", "restore", "storageClass",
    "notification", "replication", "analytics", "metrics", "inventory", "select",
    "select-type", "object-lock",
))
# fmt: on


def verify_v2_header(
    request: ParsedRequest,
    credential: str,
    secret_for: SecretLookup,
    resource_prefix: str,
    max_skew: float,
) -> AuthResult:
    """``credential`` is the ``Authorization`` value after ``AWS ``."""
    access_key, sep, signature = credential.partition(":")
    if not (sep and access_key and signature):
        raise bad_argument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            "Authorization",
        )
    amz_date = request.header("x-amz-date")
    date_text = amz_date if amz_date is not None else request.header("date")
    timestamp = parse_http_date(date_text) or parse_amz_date(date_text)
    if timestamp is None:
        raise missing_date()
    check_skew(timestamp, request.now, max_skew)
    # With x-amz-date present, it is signed among the amz headers and Date is left blank.
    date_line = "" if amz_date is not None else (date_text or "").strip()
    return _verify(
        request, "v2-header", access_key, signature, date_line, {}, secret_for, resource_prefix
    )


def verify_v2_query(
    request: ParsedRequest, secret_for: SecretLookup, resource_prefix: str
) -> AuthResult:
    values: dict[str, str] = {}
    for name in ("AWSAccessKeyId", "Signature", "Expires"):
        found = request.params(name)
        if len(found) != 1 or not found[0]:
            raise denied(
                "Query-string authentication requires the Signature, Expires and "
                "AWSAccessKeyId parameters"
            )
        values[name] = found[0]
    expires = values["Expires"]
    if not DIGITS.fullmatch(expires):
        raise denied(f"Invalid date (should be seconds since epoch): {expires}")
    if request.now > int(expires):
        raise denied(
            "Request has expired", {"Expires": iso(int(expires)), "ServerTime": iso(request.now)}
        )
    # SECURITY: capped as V4's X-Amz-Expires is, or a URL signed for the year 33658 would
    # be a bearer credential that only revoking the key could kill (security review #15).
    if int(expires) - request.now > MAX_PRESIGNED_EXPIRES:
        raise denied(
            f"Expires must be at most {MAX_PRESIGNED_EXPIRES} seconds ahead (7 days)",
            {"Expires": expires, "ServerTime": iso(request.now)},
        )
    # Presigners move x-amz-* headers into the query (botocore's HmacV1QueryAuth): they
    # are signed as amz headers. A header of the same name wins, as it is what is acted on.
    from_query: dict[str, list[str]] = {}
    for param in request.query:
        lowered = param.name.lower()
        if lowered.startswith("x-amz-") and lowered not in request.headers:
            from_query.setdefault(lowered, []).append(param.value)
    access_key, signature = values["AWSAccessKeyId"], values["Signature"]
    return _verify(
        request, "v2-query", access_key, signature, expires, from_query, secret_for, resource_prefix
    )


def _resources(request: ParsedRequest, resource_prefix: str) -> list[str]:
    paths = [resource_prefix + path for path in canonical_paths(request.raw_path)]
    # botocore signs a bucket-level request as "/bucket/" even when it sends "/bucket".
    paths += [path + "/" for path in paths if path.count("/") == 1 and len(path) > 1]
    subresources = sorted(
        (param for param in request.query if param.name in _SUBRESOURCES),
        key=lambda param: param.name,
    )
    suffix = "&".join(f"{p.name}={p.value}" if p.has_value else p.name for p in subresources)
    return [f"{path}?{suffix}" if suffix else path for path in paths]


def _verify(
    request: ParsedRequest,
    scheme: Literal["v2-header", "v2-query"],
    access_key: str,
    signature: str,
    date_line: str,
    query_amz_headers: Mapping[str, list[str]],
    secret_for: SecretLookup,
    resource_prefix: str,
) -> AuthResult:
    content_sha256 = request.header(CONTENT_SHA256)
    payload: tuple[PayloadMode, str | None] = ("unsigned", None)
    if content_sha256 is not None:
        payload = payload_mode(content_sha256, streaming_signed=False)
    secret = secret_for(access_key)
    if secret is None:
        raise unknown_key(access_key)
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
    for resource in _resources(request, resource_prefix):
        string_to_sign = "\n".join((*head, resource)).encode("utf-8", "surrogateescape")
        digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha1).digest()
        # SECURITY: constant-time compare; the expected signature is a forgery oracle.
        if hmac.compare_digest(base64.b64encode(digest), provided):
            return AuthResult(access_key, scheme, *payload)
        tried.append(string_to_sign.decode("utf-8", "surrogateescape"))
    raise signature_mismatch(access_key, signature, tried[0], None)
