"""gateway.s3.sigv2, through the ``authenticate`` entry point, against botocore's
``HmacV1Auth``/``HmacV1QueryAuth`` signers; helpers shared with test_sigv4."""

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.s3.sigv4 import AuthResult, authenticate
from tests.gateway.s3.test_sigv4 import (
    ACCESS_KEY,
    CREDENTIALS,
    KEYS,
    NOW,
    PATHS,
    QUERIES,
    SECRET,
    SECRETS,
    Signed,
    botocore_request,
    edit_query,
    to_signed,
)


class FixedHmacV1(HmacV1Auth):  # type: ignore[misc]
    def _get_date(self) -> str:
        return formatdate(NOW, usegmt=True)


class FixedHmacV1Query(HmacV1QueryAuth):  # type: ignore[misc]
    def _get_date(self) -> str:
        return str(int(NOW + self._expires))


def sign_v2(
    method: str = "GET",
    path: str = "/bucket/key",
    params: Any = None,
    headers: dict[str, str] | None = None,
    auth_path: str | None = None,
) -> Signed:
    request = botocore_request(method, path, params, headers, auth_path=auth_path)
    FixedHmacV1(CREDENTIALS).add_auth(request)
    return to_signed(request, host=False)


def presign_v2(
    method: str = "GET",
    path: str = "/bucket/key",
    params: Any = None,
    headers: dict[str, str] | None = None,
    expires: int = 3600,
) -> Signed:
    request = botocore_request(method, path, params, headers)
    FixedHmacV1Query(CREDENTIALS, expires=expires).add_auth(request)
    signed = to_signed(request, host=False)
    # The URL carries what was signed; a client using it sends none of those headers.
    return replace(signed, headers=CIMultiDict())


# --- Authorization header and presigned URLs ------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("params", QUERIES)
def test_v2_header_accepts_botocore(path: str, params: Any) -> None:
    result = sign_v2("GET", path, params, headers={"x-amz-meta-a": " padded "}).check()
    assert result == AuthResult(ACCESS_KEY, "v2-header", "unsigned")


def test_v2_header_signs_content_headers_and_subresources() -> None:
    signed = sign_v2(
        "PUT",
        "/bucket/key",
        {"partNumber": "2", "uploadId": "u/1", "other": "ignored"},
        headers={"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "Content-Type": "text/plain"},
    )
    assert signed.check() is not None
    assert signed.with_header("Content-Type", "text/html").refused().code == (
        "SignatureDoesNotMatch"
    )
    assert replace(signed, query=signed.query.replace("partNumber=2", "partNumber=3")).refused()
    # Parameters outside the sub-resource list are not signed by V2.
    assert replace(signed, query=signed.query.replace("ignored", "changed")).check() is not None


def test_v2_virtual_host_style_uses_the_prefix() -> None:
    signed = sign_v2("GET", "/key", {"acl": ""}, auth_path="/bucket/key")
    assert signed.check(v2_resource_prefix="/bucket") is not None
    assert signed.refused().code == "SignatureDoesNotMatch"
    bucket = sign_v2("GET", "/", auth_path="/bucket/")
    assert bucket.check(v2_resource_prefix="/bucket") is not None


@pytest.mark.parametrize(
    ("label", "mutate", "code"),
    [
        ("path", lambda s: replace(s, path="/bucket/other"), "SignatureDoesNotMatch"),
        ("amz header", lambda s: s.with_header("x-amz-meta-a", "2"), "SignatureDoesNotMatch"),
        ("new amz", lambda s: s.with_header("x-amz-acl", "public-read"), "SignatureDoesNotMatch"),
        (
            "date",
            lambda s: s.with_header("Date", formatdate(NOW + 1, usegmt=True)),
            "SignatureDoesNotMatch",
        ),
        ("method", lambda s: replace(s, method="DELETE"), "SignatureDoesNotMatch"),
        (
            "key",
            lambda s: s.with_header(
                "Authorization", "AWS DOOTHER:" + s.headers["Authorization"][-28:]
            ),
            "InvalidAccessKeyId",
        ),
    ],
)
def test_v2_header_mutations(label: str, mutate: Callable[[Signed], Signed], code: str) -> None:
    signed = sign_v2("PUT", "/bucket/key", headers={"x-amz-meta-a": "1"})
    assert signed.check() is not None
    assert mutate(signed).refused().code == code, label


def test_v2_header_skew() -> None:
    signed = sign_v2()
    assert signed.check(now=NOW - 899) is not None
    assert signed.refused(now=NOW + 901).code == "RequestTimeTooSkewed"


def test_v2_header_with_x_amz_date_leaves_date_blank() -> None:
    amz_date = formatdate(NOW, usegmt=True)
    string_to_sign = f"GET\n\n\n\nx-amz-date:{amz_date}\n/bucket/key?versioning"
    digest = hmac.new(SECRET.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    headers = {
        "x-amz-date": amz_date,
        "Date": "Thu, 01 Jan 1970 00:00:00 GMT",  # ignored: x-amz-date wins
        "Authorization": f"AWS {ACCESS_KEY}:{base64.b64encode(digest).decode()}",
    }
    result = authenticate(
        "GET", "/bucket/key", "versioning", headers, now=NOW, secret_for=SECRETS.get
    )
    assert result is not None and result.scheme == "v2-header"


@pytest.mark.parametrize("path", PATHS[:6])
@pytest.mark.parametrize("params", QUERIES[:4])
def test_v2_query_accepts_botocore_presigned_urls(path: str, params: Any) -> None:
    result = presign_v2("GET", path, params).check()
    assert result == AuthResult(ACCESS_KEY, "v2-query", "unsigned")


def test_v2_query_expiry_and_tampering() -> None:
    signed = presign_v2(expires=60)
    assert signed.check(now=NOW + 60) is not None
    expired = signed.refused(now=NOW + 61)
    assert (expired.status, expired.code, expired.message) == (
        403,
        "AccessDenied",
        "Request has expired",
    )
    later = edit_query(signed, "Expires", str(int(NOW) + 3600))
    assert later.refused().code == "SignatureDoesNotMatch"
    for name in ("Expires", "Signature", "AWSAccessKeyId"):
        assert edit_query(signed, name, None).refused().code == "AccessDenied"
    assert edit_query(signed, "Expires", "tomorrow").refused().code == "AccessDenied"


def test_v2_query_lifetime_is_capped_at_seven_days_as_v4s() -> None:
    """Security review #15: Expires=999999999999 (the year 33658) was accepted."""
    assert presign_v2(expires=7 * 24 * 3600).check() is not None
    for expires in (7 * 24 * 3600 + 1, 999999999999 - int(NOW)):
        error = presign_v2(expires=expires).refused()
        assert (error.status, error.code) == (403, "AccessDenied")
        assert "at most 604800 seconds" in error.message


def test_v2_query_signs_amz_headers_moved_into_the_query() -> None:
    signed = presign_v2("PUT", "/bucket/key", headers={"x-amz-meta-color": "blue"})
    assert "x-amz-meta-color=blue" in signed.query
    assert signed.check() is not None
    assert edit_query(signed, "x-amz-meta-color", "red").refused().code == ("SignatureDoesNotMatch")
    # The header, which is what a handler reads, must carry the signed value too.
    assert signed.with_header("x-amz-meta-color", "red").refused().code == ("SignatureDoesNotMatch")


def test_v2_missing_or_invalid_date_is_access_denied() -> None:
    for signed in (
        sign_v2().with_header("Date", None),
        sign_v2().with_header("Date", "yesterday"),
    ):
        error = signed.refused()
        assert (error.status, error.code) == (403, "AccessDenied")


# --- Properties ------------------------------------------------------------------------


@given(key=KEYS, version=st.text(st.characters(codec="utf-8"), max_size=12))
def test_v2_accepts_any_key_and_subresource(key: str, version: str) -> None:
    path = "/bucket/" + quote(key, safe="/~")
    assert sign_v2("GET", path, {"versionId": version, "x": key}).check() is not None
