import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.pwhash import argon2id

from gateway.keywrap import (
    KeyRequired,
    WrappedKey,
    WrongKey,
    check_customer_key,
    unwrap,
    wrap_master,
    wrap_with_customer_key,
    wrap_with_password,
)

# The cheapest Argon2id settings keep the tests fast; the defaults are tested once.
CHEAP = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
DEK, UNIT = bytes(range(32)), bytes(range(16))
keys = st.binary(min_size=32, max_size=32)


@given(keys, st.binary(min_size=16, max_size=16), keys)
def test_master_round_trip(dek: bytes, unit_id: bytes, master: bytes) -> None:
    wrapped = wrap_master(dek, unit_id, master)
    assert wrapped.scheme == "master"
    assert dek not in wrapped.ciphertext
    assert unwrap(wrapped, unit_id, master_key=master) == dek
    assert unwrap(WrappedKey.from_json(wrapped.to_json()), unit_id, master_key=master) == dek


def test_master_wrong_key_or_unit() -> None:
    wrapped = wrap_master(DEK, UNIT, b"m" * 32)
    with pytest.raises(WrongKey):
        unwrap(wrapped, UNIT, master_key=b"n" * 32)
    # The unit id is associated data: a wrapped key cannot move to another unit.
    with pytest.raises(WrongKey):
        unwrap(wrapped, bytes(16), master_key=b"m" * 32)
    with pytest.raises(ValueError, match="master key"):
        unwrap(wrapped, UNIT)


def test_wraps_are_randomised() -> None:
    first, second = wrap_master(DEK, UNIT, b"m" * 32), wrap_master(DEK, UNIT, b"m" * 32)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


@given(keys, keys)
def test_customer_key_round_trip(dek: bytes, customer: bytes) -> None:
    wrapped = wrap_with_customer_key(dek, UNIT, customer)
    assert customer not in json.dumps(wrapped.to_json()).encode()
    assert check_customer_key(wrapped, customer)
    assert unwrap(wrapped, UNIT, customer_key=customer) == dek
    assert unwrap(WrappedKey.from_json(wrapped.dumps()), UNIT, customer_key=customer) == dek


def test_customer_key_wrong_or_missing() -> None:
    wrapped = wrap_with_customer_key(DEK, UNIT, b"c" * 32)
    assert not check_customer_key(wrapped, b"d" * 32)
    assert not check_customer_key(wrapped, b"c" * 31)
    with pytest.raises(WrongKey):
        unwrap(wrapped, UNIT, customer_key=b"d" * 32)
    with pytest.raises(KeyRequired):
        unwrap(wrapped, UNIT, master_key=b"m" * 32)
    # Equal keys do not give equal check values: each wrap has its own salt.
    assert wrap_with_customer_key(DEK, UNIT, b"c" * 32).key_check != wrapped.key_check
    with pytest.raises(ValueError, match="SSE-C key"):
        wrap_with_customer_key(DEK, UNIT, b"short")


@given(st.text(max_size=20) | st.binary(max_size=20))
def test_password_round_trip(password: str | bytes) -> None:
    wrapped = wrap_with_password(DEK, UNIT, password, **CHEAP)
    assert (wrapped.opslimit, wrapped.memlimit) == (CHEAP["opslimit"], CHEAP["memlimit"])
    assert unwrap(wrapped, UNIT, password=password) == DEK
    assert unwrap(WrappedKey.from_json(wrapped.dumps()), UNIT, password=password) == DEK


def test_password_wrong_or_missing() -> None:
    wrapped = wrap_with_password(DEK, UNIT, "correct horse", **CHEAP)
    with pytest.raises(WrongKey):
        unwrap(wrapped, UNIT, password="correct horsE")
    with pytest.raises(KeyRequired):
        unwrap(wrapped, UNIT)
    assert wrap_with_password(DEK, UNIT, "correct horse", **CHEAP).salt != wrapped.salt


def test_password_default_limits() -> None:
    wrapped = wrap_with_password(DEK, UNIT, "pw")
    assert wrapped.opslimit == argon2id.OPSLIMIT_INTERACTIVE
    assert wrapped.memlimit == argon2id.MEMLIMIT_INTERACTIVE
    assert unwrap(wrapped, UNIT, password=b"pw") == DEK


def test_wrap_checks_sizes() -> None:
    with pytest.raises(ValueError, match="dek"):
        wrap_master(b"short", UNIT, b"m" * 32)
    with pytest.raises(ValueError, match="master key"):
        wrap_master(DEK, UNIT, b"m" * 31)
    with pytest.raises(ValueError, match="unit_id"):
        wrap_with_password(DEK, b"", "pw", **CHEAP)


def valid_json() -> dict[str, Any]:
    return wrap_with_password(DEK, UNIT, "pw", **CHEAP).to_json()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(scheme="rot13"),
        lambda o: o.pop("scheme"),
        lambda o: o.pop("nonce"),
        lambda o: o.update(nonce="not base64!"),
        lambda o: o.update(nonce=o["nonce"][:-4]),
        lambda o: o.update(ciphertext=12),
        lambda o: o.update(salt=None),
        lambda o: o.pop("opslimit"),
        lambda o: o.update(memlimit="64"),
        lambda o: o.update(memlimit=True),
        lambda o: o.update(opslimit=argon2id.OPSLIMIT_MAX + 1),
        lambda o: o.update(key_check="AAAA"),
        lambda o: o.update(extra=1),
    ],
)
def test_malformed_json_is_a_value_error(mutate: Any) -> None:
    obj = valid_json()
    mutate(obj)
    with pytest.raises(ValueError, match="wrapped key"):
        WrappedKey.from_json(obj)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"master"', b"\xff"])
def test_malformed_json_text_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's own errors are ValueErrors
        WrappedKey.from_json(text)


def test_master_json_has_no_customer_fields() -> None:
    obj = wrap_master(DEK, UNIT, b"m" * 32).to_json()
    assert set(obj) == {"scheme", "nonce", "ciphertext"}
    obj["salt"] = obj["nonce"]
    with pytest.raises(ValueError, match="salt"):
        WrappedKey.from_json(obj)
