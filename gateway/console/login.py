"""Logging in and out (docs/console.md §2): with a wallet signature of a login challenge,
made by ``deoss sign`` and pasted into the page, or with an S3 access key and its secret;
and the check every other request's session passes."""

import hashlib
import hmac
import shlex
from typing import Final

from aiohttp import web

from chain_client.errors import ChainError
from gateway.console.auth import (
    ACCESS_KEY,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SIGNATURE,
    Session,
)
from gateway.console.context import CONSOLE, ConsoleState, form_of, query_text, session_of
from gateway.console.errors import ConsoleError
from gateway.console.html import render
from gateway.console.pages import html_response, page, redirect
from gateway.native.auth import AuthError
from gateway.native.signing import (
    ACCOUNT_HEADER,
    MESSAGE_HEADER,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
)

__all__ = [
    "COOKIE_PATH",
    "login",
    "login_command",
    "login_page",
    "logout",
    "pasted_headers",
    "require_session",
]

COOKIE_PATH: Final = "/console"
LOGIN_PATH: Final = "/console/login"
MAX_PASTE_CHARS: Final = 8192
MAX_SECRET_CHARS: Final = 128
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_PASTED: Final = {
    name.lower(): name for name in (ACCOUNT_HEADER, MESSAGE_HEADER, SIGNATURE_HEADER, SCHEME_HEADER)
}

_LOGIN: Final = """<section class="login">
<h2>With a wallet signature</h2>
<p>Sign this login with your key, then paste the line <code>deoss sign</code> prints.
It logs in once, in this browser only, until it expires (<code>--ttl</code>: 60 s unless
told, at most {window} s).</p>
<pre class="command" id="login-command">{command}</pre>
<form method="post" action="{action}" id="signature-form">
<input type="hidden" name="method" value="signature">
<label>Signature line <textarea name="signature" rows="4" required
 placeholder="-HAccount:cX… -HMessage:deoss-v1|… -HSignature:0x… -HScheme:sr25519">
</textarea></label>
<button type="submit">Log in with the signature</button>
</form>
</section>
<section class="login">
<h2>With an S3 access key</h2>
<p>A key made with <code>deoss keys create</code> or <code>POST /keys</code>.</p>
<form method="post" action="{action}" id="access-key-form">
<input type="hidden" name="method" value="access_key">
<label>Access key id <input name="access_key" autocomplete="username" required></label>
<label>Secret <input name="secret_key" type="password" autocomplete="current-password"
 required></label>
<button type="submit">Log in with the key</button>
</form>
</section>
"""


def login_command(challenge: str, gateway: str) -> str:
    """The command whose output logs in: it signs ``POST /console/login?challenge=…``
    for this gateway, with no body."""
    target = f"{LOGIN_PATH}?challenge={challenge}"
    return shlex.join(["deoss", "sign", "POST", target, "--key", "KEY_FILE", "--gateway", gateway])


async def login_page(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    challenge, cookie = state.sessions.challenge()
    gateway = state.native.gateway
    body = render(
        _LOGIN,
        command=login_command(challenge, gateway),
        action=f"{LOGIN_PATH}?challenge={challenge}",
        window=int(state.native.auth.window),
    )
    response = html_response(page(name="login", title="Log in", body=body, gateway=gateway))
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=state.sessions.login_ttl,
        path=LOGIN_PATH,
        httponly=True,
        samesite="Strict",
        secure=await _secure(request, state),
    )
    return response


async def login(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    # SECURITY: the challenge in the URL must be the one this browser's login cookie
    # carries, so nobody can post a login into another's browser (login CSRF), and a
    # pasted signature is good in the browser that asked for it only.
    state.sessions.check_challenge(
        request.cookies.get(LOGIN_COOKIE), query_text(request, "challenge")
    )
    form = await form_of(request)
    method = form.get("method")
    if method == SIGNATURE:
        account = await _signed_login(request, state, form.get("signature", ""))
        _, cookie = state.sessions.issue(account, SIGNATURE)
    elif method == ACCESS_KEY:
        account, access_key = await _key_login(
            state, form.get("access_key", ""), form.get("secret_key", "")
        )
        _, cookie = state.sessions.issue(account, ACCESS_KEY, access_key)
    else:
        raise ConsoleError(400, "MalformedForm", "method is signature or access_key")
    response = redirect("/console/objects")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=state.sessions.ttl,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=await _secure(request, state),
    )
    response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return response


def pasted_headers(text: str) -> dict[str, str]:
    """The headers of a pasted ``deoss sign`` line: ``-HName:value`` words (or ``-H``
    then ``Name:value``), optionally after ``curl``; only the four signature headers."""
    if len(text) > MAX_PASTE_CHARS:
        raise ConsoleError(400, "MalformedSignature", f"at most {MAX_PASTE_CHARS} characters")
    words = text.split()
    if words[:1] == ["curl"]:
        words = words[1:]
    headers: dict[str, str] = {}
    position = 0
    while position < len(words):
        word = words[position]
        if word == "-H" and position + 1 < len(words):
            position += 1
            word = words[position]
        elif word.startswith("-H"):
            word = word[2:]
        else:
            raise ConsoleError(
                400,
                "MalformedSignature",
                "paste the line deoss sign printed: -HAccount:… -HMessage:… -HSignature:…",
            )
        raw_name, colon, value = word.partition(":")
        name = _PASTED.get(raw_name.strip().lower())
        if not colon or name is None:
            raise ConsoleError(
                400, "MalformedSignature", "only Account, Message, Signature and Scheme are pasted"
            )
        if name in headers:
            raise ConsoleError(400, "MalformedSignature", f"{name} is pasted twice")
        headers[name] = value.strip()
        position += 1
    return headers


async def _signed_login(request: web.Request, state: ConsoleState, text: str) -> str:
    headers = pasted_headers(text)
    try:
        # The same checks as every native request: this gateway, POST, this login URL
        # (so this challenge), the expiry window, the replay cache, the authorization.
        signed = await state.native.auth.authenticate(
            headers, method="POST", target=request.raw_path
        )
    except AuthError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from None
    if signed.body_sha256 != EMPTY_SHA256:
        raise ConsoleError(400, "BodySigned", "sign the login with no --body")
    return signed.account


async def _key_login(state: ConsoleState, access_key: str, secret: str) -> tuple[str, str]:
    keys = state.native.keys
    refused = ConsoleError(401, "InvalidCredentials", "the access key id or its secret is wrong")
    if keys is None or len(access_key) > 64 or len(secret) > MAX_SECRET_CHARS:
        raise refused
    found = keys.lookup(access_key)
    # SECURITY: constant-time compare of the secret.
    if found is None or not hmac.compare_digest(found[1].encode(), secret.encode()):
        raise refused
    owner = found[0]
    await _check_authorized(state, owner)
    return owner, access_key


async def _check_authorized(state: ConsoleState, account: str) -> None:
    if account == state.native.gateway:
        return
    if not await state.authorizations(account):
        raise ConsoleError(
            403,
            "GatewayNotAuthorized",
            f"authorize this gateway on chain first: oss.authorize {state.native.gateway}",
        )


async def require_session(request: web.Request, state: ConsoleState) -> Session:
    """The request's live session: its cookie is ours and unexpired, not logged out, its
    access key (if it logged in with one) not revoked, and the gateway still authorized."""
    session = state.sessions.open(request.cookies.get(SESSION_COOKIE))
    if session.method == ACCESS_KEY:
        keys = state.native.keys
        found = None if keys is None else keys.lookup(session.access_key)
        if found is None or found[0] != session.account:
            raise ConsoleError(
                401, "SessionEnded", "the access key this session logged in with was revoked"
            )
    await _check_authorized(state, session.account)
    return session


async def logout(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    state.sessions.revoke(session_of(request))
    response = redirect(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


async def _secure(request: web.Request, state: ConsoleState) -> bool:
    """Whether cookies carry Secure (docs/console.md §3)."""
    mode = state.config.cookie_secure
    if mode != "auto":
        return mode == "always"
    if request.secure:
        return True
    if state.endpoint_is_https is None:
        try:
            record = await state.native.service.chain.query(
                "oss.gateway", account=state.native.gateway
            )
        except ChainError:
            return False  # asked again at the next login
        state.endpoint_is_https = bool(record) and str(record["endpoint"]).startswith("https://")
    return state.endpoint_is_https
