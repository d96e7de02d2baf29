import hashlib
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain_client import ss58
from chain_client.ss58 import (
    ACCEPTED_PREFIXES,
    CESS_SS58_PREFIX,
    GENERIC_SS58_PREFIX,
    MAX_ADDRESS_LENGTH,
    InvalidAddress,
    canonical_address,
    ss58_decode,
    ss58_encode,
)

ALICE_PUBLIC_KEY = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
ALICE_GENERIC = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
# As printed in CESS's own documentation for //Alice.
ALICE_CESS = "cXjmuHdBk4J3Zyt2oGodwGegNFaTFPcfC48PZ9NMmcUFzF6cc"
# The same key under Polkadot's prefix 0: a valid address, but of another network.
ALICE_POLKADOT = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

public_keys = st.binary(min_size=32, max_size=32)
prefixes = st.sampled_from(sorted(ACCEPTED_PREFIXES))


def test_alice_generic_vector() -> None:
    assert ss58_encode(ALICE_PUBLIC_KEY, GENERIC_SS58_PREFIX) == ALICE_GENERIC
    assert ss58_decode(ALICE_GENERIC) == (ALICE_PUBLIC_KEY, GENERIC_SS58_PREFIX)


def test_alice_cess_vector() -> None:
    assert ss58_encode(ALICE_PUBLIC_KEY) == ALICE_CESS
    assert ALICE_CESS.startswith("cX")
    assert ss58_decode(ALICE_CESS) == (ALICE_PUBLIC_KEY, CESS_SS58_PREFIX)


def test_canonical_address_uses_cess_prefix() -> None:
    assert canonical_address(ALICE_GENERIC) == ALICE_CESS
    assert canonical_address(ALICE_CESS) == ALICE_CESS


@given(public_key=public_keys, prefix=prefixes)
def test_round_trip(public_key: bytes, prefix: int) -> None:
    address = ss58_encode(public_key, prefix)
    assert len(address) <= MAX_ADDRESS_LENGTH
    assert ss58_decode(address) == (public_key, prefix)


@given(public_key=public_keys)
def test_cess_addresses_start_with_cx(public_key: bytes) -> None:
    assert ss58_encode(public_key).startswith("cX")


@given(
    public_key=public_keys,
    prefix=prefixes,
    position=st.integers(min_value=0),
    replacement=st.sampled_from(BASE58_ALPHABET),
)
def test_single_character_corruption_never_yields_the_same_account(
    public_key: bytes, prefix: int, position: int, replacement: str
) -> None:
    address = ss58_encode(public_key, prefix)
    position %= len(address)
    corrupted = address[:position] + replacement + address[position + 1 :]
    if corrupted == address:
        return
    try:
        decoded = ss58_decode(corrupted)
    except InvalidAddress:
        return
    assert decoded != (public_key, prefix)


def test_rejects_polkadot_prefix_with_a_clear_reason() -> None:
    with pytest.raises(InvalidAddress, match="network prefix 0 is not accepted"):
        ss58_decode(ALICE_POLKADOT)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("", "empty"),
        ("5" * (MAX_ADDRESS_LENGTH + 1), "longer than"),
        (ALICE_GENERIC[:-1] + "0", "not base58"),
        (ALICE_GENERIC[:-1] + "l", "not base58"),
        (ALICE_GENERIC[:-3], "decodes to"),
        (ALICE_GENERIC + "1", "decodes to"),
        (ALICE_GENERIC[:-1] + "Z", "checksum"),
    ],
)
def test_rejects_malformed(address: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=reason):
        ss58_decode(address)


def test_rejects_non_canonical_two_byte_prefix() -> None:
    # Prefix 42 packed the 2-byte way, with a valid checksum: same account, second spelling.
    body = bytes([0b0100_1010, 0b1000_0000]) + ALICE_PUBLIC_KEY
    checksum = hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    address = ss58._base58_encode(body + checksum)
    with pytest.raises(InvalidAddress, match="canonical"):
        ss58_decode(address)


def test_rejects_non_string() -> None:
    with pytest.raises(InvalidAddress, match="not a string"):
        ss58_decode(42)  # type: ignore[arg-type]


def test_error_repr_and_pickle() -> None:
    with pytest.raises(InvalidAddress) as caught:
        ss58_decode("x" * 1000)
    error = caught.value
    assert isinstance(error, ValueError)
    assert len(error.address) < 100
    assert repr(error).startswith("InvalidAddress(address='xxx")
    assert "reason='longer than 64 characters'" in repr(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.address, copy.reason) == (error.address, error.reason)


@pytest.mark.parametrize("prefix", [-1, 16384])
def test_encode_rejects_out_of_range_prefix(prefix: int) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ss58_encode(ALICE_PUBLIC_KEY, prefix)


def test_encode_rejects_wrong_key_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ss58_encode(ALICE_PUBLIC_KEY[:31])
