import re
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from chain_client.keys import DEV_ACCOUNT_NAMES, SCHEMES, Keypair, Scheme, dev_keypair
from chain_client.ss58 import GENERIC_SS58_PREFIX, ss58_encode
from gateway.native.auth import AuthError, NativeAuth, message_expiry
from gateway.native.replay_cache import ReplayCache
from gateway.native.signing import MAX_BARE_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from gateway.native.signing import sign_bare

NOW = 1_750_000_000.0
GATEWAY = dev_keypair("Ferdie").address
ED25519 = Keypair.from_seed(bytes(range(32)), "ed25519")
STRANGER = Keypair.from_seed(bytes([7]) * 32, "sr25519")  # not a dev account


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Authorizer:
    def __init__(self, *allowed: str) -> None:
        self.allowed = set(allowed)
        self.asked: list[str] = []

    async def __call__(self, account: str) -> bool:
        self.asked.append(account)
        return account in self.allowed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def authorizer(alice: Keypair) -> Authorizer:
    return Authorizer(alice.address, ED25519.address)


@pytest.fixture
def replay() -> ReplayCache:
    return ReplayCache()


@pytest.fixture
def auth(clock: FakeClock, authorizer: Authorizer, replay: ReplayCache) -> NativeAuth:
    # A dev network: most tests sign as //Alice, which a production network refuses.
    # Most tests check DeOSS's bare message forms, which reads accept when allowed;
    # tests/gateway/native/test_signing.py checks the bound message.
    return dev_gateway(replay, authorizer, clock)


def dev_gateway(replay: ReplayCache, authorizer: Authorizer, clock: FakeClock) -> NativeAuth:
    return NativeAuth(
        gateway=GATEWAY,
        replay=replay,
        is_authorized=authorizer,
        clock=clock,
        dev=True,
        bare_reads=True,
    )


async def accepts(auth: NativeAuth, headers: Mapping[str, str]) -> str:
    """The signer of a read of the file list, the route every test here signs for."""
    return (await auth.authenticate(headers, method="GET", target="/file/list")).account


def signed(
    keypair: Keypair, message: str, *, wrap: bool = False, encoding: str = "0x"
) -> dict[str, str]:
    payload = message.encode()
    if wrap:
        payload = b"<Bytes>" + payload + b"</Bytes>"
    signature = keypair.sign(payload).hex()
    if encoding == "0x":
        signature = "0x" + signature
    elif encoding == "upper":
        signature = signature.upper()
    return {
        "Account": keypair.address,
        "Message": message,
        "Signature": signature,
        "Scheme": keypair.scheme,
    }


async def refused(auth: NativeAuth, headers: dict[str, str], status: int, code: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await accepts(auth, headers)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value


async def test_sign_bare_round_trip(auth: NativeAuth, alice: Keypair) -> None:
    headers = sign_bare(alice, now=NOW)
    assert set(headers) == {"Account", "Message", "Signature", "Scheme"}
    assert headers["Scheme"] == "sr25519"
    assert re.fullmatch(r"[0-9a-f]{16}\|1750000060", headers["Message"])
    assert await accepts(auth, headers) == alice.address


async def test_sign_bare_with_purpose(auth: NativeAuth, alice: Keypair) -> None:
    headers = sign_bare(alice, now=NOW + 0.9, ttl=30, purpose="upload|bucket")
    assert re.fullmatch(r"upload\|bucket\|[0-9a-f]{16}\|1750000030", headers["Message"])
    assert await accepts(auth, headers) == alice.address


async def test_sr25519_raw_with_generic_address(auth: NativeAuth, alice: Keypair) -> None:
    headers = signed(alice, "1750000060")
    headers["Account"] = ss58_encode(alice.public_key, GENERIC_SS58_PREFIX)
    assert headers["Account"].startswith("5")
    assert await accepts(auth, headers) == alice.address


async def test_sr25519_bytes_wrapped(auth: NativeAuth, alice: Keypair) -> None:
    assert await accepts(auth, signed(alice, "1750000060", wrap=True)) == alice.address


async def test_sr25519_is_the_default_scheme(auth: NativeAuth, alice: Keypair) -> None:
    headers = signed(alice, "1750000060")
    del headers["Scheme"]
    assert await accepts(auth, headers) == alice.address


async def test_ed25519_raw(auth: NativeAuth) -> None:
    assert await accepts(auth, signed(ED25519, "1750000060")) == ED25519.address


async def test_ed25519_bytes_wrapped_is_refused(auth: NativeAuth) -> None:
    await refused(auth, signed(ED25519, "1750000060", wrap=True), 401, "InvalidSignature")


async def test_scheme_must_match_the_key(auth: NativeAuth, alice: Keypair) -> None:
    headers = signed(alice, "1750000060")
    headers["Scheme"] = "ed25519"
    await refused(auth, headers, 401, "InvalidSignature")


@pytest.mark.parametrize("encoding", ["0x", "bare", "upper"])
async def test_signature_encodings(auth: NativeAuth, alice: Keypair, encoding: str) -> None:
    assert await accepts(auth, signed(alice, "1750000060", encoding=encoding))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("1750000060", 1_750_000_060.0),
        ("1750000060500", 1_750_000_060.5),
        ("2025-06-15 15:07:40", datetime(2025, 6, 15, 15, 7, 40, tzinfo=UTC).timestamp()),
        ("upload|1750000060", 1_750_000_060.0),
        ("a|b|c|1750000299999", 1_750_000_299.999),
        ("nonce 1f|2025-06-15 15:10:00", datetime(2025, 6, 15, 15, 10, tzinfo=UTC).timestamp()),
        ("|1750000001", 1_750_000_001.0),
    ],
)
async def test_message_forms(
    auth: NativeAuth, alice: Keypair, message: str, expected: float
) -> None:
    assert NOW < expected <= NOW + 300  # the cases are meant to be valid right now
    assert message_expiry(message) == expected
    assert await accepts(auth, signed(alice, message)) == alice.address


@pytest.mark.parametrize(
    "message",
    [
        "123",
        "hello",
        "999999999",  # just below the seconds range
        "1000000000000000",  # at the top of the milliseconds range
        "1750000060|",
        "1750000060|hello",
        " 1750000060",
        "+1750000060",
        "-1750000060",
        "1750000060.5",
        "\u0661\u0667\u0665\u0660\u0660\u0660\u0660\u0660\u0666\u0660",  # Arabic-Indic digits
        "2025-13-01 00:00:00",
        "2025-02-30 00:00:00",
        "2025-6-15 15:07:40",
        "2025-06-15T15:07:40",
        "2025-06-15 15:07:40Z",
    ],
)
async def test_no_expiry(auth: NativeAuth, alice: Keypair, message: str) -> None:
    assert message_expiry(message) is None
    error = await refused(auth, signed(alice, message), 401, "NoExpiry")
    assert "message carries no expiry" in error.message


@pytest.mark.parametrize(
    "message", ["1750000000", "1749999999", "1750000000000", "2020-01-01 00:00:00"]
)
async def test_expired(auth: NativeAuth, alice: Keypair, message: str) -> None:
    await refused(auth, signed(alice, message), 401, "Expired")


async def test_expiry_at_the_window_edge(auth: NativeAuth, alice: Keypair) -> None:
    assert await accepts(auth, signed(alice, "1750000300"))
    error = await refused(auth, signed(alice, "1750000301"), 401, "ExpiryTooFar")
    assert "300 s" in error.message
    await refused(auth, signed(alice, "1750000300001"), 401, "ExpiryTooFar")


async def test_configured_window(clock: FakeClock, authorizer: Authorizer, alice: Keypair) -> None:
    narrow = NativeAuth(
        bare_reads=True,
        gateway=GATEWAY,
        window=30,
        replay=ReplayCache(),
        is_authorized=authorizer,
        clock=clock,
        dev=True,
    )
    error = await refused(narrow, signed(alice, "1750000060"), 401, "ExpiryTooFar")
    assert "30 s" in error.message
    assert await accepts(narrow, signed(alice, "1750000030"))


@pytest.mark.parametrize("window", [0, -1, float("inf"), float("nan")])
def test_window_must_be_positive(window: float, authorizer: Authorizer) -> None:
    with pytest.raises(ValueError, match="window"):
        NativeAuth(
            bare_reads=True,
            gateway=GATEWAY,
            window=window,
            replay=ReplayCache(),
            is_authorized=authorizer,
        )


async def test_replay_refused_until_expiry(
    auth: NativeAuth, alice: Keypair, clock: FakeClock, replay: ReplayCache
) -> None:
    headers = signed(alice, "1750000060")
    assert await accepts(auth, headers) == alice.address
    error = await refused(auth, headers, 401, "SignatureUsed")
    assert error.message == "signature already used"
    # Another spelling of the same account or signature is the same signature.
    respelled = dict(headers, Signature=headers["Signature"][2:].upper())
    respelled["Account"] = ss58_encode(alice.public_key, GENERIC_SS58_PREFIX)
    await refused(auth, respelled, 401, "SignatureUsed")
    clock.now = NOW + 59
    await refused(auth, headers, 401, "SignatureUsed")

    # Past its expiry the entry may go, because the message is refused as expired anyway.
    clock.now = NOW + 60
    await refused(auth, headers, 401, "Expired")
    assert len(replay) == 1
    assert await accepts(auth, signed(alice, "1750000090")) == alice.address
    assert len(replay) == 1  # the old entry was evicted, the new one recorded


async def test_fresh_signature_of_same_message_accepted(auth: NativeAuth, alice: Keypair) -> None:
    # sr25519 signatures are randomised: signing again gives a new, unused signature.
    assert await accepts(auth, signed(alice, "1750000060"))
    assert await accepts(auth, signed(alice, "1750000060"))


async def test_ed25519_same_second_signatures_differ(auth: NativeAuth) -> None:
    first, second = sign_bare(ED25519, now=NOW), sign_bare(ED25519, now=NOW)
    assert first["Signature"] != second["Signature"]
    assert await accepts(auth, first) == ED25519.address
    assert await accepts(auth, second) == ED25519.address


async def test_wrong_account(auth: NativeAuth, alice: Keypair, authorizer: Authorizer) -> None:
    headers = signed(alice, "1750000060")
    headers["Account"] = dev_keypair("Bob").address
    error = await refused(auth, headers, 401, "InvalidSignature")
    assert dev_keypair("Bob").address in error.message
    assert authorizer.asked == []


async def test_tampered_message(auth: NativeAuth, alice: Keypair) -> None:
    headers = signed(alice, "get|1750000060")
    headers["Message"] = "put|1750000060"
    await refused(auth, headers, 401, "InvalidSignature")
    headers = signed(alice, "1750000060")
    headers["Message"] = "1750000061"
    await refused(auth, headers, 401, "InvalidSignature")


@pytest.mark.parametrize(
    "signature",
    [
        "0x" + "ab" * 63,
        "ab" * 65,
        "0X" + "ab" * 64,
        "0x" + "zz" * 64,
        " " + "ab" * 64,
        "ab" * 64 + "\n",
    ],
)
async def test_malformed_signature(auth: NativeAuth, alice: Keypair, signature: str) -> None:
    headers = dict(signed(alice, "1750000060"), Signature=signature)
    error = await refused(auth, headers, 401, "InvalidSignature")
    assert "abab" not in str(error)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Account", "c" * 65),
        ("Message", "x|" + "1" * (MAX_MESSAGE_BYTES - 1)),
        ("Message", "\u00e9" * 129),  # 129 characters, 258 bytes
        ("Signature", "0" * 201),
    ],
)
async def test_oversized_headers(auth: NativeAuth, alice: Keypair, header: str, value: str) -> None:
    headers = dict(signed(alice, "1750000060"), **{header: value})
    error = await refused(auth, headers, 400, "HeaderTooLarge")
    assert header in error.message


async def test_message_of_exactly_the_limit(auth: NativeAuth, alice: Keypair) -> None:
    message = "x" * (MAX_MESSAGE_BYTES - 11) + "|1750000060"
    assert len(message.encode()) == MAX_MESSAGE_BYTES
    assert await accepts(auth, signed(alice, message))


@pytest.mark.parametrize("header", ["Account", "Message", "Signature"])
async def test_missing_headers(auth: NativeAuth, alice: Keypair, header: str) -> None:
    headers = signed(alice, "1750000060")
    del headers[header]
    error = await refused(auth, headers, 401, "MissingHeader")
    assert header in error.message
    await refused(auth, dict(headers, **{header: ""}), 401, "MissingHeader")


async def test_header_names_are_case_insensitive(auth: NativeAuth, alice: Keypair) -> None:
    lowered = {name.lower(): value for name, value in signed(alice, "1750000060").items()}
    assert await accepts(auth, lowered) == alice.address
    multidict = CIMultiDict(signed(alice, "1750000060"))
    assert await accepts(auth, multidict) == alice.address


@pytest.mark.parametrize(
    "account",
    [
        "not-an-address",
        "cX" + "1" * 46,
        ss58_encode(dev_keypair("Bob").public_key, 0),  # a Polkadot address
    ],
)
async def test_invalid_account(auth: NativeAuth, alice: Keypair, account: str) -> None:
    await refused(auth, dict(signed(alice, "1750000060"), Account=account), 400, "InvalidAccount")


@pytest.mark.parametrize("scheme", ["ecdsa", "SR25519", "x" * 10_000])
async def test_unsupported_scheme(auth: NativeAuth, alice: Keypair, scheme: str) -> None:
    error = await refused(
        auth, dict(signed(alice, "1750000060"), Scheme=scheme), 400, "UnsupportedScheme"
    )
    assert len(error.message) < 100


async def test_unauthorized_owner(
    auth: NativeAuth, authorizer: Authorizer, replay: ReplayCache
) -> None:
    bob = dev_keypair("Bob")
    headers = signed(bob, "1750000060")
    headers["Account"] = ss58_encode(bob.public_key, GENERIC_SS58_PREFIX)
    error = await refused(auth, headers, 403, "GatewayNotAuthorized")
    assert error.message == f"authorize this gateway first: {GATEWAY}"
    assert authorizer.asked == [bob.address]  # asked with the canonical address
    # A refused request does not use up its signature.
    assert len(replay) == 0
    authorizer.allowed.add(bob.address)
    assert await accepts(auth, headers) == bob.address


async def test_replay_cache_full_answers_503(
    clock: FakeClock, authorizer: Authorizer, alice: Keypair
) -> None:
    replay = ReplayCache(max_entries=2)
    auth = dev_gateway(replay, authorizer, clock)
    assert await accepts(auth, signed(alice, "1750000010"))
    assert await accepts(auth, signed(alice, "1750000020"))
    await refused(auth, signed(alice, "1750000030"), 503, "ReplayCacheFull")
    clock.now = NOW + 10  # the first entry expires and makes room
    assert await accepts(auth, signed(alice, "1750000030"))
    assert len(replay) == 2


async def test_per_account_cap_answers_429(
    clock: FakeClock, authorizer: Authorizer, alice: Keypair
) -> None:
    replay = ReplayCache(max_per_account=2)
    auth = dev_gateway(replay, authorizer, clock)
    assert await accepts(auth, signed(alice, "1750000010"))
    assert await accepts(auth, signed(alice, "1750000020"))
    error = await refused(auth, signed(alice, "1750000030"), 429, "TooManyRequests")
    assert alice.address in error.message
    assert await accepts(auth, signed(ED25519, "1750000030")) == ED25519.address
    clock.now = NOW + 10
    assert await accepts(auth, signed(alice, "1750000030")) == alice.address


async def test_global_cap_counts_every_account(clock: FakeClock, alice: Keypair) -> None:
    authorizer = Authorizer(alice.address, ED25519.address, STRANGER.address)
    replay = ReplayCache(max_entries=2, max_per_account=1)
    auth = dev_gateway(replay, authorizer, clock)
    assert await accepts(auth, signed(alice, "1750000010"))
    assert await accepts(auth, signed(ED25519, "1750000010"))
    await refused(auth, signed(STRANGER, "1750000010"), 503, "ReplayCacheFull")
    # The account's own cap is checked first: its 429 says that waiting on it helps.
    await refused(auth, signed(alice, "1750000010"), 429, "TooManyRequests")


async def test_restart_keeps_used_signatures_refused(
    tmp_path: Path, clock: FakeClock, authorizer: Authorizer, alice: Keypair
) -> None:
    def gateway(replay: ReplayCache) -> NativeAuth:
        return dev_gateway(replay, authorizer, clock)

    headers = signed(alice, "1750000060")
    log_path = tmp_path / "replay.log"
    with closing(ReplayCache(path=log_path, clock=clock)) as replay:
        assert await accepts(gateway(replay), headers) == alice.address
    clock.now = NOW + 30
    with closing(ReplayCache(path=log_path, clock=clock)) as replay:
        await refused(gateway(replay), headers, 401, "SignatureUsed")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", DEV_ACCOUNT_NAMES)
async def test_dev_accounts_refused_off_dev_networks(
    clock: FakeClock, name: str, scheme: Scheme
) -> None:
    keypair = dev_keypair(name, scheme)
    assert keypair.scheme == scheme  # an ed25519 run must really sign with ed25519
    authorizer = Authorizer(keypair.address)
    replay = ReplayCache()
    production = NativeAuth(
        bare_reads=True, gateway=GATEWAY, replay=replay, is_authorized=authorizer, clock=clock
    )
    headers = signed(keypair, "1750000060")
    error = await refused(production, headers, 401, "DevAccountRefused")
    assert keypair.address in error.message
    headers["Account"] = ss58_encode(keypair.public_key, GENERIC_SS58_PREFIX)
    await refused(production, headers, 401, "DevAccountRefused")
    assert authorizer.asked == []
    assert len(replay) == 0
    assert await accepts(dev_gateway(replay, authorizer, clock), headers) == keypair.address


async def test_dev_account_signature_checked_first(clock: FakeClock, alice: Keypair) -> None:
    production = NativeAuth(
        bare_reads=True,
        gateway=GATEWAY,
        replay=ReplayCache(),
        is_authorized=Authorizer(),
        clock=clock,
    )
    headers = signed(alice, "1750000060")
    headers["Message"] = "1750000061"
    await refused(production, headers, 401, "InvalidSignature")


@pytest.mark.parametrize("keypair", [STRANGER, ED25519], ids=["sr25519", "ed25519"])
async def test_other_accounts_accepted_off_dev_networks(clock: FakeClock, keypair: Keypair) -> None:
    production = NativeAuth(
        bare_reads=True,
        gateway=GATEWAY,
        replay=ReplayCache(),
        is_authorized=Authorizer(keypair.address),
        clock=clock,
    )
    assert await accepts(production, sign_bare(keypair, now=NOW)) == keypair.address


def test_sign_bare_validates() -> None:
    alice = dev_keypair("Alice")
    with pytest.raises(ValueError, match="ttl"):
        sign_bare(alice, ttl=0)
    for purpose in ["a\nb", " lead", "caf\u00e9"]:
        with pytest.raises(ValueError, match="purpose"):
            sign_bare(alice, purpose=purpose)
    with pytest.raises(ValueError, match="purpose too long"):
        sign_bare(alice, purpose="x" * MAX_MESSAGE_BYTES)


async def test_undecodable_message_bytes(auth: NativeAuth, alice: Keypair) -> None:
    # aiohttp decodes header bytes that are not UTF-8 with surrogateescape; those bytes are
    # what the client signed.
    raw = b"\xff\xfe|1750000060"
    headers = signed(alice, "1750000060")
    headers["Message"] = raw.decode("utf-8", "surrogateescape")
    headers["Signature"] = "0x" + alice.sign(raw).hex()
    assert await accepts(auth, headers) == alice.address
    headers["Message"] = "\ud800|1750000060"  # a lone surrogate no byte decodes to
    await refused(auth, headers, 400, "InvalidMessage")


def test_auth_error_repr() -> None:
    error = AuthError(401, "Expired", "message expired")
    assert str(error) == "401 Expired: message expired"
    assert repr(error) == "AuthError(status=401, code='Expired', message='message expired')"


header_text = st.text(max_size=300) | st.sampled_from(["", "0x", "1750000060", "cX"])


@given(prefix=st.text(max_size=300), nonce=st.text(max_size=40), expiry=header_text)
async def test_random_messages_never_crash(prefix: str, nonce: str, expiry: str) -> None:
    alice = dev_keypair("Alice")
    auth = NativeAuth(
        bare_reads=True,
        gateway=GATEWAY,
        replay=ReplayCache(),
        is_authorized=Authorizer(alice.address),
        clock=FakeClock(NOW),
        dev=True,
    )
    message = f"{prefix}{nonce}|{expiry}"
    try:
        payload = message.encode()
    except UnicodeEncodeError:
        payload = b""
    headers = {
        "Account": alice.address,
        "Message": message,
        "Signature": "0x" + alice.sign(payload).hex(),
    }
    outcome: str | AuthError
    try:
        outcome = await accepts(auth, headers)
    except AuthError as error:
        outcome = error
    if isinstance(outcome, AuthError):
        assert headers["Signature"][2:] not in str(outcome)
    else:
        assert outcome == alice.address
        expires_at = message_expiry(message)
        assert expires_at is not None
        assert NOW < expires_at <= NOW + 300


@given(account=header_text, message=header_text, signature=header_text, scheme=header_text)
async def test_random_headers_never_crash(
    account: str, message: str, signature: str, scheme: str
) -> None:
    auth = NativeAuth(
        bare_reads=True,
        gateway=GATEWAY,
        replay=ReplayCache(),
        is_authorized=Authorizer(),
        clock=FakeClock(NOW),
    )
    headers = {"Account": account, "Message": message, "Signature": signature, "Scheme": scheme}
    with pytest.raises(AuthError) as caught:
        await accepts(auth, headers)
    assert caught.value.status in (400, 401)
