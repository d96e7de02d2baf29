import base64
import dataclasses
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain_client.idle import (
    IdleConsistencyProof,
    IdleSpec,
    LeafOpening,
    cert_sample_indices,
    first_leaf,
    generate_unit,
    idle_seed,
    leaf_step,
    lookback_index,
    prove_consistency,
    prove_leaf,
    regenerate_leaf,
    unit_root,
    verify_consistency,
    verify_leaf,
)
from chain_client.merkle import MerkleTree, leaf_hash

# 16 leaves of 256 bytes and the cheapest scrypt: the structure, not the cost, is tested.
SPEC = IdleSpec(unit_size=4096, leaf_size=256, scrypt_n=2, scrypt_r=1)
MINER_KEY = bytes(range(32))
ANCHOR = hashlib.sha256(b"block 42").digest()
SEED = idle_seed(MINER_KEY, 7, ANCHOR)
OTHER_SEED = idle_seed(MINER_KEY, 8, ANCHOR)


@pytest.fixture(scope="module")
def unit() -> bytes:
    return generate_unit(SPEC, SEED)


@pytest.fixture(scope="module")
def tree(unit: bytes) -> MerkleTree:
    return MerkleTree.from_data(unit, SPEC.leaf_size)


def leaf_at(data: bytes, index: int) -> bytes:
    return data[index * SPEC.leaf_size : (index + 1) * SPEC.leaf_size]


def flip_bit(value: bytes, position: int = 0) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= 1
    return bytes(changed)


def test_spec_leaf_count() -> None:
    assert SPEC.leaf_count == 16


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit_size", 0),
        ("unit_size", 4000),
        ("leaf_size", 0),
        ("leaf_size", 100),
        ("scrypt_n", 1),
        ("scrypt_n", 3),
        ("scrypt_n", 0),
        ("scrypt_n", 2**16),
        ("scrypt_n", 2**20),
        ("scrypt_r", 0),
        ("scrypt_r", True),
        ("unit_size", 4096.0),
    ],
)
def test_spec_validation_names_field_and_value(field: str, value: Any) -> None:
    values: dict[str, Any] = {"unit_size": 4096, "leaf_size": 256, "scrypt_n": 2, "scrypt_r": 1}
    values[field] = value
    with pytest.raises(ValueError, match=field) as caught:
        IdleSpec(**values)
    assert str(value) in str(caught.value)


def test_seed_layout() -> None:
    expected = hashlib.sha256(
        b"deoss/idle-seed\x00" + MINER_KEY + (7).to_bytes(8, "big") + ANCHOR
    ).digest()
    assert idle_seed(MINER_KEY, 7, ANCHOR) == expected
    assert SEED != OTHER_SEED
    assert idle_seed(MINER_KEY, 7, hashlib.sha256(b"block 43").digest()) != SEED


@pytest.mark.parametrize(
    ("key", "unit_index", "anchor", "message"),
    [
        (b"short", 0, ANCHOR, "miner_public_key"),
        (MINER_KEY, 0, ANCHOR[:31], "anchor_hash"),
        (MINER_KEY, -1, ANCHOR, "unit_index"),
        (MINER_KEY, 2**64, ANCHOR, "unit_index"),
    ],
)
def test_seed_rejects_bad_inputs(key: bytes, unit_index: int, anchor: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        idle_seed(key, unit_index, anchor)


def test_leaves_follow_the_definition(unit: bytes) -> None:
    assert len(unit) == SPEC.unit_size
    salt = b"deoss/idle-leaf" + (0).to_bytes(8, "big")
    leaf_0 = hashlib.scrypt(SEED, salt=salt, n=2, r=1, p=1, dklen=256)
    assert leaf_at(unit, 0) == leaf_0 == first_leaf(SPEC, SEED)
    for index in range(1, SPEC.leaf_count):
        prev = leaf_at(unit, index - 1)
        back = int.from_bytes(hashlib.sha256(prev).digest()[:8], "big") % index
        assert lookback_index(prev, index) == back
        lookback = leaf_at(unit, back)
        password = hashlib.sha256(SEED + index.to_bytes(8, "big") + prev + lookback).digest()
        salt = b"deoss/idle-leaf" + index.to_bytes(8, "big")
        mix = hashlib.scrypt(password, salt=salt, n=2, r=1, p=1, dklen=256)
        expected = bytes(a ^ b ^ c for a, b, c in zip(prev, lookback, mix, strict=True))
        assert leaf_at(unit, index) == expected
        assert leaf_step(SPEC, SEED, index, prev, lookback) == expected


def test_generation_is_deterministic_and_seeded(unit: bytes) -> None:
    assert generate_unit(SPEC, SEED) == unit
    assert generate_unit(SPEC, OTHER_SEED) != unit


def test_regenerate_leaf_replays_the_chain(unit: bytes) -> None:
    for index in range(SPEC.leaf_count):
        assert regenerate_leaf(SPEC, SEED, index) == leaf_at(unit, index)
    with pytest.raises(ValueError, match="leaf index"):
        regenerate_leaf(SPEC, SEED, SPEC.leaf_count)


def test_unit_root(unit: bytes, tree: MerkleTree) -> None:
    assert unit_root(SPEC, unit) == tree.root
    with pytest.raises(ValueError, match="4096"):
        unit_root(SPEC, unit[:-1])


def test_step_rejects_bad_inputs(unit: bytes) -> None:
    prev = leaf_at(unit, 0)
    with pytest.raises(ValueError, match="leaf index"):
        leaf_step(SPEC, SEED, 0, prev, prev)
    with pytest.raises(ValueError, match="leaf index"):
        leaf_step(SPEC, SEED, SPEC.leaf_count, prev, prev)
    with pytest.raises(ValueError, match="prev_leaf"):
        leaf_step(SPEC, SEED, 1, prev[:-1], prev)
    with pytest.raises(ValueError, match="seed"):
        leaf_step(SPEC, SEED[:16], 1, prev, prev)
    with pytest.raises(ValueError, match="look-back"):
        lookback_index(prev, 0)


def test_consistency_proof_verifies_at_every_index(unit: bytes, tree: MerkleTree) -> None:
    for index in range(SPEC.leaf_count):
        proof = prove_consistency(SPEC, unit, tree, index)
        assert verify_consistency(SPEC, SEED, tree.root, proof, index)
        assert not verify_consistency(SPEC, OTHER_SEED, tree.root, proof, index)
        assert not verify_consistency(SPEC, SEED, flip_bit(tree.root), proof, index)
        for wrong_index in (index - 1, index + 1):
            assert not verify_consistency(SPEC, SEED, tree.root, proof, wrong_index)


def test_consistency_fails_under_another_spec(unit: bytes, tree: MerkleTree) -> None:
    proof = prove_consistency(SPEC, unit, tree, 5)
    harder = dataclasses.replace(SPEC, scrypt_n=4)
    assert not verify_consistency(harder, SEED, tree.root, proof, 5)


@pytest.mark.parametrize("part", ["leaf", "prev", "lookback"])
def test_tampered_opening_fails(unit: bytes, tree: MerkleTree, part: str) -> None:
    for index in range(1, SPEC.leaf_count):
        proof = prove_consistency(SPEC, unit, tree, index)
        opening = getattr(proof, part)
        tampered = dataclasses.replace(opening, leaf=flip_bit(opening.leaf, index))
        forged = dataclasses.replace(proof, **{part: tampered})
        assert not verify_consistency(SPEC, SEED, tree.root, forged, index)


def test_wrong_lookback_leaf_fails(unit: bytes, tree: MerkleTree) -> None:
    # A valid opening of the wrong earlier leaf: Merkle-correct but not j(i).
    index = SPEC.leaf_count - 1
    proof = prove_consistency(SPEC, unit, tree, index)
    assert proof.lookback is not None
    wrong = (proof.lookback.index + 1) % index
    forged = dataclasses.replace(proof, lookback=prove_leaf(tree, unit, SPEC.leaf_size, wrong))
    assert not verify_consistency(SPEC, SEED, tree.root, forged, index)


def test_committed_wrong_leaf_is_caught_at_its_index(unit: bytes) -> None:
    # A miner that commits to a unit with one leaf changed has a root that matches its
    # data, so only the derivation check can catch it.
    for index in range(SPEC.leaf_count):
        start = index * SPEC.leaf_size
        cheat = bytearray(unit)
        cheat[start] ^= 1
        cheat_tree = MerkleTree.from_data(cheat, SPEC.leaf_size)
        proof = prove_consistency(SPEC, bytes(cheat), cheat_tree, index)
        assert not verify_consistency(SPEC, SEED, cheat_tree.root, proof, index)


@pytest.mark.parametrize(
    ("spec", "seed", "root", "proof"),
    [
        (None, SEED, bytes(32), None),
        (SPEC, None, bytes(32), None),
        (SPEC, SEED[:31], bytes(32), None),
        (SPEC, SEED, bytes(32), None),
        (SPEC, SEED, bytes(32), "proof"),
        (SPEC, SEED, b"short", "valid"),
        (SPEC, SEED, None, "valid"),
    ],
)
def test_verify_consistency_never_raises(
    unit: bytes, tree: MerkleTree, spec: Any, seed: Any, root: Any, proof: Any
) -> None:
    if proof == "valid":
        proof = prove_consistency(SPEC, unit, tree, 3)
    assert verify_consistency(spec, seed, root, proof, 3) is False


def test_prove_consistency_rejects_foreign_data(unit: bytes, tree: MerkleTree) -> None:
    with pytest.raises(ValueError, match="idle unit"):
        prove_consistency(SPEC, unit[:-256], tree, 0)
    other = generate_unit(SPEC, OTHER_SEED)
    with pytest.raises(ValueError, match="does not match"):
        prove_consistency(SPEC, other, tree, 0)


def test_leaf_challenge_round_trip(unit: bytes, tree: MerkleTree) -> None:
    count, size = SPEC.leaf_count, SPEC.leaf_size
    for index in range(count):
        opening = prove_leaf(tree, unit, size, index)
        assert opening.leaf == leaf_at(unit, index)
        assert verify_leaf(tree.root, count, size, opening, index)
        assert not verify_leaf(tree.root, count, size, opening, (index + 1) % count)
        assert not verify_leaf(flip_bit(tree.root), count, size, opening, index)
        assert not verify_leaf(tree.root, count, size - 64, opening, index)
        tampered = dataclasses.replace(opening, leaf=flip_bit(opening.leaf, index))
        assert not verify_leaf(tree.root, count, size, tampered, index)
    assert not verify_leaf(tree.root, count, size, "opening", 0)  # type: ignore[arg-type]


def test_leaf_of_wrong_size_fails_even_if_committed() -> None:
    # Merkle trees allow a short last leaf; idle challenges do not.
    data = bytes(300)
    tree = MerkleTree.from_data(data, 256)
    opening = prove_leaf(tree, data, 256, 1)
    assert len(opening.leaf) == 44
    assert not verify_leaf(tree.root, 2, 256, opening, 1)


def test_cert_sample_indices(tree: MerkleTree) -> None:
    count = SPEC.leaf_count
    picked = cert_sample_indices(tree.root, MINER_KEY, 7, 6, count)
    assert picked == cert_sample_indices(tree.root, MINER_KEY, 7, 6, count)
    assert len(set(picked)) == 6
    assert all(0 <= index < count for index in picked)
    assert cert_sample_indices(tree.root, MINER_KEY, 7, 3, count) == picked[:3]
    assert sorted(cert_sample_indices(tree.root, MINER_KEY, 7, count, count)) == list(range(count))
    assert cert_sample_indices(tree.root, MINER_KEY, 7, 0, count) == []


def test_cert_sample_indices_follow_their_inputs(tree: MerkleTree) -> None:
    # 8 of 2**20 leaves: distinct inputs collide on the whole sample with negligible odds.
    leaf_count = 2**20
    base = cert_sample_indices(tree.root, MINER_KEY, 7, 8, leaf_count)
    assert base != cert_sample_indices(flip_bit(tree.root), MINER_KEY, 7, 8, leaf_count)
    assert base != cert_sample_indices(tree.root, flip_bit(MINER_KEY), 7, 8, leaf_count)
    assert base != cert_sample_indices(tree.root, MINER_KEY, 8, 8, leaf_count)
    first = hashlib.sha256(
        b"deoss/idle-cert\x00" + tree.root + MINER_KEY + (7).to_bytes(8, "big") + bytes(8)
    ).digest()
    assert base[0] == int.from_bytes(first[:8], "big") % leaf_count


@settings(max_examples=50, deadline=None)
@given(
    root=st.binary(min_size=32, max_size=32),
    unit_index=st.integers(0, 2**64 - 1),
    leaf_count=st.integers(1, 2**32),
    data=st.data(),
)
def test_cert_sample_indices_in_range(
    root: bytes, unit_index: int, leaf_count: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(0, min(leaf_count, 40)))
    picked = cert_sample_indices(root, MINER_KEY, unit_index, count, leaf_count)
    assert len(picked) == len(set(picked)) == count
    assert all(0 <= index < leaf_count for index in picked)


@pytest.mark.parametrize(
    ("root", "count", "leaf_count", "message"),
    [
        (b"short", 1, 16, "root"),
        (bytes(32), 17, 16, "count"),
        (bytes(32), -1, 16, "count"),
        (bytes(32), 1, 0, "leaf_count"),
        (bytes(32), 1, 2**32 + 1, "leaf_count"),
    ],
)
def test_cert_sample_indices_rejects_bad_inputs(
    root: bytes, count: int, leaf_count: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cert_sample_indices(root, MINER_KEY, 0, count, leaf_count)


@pytest.mark.parametrize("index", [0, 1, 9, 15])
def test_proof_json_round_trip(unit: bytes, tree: MerkleTree, index: int) -> None:
    proof = prove_consistency(SPEC, unit, tree, index)
    wire = json.loads(json.dumps(proof.to_json()))
    assert IdleConsistencyProof.from_json(wire) == proof
    opening = wire["leaf"]
    assert base64.b64decode(opening["leaf"], validate=True) == leaf_at(unit, index)
    assert all(node == node.lower() and len(node) == 64 for node in opening["path"])
    assert (wire["prev"] is None) == (index == 0)


@settings(max_examples=100, deadline=None)
@given(
    index=st.integers(0, 2**32 - 1),
    leaf=st.binary(min_size=1, max_size=100),
    path=st.lists(st.binary(min_size=32, max_size=32), max_size=32),
)
def test_leaf_opening_json_round_trip(index: int, leaf: bytes, path: list[bytes]) -> None:
    opening = LeafOpening(index, leaf, tuple(path))
    assert LeafOpening.from_json(json.loads(json.dumps(opening.to_json()))) == opening


GOOD_OPENING: dict[str, Any] = {"index": 1, "leaf": "AAAA", "path": ["ab" * 32]}


def opening_with(**changes: Any) -> dict[str, Any]:
    return {**GOOD_OPENING, **changes}


def test_good_opening_json_parses() -> None:
    # The base every malformed case below changes one field of.
    assert LeafOpening.from_json(GOOD_OPENING) == LeafOpening(1, bytes(3), (bytes([0xAB]) * 32,))


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([], "JSON object"),
        ({"index": 1, "leaf": "AAAA"}, "keys"),
        (opening_with(extra=1), "keys"),
        (opening_with(index="1"), "index"),
        (opening_with(index=True), "index"),
        (opening_with(index=-1), "index"),
        (opening_with(index=2**32), "index"),
        (opening_with(index=1.0), "index"),
        (opening_with(leaf=None), "base64"),
        (opening_with(leaf="AA*A"), "base64"),
        (opening_with(leaf="AAA"), "base64"),
        (opening_with(leaf="AAF="), "canonical"),
        (opening_with(leaf="-_8="), "base64"),
        (opening_with(leaf=""), "non-empty"),
        (opening_with(path="ab" * 32), "list"),
        (opening_with(path=["AB" * 32]), "lowercase hex"),
        (opening_with(path=["ab" * 31]), "lowercase hex"),
        (opening_with(path=[" " + "ab" * 32]), "lowercase hex"),
        (opening_with(path=[None]), "lowercase hex"),
        (opening_with(path=["ab" * 32] * 33), "at most 32"),
    ],
)
def test_malformed_opening_json(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LeafOpening.from_json(obj)


def opening_json(index: int) -> dict[str, Any]:
    return opening_with(index=index)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("proof", "JSON object"),
        ({"leaf": opening_json(0), "prev": None}, "keys"),
        ({"leaf": opening_json(0), "prev": opening_json(0), "lookback": None}, "leaf 0"),
        ({"leaf": opening_json(3), "prev": None, "lookback": opening_json(0)}, "needs both"),
        ({"leaf": opening_json(3), "prev": opening_json(1), "lookback": opening_json(0)}, "prev"),
        (
            {"leaf": opening_json(3), "prev": opening_json(2), "lookback": opening_json(3)},
            "earlier",
        ),
        ({"leaf": opening_json(3), "prev": opening_json(2), "lookback": []}, "JSON object"),
    ],
)
def test_malformed_proof_json(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        IdleConsistencyProof.from_json(obj)


def test_opening_constructor_validates() -> None:
    with pytest.raises(ValueError, match="path hash 0"):
        LeafOpening(0, b"x", (b"short",))
    with pytest.raises(ValueError, match="tuple"):
        LeafOpening(0, b"x", [bytes(32)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaf openings"):
        IdleConsistencyProof("leaf", None, None)  # type: ignore[arg-type]


def test_leaf_hash_matches_tree(unit: bytes, tree: MerkleTree) -> None:
    # The challenge path hashes leaves exactly as the commitment did.
    assert tree.leaf_hash(4) == leaf_hash(leaf_at(unit, 4))
