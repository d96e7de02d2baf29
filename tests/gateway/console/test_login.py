"""Logging in to the console both ways, the cookies it sets, and every refusal: bad and
replayed signatures, a stranger, a wrong secret, a missing, forged or logged-out cookie,
a revoked key (docs/console.md §2, §3)."""

import base64
import html
import json
import re

import pytest

from chain_client.keys import Keypair
from gateway.console.auth import LOGIN_COOKIE, SESSION_COOKIE
from tests.gateway.console.browser import (
    Browser,
    challenge_of,
    csrf_of,
    log_in_with_key,
    log_in_with_signature,
    set_cookies,
    signature_line,
)
from tests.grid import USER, Grid

pytestmark = pytest.mark.asyncio(loop_scope="package")


def _refusal(text: str) -> str:
    """The ``<status> <Code>`` an error page names."""
    found = re.search(r'<p class="error" role="alert"><strong>(\d+ \w+)</strong>', text)
    assert found is not None, text
    return found[1]


async def test_the_login_page_gives_a_challenge_tied_to_the_browser(
    browser: Browser, grid: Grid
) -> None:
    page = await browser.get("/console/login")
    text = await page.text()
    challenge = re.search(r"challenge=([0-9a-f]{32})", text)
    assert challenge is not None
    # The exact command, for this gateway, and the cookie that ties the challenge here.
    command = (
        f"deoss sign POST '/console/login?challenge={challenge[1]}' --key KEY_FILE "
        f"--gateway {grid.gateway.address}"
    )
    assert command in html.unescape(text)
    cookie = set_cookies(page)[LOGIN_COOKIE]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console/login", "Max-Age=600"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback, endpoint http://


async def test_a_wallet_signature_logs_in(browser: Browser, grid: Grid) -> None:
    answer = await log_in_with_signature(browser, grid)
    assert answer.status == 303 and answer.headers["Location"] == "/console/objects"
    cookies = set_cookies(answer)
    session = cookies[SESSION_COOKIE]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=3600"):
        assert attribute in session
    assert "Secure" not in session
    assert 'deoss_console_login=""' in cookies[LOGIN_COOKIE]  # the challenge is spent
    page = await browser.get("/console/objects")
    text = await page.text()
    assert page.status == 200 and USER.address in text and "wallet signature" in text


async def test_an_access_key_logs_in(browser: Browser, grid: Grid) -> None:
    access_key, secret = await grid.s3_keys()
    answer = await log_in_with_key(browser, access_key, secret)
    assert answer.status == 303
    page = await browser.get("/console/objects")
    assert page.status == 200 and "S3 access key" in await page.text()


async def test_a_bad_signature_is_refused(browser: Browser, grid: Grid) -> None:
    challenge = await challenge_of(browser)
    line = signature_line(grid, challenge)
    head, _, signature = line.partition("-HSignature:0x")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    answer = await browser.post(
        f"/console/login?challenge={challenge}",
        data={"method": "signature", "signature": head + "-HSignature:0x" + flipped},
        allow_redirects=False,
    )
    assert answer.status == 401 and _refusal(await answer.text()) == "401 InvalidSignature"
    assert SESSION_COOKIE not in set_cookies(answer)


@pytest.mark.parametrize(
    ("body", "target", "refusal"),
    [
        (b"x", "", "400 BodySigned"),  # signed with --body
        (b"", "/console/login?challenge=" + "0" * 32, "401 WrongRequest"),  # another challenge
        (b"", "/file/list", "401 WrongRequest"),  # another route
    ],
)
async def test_a_signature_for_something_else_is_refused(
    browser: Browser, grid: Grid, body: bytes, target: str, refusal: str
) -> None:
    challenge = await challenge_of(browser)
    answer = await browser.post(
        f"/console/login?challenge={challenge}",
        data={
            "method": "signature",
            "signature": signature_line(grid, challenge, body=body, target=target),
        },
        allow_redirects=False,
    )
    assert _refusal(await answer.text()) == refusal


async def test_a_signature_logs_in_once(browser: Browser, grid: Grid) -> None:
    challenge = await challenge_of(browser)
    kept = next(c.value for c in browser.session.cookie_jar if c.key == LOGIN_COOKIE)
    form = {"method": "signature", "signature": signature_line(grid, challenge)}
    url = f"/console/login?challenge={challenge}"
    assert (await browser.post(url, data=form, allow_redirects=False)).status == 303
    # The same line again, with the challenge cookie put back as it was: the replay
    # cache refuses it. Without the cookie, the challenge does.
    browser.session.cookie_jar.update_cookies({LOGIN_COOKIE: kept})
    again = await browser.post(url, data=form, allow_redirects=False)
    assert _refusal(await again.text()) == "401 SignatureUsed"
    browser.session.cookie_jar.clear()
    without = await browser.post(url, data=form, allow_redirects=False)
    assert _refusal(await without.text()) == "403 LoginChallengeRefused"


async def test_a_signature_needs_the_browsers_own_challenge(browser: Browser, grid: Grid) -> None:
    challenge = await challenge_of(browser)
    await challenge_of(browser)  # the cookie now holds another challenge
    answer = await browser.post(
        f"/console/login?challenge={challenge}",
        data={"method": "signature", "signature": signature_line(grid, challenge)},
        allow_redirects=False,
    )
    assert _refusal(await answer.text()) == "403 LoginChallengeRefused"
    bare = await browser.post(
        "/console/login", data={"method": "signature", "signature": ""}, allow_redirects=False
    )
    assert _refusal(await bare.text()) == "400 InvalidChallenge"


async def test_a_stranger_is_refused(browser: Browser, grid: Grid) -> None:
    answer = await log_in_with_signature(browser, grid, keypair=Keypair.generate())
    assert _refusal(await answer.text()) == "403 GatewayNotAuthorized"
    assert grid.gateway.address in await answer.text()


async def test_a_wrong_secret_or_unknown_key_is_refused(browser: Browser, grid: Grid) -> None:
    access_key, secret = await grid.s3_keys()
    for key, given in ((access_key, secret[:-1] + "A"), ("DOUNKNOWNKEY000000000", secret)):
        answer = await log_in_with_key(browser, key, given)
        assert _refusal(await answer.text()) == "401 InvalidCredentials"
        assert SESSION_COOKIE not in set_cookies(answer)


@pytest.mark.parametrize(
    "paste",
    [
        "not a signature",
        "-HAccount:x -HAccount:y",
        "-HCookie:deoss_console=1",
        "-H",
        "x" * 9000,
    ],
)
async def test_a_pasted_line_that_is_no_signature_is_400(
    browser: Browser, grid: Grid, paste: str
) -> None:
    challenge = await challenge_of(browser)
    answer = await browser.post(
        f"/console/login?challenge={challenge}",
        data={"method": "signature", "signature": paste},
        allow_redirects=False,
    )
    assert _refusal(await answer.text()).startswith(("400", "401"))


async def test_pages_without_a_session_go_to_the_login(browser: Browser) -> None:
    for path in ("/console/objects", "/console/miners", "/console/health", "/console/"):
        answer = await browser.get(path, allow_redirects=False)
        assert answer.status == 303
    assert answer.headers["Location"] == "/console/objects"  # the index, then the login
    page = await browser.get("/console/miners", allow_redirects=False)
    assert page.headers["Location"] == "/console/login"
    posted = await browser.post("/console/objects/delete", data={"name": "x", "csrf": "y"})
    assert posted.status == 401 and _refusal(await posted.text()) == "401 NoSession"
    state = await browser.get("/console/objects/state?name=x")
    assert state.status == 401 and (await state.json())["error"] == "NoSession"


async def test_a_forged_cookie_is_refused(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    real = next(c.value for c in browser.session.cookie_jar if c.key == SESSION_COOKIE)
    version, payload, mac = real.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=="))
    fields["a"] = Keypair.generate().address  # someone else, under the same MAC
    forged_payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    for forged in (f"{version}.{forged_payload}.{mac}", real[:-2] + "AA", "v1.e30.AAAA", "junk"):
        browser.session.cookie_jar.clear()
        browser.session.cookie_jar.update_cookies({SESSION_COOKIE: forged})
        page = await browser.get("/console/objects", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/console/login", forged
        assert 'deoss_console=""' in set_cookies(page)[SESSION_COOKIE]  # told to drop it
        state = await browser.get("/console/objects/state?name=x")
        assert (await state.json())["error"] == "BadSession"


async def test_logging_out_ends_the_session_for_good(browser: Browser, grid: Grid) -> None:
    await log_in_with_signature(browser, grid)
    cookie = next(c.value for c in browser.session.cookie_jar if c.key == SESSION_COOKIE)
    csrf = await csrf_of(browser)
    without_token = await browser.post("/console/logout", data={}, allow_redirects=False)
    assert _refusal(await without_token.text()) == "403 CsrfRefused"
    out = await browser.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/console/login"
    browser.session.cookie_jar.update_cookies({SESSION_COOKIE: cookie})  # kept a copy
    state = await browser.get("/console/objects/state?name=x")
    assert state.status == 401 and (await state.json())["error"] == "SessionEnded"


async def test_revoking_the_access_key_ends_its_sessions(browser: Browser, grid: Grid) -> None:
    access_key, secret = await grid.s3_keys()
    await log_in_with_key(browser, access_key, secret)
    assert (await browser.get("/console/objects")).status == 200
    revoked = await grid.native.delete(f"/keys/{access_key}", headers=grid.signed())
    assert revoked.status == 200
    state = await browser.get("/console/objects/state?name=x")
    assert state.status == 401 and (await state.json())["error"] == "SessionEnded"


async def test_a_login_form_names_its_method(browser: Browser) -> None:
    challenge = await challenge_of(browser)
    answer = await browser.post(
        f"/console/login?challenge={challenge}", data={"method": "magic"}, allow_redirects=False
    )
    assert _refusal(await answer.text()) == "400 MalformedForm"
