"""Signature canonicalisation: what a client signs is what the node verifies, whatever
JSON arguments travel and however the JSON is re-serialised on the way."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chain_client.extrinsic import Extrinsic, canonical_json
from chain_client.keys import Keypair

GENESIS = bytes(range(32))
KEYS = {scheme: Keypair.generate(scheme) for scheme in ("sr25519", "ed25519")}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**130), 2**130) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
arguments = st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=5)


@given(
    args=arguments,
    nonce=st.integers(0, 2**64 - 1),
    scheme=st.sampled_from(sorted(KEYS)),
    indent=st.sampled_from([None, 2]),
    sort=st.booleans(),
)
def test_signature_survives_any_json_round_trip(
    args: dict[str, Any], nonce: int, scheme: str, indent: int | None, sort: bool
) -> None:
    extrinsic = Extrinsic.sign(KEYS[scheme], GENESIS, "balances.transfer", args, nonce)
    wire = json.dumps(extrinsic.to_json(), indent=indent, sort_keys=sort, ensure_ascii=not sort)
    received = Extrinsic.from_json(json.loads(wire))
    assert received.signature_valid(GENESIS)
    assert received.hash(GENESIS) == extrinsic.hash(GENESIS)


@given(args=arguments, other=json_values)
def test_any_change_to_the_arguments_breaks_the_signature(args: dict[str, Any], other: Any) -> None:
    extrinsic = Extrinsic.sign(KEYS["sr25519"], GENESIS, "balances.transfer", args, 0)
    changed = {**args, "__extra": other}
    forged = Extrinsic(
        call=extrinsic.call,
        args=changed,
        signer=extrinsic.signer,
        nonce=extrinsic.nonce,
        scheme=extrinsic.scheme,
        signature=extrinsic.signature,
    )
    assert not forged.signature_valid(GENESIS)
    assert not extrinsic.signature_valid(bytes(32))


@given(value=json_values)
def test_canonical_json_is_one_string_per_value(value: Any) -> None:
    assert canonical_json(json.loads(canonical_json(value))) == canonical_json(value)
