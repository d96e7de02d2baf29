"""The objects pages through a logged-in browser (docs/console.md §4.1, §4.2): upload as
the page's script does, watch the state, download byte-identical, search, delete; CSRF on
every POST; every user-controlled text escaped."""

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.console.auth import CSRF_HEADER
from gateway.console.objects import PAGE_SIZE
from tests.gateway.console.browser import Browser, csrf_of, log_in_with_signature
from tests.grid import TERRITORY, Grid
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="package")
HOSTILE = ('<script>alert("x")</script>', "\"><img src=x onerror=alert('x')>", "a&b<c>/d")


async def _upload(browser: Browser, csrf: str, name: str, data: bytes) -> dict[str, Any]:
    answer = await browser.post(
        "/console/objects/upload",
        params={"name": name, "territory": TERRITORY},
        data=data,
        headers={CSRF_HEADER: csrf, "Content-Type": "application/octet-stream"},
    )
    body: dict[str, Any] = await answer.json()
    assert answer.status == 200, body
    return body


async def test_upload_watch_download_search_and_delete(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    csrf = await csrf_of(browser)
    data = bytes(range(256)) * 700  # three segments at the grid's sizes
    stored = await _upload(browser, csrf, "console/a file.bin", data)
    assert stored["name"] == "console/a file.bin" and stored["size"] == len(data)
    assert set(stored) == {"name", "fid", "size", "territory", "state"}
    assert stored["state"] in ("Pending", "Active")

    async def state() -> str:
        answer = await browser.get("/console/objects/state", params={"name": stored["name"]})
        return str((await answer.json())["state"])

    assert await eventually(state, lambda s: s == "Active", timeout=30) == "Active"
    download = await browser.get("/console/objects/download", params={"name": stored["name"]})
    assert download.status == 200 and await download.read() == data
    assert download.headers["Content-Disposition"] == "attachment; filename*=UTF-8''a%20file.bin"
    assert download.headers["Content-Type"] == "application/octet-stream"

    await _upload(browser, csrf, "other/b.txt", b"b")
    await _upload(browser, csrf, "console/empty", b"")
    empty = await browser.get("/console/objects/download", params={"name": "console/empty"})
    assert empty.status == 200 and await empty.read() == b""
    found = await (await browser.get("/console/objects", params={"prefix": "console/"})).text()
    assert "console/a file.bin" in found and "other/b.txt" not in found
    assert 'class="state state-active">Active<' in found
    assert f'<option value="{TERRITORY}">{TERRITORY}</option>' in found

    deleted = await browser.post(
        "/console/objects/delete",
        data={"csrf": csrf, "name": stored["name"], "prefix": "console/"},
        allow_redirects=False,
    )
    assert deleted.status == 303
    assert deleted.headers["Location"].startswith("/console/objects?prefix=console%2F&deleted=")
    after = await browser.get(deleted.headers["Location"])
    text = await after.text()
    assert "Deleted console/a file.bin." in text and "download?name=console%2Fa" not in text
    gone = await browser.get("/console/objects/download", params={"name": stored["name"]})
    assert gone.status == 404 and "404 NoSuchObject" in await gone.text()


async def test_every_post_needs_the_sessions_csrf_token(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    csrf = await csrf_of(browser)
    await _upload(browser, csrf, "csrf/kept", b"kept")
    for token in (None, "", "forged", csrf[:-1] + ("A" if csrf[-1] != "A" else "B")):
        form = {"name": "csrf/kept"} if token is None else {"name": "csrf/kept", "csrf": token}
        refused = await browser.post("/console/objects/delete", data=form)
        assert refused.status == 403 and "403 CsrfRefused" in await refused.text()
        headers = {} if token is None else {CSRF_HEADER: token}
        upload = await browser.post(
            "/console/objects/upload", params={"name": "csrf/new"}, data=b"x", headers=headers
        )
        assert upload.status == 403 and (await upload.json())["error"] == "CsrfRefused"
    # Another session's token is no good either.
    other: Browser = type(browser)(grid.native.server)
    await other.start_server()
    try:
        await log_in_with_signature(other, grid)
        theirs = await csrf_of(other)
        assert theirs != csrf
        refused = await browser.post(
            "/console/objects/delete", data={"name": "csrf/kept", "csrf": theirs}
        )
        assert refused.status == 403
    finally:
        await other.close()
    names = await (await browser.get("/console/objects", params={"prefix": "csrf/"})).text()
    assert "csrf/kept" in names and "csrf/new" not in names


@pytest_asyncio.fixture(loop_scope="package")
async def hostile_objects(grid: Grid) -> AsyncIterator[list[str]]:
    """Objects whose names are markup, stored through the native API."""
    names = [f"evil/{text}" for text in HOSTILE]
    for name in names:
        stored = await grid.native.put(
            f"/object/{name}", data=b"<script>alert(1)</script>", headers=grid.signed()
        )
        assert stored.status == 200, await stored.text()
    yield names


async def test_names_are_escaped_everywhere(
    browser: Browser, grid: Grid, hostile_objects: list[str]
) -> None:
    await log_in_with_signature(browser, grid)
    csrf = await csrf_of(browser)
    pages = {
        "objects": await browser.get("/console/objects", params={"prefix": "evil/"}),
        "deals": await browser.get("/console/deals"),
        "search": await browser.get("/console/objects", params={"prefix": "<script>"}),
        "flash": await browser.get("/console/objects", params={"deleted": HOSTILE[0]}),
        "missing": await browser.get("/console/objects/download", params={"name": HOSTILE[1]}),
        "territory": await browser.get(
            "/console/territories", params={"action": "expand", "name": "<b>"}
        ),
    }
    for label, answer in pages.items():
        text = await answer.text()
        for raw in ("<script>alert", "<img src=x", "onerror=alert('x')>", "<b>"):
            assert raw not in text, (label, raw)
        # The only scripts are the console's own file.
        assert re.findall(r"<script[^>]*>", text) == [
            '<script src="/console/static/console.js" defer>'
        ], label
    listed = await pages["objects"].text()
    assert html.escape(HOSTILE[0]) in listed and html.escape(HOSTILE[1]) in listed
    # An attribute cannot be broken out of: the delete form's hidden name reads back whole.
    values = re.findall(r'<input type="hidden" name="name" value="([^"]*)">', listed)
    assert sorted(html.unescape(v) for v in values) == sorted(hostile_objects)
    # And the name still works as a name: download it, delete it.
    name = hostile_objects[0]
    download = await browser.get("/console/objects/download", params={"name": name})
    assert await download.read() == b"<script>alert(1)</script>"
    assert "attachment" in download.headers["Content-Disposition"]
    deleted = await browser.post(
        "/console/objects/delete", data={"csrf": csrf, "name": name}, allow_redirects=False
    )
    assert deleted.status == 303
    flash = await (await browser.get(deleted.headers["Location"])).text()
    assert f"Deleted {html.escape(name)}." in flash


async def test_upload_refusals_are_json_4xx(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    csrf = await csrf_of(browser)

    async def chunked() -> AsyncIterator[bytes]:
        yield b"no length"

    cases = [
        ({"name": "a\x01b"}, b"x", 400, "InvalidName"),
        ({"name": ""}, b"x", 400, "MissingName"),
        ({"name": "x", "territory": "no such/territory"}, b"x", 400, "InvalidTerritory"),
        ({"name": "x", "territory": "nosuch"}, b"x", 404, "NoSuchTerritory"),
        ({"name": "x", "name2": "y"}, chunked(), 411, "LengthRequired"),
    ]
    for params, body, status, error in cases:
        answer = await browser.post(
            "/console/objects/upload", params=params, data=body, headers={CSRF_HEADER: csrf}
        )
        assert answer.status == status, (params, await answer.text())
        assert (await answer.json())["error"] == error
    twice = await browser.post(
        "/console/objects/upload?name=a&name=b", data=b"x", headers={CSRF_HEADER: csrf}
    )
    assert twice.status == 400 and (await twice.json())["error"] == "InvalidQuery"
    missing = await browser.get("/console/objects/state", params={"name": "never/stored"})
    assert missing.status == 404 and (await missing.json())["error"] == "NoSuchObject"


async def test_a_cipher_object_is_refused_cleanly(browser: Browser, grid: Grid) -> None:
    stored = await grid.native.put(
        "/object/cipher/secret", data=b"s" * 100, headers=grid.signed({"Cipher": "pw"})
    )
    assert stored.status == 200
    await log_in_with_signature(browser, grid)
    answer = await browser.get("/console/objects/download", params={"name": "cipher/secret"})
    assert answer.status == 403 and "403 CipherRequired" in await answer.text()


async def test_the_deals_page_follows_the_chain(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    csrf = await csrf_of(browser)
    stored = await _upload(browser, csrf, "deals/one", b"1" * 5000)

    async def deals() -> str:
        return await (await browser.get("/console/deals")).text()

    pattern = re.compile(re.escape(stored["fid"]) + r"[^\n]*<td>active</td>")
    text = await eventually(deals, lambda text: pattern.search(text) is not None)
    row = text[text.index(stored["fid"]) :]
    row = row[: row.index("</tr>")]
    assert "4 / 4" in row  # every fragment reported: k = 2, n = 4 on one segment
    assert "Waiting in this gateway's outbox: " in text


async def test_a_long_listing_comes_in_pages(browser: Browser, grid: Grid) -> None:
    for number in range(PAGE_SIZE + 1):
        stored = await grid.native.put(
            f"/object/paged/{number:03d}", data=b"p", headers=grid.signed()
        )
        assert stored.status == 200
    await log_in_with_signature(browser, grid)
    first = await (await browser.get("/console/objects", params={"prefix": "paged/"})).text()
    assert first.count("download?name=paged%2F") == PAGE_SIZE
    following = re.search(r'<a href="([^"]*)" rel="next">', first)
    assert following is not None
    assert html.unescape(following[1]) == "/console/objects?prefix=paged%2F&after=paged%2F049"
    second = await (await browser.get(html.unescape(following[1]))).text()
    assert second.count("download?name=paged%2F") == 1 and "paged/050" in second
    assert 'rel="next"' not in second
