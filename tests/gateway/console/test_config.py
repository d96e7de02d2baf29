"""``[console]`` (docs/console.md §6): loaded from the gateway's TOML file, refused with
the file, key and value named; what each setting does to the cookies and the mount."""

import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from chain_client.params import ConfigError
from gateway.console import app as console_app
from gateway.console import login
from gateway.console.app import make_console_app
from gateway.console.auth import LOGIN_COOKIE, SESSION_COOKIE
from gateway.console.config import ConsoleConfig
from gateway.console.context import CONSOLE
from gateway.native.app import make_native_app
from gateway.native.context import NATIVE
from tests.gateway.console.browser import log_in_with_signature, set_cookies, signature_line
from tests.grid import Grid

package_loop = pytest.mark.asyncio(loop_scope="package")


def test_a_file_without_the_section_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nchain_rpc = "http://127.0.0.1:1"\n')
    config = ConsoleConfig.load(path)
    assert (config.enabled, config.session_ttl, config.cookie_secure) == (True, 3600.0, "auto")
    assert config.source == str(path)


def test_the_section_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[console]\nsession_ttl = 120\ncookie_secure = "always"\nenabled = false\n')
    config = ConsoleConfig.load(path)
    assert (config.session_ttl, config.cookie_secure, config.enabled) == (120.0, "always", False)
    for text, key in (
        ('cookie_secure = "sometimes"', "console.cookie_secure"),
        ("session_ttl = 5", "console.session_ttl"),
        ("login_ttl = 1e9", "console.login_ttl"),
        ("history_blocks = -1", "console.history_blocks"),
        ('session_ttl = "long"', "console.session_ttl"),
        ("colour = 1", "console.colour"),
    ):
        path.write_text(f"[console]\n{text}\n")
        with pytest.raises(ConfigError) as refused:
            ConsoleConfig.load(path)
        assert str(path) in str(refused.value) and key in str(refused.value), text
    path.write_text("[console\n")
    with pytest.raises(ConfigError, match="not TOML"):
        ConsoleConfig.load(path)


@pytest_asyncio.fixture(loop_scope="package")
async def served(grid: Grid) -> AsyncIterator[Any]:
    """Serves another native app (or console) over the grid's gateway, as configured."""
    clients: list[TestClient[Any, Any]] = []

    async def serve(app: web.Application) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield serve
    for client in clients:
        await client.close()


@package_loop
async def test_cookies_follow_the_settings(grid: Grid, served: Any) -> None:
    native = grid.gateway.native[NATIVE]
    config = ConsoleConfig(cookie_secure="always", session_ttl=120, login_ttl=45)
    client = await served(make_native_app(native, console=config))
    login_page = await client.get("/console/login")
    cookie = set_cookies(login_page)[LOGIN_COOKIE]
    assert "Secure" in cookie and "Max-Age=45" in cookie
    # The client's jar sends no Secure cookie over plain HTTP, so the test sends it.
    challenge = re.search(r"challenge=([0-9a-f]{32})", await login_page.text())
    assert challenge is not None
    answer = await client.post(
        f"/console/login?challenge={challenge[1]}",
        data={"method": "signature", "signature": signature_line(grid, challenge[1])},
        headers={"Cookie": cookie.split(";")[0]},
        allow_redirects=False,
    )
    session = set_cookies(answer)[SESSION_COOKIE]
    assert answer.status == 303 and "Secure" in session and "Max-Age=120" in session


@package_loop
async def test_auto_is_secure_behind_an_https_endpoint(grid: Grid, served: Any) -> None:
    native = grid.gateway.native[NATIVE]
    console = make_console_app(native, ConsoleConfig())
    console[CONSOLE].endpoint_is_https = True  # as if the chain named an https:// endpoint
    root = web.Application()
    root.add_subapp("/console", console)
    client = await served(root)
    login_page = await client.get("/console/login")
    assert "Secure" in set_cookies(login_page)[LOGIN_COOKIE]
    never = await served(make_native_app(native, console=ConsoleConfig(cookie_secure="never")))
    assert "Secure" not in set_cookies(await never.get("/console/login"))[LOGIN_COOKIE]


@package_loop
async def test_a_disabled_console_is_not_mounted(grid: Grid, served: Any) -> None:
    native = grid.gateway.native[NATIVE]
    client = await served(make_native_app(native, console=ConsoleConfig(enabled=False)))
    answer = await client.get("/console/login")
    assert answer.status == 404 and (await answer.json())["data"]["error"] == "NotFound"


@package_loop
async def test_a_crash_is_the_native_apis_logged_500(
    grid: Grid, served: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    monkeypatch.setattr(console_app, "miners_page", broken)
    client = await served(make_native_app(grid.gateway.native[NATIVE]))
    await log_in_with_signature(client, grid)
    answer = await client.get("/console/miners")
    body = await answer.json()
    assert answer.status == 500 and body["data"]["error"] == "InternalError"
    assert any("internal error GET /console/miners" in r.getMessage() for r in caplog.records)


@package_loop
async def test_auto_is_secure_over_tls(grid: Grid) -> None:
    state = make_console_app(grid.gateway.native[NATIVE], ConsoleConfig())[CONSOLE]
    over_tls = make_mocked_request("GET", "/console/login", sslcontext=ssl.create_default_context())
    plain = make_mocked_request("GET", "/console/login")
    assert await login._secure(over_tls, state)
    assert not await login._secure(plain, state)  # the grid's endpoint is http://
    assert state.endpoint_is_https is False  # read from the chain, once


@package_loop
async def test_a_static_file_missing_from_the_install_is_a_404(
    grid: Grid,
    served: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "console.css").write_text("body {}")
    monkeypatch.setattr(console_app, "STATIC_DIR", tmp_path)
    root = web.Application()
    root.add_subapp("/console", make_console_app(grid.gateway.native[NATIVE]))
    client = await served(root)
    assert (await client.get("/console/static/console.css")).status == 200
    assert (await client.get("/console/static/console.js")).status == 404
    assert any("console.js is missing" in r.getMessage() for r in caplog.records)
