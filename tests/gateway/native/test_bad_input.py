"""Bad input to the native API is a 4xx with the API's own error names, never a 500
(issue 12 item 5; security review #8, #10, #12), through the in-process grid. Header
values that are not UTF-8 cannot be sent by aiohttp's client: those requests are signed
by hand and sent as raw bytes."""

import asyncio
import json
import logging
import stat
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.native.context import NATIVE
from tests.grid import Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")
NOT_UTF8 = "\udcff\udcfe"  # bytes ff fe, as aiohttp hands them to the handler
DATA = b"native bytes"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("nativebad")) as running:
        put = await running.native.put("/object/kept.bin", data=DATA, headers=running.signed())
        assert put.status == 200
        yield running


async def raw(
    grid: Grid, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, Any]]:
    """One request signed by hand (an upload's body UNSIGNED) and sent as bytes:
    (status, JSON)."""
    sent = {
        "Host": f"{grid.native.host}:{grid.native.port}",
        **grid.signed_for(method, target, body=None if method == "PUT" else body),
        **headers,
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items())
    reader, writer = await asyncio.open_connection(grid.native.host, grid.native.port)
    try:
        writer.write((head + "\r\n").encode("utf-8", "surrogateescape") + body)
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def error(answer: dict[str, Any]) -> str:
    return str(answer["data"]["error"])


def stored(grid: Grid) -> tuple[int, list[str]]:
    """What an upload would change: fragments on miners, and the user's names."""
    fragments = sum(len(miner.store.fragments()) for miner in grid.miners)
    index = grid.gateway.service.index
    return fragments, sorted(r.name for r in index.objects_by_name(grid_owner(grid), "", 100))


def grid_owner(grid: Grid) -> str:
    return grid.signed()["Account"]


def form(name: str = "form.txt") -> tuple[dict[str, str], bytes]:
    body = (
        (
            "--B\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + DATA
        + b"\r\n--B--\r\n"
    )
    return {"Content-Type": "multipart/form-data; boundary=B"}, body


# -- review #8: integers --------------------------------------------------------------


@pytest.mark.parametrize("limit", ["²", "7" * 1000, "1_0", "+5", "0", "1001"])
async def test_list_limit(grid: Grid, limit: str) -> None:
    answer = await grid.native.get("/file/list", params={"limit": limit}, headers=grid.signed())
    assert (answer.status, error(await answer.json())) == (400, "InvalidPagination")


async def test_list_limit_that_is_digits_pages(grid: Grid) -> None:
    answer = await grid.native.get("/file/list?limit=0001", headers=grid.signed())
    assert answer.status == 200 and len((await answer.json())["data"]) == 1


@pytest.mark.parametrize("copies", ["²", "3" * 5000, "-1", "1_0"])
async def test_copies(grid: Grid, copies: str) -> None:
    before = stored(grid)
    answer = await grid.native.put(
        "/object/copies.bin", data=DATA, headers=grid.signed({"Copies": copies})
    )
    assert (answer.status, error(await answer.json())) == (400, "InvalidCopies")
    assert stored(grid) == before


async def test_a_range_past_any_size(grid: Grid) -> None:
    listed = await (await grid.native.get("/file/list", headers=grid.signed())).json()
    fid = next(r["fid"] for r in listed["data"] if r["name"] == "kept.bin")
    path = f"/file/download/{fid}"
    tail = await grid.native.get(path, headers=grid.signed({"Range": "bytes=7-" + "9" * 5000}))
    assert (tail.status, await tail.read()) == (206, DATA[7:])
    past = await grid.native.get(path, headers=grid.signed({"Range": "bytes=" + "9" * 5000 + "-"}))
    assert (past.status, error(await past.json())) == (416, "RangeNotSatisfiable")


# -- review #10: header bytes that are not UTF-8 ----------------------------------------


async def test_put_file_filename(grid: Grid) -> None:
    before = stored(grid)
    headers, body = form()
    status, answer = await raw(grid, "PUT", "/file", {**headers, "Filename": "a" + NOT_UTF8}, body)
    assert (status, error(answer)) == (400, "InvalidName")
    assert stored(grid) == before


async def test_put_file_form_filename(grid: Grid) -> None:
    before = stored(grid)
    headers, body = form()
    body = body.replace(b"form.txt", b"\xff\xfe.txt")
    status, answer = await raw(grid, "PUT", "/file", headers, body)
    assert (status, error(answer)) == (400, "InvalidName")
    assert stored(grid) == before


@pytest.mark.parametrize(
    ("header", "code"), [("Cipher", "InvalidCipher"), ("Territory", "InvalidTerritory")]
)
async def test_put_object_text_headers(grid: Grid, header: str, code: str) -> None:
    before = stored(grid)
    status, answer = await raw(grid, "PUT", "/object/bytes.bin", {header: NOT_UTF8}, DATA)
    assert (status, error(answer)) == (400, code)
    assert stored(grid) == before


async def test_download_cipher(grid: Grid) -> None:
    listed = await (await grid.native.get("/file/list", headers=grid.signed())).json()
    fid = next(r["fid"] for r in listed["data"] if r["name"] == "kept.bin")
    status, answer = await raw(grid, "GET", f"/file/download/{fid}", {"Cipher": NOT_UTF8})
    assert (status, error(answer)) == (400, "InvalidCipher")


# -- review #12: JSON bodies ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 2000 + b"]" * 2000,  # json.loads: RecursionError
        b'{"label": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"label": NaN}',
        b'{"label": "x", "n": ' + b"9" * 100 + b"}",
        b'{"label": "\\udcff"}',
    ],
)
async def test_create_key_body(grid: Grid, body: bytes) -> None:
    answer = await grid.native.post("/keys", data=body, headers=grid.signed())
    assert answer.status == 400
    assert error(await answer.json()) in ("InvalidBody", "InvalidArgument")
    keys = await (await grid.native.get("/keys", headers=grid.signed())).json()
    assert all(k["label"] != "x" for k in keys["data"])


# -- review #16: the gateway's files --------------------------------------------------


async def test_the_data_directory_and_its_databases_are_private(grid: Grid) -> None:
    data_dir = grid.gateway.native[NATIVE].resume.directory
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    databases = [p for p in data_dir.iterdir() if ".db" in p.name]
    names = {p.name for p in databases}
    assert {"index.db", "index.db-wal", "resume.db", "access_keys.db"} <= names
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in databases} == dict.fromkeys(
        names, 0o600
    )
    spools = data_dir / "spool"
    assert stat.S_IMODE(spools.stat().st_mode) == 0o700


# -- found by tests/fuzz: a body is stored as it was sent ------------------------------


async def test_a_content_encoding_is_not_inflated(grid: Grid) -> None:
    # aiohttp inflated gzip bodies on the way in: one that was not gzip was a 500.
    put = await grid.native.put(
        "/object/gzipped.bin", data=DATA, headers=grid.signed({"Content-Encoding": "gzip"})
    )
    assert put.status == 200, await put.text()
    fid = (await put.json())["data"]["fid"]
    stored = await grid.native.get(f"/file/download/{fid}", headers=grid.signed())
    assert (stored.status, await stored.read()) == (200, DATA)


async def test_a_client_gone_before_its_100_continue_is_no_error(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by tests/fuzz: for a method a route lacks, aiohttp writes "100 Continue"
    # itself, before any handler; the client had closed its side, the write raised, and
    # aiohttp logged a traceback and a 500.
    head = (
        f"GET /object/kept.bin HTTP/1.1\r\nHost: {grid.native.host}:{grid.native.port}\r\n"
        "Expect: 100-continue\r\nContent-Length: 10\r\n\r\nab"
    )
    reader, writer = await asyncio.open_connection(grid.native.host, grid.native.port)
    writer.write(head.encode())
    writer.write_eof()
    await reader.read()
    writer.close()
    await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("target", ["/version", "/object/kept.bin", "/no/such/route"])
async def test_an_expect_that_is_not_utf8(grid: Grid, target: str) -> None:
    # Found by tests/fuzz: aiohttp's 417 quotes the Expect value in its text, and bytes
    # that are not UTF-8 made that a UnicodeEncodeError and a 500 (every role serves so).
    head = (
        f"GET {target} HTTP/1.1\r\nHost: {grid.native.host}:{grid.native.port}\r\n"
        "Expect: 100-continue\udc80\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(grid.native.host, grid.native.port)
    writer.write(head.encode("utf-8", "surrogateescape"))
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 417 "), answer[:200]
