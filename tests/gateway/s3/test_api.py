"""The S3 front's error model: a failure nobody foresaw is S3 XML ``InternalError`` with the
request id, logged with the marker the end-to-end guard fails on; a method a resource
does not take is 405 with ``Allow``; a body that breaks off is 400, not 500."""

import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gateway.s3 import api
from gateway.s3.api import make_s3_app
from gateway.s3.context import S3Context, S3Request
from tests.e2e.gateway_network import INTERNAL_ERRORS


@pytest.fixture
async def s3(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    async def anyone(*_: Any) -> str:
        return "cXowner"

    monkeypatch.setattr(api, "_authenticate", anyone)
    context = cast(S3Context, SimpleNamespace(domain=""))  # all a routed request reads here
    return await aiohttp_client(make_s3_app(context))


async def test_an_unforeseen_failure_is_an_internal_error_logged_once(
    s3: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: S3Request) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(api, "_route", lambda request: broken)
    with caplog.at_level(logging.ERROR, logger="deoss.s3"):
        response = await s3.get("/bucket/key")
    body = await response.text()
    assert response.status == 500 and "<Code>InternalError</Code>" in body
    request_id = response.headers["x-amz-request-id"]
    assert f"<RequestId>{request_id}</RequestId>" in body
    logged = [r for r in caplog.records if any(m in r.getMessage() for m in INTERNAL_ERRORS)]
    assert len(logged) == 1 and request_id in logged[0].getMessage() and logged[0].exc_info


async def test_a_body_that_breaks_off_is_a_client_error(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def reset(request: S3Request) -> Any:
        raise ConnectionResetError("the peer went away")

    monkeypatch.setattr(api, "_route", lambda request: reset)
    response = await s3.put("/bucket/key", data=b"x")
    assert response.status == 400 and "<Code>IncompleteBody</Code>" in await response.text()


async def test_a_method_the_resource_lacks_names_the_ones_it_takes(s3: Any) -> None:
    response = await s3.post("/bucket/key?tagging")
    assert response.status == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "PUT", "DELETE"}
