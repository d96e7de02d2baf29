"""What a console test does as a user would: open the login page, sign its challenge as
``deoss sign`` does, log in either way, and read the tokens a page carries."""

import re
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from chain_client.keys import Keypair
from gateway.native.signing import sign_request
from tests.grid import USER, Grid

__all__ = [
    "REACHED",
    "Browser",
    "challenge_of",
    "csrf_of",
    "log_in_with_key",
    "log_in_with_signature",
    "record_reached",
    "set_cookies",
    "signature_line",
]

Browser = TestClient[Any, Any]
REACHED: set[str] = set()  # names of the console routes that answered, this session
_CHALLENGE = re.compile(r"/console/login\?challenge=([0-9a-f]{32})")
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def challenge_of(browser: Browser) -> str:
    page = await browser.get("/console/login")
    assert page.status == 200
    found = _CHALLENGE.search(await page.text())
    assert found is not None
    return found[1]


def signature_line(
    grid: Grid, challenge: str, *, keypair: Keypair = USER, body: bytes = b"", target: str = ""
) -> str:
    """What ``deoss sign POST /console/login?challenge=… --gateway G`` prints."""
    headers = sign_request(
        keypair,
        gateway=grid.gateway.address,
        method="POST",
        target=target or f"/console/login?challenge={challenge}",
        body=body,
    )
    return " ".join(f"-H{name}:{value}" for name, value in headers.items())


async def log_in_with_signature(
    browser: Browser, grid: Grid, *, keypair: Keypair = USER
) -> ClientResponse:
    challenge = await challenge_of(browser)
    return await browser.post(
        f"/console/login?challenge={challenge}",
        data={"method": "signature", "signature": signature_line(grid, challenge, keypair=keypair)},
        allow_redirects=False,
    )


async def log_in_with_key(browser: Browser, access_key: str, secret: str) -> ClientResponse:
    challenge = await challenge_of(browser)
    return await browser.post(
        f"/console/login?challenge={challenge}",
        data={"method": "access_key", "access_key": access_key, "secret_key": secret},
        allow_redirects=False,
    )


async def csrf_of(browser: Browser, path: str = "/console/objects") -> str:
    page = await browser.get(path)
    assert page.status == 200, await page.text()
    found = _CSRF.search(await page.text())
    assert found is not None and found[1]
    return found[1]


def set_cookies(response: ClientResponse) -> dict[str, str]:
    """Each Set-Cookie header of the answer, by cookie name: the whole header."""
    return {header.split("=", 1)[0]: header for header in response.headers.getall("Set-Cookie", [])}


async def record_reached(request: web.Request, response: web.StreamResponse) -> None:
    route = request.match_info.route
    resource = route.resource
    if (
        route.name is not None
        and resource is not None
        and resource.canonical.startswith("/console")
    ):
        REACHED.add(route.name)
