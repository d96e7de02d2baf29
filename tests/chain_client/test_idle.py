import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain_client import idle, idle_proofs
from chain_client.idle import (
    MAX_LAYERS,
    IdleSpec,
    IdleUnit,
    derive_leaf,
    generate_unit,
    idle_seed,
    layer_root,
    lookback_index,
    regenerate_leaf,
    unit_root,
)
from chain_client.idle_proofs import (
    BEACON_SIZE,
    LayerConsistencyProof,
    LeafOpening,
    cert_challenges,
    prove_certification,
    prove_leaf,
    verify_certification,
    verify_leaf,
)
from chain_client.merkle import MerkleTree, leaf_hash, merkle_root

# 16 leaves of 256 bytes and the cheapest scrypt: the structure, not the cost, is tested.
LEAF_SIZE = 256
LEAF_COUNT = 16


def spec_with(layers: int) -> IdleSpec:
    return IdleSpec(unit_size=4096, leaf_size=LEAF_SIZE, scrypt_n=2, scrypt_r=1, layers=layers)


SPEC = spec_with(3)
LAYER_COUNTS = (1, 2, 3)
MINER_KEY = bytes(range(32))
ANCHOR = hashlib.sha256(b"block 42").digest()
UNIT_INDEX = 7
SEED = idle_seed(MINER_KEY, UNIT_INDEX, ANCHOR)
OTHER_SEED = idle_seed(MINER_KEY, UNIT_INDEX + 1, ANCHOR)
# The randomness of the block after the one that committed the roots.
BEACON = hashlib.sha256(b"block 44").digest()
ALL_POSITIONS = [(layer, index) for layer in range(SPEC.layers) for index in range(LEAF_COUNT)]


@pytest.fixture(scope="module")
def units() -> dict[int, IdleUnit]:
    return {layers: generate_unit(spec_with(layers), SEED) for layers in LAYER_COUNTS}


@pytest.fixture(scope="module")
def unit(units: dict[int, IdleUnit]) -> IdleUnit:
    return units[SPEC.layers]


@pytest.fixture(scope="module")
def proofs(unit: IdleUnit) -> list[LayerConsistencyProof]:
    return prove_certification(SPEC, unit, ALL_POSITIONS)


def leaf_at(data: bytes, index: int) -> bytes:
    return data[index * LEAF_SIZE : (index + 1) * LEAF_SIZE]


def prev_of(unit: IdleUnit, layer: int, index: int) -> bytes | None:
    """``prev(layer, index)``: the leaf before, or the last leaf of the layer below."""
    if index:
        return leaf_at(unit.layers[layer], index - 1)
    return leaf_at(unit.layers[layer - 1], LEAF_COUNT - 1) if layer else None


def flip_bit(value: bytes, position: int = 0) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= 1
    return bytes(changed)


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def reference_layers(seed: bytes, layers: int) -> list[bytes]:
    """The construction written out from the module docstring, independently of the code."""
    made: list[list[bytes]] = []
    for layer in range(layers):
        leaves: list[bytes] = []
        for index in range(LEAF_COUNT):
            before = leaves[index - 1] if index else b""
            # Leaf 0 of a later layer continues the chain from the end of the one below.
            prev = before or (made[layer - 1][-1] if layer else b"")
            if layer == 0:
                back = b""
                if index:
                    back_index = int.from_bytes(hashlib.sha256(prev).digest()[:8], "big") % index
                    back = leaves[back_index]
            else:
                source = before or b"deoss/idle-back\x00" + seed + u64(layer)
                digest = hashlib.sha256(source).digest()
                back = made[layer - 1][int.from_bytes(digest[:8], "big") % LEAF_COUNT]
            position = u64(layer) + u64(index)
            password = hashlib.sha256(seed + position + prev + back).digest()
            mix = hashlib.scrypt(
                password, salt=b"deoss/idle-leaf" + position, n=2, r=1, p=1, dklen=LEAF_SIZE
            )
            leaf = bytearray(mix)
            for part in (prev, back):
                for offset, byte in enumerate(part):
                    leaf[offset] ^= byte
            leaves.append(bytes(leaf))
        made.append(leaves)
    return [b"".join(leaves) for leaves in made]


# --- spec and seed ---------------------------------------------------------------------


def test_spec_leaf_count() -> None:
    assert SPEC.leaf_count == LEAF_COUNT


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
        ("layers", 0),
        ("layers", MAX_LAYERS + 1),
        ("layers", True),
        ("layers", 2.0),
    ],
)
def test_spec_validation_names_field_and_value(field: str, value: Any) -> None:
    values: dict[str, Any] = {
        "unit_size": 4096,
        "leaf_size": 256,
        "scrypt_n": 2,
        "scrypt_r": 1,
        "layers": 2,
    }
    values[field] = value
    with pytest.raises(ValueError, match=field) as caught:
        IdleSpec(**values)
    assert str(value) in str(caught.value)


def test_seed_layout() -> None:
    expected = hashlib.sha256(b"deoss/idle-seed\x00" + MINER_KEY + u64(7) + ANCHOR).digest()
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


# --- generation ------------------------------------------------------------------------


@pytest.mark.parametrize("layers", LAYER_COUNTS)
def test_layers_follow_the_definition(units: dict[int, IdleUnit], layers: int) -> None:
    unit = units[layers]
    assert list(unit.layers) == reference_layers(SEED, layers)
    assert unit.data == unit.layers[-1]
    assert len(unit.layers) == layers
    assert all(len(layer) == 4096 for layer in unit.layers)


def test_public_steps_match_the_unit(unit: IdleUnit) -> None:
    for layer, index in ALL_POSITIONS:
        data = unit.layers[layer]
        prev = prev_of(unit, layer, index)
        back = None
        if layer or index:
            # The look-back of leaf 0 comes from the seed, not from its prev.
            back_index = lookback_index(SPEC, SEED, layer, index, prev if index else None)
            assert 0 <= back_index < (index if layer == 0 else LEAF_COUNT)
            back = leaf_at(unit.layers[max(layer - 1, 0)], back_index)
        assert derive_leaf(SPEC, SEED, layer, index, prev, back) == leaf_at(data, index)


def test_generation_is_deterministic_and_seeded(unit: IdleUnit) -> None:
    assert generate_unit(SPEC, SEED) == unit
    other = generate_unit(SPEC, OTHER_SEED)
    assert all(a != b for a, b in zip(other.layers, unit.layers, strict=True))


def test_layers_differ_and_do_not_depend_on_the_layer_count(units: dict[int, IdleUnit]) -> None:
    # Layer l is a function of layers 0..l only: a deeper unit extends a shallower one.
    assert units[2].layers == units[3].layers[:2]
    assert units[1].layers == units[3].layers[:1]
    assert len(set(units[3].layers)) == 3


@pytest.mark.parametrize("layers", LAYER_COUNTS)
def test_layer_roots_match(units: dict[int, IdleUnit], layers: int) -> None:
    unit = units[layers]
    spec = spec_with(layers)
    assert unit.layer_roots == tuple(merkle_root(layer, LEAF_SIZE) for layer in unit.layers)
    assert unit.layer_roots == tuple(layer_root(spec, layer) for layer in unit.layers)
    assert unit.root == unit_root(unit) == unit_root(unit.layer_roots) == unit.layer_roots[-1]
    assert unit_root(list(unit.layer_roots)) == unit.root
    assert unit.root == MerkleTree.from_data(unit.data, LEAF_SIZE).root


def test_root_helpers_reject_bad_inputs(unit: IdleUnit) -> None:
    with pytest.raises(ValueError, match="4096"):
        layer_root(SPEC, unit.data[:-1])
    for bad in ([], [b"short"], "not roots"):
        with pytest.raises(ValueError, match="layer roots"):
            unit_root(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("layers", LAYER_COUNTS)
def test_regenerate_leaf_equals_the_stored_leaf(units: dict[int, IdleUnit], layers: int) -> None:
    spec = spec_with(layers)
    for index in range(LEAF_COUNT):
        assert regenerate_leaf(spec, SEED, index) == leaf_at(units[layers].data, index)
    with pytest.raises(ValueError, match="leaf index"):
        regenerate_leaf(spec, SEED, LEAF_COUNT)
    with pytest.raises(ValueError, match="seed"):
        regenerate_leaf(spec, SEED[:31], 0)


@pytest.mark.parametrize("layers", LAYER_COUNTS)
def test_rebuilding_any_leaf_replays_every_layer_below(
    monkeypatch: pytest.MonkeyPatch, layers: int
) -> None:
    # Leaf 0 of each layer hangs on the last leaf of the one below, so even the cheapest
    # last-layer leaf costs (L-1) n steps, whatever the look-backs drew.
    steps = 0
    scrypt = hashlib.scrypt

    def counted(*args: Any, **kwargs: Any) -> bytes:
        nonlocal steps
        steps += 1
        return scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    for index in (0, 5, LEAF_COUNT - 1):
        steps = 0
        regenerate_leaf(spec_with(layers), SEED, index)
        assert steps == (layers - 1) * LEAF_COUNT + index + 1


def test_unit_repr_leaves_out_the_layers(unit: IdleUnit) -> None:
    text = repr(unit)
    assert "layer_roots" in text
    assert "layers=" not in text
    assert len(text) < 1000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": b"short"}, "seed"),
        ({"layers": ()}, "layers"),
        ({"layers": [b"a"]}, "layers"),
        ({"layers": (b"",)}, "non-empty"),
        ({"layers": (b"ab", b"a"), "layer_roots": (bytes(32),) * 2}, "same size"),
        ({"layers": (b"a",), "layer_roots": ()}, "one root per layer"),
        ({"layers": (b"a",), "layer_roots": (b"short",)}, "32 bytes"),
    ],
)
def test_unit_constructor_validates(changes: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"seed": SEED, "layers": (b"a",), "layer_roots": (bytes(32),)}
    with pytest.raises(ValueError, match=message):
        IdleUnit(**{**values, **changes})


def test_steps_reject_bad_inputs(unit: IdleUnit) -> None:
    leaf = leaf_at(unit.data, 0)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: derive_leaf(SPEC, SEED, 0, 0, leaf, None), "prev_leaf must be None"),
        (lambda: derive_leaf(SPEC, SEED, 0, 0, None, leaf), "lookback_leaf must be None"),
        (lambda: derive_leaf(SPEC, SEED, 1, 0, None, leaf), "prev_leaf must be 256"),
        (lambda: derive_leaf(SPEC, SEED, 1, 0, leaf, None), "lookback_leaf must be 256"),
        (lambda: derive_leaf(SPEC, SEED, 1, 1, None, leaf), "prev_leaf must be 256"),
        (lambda: derive_leaf(SPEC, SEED, 1, 1, leaf[:-1], leaf), "prev_leaf must be 256"),
        (lambda: derive_leaf(SPEC, SEED, 3, 1, leaf, leaf), "layer"),
        (lambda: derive_leaf(SPEC, SEED, 1, LEAF_COUNT, leaf, leaf), "leaf index"),
        (lambda: derive_leaf(SPEC, SEED[:16], 1, 1, leaf, leaf), "seed"),
        (lambda: lookback_index(SPEC, SEED, 0, 0, None), "no look-back"),
        (lambda: lookback_index(SPEC, SEED, 1, 0, leaf), "prev_leaf must be None"),
        (lambda: lookback_index(SPEC, SEED, 1, 1, None), "prev_leaf must be 256"),
        (lambda: lookback_index(SPEC, SEED, -1, 1, leaf), "layer"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# --- certification challenges ----------------------------------------------------------


def test_cert_challenges_round_robin_from_the_last_layer(unit: IdleUnit) -> None:
    roots = unit.layer_roots
    picked = cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 12, LEAF_COUNT)
    assert picked == cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 12, LEAF_COUNT)
    assert [layer for layer, _ in picked] == [2, 1, 0] * 4
    assert len(set(picked)) == 12
    assert all(0 <= index < LEAF_COUNT for _, index in picked)
    assert cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 5, LEAF_COUNT) == picked[:5]
    everything = cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 3 * LEAF_COUNT, LEAF_COUNT)
    assert sorted(everything) == sorted(ALL_POSITIONS)
    assert cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 0, LEAF_COUNT) == []


def test_cert_challenges_follow_their_inputs(unit: IdleUnit) -> None:
    # 8 of 2**20 leaves: distinct inputs collide on the whole draw with negligible odds.
    roots, leaf_count = unit.layer_roots, 2**20
    base = cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 8, leaf_count)
    for layer in range(len(roots)):
        changed = list(roots)
        changed[layer] = flip_bit(changed[layer])
        assert base != cert_challenges(BEACON, changed, MINER_KEY, UNIT_INDEX, 8, leaf_count)
    assert base != cert_challenges(BEACON, roots, flip_bit(MINER_KEY), UNIT_INDEX, 8, leaf_count)
    assert base != cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX + 1, 8, leaf_count)
    assert base != cert_challenges(BEACON, roots[:2], MINER_KEY, UNIT_INDEX, 8, leaf_count)
    first = hashlib.sha256(
        b"deoss/idle-cert\x00"
        + BEACON
        + u64(3)
        + b"".join(roots)
        + MINER_KEY
        + u64(UNIT_INDEX)
        + u64(0)
    ).digest()
    assert base[0] == (2, int.from_bytes(first[:8], "big") % leaf_count)


def test_cert_challenges_follow_the_beacon(unit: IdleUnit) -> None:
    # The same committed roots draw other pairs under another block's randomness: what
    # the miner committed to cannot choose its own challenges.
    roots, leaf_count = unit.layer_roots, 2**20
    base = cert_challenges(BEACON, roots, MINER_KEY, UNIT_INDEX, 8, leaf_count)
    for position in range(BEACON_SIZE):
        beacon = flip_bit(BEACON, position)
        assert base != cert_challenges(beacon, roots, MINER_KEY, UNIT_INDEX, 8, leaf_count)
    draws = {
        tuple(cert_challenges(bytes([byte]) * 32, roots, MINER_KEY, UNIT_INDEX, 8, leaf_count))
        for byte in range(16)
    }
    assert len(draws) == 16


@pytest.mark.parametrize(
    "beacon", [BEACON[:31], BEACON + b"\x00", b"", bytearray(BEACON), BEACON.hex(), None]
)
def test_cert_challenges_rejects_a_beacon_of_the_wrong_size(beacon: Any, unit: IdleUnit) -> None:
    with pytest.raises(ValueError, match="beacon must be 32 bytes"):
        cert_challenges(beacon, unit.layer_roots, MINER_KEY, UNIT_INDEX, 1, LEAF_COUNT)


@settings(max_examples=50, deadline=None)
@given(
    beacon=st.binary(min_size=32, max_size=32),
    roots=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=MAX_LAYERS),
    unit_index=st.integers(0, 2**64 - 1),
    leaf_count=st.integers(1, 2**32),
    data=st.data(),
)
def test_cert_challenges_in_range(
    beacon: bytes, roots: list[bytes], unit_index: int, leaf_count: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(0, min(len(roots) * leaf_count, 40)))
    picked = cert_challenges(beacon, roots, MINER_KEY, unit_index, count, leaf_count)
    assert len(picked) == len(set(picked)) == count
    assert all(0 <= layer < len(roots) and 0 <= index < leaf_count for layer, index in picked)


@pytest.mark.parametrize(
    ("roots", "count", "leaf_count", "message"),
    [
        ([b"short"], 1, 16, r"layer_roots\[0\]"),
        ([], 1, 16, "layer_roots"),
        ([bytes(32)] * (MAX_LAYERS + 1), 1, 16, "layer_roots"),
        ([bytes(32)], 17, 16, "count"),
        ([bytes(32)] * 2, 33, 16, "count"),
        ([bytes(32)], -1, 16, "count"),
        ([bytes(32)], 1, 0, "leaf_count"),
        ([bytes(32)], 1, 2**32 + 1, "leaf_count"),
    ],
)
def test_cert_challenges_rejects_bad_inputs(
    roots: list[bytes], count: int, leaf_count: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cert_challenges(BEACON, roots, MINER_KEY, 0, count, leaf_count)


@pytest.mark.parametrize(
    ("key", "unit_index", "message"),
    [(MINER_KEY[:31], 0, "miner_public_key"), (MINER_KEY, -1, "unit_index")],
)
def test_cert_challenges_rejects_bad_identity(key: bytes, unit_index: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cert_challenges(BEACON, [bytes(32)], key, unit_index, 1, 16)


# --- certification proofs --------------------------------------------------------------


@pytest.mark.parametrize("layers", LAYER_COUNTS)
def test_every_cert_challenge_verifies(units: dict[int, IdleUnit], layers: int) -> None:
    spec, unit = spec_with(layers), units[layers]
    challenges = cert_challenges(BEACON, unit.layer_roots, MINER_KEY, UNIT_INDEX, 8, LEAF_COUNT)
    proofs = prove_certification(spec, unit, challenges)
    assert verify_certification(spec, SEED, unit.layer_roots, proofs, challenges)
    # And every position, so leaf 0 and the layer boundaries are all covered.
    everything = [(layer, index) for layer in range(layers) for index in range(LEAF_COUNT)]
    proofs = prove_certification(spec, unit, everything)
    assert verify_certification(spec, SEED, unit.layer_roots, proofs, everything)
    assert verify_certification(spec, SEED, list(unit.layer_roots), proofs, everything)


def test_proof_shapes(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    for (layer, index), proof in zip(ALL_POSITIONS, proofs, strict=True):
        assert (proof.layer, proof.leaf.index) == (layer, index)
        assert (proof.prev is None) == (proof.lookback is None) == (layer == 0 and index == 0)
        if proof.prev is not None:
            # Leaf 0 of a later layer carries the last leaf of the layer below as its prev.
            assert proof.prev.index == (index - 1 if index else LEAF_COUNT - 1)
            assert proof.prev.leaf == prev_of(unit, layer, index)


def test_verify_accepts_no_challenges(unit: IdleUnit) -> None:
    assert verify_certification(SPEC, SEED, unit.layer_roots, [], [])


@pytest.mark.parametrize("part", ["leaf", "prev", "lookback"])
def test_tampered_leaf_bytes_fail(
    unit: IdleUnit, proofs: list[LayerConsistencyProof], part: str
) -> None:
    for position, proof in enumerate(proofs):
        opening = getattr(proof, part)
        if opening is None:
            continue
        tampered = dataclasses.replace(opening, leaf=flip_bit(opening.leaf, position))
        forged = dataclasses.replace(proof, **{part: tampered})
        assert not verify_certification(
            SPEC, SEED, unit.layer_roots, [forged], [ALL_POSITIONS[position]]
        )


def test_tampered_path_fails(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    proof = proofs[-1]
    path = (flip_bit(proof.leaf.path[0]), *proof.leaf.path[1:])
    forged = dataclasses.replace(proof, leaf=dataclasses.replace(proof.leaf, path=path))
    assert not verify_certification(SPEC, SEED, unit.layer_roots, [forged], [ALL_POSITIONS[-1]])


def test_wrong_layer_fails(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    roots = unit.layer_roots
    for (layer, index), proof in zip(ALL_POSITIONS, proofs, strict=True):
        for other in range(SPEC.layers):
            if other == layer:
                continue
            # The proof answered for another layer than asked.
            assert not verify_certification(SPEC, SEED, roots, [proof], [(other, index)])
            # The proof claims another layer than the one its openings are from; where
            # that shape cannot exist the constructor refuses it already.
            try:
                relabelled = dataclasses.replace(proof, layer=other)
            except ValueError:
                continue
            assert not verify_certification(SPEC, SEED, roots, [relabelled], [(other, index)])


def test_wrong_index_fails(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    for (layer, index), proof in zip(ALL_POSITIONS, proofs, strict=True):
        for wrong in (index - 1, index + 1):
            assert not verify_certification(SPEC, SEED, unit.layer_roots, [proof], [(layer, wrong)])


def test_wrong_root_fails(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    for layer in range(SPEC.layers):
        roots = list(unit.layer_roots)
        roots[layer] = flip_bit(roots[layer])
        for position, proof in zip(ALL_POSITIONS, proofs, strict=True):
            # The leaf opens against its own layer's root, the lookback against the one below.
            if position[0] in (layer, layer + 1):
                assert not verify_certification(SPEC, SEED, roots, [proof], [position])
            else:
                assert verify_certification(SPEC, SEED, roots, [proof], [position])


def test_swapped_lookback_fails(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    trees = [MerkleTree.from_data(layer, LEAF_SIZE) for layer in unit.layers]
    for (layer, index), proof in zip(ALL_POSITIONS, proofs, strict=True):
        if proof.lookback is None:
            continue
        below = max(layer - 1, 0)
        right = proof.lookback.index
        # A valid opening of the wrong leaf of the right layer: Merkle-correct, not j(l, i).
        wrong = (right + 1) % (index if layer == 0 else LEAF_COUNT)
        if wrong != right:
            opening = prove_leaf(trees[below], unit.layers[below], LEAF_SIZE, wrong)
            forged = dataclasses.replace(proof, lookback=opening)
            assert not verify_certification(
                SPEC, SEED, unit.layer_roots, [forged], [(layer, index)]
            )
        # The right index in the wrong layer.
        other = (below + 1) % SPEC.layers
        opening = prove_leaf(trees[other], unit.layers[other], LEAF_SIZE, right)
        forged = dataclasses.replace(proof, lookback=opening)
        assert not verify_certification(SPEC, SEED, unit.layer_roots, [forged], [(layer, index)])


def test_wrong_seed_or_spec_fails(unit: IdleUnit, proofs: list[LayerConsistencyProof]) -> None:
    roots = unit.layer_roots
    assert not verify_certification(SPEC, OTHER_SEED, roots, proofs, ALL_POSITIONS)
    for proof, position in zip(proofs, ALL_POSITIONS, strict=True):
        assert not verify_certification(SPEC, OTHER_SEED, roots, [proof], [position])
        harder = dataclasses.replace(SPEC, scrypt_n=4)
        assert not verify_certification(harder, SEED, roots, [proof], [position])
    assert not verify_certification(spec_with(2), SEED, roots, proofs, ALL_POSITIONS)


def test_missing_extra_or_reordered_proofs_fail(
    unit: IdleUnit, proofs: list[LayerConsistencyProof]
) -> None:
    roots = unit.layer_roots
    assert verify_certification(SPEC, SEED, roots, proofs, ALL_POSITIONS)
    assert not verify_certification(SPEC, SEED, roots, proofs[:-1], ALL_POSITIONS)
    assert not verify_certification(SPEC, SEED, roots, proofs[1:], ALL_POSITIONS)
    assert not verify_certification(SPEC, SEED, roots, [*proofs, proofs[0]], ALL_POSITIONS)
    assert not verify_certification(SPEC, SEED, roots, proofs, ALL_POSITIONS[:-1])
    swapped = [proofs[1], proofs[0], *proofs[2:]]
    assert not verify_certification(SPEC, SEED, roots, swapped, ALL_POSITIONS)


def test_committed_wrong_leaf_is_caught_at_its_position(unit: IdleUnit) -> None:
    # A miner that commits to a layer with one leaf changed has roots that match its data,
    # so only the derivation check can catch it.
    for layer, index in ALL_POSITIONS:
        layers = list(unit.layers)
        cheat = bytearray(layers[layer])
        cheat[index * LEAF_SIZE] ^= 1
        layers[layer] = bytes(cheat)
        roots = tuple(merkle_root(data, LEAF_SIZE) for data in layers)
        cheat_unit = IdleUnit(seed=SEED, layers=tuple(layers), layer_roots=roots)
        caught = [(layer, index)]
        # Its successor in the chain was derived from the real leaf.
        if index + 1 < LEAF_COUNT:
            caught.append((layer, index + 1))
        elif layer + 1 < SPEC.layers:
            caught.append((layer + 1, 0))
        for position in caught:
            proof = prove_certification(SPEC, cheat_unit, [position])
            assert not verify_certification(SPEC, SEED, roots, proof, [position])


@pytest.mark.parametrize(
    ("spec", "seed", "roots", "given_proofs", "challenges"),
    [
        (None, SEED, "roots", "proofs", "challenges"),
        (SPEC, None, "roots", "proofs", "challenges"),
        (SPEC, SEED[:31], "roots", "proofs", "challenges"),
        (SPEC, SEED, None, "proofs", "challenges"),
        (SPEC, SEED, "abc", "proofs", "challenges"),
        (SPEC, SEED, [b"short", bytes(32), bytes(32)], "proofs", "challenges"),
        (SPEC, SEED, "roots", None, "challenges"),
        (SPEC, SEED, "roots", ["proof"], [(0, 0)]),
        (SPEC, SEED, "roots", "proofs", None),
        (SPEC, SEED, "roots", "proofs", {"a": 1}),
        (SPEC, SEED, "roots", "first", [[0, 0]]),
        (SPEC, SEED, "roots", "first", [(0, 0, 0)]),
        (SPEC, SEED, "roots", "first", [(0.0, 0)]),
        (SPEC, SEED, "roots", "first", [(False, 0)]),
        (SPEC, SEED, "roots", "first", [(0, -1)]),
        (SPEC, SEED, "roots", "first", [(3, 0)]),
        (SPEC, SEED, "roots", "first", [(0, LEAF_COUNT)]),
        (SPEC, SEED, "roots", "first", [None]),
    ],
)
def test_verify_certification_rejects_malformed_input(
    unit: IdleUnit,
    proofs: list[LayerConsistencyProof],
    spec: Any,
    seed: Any,
    roots: Any,
    given_proofs: Any,
    challenges: Any,
) -> None:
    roots = unit.layer_roots if roots == "roots" else roots
    if given_proofs == "proofs":
        given_proofs = proofs
    elif given_proofs == "first":
        given_proofs = proofs[:1]
    challenges = ALL_POSITIONS if challenges == "challenges" else challenges
    assert verify_certification(spec, seed, roots, given_proofs, challenges) is False


def test_prove_certification_rejects_foreign_units(units: dict[int, IdleUnit]) -> None:
    with pytest.raises(ValueError, match="not an idle unit of this spec"):
        prove_certification(SPEC, units[2], [(0, 0)])
    with pytest.raises(ValueError, match="not an idle unit of this spec"):
        prove_certification(dataclasses.replace(SPEC, unit_size=8192), units[3], [(0, 0)])
    with pytest.raises(ValueError, match="layer"):
        prove_certification(SPEC, units[3], [(3, 0)])
    with pytest.raises(ValueError, match="leaf index"):
        prove_certification(SPEC, units[3], [(0, LEAF_COUNT)])


@settings(max_examples=30, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    layers=st.integers(1, 3),
    data=st.data(),
)
def test_random_units_certify_and_regenerate(seed: bytes, layers: int, data: st.DataObject) -> None:
    spec = spec_with(layers)
    unit = generate_unit(spec, seed)
    positions = st.tuples(st.integers(0, layers - 1), st.integers(0, LEAF_COUNT - 1))
    challenges = data.draw(st.lists(positions, min_size=1, max_size=6, unique=True))
    proofs = prove_certification(spec, unit, challenges)
    assert verify_certification(spec, seed, unit.layer_roots, proofs, challenges)
    assert not verify_certification(spec, flip_bit(seed), unit.layer_roots, proofs, challenges)
    index = data.draw(st.integers(0, LEAF_COUNT - 1))
    assert regenerate_leaf(spec, seed, index) == leaf_at(unit.data, index)


# --- JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "index"), [(0, 0), (0, 1), (0, 15), (1, 0), (2, 9)])
def test_proof_json_round_trip(
    unit: IdleUnit, proofs: list[LayerConsistencyProof], layer: int, index: int
) -> None:
    proof = proofs[ALL_POSITIONS.index((layer, index))]
    wire = json.loads(json.dumps(proof.to_json()))
    assert LayerConsistencyProof.from_json(wire) == proof
    assert wire["layer"] == layer
    opening = wire["leaf"]
    assert base64.b64decode(opening["leaf"], validate=True) == leaf_at(unit.layers[layer], index)
    assert all(node == node.lower() and len(node) == 64 for node in opening["path"])
    assert (wire["prev"] is None) == (wire["lookback"] is None) == (layer == 0 and index == 0)


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


def op(index: int) -> dict[str, Any]:
    return opening_with(index=index)


def proof_json(layer: Any, leaf: Any, prev: Any, lookback: Any) -> dict[str, Any]:
    return {"layer": layer, "leaf": leaf, "prev": prev, "lookback": lookback}


def test_good_proof_json_parses() -> None:
    # The bases the malformed cases below change.
    for obj in (
        proof_json(0, op(0), None, None),
        proof_json(0, op(3), op(2), op(1)),
        # The constructor cannot know the leaf count; the verifier checks prev is the last.
        proof_json(2, op(0), op(15), op(9)),
        proof_json(2, op(3), op(2), op(9)),
    ):
        assert LayerConsistencyProof.from_json(obj).to_json() == obj


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("proof", "JSON object"),
        ({"leaf": op(0), "prev": None, "lookback": None}, "keys"),
        ({**proof_json(0, op(0), None, None), "extra": 1}, "keys"),
        (proof_json("1", op(3), op(2), op(1)), "layer"),
        (proof_json(True, op(3), op(2), op(1)), "layer"),
        (proof_json(1.0, op(3), op(2), op(1)), "layer"),
        (proof_json(-1, op(3), op(2), op(1)), "layer"),
        (proof_json(MAX_LAYERS, op(3), op(2), op(1)), "layer"),
        (proof_json(None, op(3), op(2), op(1)), "layer"),
        (proof_json(1, None, None, op(1)), "JSON object"),
        (proof_json(0, op(0), op(0), None), "no prev"),
        (proof_json(1, op(0), None, op(1)), "needs its prev"),
        (proof_json(1, op(3), None, op(1)), "needs its prev"),
        (proof_json(1, op(3), op(1), op(1)), "prev of leaf 3"),
        (proof_json(1, op(3), op(2), None), "needs its lookback"),
        (proof_json(1, op(0), op(15), None), "needs its lookback"),
        (proof_json(0, op(0), None, op(0)), "no lookback"),
        (proof_json(0, op(3), op(2), op(3)), "earlier"),
        (proof_json(0, op(3), op(2), []), "JSON object"),
        (proof_json(0, op(3), op(2), opening_with(index=-1)), "index"),
    ],
)
def test_malformed_proof_json(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LayerConsistencyProof.from_json(obj)


def test_constructors_validate() -> None:
    with pytest.raises(ValueError, match="path hash 0"):
        LeafOpening(0, b"x", (b"short",))
    with pytest.raises(ValueError, match="tuple"):
        LeafOpening(0, b"x", [bytes(32)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaf openings"):
        LayerConsistencyProof(0, "leaf", None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaf openings"):
        LayerConsistencyProof(1, LeafOpening(0, b"x", ()), None, "back")  # type: ignore[arg-type]


# --- leaf challenges against the unit root ---------------------------------------------


def test_leaf_challenge_round_trip(unit: IdleUnit) -> None:
    data, root = unit.data, unit.root
    tree = MerkleTree.from_data(data, LEAF_SIZE)
    for index in range(LEAF_COUNT):
        opening = prove_leaf(tree, data, LEAF_SIZE, index)
        assert opening.leaf == leaf_at(data, index)
        assert tree.leaf_hash(index) == leaf_hash(opening.leaf)
        assert verify_leaf(root, LEAF_COUNT, LEAF_SIZE, opening, index)
        assert not verify_leaf(root, LEAF_COUNT, LEAF_SIZE, opening, (index + 1) % LEAF_COUNT)
        assert not verify_leaf(flip_bit(root), LEAF_COUNT, LEAF_SIZE, opening, index)
        assert not verify_leaf(root, LEAF_COUNT, LEAF_SIZE - 64, opening, index)
        tampered = dataclasses.replace(opening, leaf=flip_bit(opening.leaf, index))
        assert not verify_leaf(root, LEAF_COUNT, LEAF_SIZE, tampered, index)
    assert not verify_leaf(root, LEAF_COUNT, LEAF_SIZE, "opening", 0)  # type: ignore[arg-type]
    # A leaf of an earlier layer is not a leaf of the unit.
    lower = MerkleTree.from_data(unit.layers[0], LEAF_SIZE)
    opening = prove_leaf(lower, unit.layers[0], LEAF_SIZE, 3)
    assert not verify_leaf(root, LEAF_COUNT, LEAF_SIZE, opening, 3)


def test_prove_leaf_rejects_foreign_data(unit: IdleUnit) -> None:
    tree = MerkleTree.from_data(unit.data, LEAF_SIZE)
    with pytest.raises(ValueError, match="does not match"):
        prove_leaf(tree, unit.layers[0], LEAF_SIZE, 0)


def test_leaf_of_wrong_size_fails_even_if_committed() -> None:
    # Merkle trees allow a short last leaf; idle challenges do not.
    data = bytes(300)
    tree = MerkleTree.from_data(data, 256)
    opening = prove_leaf(tree, data, 256, 1)
    assert len(opening.leaf) == 44
    assert not verify_leaf(tree.root, 2, 256, opening, 1)


def commit_leaf(unit: IdleUnit, layer: int, index: int, leaf: bytes) -> tuple[bytes, ...]:
    """Layers of ``unit`` with one leaf replaced, as a cheating miner would commit them."""
    layers = list(unit.layers)
    changed = bytearray(layers[layer])
    changed[index * LEAF_SIZE : (index + 1) * LEAF_SIZE] = leaf
    layers[layer] = bytes(changed)
    return tuple(layers)


def opening_in(layers: tuple[bytes, ...], layer: int, index: int) -> LeafOpening:
    return prove_leaf(
        MerkleTree.from_data(layers[layer], LEAF_SIZE), layers[layer], LEAF_SIZE, index
    )


def prev_opening_in(layers: tuple[bytes, ...], layer: int, index: int) -> LeafOpening | None:
    if index:
        return opening_in(layers, layer, index - 1)
    return opening_in(layers, layer - 1, LEAF_COUNT - 1) if layer else None


@pytest.mark.parametrize(("layer", "index"), [(0, 9), (1, 0), (2, 5)])
def test_leaf_derived_from_a_chosen_lookback_fails(unit: IdleUnit, layer: int, index: int) -> None:
    # The cheater derives the leaf honestly but from a look-back of its choice, and opens
    # that one: every path and the step check out; only j(l, i) is wrong.
    below = max(layer - 1, 0)
    prev = prev_of(unit, layer, index)
    right = lookback_index(SPEC, SEED, layer, index, prev if index else None)
    wrong = (right + 1) % (index if layer == 0 else LEAF_COUNT)
    leaf = derive_leaf(SPEC, SEED, layer, index, prev, leaf_at(unit.layers[below], wrong))
    layers = commit_leaf(unit, layer, index, leaf)
    roots = tuple(merkle_root(data, LEAF_SIZE) for data in layers)
    proof = LayerConsistencyProof(
        layer,
        opening_in(layers, layer, index),
        prev_opening_in(layers, layer, index),
        opening_in(layers, below, wrong),
    )
    assert not verify_certification(SPEC, SEED, roots, [proof], [(layer, index)])


@pytest.mark.parametrize(("layer", "index"), [(0, 9), (1, 0), (2, 5)])
def test_leaf_derived_from_an_uncommitted_prev_fails(
    unit: IdleUnit, layer: int, index: int
) -> None:
    # The cheater derives the leaf from a prev it never committed to, with the look-back
    # that prev selects: only the prev's Merkle path is wrong.
    below = max(layer - 1, 0)
    fake_prev = hashlib.sha256(b"not the prev").digest() * (LEAF_SIZE // 32)
    back_index = lookback_index(SPEC, SEED, layer, index, fake_prev if index else None)
    back = leaf_at(unit.layers[below], back_index)
    leaf = derive_leaf(SPEC, SEED, layer, index, fake_prev, back)
    layers = commit_leaf(unit, layer, index, leaf)
    roots = tuple(merkle_root(data, LEAF_SIZE) for data in layers)
    real_prev = prev_opening_in(layers, layer, index)
    assert real_prev is not None
    proof = LayerConsistencyProof(
        layer,
        opening_in(layers, layer, index),
        dataclasses.replace(real_prev, leaf=fake_prev),
        opening_in(layers, below, back_index),
    )
    assert not verify_certification(SPEC, SEED, roots, [proof], [(layer, index)])


def test_leaf_0_of_a_layer_hangs_on_the_last_leaf_below(unit: IdleUnit) -> None:
    last = leaf_at(unit.layers[0], LEAF_COUNT - 1)
    back = leaf_at(unit.layers[0], lookback_index(SPEC, SEED, 1, 0, None))
    assert derive_leaf(SPEC, SEED, 1, 0, last, back) == leaf_at(unit.layers[1], 0)
    assert derive_leaf(SPEC, SEED, 1, 0, flip_bit(last), back) != leaf_at(unit.layers[1], 0)
    # A miner whose committed layer 0 ends in another leaf than the one layer 1 was built
    # on is caught at (1, 0), though every path checks out.
    layers = commit_leaf(unit, 0, LEAF_COUNT - 1, flip_bit(last))
    roots = tuple(merkle_root(data, LEAF_SIZE) for data in layers)
    cheat = IdleUnit(seed=SEED, layers=layers, layer_roots=roots)
    assert not verify_certification(
        SPEC, SEED, roots, prove_certification(SPEC, cheat, [(1, 0)]), [(1, 0)]
    )
    # The honest proof, with its prev tampered or swapped for another committed leaf.
    (honest,) = prove_certification(SPEC, unit, [(1, 0)])
    assert honest.prev is not None
    assert verify_certification(SPEC, SEED, unit.layer_roots, [honest], [(1, 0)])
    tampered = dataclasses.replace(honest.prev, leaf=flip_bit(honest.prev.leaf))
    forgeries = [tampered] + [
        opening_in(unit.layers, layer, index)
        for layer, index in ((0, LEAF_COUNT - 2), (0, 0), (1, LEAF_COUNT - 1), (2, LEAF_COUNT - 1))
    ]
    for prev in forgeries:
        forged = dataclasses.replace(honest, prev=prev)
        assert not verify_certification(SPEC, SEED, unit.layer_roots, [forged], [(1, 0)])


def test_proof_names_live_in_idle_proofs_only() -> None:
    moved = {
        "LayerConsistencyProof",
        "LeafOpening",
        "cert_challenges",
        "prove_certification",
        "prove_leaf",
        "verify_certification",
        "verify_leaf",
    }
    assert moved <= set(idle_proofs.__all__)
    assert not any(hasattr(idle, name) for name in moved)
    for module in (idle, idle_proofs):
        assert all(hasattr(module, name) for name in module.__all__)
