"""Garbage at the console gets a clear 4xx, never a 5xx (docs/console.md §1): fixed
cases for each bound, then random requests as raw bytes (paths, queries, cookies, CSRF
tokens, content types and bodies, with a live session and without) through the fuzz
suite's wire (tests/fuzz/wire.py)."""

import urllib.parse
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.console.auth import CSRF_HEADER, SESSION_COOKIE
from gateway.console.context import MAX_FORM_BYTES
from tests.fuzz.wire import Request, exchange, served
from tests.gateway.console.browser import Browser, csrf_of, log_in_with_signature
from tests.grid import Grid

pytestmark = pytest.mark.asyncio(loop_scope="package")

ROUTES = (
    ("GET", "/console/"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/objects"),
    ("GET", "/console/objects/download"),
    ("GET", "/console/objects/state"),
    ("POST", "/console/objects/upload"),
    ("POST", "/console/objects/delete"),
    ("GET", "/console/deals"),
    ("GET", "/console/territories"),
    ("GET", "/console/miners"),
    ("GET", "/console/challenges"),
    ("GET", "/console/restoral"),
    ("GET", "/console/health"),
    ("GET", "/console/static/console.js"),
    ("PUT", "/console/objects"),
    ("DELETE", "/console/login"),
    ("GET", "/console/%ff%fe"),
)
PARAMETERS = (
    *("name", "prefix", "after", "deleted", "action", "size", "days", "territory"),
    "challenge",
)


@pytest_asyncio.fixture(loop_scope="package")
async def live(browser: Browser, grid: Grid) -> AsyncIterator[tuple[str, str]]:
    """A live session's cookie and CSRF token."""
    await log_in_with_signature(browser, grid)
    cookie = next(c.value for c in browser.session.cookie_jar if c.key == SESSION_COOKIE)
    yield cookie, await csrf_of(browser)


async def test_fixed_refusals(browser: Browser, live: tuple[str, str]) -> None:
    _, csrf = live
    huge = await browser.post(
        "/console/objects/delete", data={"csrf": csrf, "name": "x" * (MAX_FORM_BYTES + 10)}
    )
    assert huge.status == 413 and "413 FormTooLarge" in await huge.text()
    as_json = await browser.post(
        "/console/objects/delete",
        data=b'{"name": "x"}',
        headers={CSRF_HEADER: csrf, "Content-Type": "application/json"},
    )
    assert as_json.status == 415
    not_utf8 = await browser.post(
        "/console/objects/delete",
        data=b"name=%ff%fe&csrf=" + csrf.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status == 400 and "400 MalformedForm" in await not_utf8.text()
    twice = await browser.post(
        "/console/objects/delete",
        data=f"name=a&name=b&csrf={csrf}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.status == 400
    many = "&".join(f"f{n}=1" for n in range(40))
    fields = await browser.post(
        "/console/objects/delete",
        data=f"{many}&csrf={csrf}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert fields.status == 400
    long_prefix = await browser.get("/console/objects", params={"prefix": "p" * 2000})
    assert long_prefix.status == 400 and "400 InvalidQuery" in await long_prefix.text()
    controls = await browser.get("/console/objects/download", params={"name": "a\x00b"})
    assert controls.status == 400 and "400 InvalidName" in await controls.text()
    no_method = await browser.post("/console/login?challenge=" + "0" * 32, data={"method": "magic"})
    assert no_method.status == 403  # the challenge is checked before the form


def _junk_text() -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=60)


def _quoted(value: str | bytes) -> str:
    """Percent-encoded; text with lone surrogates as the bytes they stand for."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return urllib.parse.quote(raw)


@st.composite
def console_requests(draw: st.DrawFn, cookie: str, csrf: str) -> Request:
    method, path = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from((method, method, method, "HEAD", "POST", "GET")))
    query = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PARAMETERS), st.one_of(st.text(max_size=40), st.binary(max_size=40))
            ),
            max_size=4,
        )
    )
    encoded = "&".join(f"{name}={_quoted(value)}" for name, value in query)
    target = path + (f"?{encoded}" if encoded else "")
    headers = [("Host", "console.test")]
    session = draw(st.sampled_from(("none", "live", "mangled", "junk")))
    if session == "live":
        headers.append(("Cookie", f"{SESSION_COOKIE}={cookie}"))
    elif session == "mangled":
        cut = draw(st.integers(0, len(cookie) - 1))
        headers.append(("Cookie", f"{SESSION_COOKIE}={cookie[:cut]}{draw(_junk_text())}"))
    elif session == "junk":
        headers.append(("Cookie", draw(_junk_text())))
    token = draw(st.sampled_from(("none", "live", "junk")))
    if token == "live":
        headers.append((CSRF_HEADER, csrf))
    elif token == "junk":
        headers.append((CSRF_HEADER, draw(_junk_text())))
    content_type = draw(
        st.sampled_from(
            ("", "application/x-www-form-urlencoded", "application/octet-stream", "text/x;;=")
        )
    )
    if content_type:
        headers.append(("Content-Type", content_type))
    body = draw(
        st.one_of(
            st.binary(max_size=200),
            st.builds(
                lambda pairs: urllib.parse.urlencode(pairs).encode(),
                st.lists(
                    st.tuples(
                        st.sampled_from(
                            (
                                "name",
                                "csrf",
                                "method",
                                "signature",
                                "access_key",
                                "secret_key",
                                "prefix",
                            )
                        ),
                        st.text(max_size=50),
                    ),
                    max_size=5,
                ),
            ),
        )
    )
    if method in ("GET", "HEAD"):
        body = b""
    return Request(method, target, tuple(headers), body)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_garbage_is_never_a_server_error(
    grid: Grid, live: tuple[str, str], data: st.DataObject
) -> None:
    cookie, csrf = live
    request = data.draw(console_requests(cookie, csrf), label="request")
    host, port = served(grid.native)
    answer = await exchange(host, port, request)
    assert answer is not None, request.describe()
    assert answer.status < 500, (answer.status, answer.body[:500], request.describe())
