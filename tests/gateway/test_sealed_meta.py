"""The on-chain ``sealed_meta`` format (gateway/sealed_meta.py): versioned, read back
exactly, older references still read, and an unknown version refused, never guessed."""

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl import bindings

from gateway.keywrap import wrap_master
from gateway.sealed_meta import SealedMeta, SealedPack, SealedUnit, UnknownSealedVersion

MASTER = bytes(range(32))
UNIT_ID = bytes(16)
WRAPPED = wrap_master(bytes(32), UNIT_ID, MASTER)
texts = st.text(max_size=40)
metas = st.dictionaries(texts, st.one_of(texts, st.integers(-(2**53), 2**53)), max_size=4)


def _raw_seal(plain: dict[str, object]) -> str:
    nonce = os.urandom(24)
    box = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        json.dumps(plain).encode(), b"deoss/sealed-meta", nonce, MASTER
    )
    return base64.b64encode(nonce + box).decode()


@given(
    name=texts,
    content_type=texts,
    etag=texts,
    size=st.integers(0, 2**40),
    meta=metas,
    created=st.none() | st.floats(0, 2**32, allow_nan=False),
    units=st.integers(0, 3),
    pack=st.none()
    | st.builds(
        SealedPack,
        slot=st.integers(0, 2**32 - 1),
        offset=st.integers(0, 2**30),
        cipher_size=st.integers(0, 2**30),
        block_size=st.integers(1, 2**20),
    ),
)
def test_what_is_sealed_opens_as_it_was(
    name: str,
    content_type: str,
    etag: str,
    size: int,
    meta: dict[str, object],
    created: float | None,
    units: int,
    pack: SealedPack | None,
) -> None:
    """Version 1, or version 2 with a packed object's place (docs/packing.md §5)."""
    sealed = SealedMeta(
        pack=pack,
        name=name,
        content_type=content_type,
        etag=etag,
        size=size,
        meta=meta,
        created=created,
        units=tuple(
            SealedUnit(unit_id=UNIT_ID.hex(), algorithm="a", plain_size=i, wrapped_key=WRAPPED)
            for i in range(units)
        ),
    )
    assert SealedMeta.open(MASTER, sealed.seal(MASTER)) == sealed
    assert sealed.to_json()["v"] == (1 if pack is None else 2)
    assert SealedMeta.open(bytes(32), sealed.seal(MASTER)) is None  # another gateway's


def test_a_reference_sealed_before_the_format_had_a_version_still_reads() -> None:
    old = {
        "name": "b/k",
        "content_type": "text/plain",
        "etag": "e",
        "size": 3,
        "meta": {},
        "units": [
            {"unit_id": "00", "algorithm": "a", "plain_size": 3, "wrapped_key": WRAPPED.to_json()}
        ],
    }
    opened = SealedMeta.open(MASTER, _raw_seal(old))
    assert opened is not None and opened.created is None and opened.units[0].plain_size == 3


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(UnknownSealedVersion) as refused:
        SealedMeta.open(MASTER, _raw_seal({"v": 3, "name": "x"}))
    assert refused.value.version == 3
