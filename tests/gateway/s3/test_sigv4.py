"""gateway.s3.sigv4 against botocore's own signers (the reference), AWS's published
examples, and requests captured from real boto3 clients (V4 and V2 alike, through the
``authenticate`` entry point). V2 alone is in test_sigv2, which reuses the helpers here."""

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import botocore.auth
import botocore.config
import pytest
from botocore.auth import (
    S3SigV4Auth,
    S3SigV4QueryAuth,
)
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.s3.sigv4 import (
    EMPTY_SHA256,
    AuthResult,
    S3AuthError,
    authenticate,
    derive_signing_key,
)

ACCESS_KEY = "DOAAAAAAAAAAAAAAAAAA"
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg="
SECRETS = {ACCESS_KEY: SECRET}
REGION = "us-east-1"
SIGNED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = SIGNED_AT.timestamp()
ENDPOINT = "http://s3.local:9000"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET)


@pytest.fixture(autouse=True)
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's V4 signers read the clock through this function."""
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: SIGNED_AT.replace(tzinfo=None)
    )


@dataclass(frozen=True)
class Signed:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]

    def check(
        self,
        *,
        now: float = NOW,
        secrets: dict[str, str] = SECRETS,
        **options: Any,
    ) -> AuthResult | None:
        return authenticate(
            self.method,
            self.path,
            self.query,
            self.headers,
            now=now,
            secret_for=secrets.get,
            **options,
        )

    def refused(self, **options: Any) -> S3AuthError:
        with pytest.raises(S3AuthError) as caught:
            self.check(**options)
        return caught.value

    def with_header(self, name: str, value: str | None) -> "Signed":
        headers = self.headers.copy()
        headers.popall(name, None)
        if value is not None:
            headers[name] = value
        return replace(self, headers=headers)


def botocore_request(
    method: str,
    path: str,
    params: Any = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    auth_path: str | None = None,
) -> Any:
    """A request as botocore's serializer builds it: the query already in the URL."""
    url = ENDPOINT + path
    if params:
        url += ("&" if "?" in path else "?") + percent_encode_sequence(params)
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    request.auth_path = auth_path
    return request


def to_signed(request: Any, *, host: bool = True) -> Signed:
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        headers.add(name, value.decode() if isinstance(value, bytes) else value)
    if host and "host" not in headers:
        headers["Host"] = url.netloc
    return Signed(request.method, url.path, url.query, headers)


class PayloadSigner(S3SigV4Auth):  # type: ignore[misc]
    """S3SigV4Auth with a chosen x-amz-content-sha256 value."""

    def __init__(self, payload: str) -> None:
        super().__init__(CREDENTIALS, "s3", REGION)
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload


def sign_v4(
    method: str = "GET",
    path: str = "/bucket/key",
    params: Any = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    credentials: Any = CREDENTIALS,
    region: str = REGION,
) -> Signed:
    request = botocore_request(method, path, params, headers, body)
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return to_signed(request)


def presign_v4(
    method: str = "GET",
    path: str = "/bucket/key",
    params: Any = None,
    headers: dict[str, str] | None = None,
    expires: int = 3600,
) -> Signed:
    request = botocore_request(method, path, params, headers)
    S3SigV4QueryAuth(CREDENTIALS, "s3", REGION, expires=expires).add_auth(request)
    return to_signed(request)


def edit_query(signed: Signed, name: str, value: str | None) -> Signed:
    pairs = [pair for pair in signed.query.split("&") if not pair.startswith(name + "=")]
    if value is not None:
        pairs.append(f"{name}={value}")
    return replace(signed, query="&".join(pairs))


PATHS = [
    "/bucket/key",
    "/bucket/" + quote("ünïcödé/€ 😀", safe="/~"),
    "/bucket/with%20spaces%20",
    "/bucket/a%2Bplus+raw",
    "/bucket/tilde~and%7E",
    "/bucket/slash%2Finside",
    "/bucket//double//slashes//",
    "/bucket/dots/../and/./",
    "/bucket",
    "/",
]
QUERIES: list[Any] = [
    None,
    {"list-type": "2", "prefix": "photos/2024 é+~*", "delimiter": "/"},
    {"uploads": ""},
    {"partNumber": "3", "uploadId": "a/b=c&d"},
    [("key", "b"), ("key", "a"), ("key", "")],
    {"versions": "", "versionId": "null", "max-keys": "1000"},
    {"response-content-disposition": 'attachment; filename="x y.txt"'},
]


# --- V4, Authorization header ----------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_v4_header_accepts_botocore_paths(path: str) -> None:
    result = sign_v4("GET", path).check()
    assert result == AuthResult(ACCESS_KEY, "v4-header", "signed", EMPTY_SHA256, None, REGION)


@pytest.mark.parametrize("params", QUERIES)
def test_v4_header_accepts_botocore_queries(params: Any) -> None:
    assert sign_v4("GET", "/bucket/key", params).check() is not None


def test_v4_header_query_plus_means_space() -> None:
    # Signed from botocore's params (a space is %20), sent form-encoded (a space is +).
    request = AWSRequest(method="GET", url=ENDPOINT + "/bucket", params={"prefix": "a b+c"})
    S3SigV4Auth(CREDENTIALS, "s3", REGION).add_auth(request)
    signed = to_signed(request)
    assert signed.query == "prefix=a+b%2Bc"
    assert signed.check() is not None
    assert replace(signed, query="prefix=a%2Bb%2Bc").refused().code == "SignatureDoesNotMatch"


def test_v4_header_raw_query_without_equals_signs() -> None:
    signed = sign_v4("POST", "/bucket/key?uploads")
    assert signed.query == "uploads"
    assert signed.check() is not None


def test_v4_header_signed_headers_are_canonicalised() -> None:
    request = botocore_request(
        "PUT",
        "/bucket/key",
        headers={"Content-Type": "  text/plain;   charset=utf-8  ", "x-amz-meta-a": "1"},
    )
    request.headers["x-amz-meta-multi"] = "first   value"
    request.headers["x-amz-meta-multi"] = " second"  # a repeated header
    S3SigV4Auth(CREDENTIALS, "s3", REGION).add_auth(request)
    signed = to_signed(request)
    assert signed.headers.getall("x-amz-meta-multi") == ["first   value", " second"]
    assert signed.check() is not None


def test_v4_header_body_hash_is_returned_for_the_caller_to_check() -> None:
    body = b"Welcome to Amazon S3."
    result = sign_v4("PUT", "/bucket/key", body=body).check()
    assert result is not None and result.payload == "signed"
    assert result.payload_sha256 == hashlib.sha256(body).hexdigest()
    result.check_payload_sha256(hashlib.sha256(body).hexdigest())
    with pytest.raises(S3AuthError) as caught:
        result.check_payload_sha256(hashlib.sha256(b"other").hexdigest())
    assert (caught.value.status, caught.value.code) == (400, "XAmzContentSHA256Mismatch")


@pytest.mark.parametrize(
    ("payload", "mode"),
    [
        ("UNSIGNED-PAYLOAD", "unsigned"),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "streaming-signed"),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "streaming-signed-trailer"),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "streaming-unsigned-trailer"),
    ],
)
def test_v4_header_payload_modes(payload: str, mode: str) -> None:
    request = botocore_request("PUT", "/bucket/key")
    PayloadSigner(payload).add_auth(request)
    result = to_signed(request).check()
    assert result is not None and result.payload == mode and result.payload_sha256 is None
    result.check_payload_sha256("00" * 32)  # nothing to check
    if mode.startswith("streaming-signed"):
        seed = request.headers["Authorization"].rpartition("Signature=")[2]
        assert result.chunk_signing is not None
        assert result.chunk_signing.seed_signature == seed
        assert result.chunk_signing.amz_date == "20260102T030405Z"
        assert result.chunk_signing.scope == "20260102/us-east-1/s3/aws4_request"
        assert result.chunk_signing.signing_key == derive_signing_key(SECRET, "20260102", REGION)
        assert SECRET not in repr(result) and "signing_key" not in repr(result)
    else:
        assert result.chunk_signing is None


def test_v4_header_date_header_instead_of_x_amz_date() -> None:
    signed = sign_v4("GET", "/bucket/key", headers={"Date": "anything: botocore replaces it"})
    assert "x-amz-date" not in signed.headers
    assert signed.check() is not None


MUTATIONS: list[tuple[str, Callable[[Signed], Signed]]] = [
    ("path", lambda s: replace(s, path=s.path + "x")),
    ("path case", lambda s: replace(s, path=s.path.upper())),
    ("query value", lambda s: replace(s, query=s.query.replace("photos", "videos"))),
    ("query added", lambda s: replace(s, query=s.query + "&extra=1")),
    ("method", lambda s: replace(s, method="DELETE")),
    ("host", lambda s: s.with_header("Host", "evil.example")),
    ("signed header", lambda s: s.with_header("x-amz-meta-color", "red")),
    ("body hash", lambda s: s.with_header("x-amz-content-sha256", "ab" * 32)),
    ("date", lambda s: s.with_header("x-amz-date", "20260102T030406Z")),
    (
        "signature",
        lambda s: s.with_header("Authorization", s.headers["Authorization"][:-1] + "0"),
    ),
]


@pytest.mark.parametrize(("label", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_v4_header_mutations_are_refused(label: str, mutate: Callable[[Signed], Signed]) -> None:
    signed = sign_v4(
        "PUT",
        "/bucket/key",
        {"prefix": "photos"},
        headers={"x-amz-meta-color": "blue"},
    )
    assert signed.check() is not None
    error = mutate(signed).refused()
    assert (error.status, error.code) == (403, "SignatureDoesNotMatch"), label
    assert "CanonicalRequest" in error.details and "StringToSign" in error.details


def test_v4_header_wrong_secret_and_unknown_key() -> None:
    error = sign_v4(credentials=Credentials(ACCESS_KEY, "not-the-secret")).check
    with pytest.raises(S3AuthError) as caught:
        error()
    assert caught.value.code == "SignatureDoesNotMatch"
    unknown = sign_v4(credentials=Credentials("DOUNKNOWN", SECRET)).refused()
    assert (unknown.status, unknown.code) == (403, "InvalidAccessKeyId")
    assert unknown.details["AWSAccessKeyId"] == "DOUNKNOWN"


@pytest.mark.parametrize(
    ("offset", "accepted"), [(0, True), (899, True), (-899, True), (901, False), (-901, False)]
)
def test_v4_header_clock_skew(offset: float, accepted: bool) -> None:
    signed = sign_v4()
    if accepted:
        assert signed.check(now=NOW + offset) is not None
    else:
        error = signed.refused(now=NOW + offset)
        assert (error.status, error.code) == (403, "RequestTimeTooSkewed")
        assert error.details["MaxAllowedSkewMilliseconds"] == "900000"
    assert signed.check(now=NOW + 1800, max_skew=3600) is not None


def test_v4_header_requires_x_amz_content_sha256() -> None:
    error = sign_v4().with_header("x-amz-content-sha256", None).refused()
    assert (error.status, error.code) == (400, "InvalidRequest")
    assert "x-amz-content-sha256" in error.message


def test_v4_header_refuses_a_malformed_payload_hash() -> None:
    request = botocore_request("PUT", "/bucket/key")
    PayloadSigner("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD").add_auth(request)
    error = to_signed(request).refused()
    assert (error.status, error.code) == (400, "InvalidArgument")


def test_v4_header_refuses_unsigned_amz_headers() -> None:
    signed = sign_v4().with_header("X-Amz-Copy-Source", "/other/secret")
    error = signed.refused()
    assert (error.status, error.code) == (403, "AccessDenied")
    assert error.details["HeadersNotSigned"] == "x-amz-copy-source"
    # Headers outside x-amz-* may be added after signing (proxies, user agents).
    assert sign_v4().with_header("User-Agent", "curl").check() is not None


def test_v4_header_region() -> None:
    signed = sign_v4(region="eu-west-3")
    result = signed.check()
    assert result is not None and result.region == "eu-west-3"
    assert signed.check(region="eu-west-3") is not None
    error = signed.refused(region=REGION)
    assert (error.status, error.code) == (400, "AuthorizationHeaderMalformed")
    assert error.details == {"Region": REGION}


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("AWS4-HMAC-SHA256 Credential=x", "AuthorizationHeaderMalformed"),
        ("AWS4-HMAC-SHA256 Credential=a, SignedHeaders=host", "AuthorizationHeaderMalformed"),
        (
            "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00",
            "AuthorizationHeaderMalformed",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260102/us-east-1/iam/aws4_request,"
            " SignedHeaders=host, Signature=00",
            "AuthorizationHeaderMalformed",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260102/us-east-1/s3/aws5_request,"
            " SignedHeaders=host, Signature=00",
            "AuthorizationHeaderMalformed",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request,"
            " SignedHeaders=host, Signature=00",
            "AuthorizationHeaderMalformed",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260102/us-east-1/s3/aws4_request,"
            " SignedHeaders=x-amz-date, Signature=00",
            "AuthorizationHeaderMalformed",
        ),
        ("AWS4-HMAC-SHA1 Credential=a", "InvalidArgument"),
        ("Bearer token", "InvalidArgument"),
        ("AWS no-colon", "InvalidArgument"),
        ("AWS :sig", "InvalidArgument"),
    ],
)
def test_malformed_authorization(authorization: str, code: str) -> None:
    signed = sign_v4().with_header("Authorization", authorization)
    error = signed.refused()
    assert (error.status, error.code) == (400, code)


def test_missing_or_invalid_date_is_access_denied() -> None:
    for signed in (
        sign_v4().with_header("x-amz-date", None),
        sign_v4().with_header("x-amz-date", "2026-01-02T03:04:05Z"),
    ):
        error = signed.refused()
        assert (error.status, error.code) == (403, "AccessDenied")


def test_v4_path_sent_less_encoded_than_signed() -> None:
    signed = sign_v4("GET", "/bucket/a%21b%28c%29")  # signed in AWS's strict encoding
    assert replace(signed, path="/bucket/a!b(c)").check() is not None
    assert replace(signed, path="/bucket/a%21b%28c%29").check() is not None
    assert replace(signed, path="/bucket/a%21b%28c%28").refused().code == "SignatureDoesNotMatch"


def test_anonymous_requests_return_none() -> None:
    assert authenticate("GET", "/bucket/key", "", {}, now=NOW, secret_for=SECRETS.get) is None
    assert (
        authenticate("GET", "/b", "prefix=x", {"Host": "h"}, now=NOW, secret_for=lambda _: None)
        is None
    )


def test_only_one_auth_mechanism() -> None:
    presigned = presign_v4()
    both = presigned.with_header("Authorization", sign_v4().headers["Authorization"])
    error = both.refused()
    assert (error.status, error.code) == (400, "InvalidArgument")
    v2_and_v4 = replace(presigned, query=presigned.query + "&AWSAccessKeyId=x&Signature=y")
    assert v2_and_v4.refused().code == "InvalidArgument"


# AWS S3 API reference, "Signature Calculations for the Authorization Header":
# GET Object example.
def test_aws_documentation_get_object_example() -> None:
    result = authenticate(
        "GET",
        "/test.txt",
        "",
        {
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
            "us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
            "x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        },
        now=datetime(2013, 5, 24, tzinfo=UTC).timestamp(),
        secret_for={"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}.get,
    )
    assert result is not None and result.access_key == "AKIAIOSFODNN7EXAMPLE"


# "Signature Calculations for the Authorization Header: Transferring Payload in Multiple
# Chunks": the seed request of the streaming example.
STREAMING_EXAMPLE_HEADERS = {
    "Host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
    "aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
    "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
    "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "Content-Length": "66824",
}


def test_aws_documentation_streaming_seed_example() -> None:
    result = authenticate(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        STREAMING_EXAMPLE_HEADERS,
        now=datetime(2013, 5, 24, tzinfo=UTC).timestamp(),
        secret_for={"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}.get,
    )
    assert result is not None and result.payload == "streaming-signed"
    assert result.chunk_signing is not None
    assert result.chunk_signing.seed_signature == (
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    )


# --- V4, presigned ---------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("params", QUERIES[:4])
def test_v4_query_accepts_botocore_presigned_urls(path: str, params: Any) -> None:
    result = presign_v4("GET", path, params).check()
    assert result == AuthResult(ACCESS_KEY, "v4-query", "unsigned", None, None, REGION)


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (0, None),
        (3599, None),
        (3601, "Request has expired"),
        (-899, None),
        (-901, "Request is not valid yet"),
    ],
)
def test_v4_query_expiry(offset: float, error: str | None) -> None:
    signed = presign_v4(expires=3600)
    if error is None:
        assert signed.check(now=NOW + offset) is not None
    else:
        refused = signed.refused(now=NOW + offset)
        assert (refused.status, refused.code, refused.message) == (403, "AccessDenied", error)


@pytest.mark.parametrize("expires", [0, -1, -3600, 604801, 10**9])
def test_v4_query_expires_out_of_range(expires: int) -> None:
    # AWS refuses a URL that can never be valid as it refuses an expired one.
    error = presign_v4(expires=expires).refused()
    assert (error.status, error.code) == (403, "AccessDenied")
    assert presign_v4(expires=604800).check() is not None


@pytest.mark.parametrize(
    ("name", "value", "status", "code"),
    [
        ("X-Amz-Signature", "0" * 64, 403, "SignatureDoesNotMatch"),
        ("X-Amz-Expires", "3599", 403, "SignatureDoesNotMatch"),
        ("X-Amz-SignedHeaders", "host%3Brange", 403, "SignatureDoesNotMatch"),
        ("X-Amz-Date", "20260102T030404Z", 403, "SignatureDoesNotMatch"),
        ("X-Amz-Date", "2026-01-02", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "soon", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA512", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Credential", "nope", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-SignedHeaders", None, 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Date", None, 400, "AuthorizationQueryParametersError"),
        ("prefix", "other", 403, "SignatureDoesNotMatch"),
    ],
)
def test_v4_query_tampering(name: str, value: str | None, status: int, code: str) -> None:
    signed = presign_v4("GET", "/bucket/key", {"prefix": "photos"})
    error = edit_query(signed, name, value).refused()
    assert (error.status, error.code) == (status, code)


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        (f"{ACCESS_KEY}/20260102/%FF/s3/aws4_request", "SignatureDoesNotMatch"),
        ("%FF%FE/20260102/us-east-1/s3/aws4_request", "InvalidAccessKeyId"),
        ("%00/%FF/a/b/c", "AuthorizationQueryParametersError"),
    ],
)
def test_v4_query_undecodable_credential(credential: str, code: str) -> None:
    error = edit_query(presign_v4(), "X-Amz-Credential", credential).refused()
    assert error.code == code
    for text in (error.message, *error.details.values()):
        text.encode("utf-8")  # printable in an XML error document


def test_v4_query_duplicated_auth_parameter() -> None:
    signed = presign_v4()
    doubled = replace(signed, query=signed.query + "&X-Amz-Expires=10")
    assert doubled.refused().code == "AuthorizationQueryParametersError"


def test_v4_query_header_rules() -> None:
    signed = presign_v4("PUT", "/bucket/key", headers={"x-amz-meta-a": "1"})
    assert signed.with_header("x-amz-meta-a", "1").check() is not None
    assert signed.with_header("x-amz-meta-a", "2").refused().code == "SignatureDoesNotMatch"
    unsigned = signed.with_header("x-amz-meta-a", "1").with_header("x-amz-acl", "public-read")
    assert unsigned.refused().details["HeadersNotSigned"] == "x-amz-acl"
    # An unsigned x-amz-content-sha256 is ignored, not trusted.
    ignored = signed.with_header("x-amz-meta-a", "1").with_header("x-amz-content-sha256", "ab" * 32)
    result = ignored.check()
    assert result is not None and result.payload == "unsigned"


def test_v4_query_signed_payload_hash() -> None:
    digest = hashlib.sha256(b"body").hexdigest()
    signed = presign_v4("PUT", "/bucket/key", headers={"X-Amz-Content-SHA256": digest})
    result = signed.check()
    assert result is not None and (result.payload, result.payload_sha256) == ("signed", digest)
    tampered = signed.with_header("X-Amz-Content-SHA256", "cd" * 32)
    assert tampered.refused().code == "SignatureDoesNotMatch"


# AWS S3 API reference, "Authenticating Requests: Using Query Parameters": the example.
def test_aws_documentation_presigned_example() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    secrets = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    signed = Signed("GET", "/test.txt", query, CIMultiDict(Host="examplebucket.s3.amazonaws.com"))
    issued = datetime(2013, 5, 24, tzinfo=UTC).timestamp()
    result = signed.check(now=issued + 86400, secrets=secrets)
    assert result is not None and result.scheme == "v4-query"
    assert signed.refused(now=issued + 86401, secrets=secrets).message == "Request has expired"


# --- Real boto3 clients ----------------------------------------------------------------


@dataclass
class Captured:
    request: Any
    body: bytes


@pytest.fixture
def captured() -> list[Captured]:
    return []


def _client(
    sink: list[Captured], signature_version: str, style: str, endpoint: str = ENDPOINT
) -> Any:
    client = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=botocore.config.Config(
            signature_version=signature_version, s3={"addressing_style": style}
        ),
    )

    def before_send(request: Any, **_: Any) -> Any:
        body = request.body.read() if hasattr(request.body, "read") else request.body or b""
        sink.append(Captured(request, body))

        class Raw:
            def stream(self, **_: Any) -> Iterator[bytes]:
                return iter([b""])

        return AWSResponse(request.url, 200, {}, Raw())

    client.meta.events.register("before-send", before_send)
    return client


def _as_signed(request: Any) -> tuple[Signed, str]:
    url = urlsplit(request.url)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        headers.add(name, value.decode() if isinstance(value, bytes) else value)
    headers.setdefault("Host", url.netloc)
    bucket = url.netloc.split(".")[0] if url.netloc.startswith("bkt.") else ""
    return Signed(request.method, url.path, url.query, headers), bucket and "/" + bucket


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_boto3_client_requests(
    signature_version: str, style: str, captured: list[Captured]
) -> None:
    client = _client(captured, signature_version, style)
    client.list_objects_v2(Bucket="bkt", Prefix="a b+c/ü")
    client.list_buckets()
    client.put_object(Bucket="bkt", Key="dir/k ~+!é.txt", Body=b"hi", Metadata={"k": "v  w"})
    client.create_multipart_upload(Bucket="bkt", Key="k")
    client.upload_part(Bucket="bkt", Key="k", UploadId="up/1", PartNumber=2, Body=b"x")
    client.get_object(Bucket="bkt", Key="k", VersionId="v+1", Range="bytes=0-1")
    client.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "a"}]})
    client.get_bucket_versioning(Bucket="bkt")
    client.copy_object(Bucket="bkt", Key="k2", CopySource="bkt/k")
    assert len(captured) == 9
    for item in captured:
        signed, prefix = _as_signed(item.request)
        result = signed.check(now=time.time(), v2_resource_prefix=prefix)
        assert result is not None, item.request.url
        assert result.scheme == ("v4-header" if signature_version == "s3v4" else "v2-header")
        if result.payload == "signed":
            result.check_payload_sha256(hashlib.sha256(item.body).hexdigest())


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_boto3_presigned_urls(signature_version: str, style: str) -> None:
    client = _client([], signature_version, style)
    for method, params in [
        ("get_object", {"Bucket": "bkt", "Key": "a b/ü+~.txt"}),
        ("put_object", {"Bucket": "bkt", "Key": "k", "Metadata": {"m": "1"}}),
        ("list_objects_v2", {"Bucket": "bkt", "Prefix": "p q"}),
        ("upload_part", {"Bucket": "bkt", "Key": "k", "UploadId": "u", "PartNumber": 1}),
    ]:
        url = urlsplit(client.generate_presigned_url(method, Params=params, ExpiresIn=600))
        headers: CIMultiDict[str] = CIMultiDict(Host=url.netloc)
        if method == "put_object" and signature_version == "s3v4":
            headers["x-amz-meta-m"] = "1"  # signed as a header: the client must send it
        signed = Signed(
            "PUT" if method in ("put_object", "upload_part") else "GET",
            url.path,
            url.query,
            headers,
        )
        prefix = "/bkt" if style == "virtual" else ""
        result = signed.check(now=time.time(), v2_resource_prefix=prefix)
        assert result is not None, url
        assert result.scheme == ("v4-query" if signature_version == "s3v4" else "v2-query")
        assert signed.refused(now=time.time() + 601).message == "Request has expired"


def test_boto3_streaming_upload_over_https(captured: list[Captured]) -> None:
    client = _client(captured, "s3v4", "path", endpoint="https://s3.local:9443")
    client.put_object(Bucket="bkt", Key="k", Body=io.BytesIO(b"hello world"))
    signed, _ = _as_signed(captured[0].request)
    result = signed.check(now=time.time())
    assert result is not None and result.payload == "streaming-unsigned-trailer"


# --- Properties ------------------------------------------------------------------------

KEYS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)
PARAMS = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
        st.text(st.characters(codec="utf-8"), max_size=12),
    ),
    max_size=4,
)


@given(key=KEYS, params=PARAMS)
def test_v4_accepts_any_key_and_query(key: str, params: list[tuple[str, str]]) -> None:
    path = "/bucket/" + quote(key, safe="/~")
    assert sign_v4("GET", path, params or None).check() is not None
    assert presign_v4("GET", path, params or None).check() is not None
