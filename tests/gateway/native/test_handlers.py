"""Every native handler through the in-process grid (tests/grid.py), as a DeOSS client
calls it; a last test checks that the module reached every route the app has."""

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from gateway.app import Gateway
from gateway.native.app import REQUEST_ID
from tests.grid import USER, Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")
REACHED: set[str] = set()  # handler names that answered during this module


async def _record(request: web.Request, response: web.StreamResponse) -> None:
    route = request.match_info.route
    if REQUEST_ID in request and route.resource is not None:
        REACHED.add(route.handler.__name__)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    def recording(gateway: Gateway) -> None:
        gateway.native.on_response_prepare.append(_record)

    async with open_grid(
        tmp_path_factory.mktemp("nativegrid"), before_serving=recording
    ) as running:
        yield running


async def test_uploads_downloads_and_what_a_file_tells(grid: Grid) -> None:
    data = bytes(range(256)) * 600
    put = await grid.native.put("/object/dir/a.bin", data=data, headers=grid.signed())
    stored = (await put.json())["data"]
    assert put.status == 200 and stored["size"] == len(data) and stored["name"] == "dir/a.bin"
    fid = stored["fid"]
    form = aiohttp.FormData()
    form.add_field("file", b"form bytes", filename="form.txt")
    by_form = await grid.native.put("/file", data=form, headers=grid.signed())
    assert by_form.status == 200 and (await by_form.json())["data"]["name"] == "form.txt"

    ranged = await grid.native.get(
        f"/file/download/{fid}", headers=grid.signed({"Range": "bytes=100-199"})
    )
    assert ranged.status == 206 and await ranged.read() == data[100:200]
    opened = await grid.native.get(f"/file/open/{fid}", headers=grid.signed())
    assert opened.status == 200 and await opened.read() == data
    assert opened.headers["Content-Disposition"].startswith("inline")

    meta = await (await grid.native.get(f"/file/metadata/{fid}", headers=grid.signed())).json()
    assert meta["data"]["size"] == len(data) and meta["data"]["names"] == ["dir/a.bin"]
    where = await (await grid.native.get(f"/file/location/{fid}", headers=grid.signed())).json()
    fragments = where["data"]["segments"][0]["fragments"]
    assert len({f["miner"] for f in fragments}) == len(fragments) == 4
    listed = await (await grid.native.get("/file/list", headers=grid.signed())).json()
    assert {"dir/a.bin", "form.txt"} <= {f["name"] for f in listed["data"]}

    gone = await grid.native.delete(f"/file/{fid}", headers=grid.signed())
    assert gone.status == 200 and (await gone.json())["data"]["names"] == ["dir/a.bin"]
    after = await grid.native.get(f"/file/download/{fid}", headers=grid.signed())
    assert after.status == 404


async def test_a_resumable_upload_in_two_chunks(grid: Grid) -> None:
    data = b"0123456789" * 3000
    first = await grid.native.put(
        "/resume/r.bin",
        data=data[:10000],
        headers=grid.signed({"Content-Range": f"bytes 0-9999/{len(data)}"}),
    )
    assert first.status == 308 and first.headers["Range"] == "bytes=0-9999"
    asked = await grid.native.get("/resume/r.bin", headers=grid.signed())
    assert asked.status == 200 and (await asked.json())["data"]["stored"] == 10000
    last = await grid.native.put(
        "/resume/r.bin",
        data=data[10000:],
        headers=grid.signed({"Content-Range": f"bytes 10000-{len(data) - 1}/{len(data)}"}),
    )
    fid = (await last.json())["data"]["fid"]
    assert last.status == 200
    got = await grid.native.get(f"/file/download/{fid}", headers=grid.signed())
    assert await got.read() == data
    ended = await grid.native.delete("/resume/r.bin", headers=grid.signed())
    assert ended.status == 200


async def test_keys_version_health_metrics_and_what_is_not_served(grid: Grid) -> None:
    created = await grid.native.post("/keys", data=b'{"label": "ci"}', headers=grid.signed())
    key = (await created.json())["data"]
    assert created.status == 200 and key["owner"] == USER.address
    listed = await (await grid.native.get("/keys", headers=grid.signed())).json()
    assert key["access_key"] in [k["access_key"] for k in listed["data"]]
    revoked = await grid.native.delete(f"/keys/{key['access_key']}", headers=grid.signed())
    assert (await revoked.json())["data"] == {"access_key": key["access_key"], "revoked": True}
    stranger = await grid.native.delete("/keys/DOAAAAAAAAAAAAAAAAAA", headers=grid.signed())
    assert stranger.status == 404
    assert (await stranger.json())["data"]["error"] == "NoSuchAccessKey"

    version = (await (await grid.native.get("/version")).json())["data"]
    assert (version["data_shards"], version["total_shards"]) == (2, 4)
    health = await grid.native.get("/health")
    assert health.status == 200 and (await health.json())["data"]["positive_miners"] == 6
    metrics = await grid.native.get("/metrics")
    assert "deoss_native_requests_total" in await metrics.text()
    for method, path in (("PUT", "/files"), ("GET", "/fragment/download")):
        refused = await grid.native.request(method, path, headers=grid.signed())
        assert refused.status == 501


async def test_a_small_body_arriving_in_two_pieces_is_read_whole(grid: Grid) -> None:
    async def two_pieces() -> AsyncIterator[bytes]:
        yield b'{"label": "two'
        await asyncio.sleep(0.2)  # the first piece is alone in the buffer for a while
        yield b' pieces"}'

    # A streamed body is sent UNSIGNED by the client, so its digest is signed by hand.
    whole = b'{"label": "two pieces"}'
    created = await grid.native.post(
        "/keys", data=two_pieces(), headers=grid.signed_for("POST", "/keys", whole)
    )
    assert created.status == 200, await created.text()
    listed = await (await grid.native.get("/keys", headers=grid.signed())).json()
    assert "two pieces" in [k["label"] for k in listed["data"]]


async def test_every_route_of_the_app_was_reached(grid: Grid) -> None:
    handlers = {
        route.handler.__name__
        for route in grid.gateway.native.router.routes()
        if route.method != "HEAD"  # aiohttp's HEAD of every GET: the same handler
        # The console's own tests reach each of its routes (tests/gateway/console).
        and not (route.resource is not None and route.resource.canonical.startswith("/console"))
    }
    assert handlers - REACHED == set()
