"""Every console page renders what the chain and the gateway hold (docs/console.md §4):
miners with their space bars, a challenge failed and its fragment repaired, territories
and their commands, health and metrics; the security headers and static files; and a
last test that every console route answered during the session's tour."""

import functools
import html
import re

import pytest

from chain_client.account import ChainAccount
from tests.gateway.console.browser import (
    REACHED,
    Browser,
    csrf_of,
    log_in_with_signature,
)
from tests.grid import GRID_PARAMS, TERRITORY, USER, Grid
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="package")
PAGES = ("objects", "deals", "territories", "miners", "challenges", "restoral", "health")


async def test_every_page_renders_with_its_headers(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    for name in PAGES:
        answer = await browser.get(f"/console/{name}")
        text = await answer.text()
        assert answer.status == 200, (name, text)
        assert answer.content_type == "text/html" and answer.charset == "utf-8"
        assert f'<body data-page="{name}">' in text
        assert f'<a href="/console/{name}" aria-current="page">' in text
        assert answer.headers["Content-Security-Policy"] == (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert " style=" not in text and "<style" not in text  # the CSP would block them


async def test_the_miners_page_draws_each_miners_space(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    text = await (await browser.get("/console/miners")).text()
    miners = await grid.chain.query("sminer.miners")
    assert len(re.findall(r'<svg class="bar"', text)) == len(miners) == len(grid.miners)
    for miner in miners:
        assert miner["account"] in text
    assert f"{len(miners)} miners ({len(miners)} positive)" in text
    # A bar's parts are its space classes out of the declared space.
    bar = re.search(r'<svg class="bar".*?</svg>', text, re.S)
    assert bar is not None
    for part in ("service", "locked", "idle"):
        assert f'<rect class="{part}"' in bar[0]


async def test_a_failed_challenge_and_its_repair_show(browser: Browser, grid: Grid) -> None:
    stored = await grid.native.put(
        "/object/pages/repaired", data=b"r" * 9000, headers=grid.signed()
    )
    fid = (await stored.json())["data"]["fid"]
    file = await eventually(
        functools.partial(grid.chain.query, "file_bank.file", fid=fid),
        lambda file: file is not None and file["state"] == "active",
    )
    fragment = file["segments"][0]["fragments"][1]
    holder = next(m for m in grid.miners if m.address == fragment["miner"])
    holder.store.fragment_path(fragment["id"]).unlink()
    await ChainAccount(grid.chain, USER).call(
        "audit.challenge_now", miner=holder.address, fid=fid, segment=0, index=1
    )
    await log_in_with_signature(browser, grid)

    async def restoral() -> str:
        return await (await browser.get("/console/restoral")).text()

    completed = re.compile(
        r'state-completed">completed</span></td><td><span class="fid" title="' + fid
    )
    text = await eventually(restoral, lambda text: completed.search(text) is not None, timeout=60)
    assert re.search(r'state-opened">opened</span></td><td><span class="fid" title="' + fid, text)
    assert "repairs completed" in text and "proof_failed" in text
    challenges = await (await browser.get("/console/challenges")).text()
    row = challenges[challenges.index(holder.address) :]
    row = row[: row.index("</tr>")]
    assert "targeted" in row and 'state-failed">failed<' in row


async def test_territories_and_their_commands(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    text = await (await browser.get("/console/territories")).text()
    territory = await grid.chain.query(
        "storage_handler.territory", owner=USER.address, name=TERRITORY
    )
    assert f"<td>{TERRITORY}</td>" in text and f"block {territory['deadline']}" in text
    assert "state-active" in text and "(in about " in text
    unit_price = GRID_PARAMS.territory_unit_price // 10**18
    cases = {
        ("mint", "fresh", 2, 30): ("deoss territory mint fresh --size 2 --days 30", 2 * 30),
        # 5 days left of the grid's 5-day lease: 3 units for 5 days
        ("expand", TERRITORY, 3, None): (f"deoss territory expand {TERRITORY} --size 3", 3 * 5),
        ("renew", TERRITORY, None, 7): (
            f"deoss territory renew {TERRITORY} --days 7",
            (territory["total"] // GRID_PARAMS.territory_unit) * 7,
        ),
    }
    for (action, name, size, days), (command, units) in cases.items():
        query = {"action": action, "name": name}
        query |= {"size": str(size)} if size else {}
        query |= {"days": str(days)} if days else {}
        answer = await browser.get("/console/territories", params=query)
        page = html.unescape(await answer.text())
        assert answer.status == 200, page
        shown = re.search(r'<pre class="command">(.*?)</pre>', page)
        assert shown is not None and shown[1] == command + " --key KEY_FILE"
        if units is not None:
            assert f"({units * unit_price} tokens)" in page
    refusals = [
        ({"action": "steal", "name": "x"}, 400),
        ({"action": "mint", "name": "bad name", "size": "1", "days": "30"}, 400),
        ({"action": "mint", "name": "x", "size": "0", "days": "30"}, 400),
        ({"action": "mint", "name": "x", "size": "1", "days": "0"}, 400),  # < min days
        ({"action": "mint", "name": "x", "size": "1²", "days": "30"}, 400),
        ({"action": "mint", "name": "x", "size": "1" * 25, "days": "30"}, 400),
        ({"action": "mint", "name": "x", "days": "30"}, 400),
        ({"action": "mint", "name": TERRITORY, "size": "1", "days": "30"}, 409),
        ({"action": "renew", "name": "nosuch", "days": "3"}, 404),
    ]
    for query, status in refusals:
        answer = await browser.get("/console/territories", params=query)
        assert answer.status == status, (query, await answer.text())


async def test_the_health_page_reads_the_gateways_health_and_metrics(
    browser: Browser, grid: Grid
) -> None:
    await log_in_with_signature(browser, grid)
    await browser.get("/console/objects")  # counted by the native metrics
    text = await (await browser.get("/console/health")).text()
    health = await (await grid.native.get("/health")).json()
    assert 'id="health-status">Status: ok' in text
    assert f"<td>positive miners</td><td>{health['data']['positive_miners']}</td>" in text
    assert "<td>best block</td><td>" in text and "<td>replay cache entries</td>" in text
    for series in ("deoss_native_requests_total", "deoss_upload_bytes_total"):
        assert f"<td>{series}</td>" in text
    assert "route=/console/objects" in text
    assert "_bucket" not in text and "_created" not in text


async def test_static_files_and_unknown_routes(browser: Browser, grid: Grid) -> None:
    script = await browser.get("/console/static/console.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert "XMLHttpRequest" in await script.text()
    again = await browser.get(
        "/console/static/console.js", headers={"If-None-Match": script.headers["ETag"]}
    )
    assert again.status == 304
    assert script.headers["Cache-Control"] == "no-cache"
    style = await browser.get("/console/static/console.css")
    assert style.status == 200 and style.content_type == "text/css"
    icon = await browser.get("/console/static/favicon.svg")
    assert icon.status == 200 and icon.content_type == "image/svg+xml"
    for path in ("/console/static/../app.py", "/console/static/app.py", "/console/nope"):
        answer = await browser.get(path)
        assert answer.status == 404 and "404 NotFound" in await answer.text(), path
    wrong = await browser.put("/console/objects", data=b"")
    assert wrong.status == 405 and "405 MethodNotAllowed" in await wrong.text()
    assert "GET" in wrong.headers["Allow"]
    bare = await browser.get("/console", allow_redirects=False)
    assert bare.status == 303 and bare.headers["Location"] == "/console/objects"


async def test_every_console_route_answered(browser: Browser, grid: Grid) -> None:
    """A tour of what the other tests may not reach, then the check that every console
    route answered at least once this session."""
    await log_in_with_signature(browser, grid)
    csrf = await csrf_of(browser)
    await browser.get("/console/")
    await browser.get("/console")
    upload = await browser.post(
        "/console/objects/upload?name=tour", data=b"tour", headers={"X-CSRF-Token": csrf}
    )
    assert upload.status == 200
    await browser.get("/console/objects/state?name=tour")
    await browser.get("/console/objects/download?name=tour")
    await browser.post("/console/objects/delete", data={"csrf": csrf, "name": "tour"})
    for name in PAGES:
        await browser.get(f"/console/{name}")
    await browser.get("/console/static/console.css")
    await browser.post("/console/logout", data={"csrf": csrf})
    routes = {
        route.name
        for route in grid.gateway.native.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/console")
    }
    assert None not in routes and len(routes) >= 17
    assert routes - REACHED == set()
