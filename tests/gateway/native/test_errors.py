"""The native API's error answers (docs/native-api.md §1, §3) through the in-process grid."""

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.objects import ObjectService
from tests.grid import Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("grid")) as running:
        yield running


async def test_a_wrong_method_is_405_with_allow_and_a_request_id(grid: Grid) -> None:
    response = await grid.native.post("/file/list", headers=grid.signed())
    body = await response.json()
    assert response.status == 405 and body["data"]["error"] == "MethodNotAllowed"
    assert set(response.headers["Allow"].split(",")) >= {"GET"}
    assert len(response.headers["X-Request-Id"]) == 16


async def test_a_bug_is_the_internal_error_envelope_quoting_the_request(
    grid: Grid, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: ObjectService, fid: str, owner: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ObjectService, "lookup", broken)
    with caplog.at_level(logging.ERROR, logger="deoss.native"):
        response = await grid.native.get(f"/file/metadata/{'a' * 64}", headers=grid.signed())
    body = await response.json()
    request_id = response.headers["X-Request-Id"]
    assert (response.status, body["code"], body["data"]["error"]) == (500, 500, "InternalError")
    assert request_id in body["msg"]
    assert any(request_id in record.getMessage() for record in caplog.records)


async def test_every_answer_names_its_request_streamed_ones_too(grid: Grid) -> None:
    upload = await grid.native.put("/object/a.txt", data=b"hello", headers=grid.signed())
    assert upload.status == 200, await upload.text()
    fid = (await upload.json())["data"]["fid"]
    download = await grid.native.get(f"/file/download/{fid}", headers=grid.signed())
    assert download.status == 200 and await download.read() == b"hello"
    missing = await grid.native.get(f"/file/metadata/{'b' * 64}", headers=grid.signed())
    assert missing.status == 404 and (await missing.json())["data"]["error"] == "NoSuchFile"
    ids = {r.headers["X-Request-Id"] for r in (upload, download, missing)}
    assert len(ids) == 3


async def test_a_fid_in_upper_case_is_accepted_and_lowercased(grid: Grid) -> None:
    upload = await grid.native.put("/object/upper.txt", data=b"UPPER", headers=grid.signed())
    fid = (await upload.json())["data"]["fid"]
    response = await grid.native.get(f"/file/download/{fid.upper()}", headers=grid.signed())
    assert response.status == 200 and await response.read() == b"UPPER"
    bad = await grid.native.get(f"/file/download/{'g' * 64}", headers=grid.signed())
    assert bad.status == 400 and (await bad.json())["data"]["error"] == "InvalidFid"


@pytest.mark.parametrize("name", ["a%0Ab", "tab%09", "del%7F", "nul%00"])
async def test_a_name_with_a_control_character_is_refused(grid: Grid, name: str) -> None:
    response = await grid.native.put(f"/object/{name}", data=b"x", headers=grid.signed())
    assert response.status == 400, await response.text()
    assert (await response.json())["data"]["error"] == "InvalidName"
