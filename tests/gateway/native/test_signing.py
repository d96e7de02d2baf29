"""The bound native message (docs/native-api.md §2.1): a signature names its gateway, its
request and its body, and is refused anywhere else (security review #1)."""

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain_client.keys import Keypair, dev_keypair, save_key_file
from chain_client.ss58 import GENERIC_SS58_PREFIX, ss58_encode
from gateway import cli
from gateway.native.auth import AuthError, NativeAuth, Signed
from gateway.native.replay_cache import ReplayCache
from gateway.native.signing import (
    MAX_BOUND_MESSAGE_BYTES,
    UNSIGNED,
    BoundMessage,
    same_target,
    sign_bare,
    sign_request,
)

NOW = 1_750_000_000.0
GATEWAY = dev_keypair("Ferdie").address
OTHER_GATEWAY = dev_keypair("Eve").address
USER = Keypair.from_seed(bytes([9]) * 32, "sr25519")


async def _authorized(account: str) -> bool:
    return True


def gateway(
    address: str = GATEWAY, *, bare_reads: bool = False, clock: Callable[[], float] = lambda: NOW
) -> NativeAuth:
    return NativeAuth(
        gateway=address,
        replay=ReplayCache(),
        is_authorized=_authorized,
        clock=clock,
        bare_reads=bare_reads,
    )


def signed(
    method: str = "GET", target: str = "/file/list", body: bytes | None = b"", **kw: str
) -> dict[str, str]:
    return sign_request(
        USER,
        gateway=kw.get("for_gateway", GATEWAY),
        method=method,
        target=target,
        body=body,
        now=NOW,
    )


async def check(
    auth: NativeAuth,
    headers: dict[str, str],
    method: str = "GET",
    target: str = "/file/list",
    *,
    streamed: bool = False,
) -> Signed:
    return await auth.authenticate(headers, method=method, target=target, streamed=streamed)


async def refused(auth: NativeAuth, headers: dict[str, str], *request: str, **kw: bool) -> str:
    """The code of the 401 refusing ``headers`` for ``check``'s request."""
    with pytest.raises(AuthError) as caught:
        await check(auth, headers, *request, streamed=kw.get("streamed", False))
    assert caught.value.status == 401, caught.value
    return caught.value.code


async def test_a_bound_signature_is_accepted_once_for_its_request() -> None:
    auth = gateway()
    headers = signed()
    assert await check(auth, headers) == Signed(USER.address, hashlib.sha256(b"").hexdigest())
    assert await refused(auth, headers) == "SignatureUsed"


async def test_a_signature_for_one_gateway_is_refused_at_another() -> None:
    """The review's reproduction: headers seen by gateway 1 minted a key at gateway 2."""
    headers = signed("POST", "/keys", b'{"label":"stolen"}')
    assert await refused(gateway(OTHER_GATEWAY), headers, "POST", "/keys") == "WrongGateway"
    # Both spellings of the gateway's account are one gateway.
    generic = dev_keypair("Ferdie").public_key
    respelled = sign_request(
        USER,
        gateway=ss58_encode(generic, GENERIC_SS58_PREFIX),
        method="GET",
        target="/file/list",
        now=NOW,
    )
    assert (await check(gateway(), respelled)).account == USER.address


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/keys"),  # the review's: a listing's headers sent to POST /keys
        ("DELETE", "/file/list"),
        ("GET", "/keys"),
        ("GET", "/file/list?limit=5"),
        ("HEAD", "/file/list"),
    ],
)
async def test_a_signature_for_one_request_is_refused_for_another(method: str, target: str) -> None:
    assert await refused(gateway(), signed(), method, target) == "WrongRequest"


async def test_the_target_is_compared_percent_decoded() -> None:
    headers = signed("GET", "/file/download/a b?x=%7C")
    signer = await check(gateway(), headers, "GET", "/file/download/a%20b?x=|")
    assert signer.account == USER.address


async def test_unsigned_bodies_only_for_streamed_uploads() -> None:
    auth = gateway()
    assert await refused(auth, signed("POST", "/keys", None), "POST", "/keys") == "BodyNotSigned"
    upload = await check(auth, signed("PUT", "/object/a", None), "PUT", "/object/a", streamed=True)
    assert upload.body_sha256 is None
    digest = await check(
        auth, signed("PUT", "/object/b", b"data"), "PUT", "/object/b", streamed=True
    )
    assert digest.body_sha256 == hashlib.sha256(b"data").hexdigest()


async def test_deoss_bare_messages_are_refused_unless_allowed_and_then_for_reads_only() -> None:
    bare = sign_bare(USER, now=NOW)
    assert await refused(gateway(), bare) == "UnboundSignature"
    compatible = gateway(bare_reads=True)
    assert await refused(compatible, sign_bare(USER, now=NOW), "POST", "/keys") == (
        "UnboundSignature"
    )
    assert await refused(compatible, sign_bare(USER, now=NOW), "DELETE", "/file/x") == (
        "UnboundSignature"
    )
    assert await check(compatible, bare) == Signed(USER.address, None)
    assert (await check(compatible, sign_bare(USER, now=NOW), "HEAD", "/x")).account


async def test_a_long_target_fits_and_a_malformed_message_is_refused() -> None:
    target = "/object/" + "%E2%82%AC" * 341  # a 1023-byte name, percent-encoded
    headers = signed("PUT", target, None)
    assert len(headers["Message"]) < MAX_BOUND_MESSAGE_BYTES
    assert await check(gateway(), headers, "PUT", target, streamed=True)
    with pytest.raises(ValueError, match="target too long"):
        signed("GET", "/" + "x" * MAX_BOUND_MESSAGE_BYTES)
    for message in (
        "deoss-v1|",
        f"deoss-v1|{GATEWAY}|get|/|{UNSIGNED}|nonce1234|1750000060",
        f"deoss-v1|{GATEWAY}|GET|/|abc|nonce1234|1750000060",
        f"deoss-v1|{GATEWAY}|GET|nopath|{UNSIGNED}|nonce1234|1750000060",
        f"deoss-v1|{GATEWAY}|GET|/|{UNSIGNED}|short|1750000060",
    ):
        headers = {
            "Account": USER.address,
            "Message": message,
            "Signature": "0x" + USER.sign(message.encode()).hex(),
        }
        assert await refused(gateway(), headers) == "InvalidMessage", message


TARGETS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)


@given(
    target=TARGETS.map(lambda text: "/" + text),
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]),
    body=st.one_of(st.none(), st.binary(max_size=64)),
    expiry=st.integers(10**9, 10**11 - 1),
)
def test_bound_messages_round_trip(
    target: str, method: str, body: bytes | None, expiry: int
) -> None:
    digest = UNSIGNED if body is None else hashlib.sha256(body).hexdigest()
    message = BoundMessage(
        gateway=GATEWAY, method=method, target=target, body=digest, nonce="n0nce-__", expiry=expiry
    )
    assert BoundMessage.parse(message.text()) == message
    assert same_target(target, target)


@given(st.one_of(st.text(max_size=300), st.text(max_size=300).map(lambda t: "deoss-v1|" + t)))
def test_any_message_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        parsed = BoundMessage.parse(text)
    except ValueError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        assert "bound message" in error
    elif parsed is None:
        assert not text.startswith("deoss-v1|")
    else:
        assert parsed.text() == text


@pytest.mark.parametrize(
    ("args", "method", "target", "streamed"),
    [
        (["GET", "/file/list?limit=5"], "GET", "/file/list?limit=5", False),
        (["PUT", "/object/a%20b", "--unsigned"], "PUT", "/object/a b", True),
        (["POST", "/keys", "--body", "BODY"], "POST", "/keys", False),
    ],
)
async def test_deoss_sign_prints_curl_arguments_of_a_bound_signature(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    method: str,
    target: str,
    streamed: bool,
) -> None:
    key = tmp_path / "user.json"
    save_key_file(key, USER)
    body = tmp_path / "body.json"
    body.write_bytes(b'{"label": "cli"}')
    args = [str(body) if arg == "BODY" else arg for arg in args]
    assert cli.main(["sign", *args, "--key", str(key), "--gateway", GATEWAY]) == 0
    words = capsys.readouterr().out.split()
    headers = dict(word.removeprefix("-H").split(":", 1) for word in words)
    signer = await gateway(clock=time.time).authenticate(
        headers, method=method, target=target, streamed=streamed
    )
    assert signer.account == USER.address
    if "--body" in args:
        assert signer.body_sha256 == hashlib.sha256(body.read_bytes()).hexdigest()
    # The same headers are refused at another gateway.
    assert await refused(
        gateway(OTHER_GATEWAY, clock=time.time), headers, method, target, streamed=streamed
    ) == ("WrongGateway")


def test_deoss_sign_needs_the_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "user.json"
    save_key_file(key, USER)
    assert cli.main(["sign", "--key", str(key)]) == 2
    assert "--gateway" in capsys.readouterr().err
    assert cli.main(["sign", "--bare", "--key", str(key)]) == 0
    assert "Message:" in capsys.readouterr().out
