"""Native signatures against two real gateways of one network (security review #1): what
one gateway, a proxy or a log saw is refused at the other gateway and on any other
route, and a signed body is the body acted on."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from gateway.native.signing import sign_bare
from tests.grid import USER, Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(Path(tmp_path_factory.mktemp("bound")), gateways=2) as grid:
        yield grid


def second(grid: Grid) -> TestClient[Any, Any]:
    return grid.others[0][1]


async def error_of(response: Any) -> tuple[int, str]:
    return response.status, (await response.json())["data"]["error"]


async def keys_of(client: TestClient[Any, Any], grid: Grid) -> int:
    listed = await client.get("/keys", headers=grid.signed())
    return len((await listed.json())["data"])


async def test_headers_seen_at_one_gateway_are_refused_at_the_other(grid: Grid) -> None:
    """The review's reproduction: a GET /file/list at gateway 1, replayed at gateway 2 as
    POST /keys, minted a permanent S3 key there."""
    listing = grid.signed_for("GET", "/file/list")
    assert (await grid.native.get("/file/list", headers=listing)).status == 200
    before = await keys_of(second(grid), grid)
    stolen = await second(grid).post("/keys", data=b'{"label":"stolen"}', headers=listing)
    assert await error_of(stolen) == (401, "WrongGateway")
    # Even a POST /keys signed for gateway 1, never sent there, does not work at gateway 2.
    minted = grid.signed_for("POST", "/keys", b"{}")
    assert await error_of(await second(grid).post("/keys", data=b"{}", headers=minted)) == (
        401,
        "WrongGateway",
    )
    assert await keys_of(second(grid), grid) == before
    # The same user signs for gateway 2 through its own client and is served.
    assert (await second(grid).get("/file/list", headers=grid.signed())).status == 200


async def test_headers_for_one_route_are_refused_on_another_at_the_same_gateway(
    grid: Grid,
) -> None:
    before = await keys_of(grid.native, grid)
    listing = grid.signed_for("GET", "/file/list")
    for method, path in (("POST", "/keys"), ("DELETE", "/file/" + "0" * 64), ("GET", "/keys")):
        answer = await grid.native.request(method, path, data=b"{}", headers=listing)
        assert await error_of(answer) == (401, "WrongRequest"), (method, path)
    # ...and the headers, refused there, were not used up for their own request.
    assert (await grid.native.get("/file/list", headers=listing)).status == 200
    assert await keys_of(grid.native, grid) == before


async def test_a_signed_body_must_be_the_body_sent(grid: Grid) -> None:
    before = await keys_of(grid.native, grid)
    swapped = grid.signed_for("POST", "/keys", b'{"label": "mine"}')
    answer = await grid.native.post("/keys", data=b'{"label": "theirs"}', headers=swapped)
    assert await error_of(answer) == (400, "BadDigest")
    assert await keys_of(grid.native, grid) == before

    data = b"the signed bytes" * 100
    wrong = grid.signed_for("PUT", "/object/digest.bin", b"other bytes")
    answer = await grid.native.put("/object/digest.bin", data=data, headers=wrong)
    assert await error_of(answer) == (400, "BadDigest")
    assert grid.gateway.service.index.find(USER.address, "digest.bin") is None
    right = grid.signed_for("PUT", "/object/digest.bin", data)
    assert (await grid.native.put("/object/digest.bin", data=data, headers=right)).status == 200


async def test_a_resume_chunk_under_a_wrong_digest_stores_nothing(grid: Grid) -> None:
    data = bytes(range(256)) * 40
    first = {"Content-Range": f"bytes 0-4999/{len(data)}"}
    wrong = grid.signed_for("PUT", "/resume/d.bin", data[:4998] + b"!!", first)
    answer = await grid.native.put("/resume/d.bin", data=data[:5000], headers=wrong)
    assert await error_of(answer) == (400, "BadDigest")
    asked = await grid.native.get("/resume/d.bin", headers=grid.signed())
    assert asked.status == 404 or (await asked.json())["data"]["stored"] == 0
    right = grid.signed_for("PUT", "/resume/d.bin", data[:5000], first)
    answer = await grid.native.put("/resume/d.bin", data=data[:5000], headers=right)
    assert answer.status == 308
    rest = {"Content-Range": f"bytes 5000-{len(data) - 1}/{len(data)}"}
    last = grid.signed_for("PUT", "/resume/d.bin", None, rest)  # streamed: UNSIGNED
    assert (await grid.native.put("/resume/d.bin", data=data[5000:], headers=last)).status == 200


async def test_deoss_bare_messages_are_off_by_default(grid: Grid) -> None:
    bare = sign_bare(USER)
    assert await error_of(await grid.native.get("/file/list", headers=bare)) == (
        401,
        "UnboundSignature",
    )
