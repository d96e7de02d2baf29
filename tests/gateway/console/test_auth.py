"""The console's tokens on their own (docs/console.md §3): sessions expire, are bound to
their MAC and purpose, end at logout, and a flood of logouts changes the key rather than
forgetting one; CSRF tokens belong to one session; login challenges to one browser."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.console.auth import ACCESS_KEY, MAX_REVOKED, SIGNATURE, Authorizations, Sessions
from gateway.console.errors import ConsoleError

ACCOUNT = "cXgfVzZQJcHxAhg8XCJTzxGrBmC9pJkkjrBXUVAUsqxCJ2vHM"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _refused(code: str, call: object, *args: object) -> None:
    with pytest.raises(ConsoleError) as refused:
        call(*args)  # type: ignore[operator]
    assert refused.value.code == code, refused.value


def test_a_session_opens_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(ttl=600, login_ttl=60, clock=clock)
    session, token = sessions.issue(ACCOUNT, ACCESS_KEY, "DOKEY")
    opened = sessions.open(token)
    assert opened == session and opened.expires == int(clock.now) + 600
    assert (opened.account, opened.method, opened.access_key) == (ACCOUNT, ACCESS_KEY, "DOKEY")
    clock.now += 599
    assert sessions.open(token) == session
    clock.now += 1
    _refused("BadSession", sessions.open, token)


def test_tokens_are_bound_to_their_key_and_purpose() -> None:
    sessions = Sessions(ttl=600, login_ttl=60)
    _, token = sessions.issue(ACCOUNT, SIGNATURE)
    _, challenge_token = sessions.challenge()
    _refused("NoSession", sessions.open, None)
    _refused("NoSession", sessions.open, "")
    _refused("BadSession", sessions.open, challenge_token)  # a login token is no session
    _refused("BadSession", Sessions(ttl=600, login_ttl=60).open, token)  # another gateway's
    _refused("BadSession", sessions.open, token + "x")
    _refused("BadSession", sessions.open, "v2" + token[2:])
    _refused("BadSession", sessions.open, "x" * 2000)


@given(st.text(max_size=300))
def test_no_text_is_a_session_but_ours(text: str) -> None:
    with pytest.raises(ConsoleError):
        SESSIONS.open(text)


SESSIONS = Sessions(ttl=600, login_ttl=60)


def test_logout_ends_one_session_and_a_flood_of_them_changes_the_key() -> None:
    assert MAX_REVOKED == 100_000  # the default; three here
    sessions = Sessions(ttl=600, login_ttl=60, max_revoked=3)
    issued = [sessions.issue(ACCOUNT, SIGNATURE) for _ in range(5)]
    sessions.revoke(issued[0][0])
    _refused("SessionEnded", sessions.open, issued[0][1])
    assert sessions.open(issued[1][1]) == issued[1][0]
    sessions.revoke(issued[1][0])
    sessions.revoke(issued[2][0])
    sessions.revoke(issued[3][0])  # the fourth: no logout is forgotten, every session ends
    for _, token in issued:
        with pytest.raises(ConsoleError):
            sessions.open(token)
    assert sessions.open(sessions.issue(ACCOUNT, SIGNATURE)[1]).account == ACCOUNT


def test_a_csrf_token_belongs_to_one_session() -> None:
    sessions = Sessions(ttl=600, login_ttl=60)
    one, _ = sessions.issue(ACCOUNT, SIGNATURE)
    two, _ = sessions.issue(ACCOUNT, SIGNATURE)
    sessions.check_csrf(one, sessions.csrf_token(one))
    for token in (None, "", sessions.csrf_token(two), sessions.csrf_token(one)[:-1]):
        _refused("CsrfRefused", sessions.check_csrf, one, token)


def test_a_login_challenge_belongs_to_one_browser_for_a_while() -> None:
    clock = Clock()
    sessions = Sessions(ttl=600, login_ttl=60, clock=clock)
    challenge, token = sessions.challenge()
    sessions.check_challenge(token, challenge)
    other, _ = sessions.challenge()
    _refused("LoginChallengeRefused", sessions.check_challenge, token, other)
    _refused("InvalidChallenge", sessions.check_challenge, token, "not hex")
    _refused("InvalidChallenge", sessions.check_challenge, token, None)
    _refused("LoginChallengeRefused", sessions.check_challenge, None, challenge)
    clock.now += 60
    _refused("LoginChallengeRefused", sessions.check_challenge, token, challenge)


async def test_authorizations_are_cached_as_the_native_api_caches_them() -> None:
    now = [100.0]
    answers = {"yes": True, "no": False}
    asked: list[str] = []

    async def query(owner: str) -> bool:
        asked.append(owner)
        return answers[owner]

    cache = Authorizations(query, clock=lambda: now[0])
    assert await cache("yes") and not await cache("no")
    now[0] += 4.9
    assert await cache("yes") and not await cache("no")
    assert asked == ["yes", "no"]
    now[0] += 0.2  # a refusal is asked again after 5 s, a yes after 30 s
    await cache("no")
    await cache("yes")
    assert asked == ["yes", "no", "no"]
    now[0] += 25
    await cache("yes")
    assert asked == ["yes", "no", "no", "yes"]
