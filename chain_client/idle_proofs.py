"""Openings of idle leaves, and the certification of a new idle unit.

The construction is in ``chain_client.idle``. Two kinds of proof open its leaves:

- A ``LeafOpening`` is one leaf with its Merkle path. Storage challenges after
  certification open last-layer leaves against the unit root, ``root[L-1]``.
- A ``LayerConsistencyProof`` certifies one step: leaf ``(l, i)`` with ``prev(l, i)``
  and ``back(l, i)``, each opened against its layer's root, so that the chain can
  recompute the step. ``prev`` is leaf ``i - 1`` of layer ``l``, or for ``i = 0`` leaf
  ``n - 1`` of layer ``l - 1``; there is none for ``(0, 0)``.

Certification takes two extrinsics. The miner first commits every layer root of a unit
(block ``c``). The beacon is the randomness of block ``c + 1``, unknown when the roots
were committed; ``cert_challenges`` turns it, the roots, the miner's key and the unit
index into ``(layer, index)`` pairs, round-robin over the layers from the last one down.
In a later extrinsic the miner sends a ``LayerConsistencyProof`` for each pair, and the
chain checks the openings and recomputes each step. That proves that the opened leaves
follow the formula from the seed, and, by sampling, that most leaves of every layer do.
It does not prove that every leaf does, nor that the miner stores anything afterwards
(that is what later leaf challenges against ``root[L-1]`` are for).

The sampling bound. A layer that gets ``s_l`` samples and has a fraction ``d`` of wrong
leaves passes one try with probability ``(1 - d) ** s_l``. With ``s`` samples in all, a
unit whose leaves are wrong in a fraction ``d`` over all layers passes with at most
``(1 - d) ** s``; for ``s = 32`` that is 0.72 at d = 1%, 0.19 at 5%, 0.034 at 10%,
7.9e-4 at 20%, 1.1e-5 at 30% and 2.3e-10 at 50%. The last layer alone gets only
``ceil(s / L)`` samples (5 of 32 with L = 7: 0.59 at 10%, 0.24 at 25%, 0.031 at 50%), and
a wrong last-layer leaf that is cheap to compute is a leaf the miner need not store.

SECURITY: these bounds are per try, and a try is now a commitment. The roots are on
chain before the beacon exists, so a miner cannot see its challenges and then change a
leaf to draw again, as it could for microseconds when the pairs followed from the roots
alone (a million draws then passed a last layer that was 94% wrong). To draw again it
must commit a new unit: an extrinsic, two blocks before the beacon is known, and the
unit's declared space held meanwhile. After ``k`` tries a unit passes with at most
``k`` times the per-try bound. This holds only while the committer cannot steer the
beacon: the randomness of block ``c + 1`` must not be chosen by whoever authors it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from chain_client.idle import MAX_LAYERS, IdleSpec, IdleUnit, derive_leaf, lookback_index
from chain_client.merkle import (
    DIGEST_SIZE,
    MAX_LEAF_COUNT,
    Buffer,
    MerkleTree,
    leaf_hash,
    verify_path,
)

__all__ = [
    "BEACON_SIZE",
    "LayerConsistencyProof",
    "LeafOpening",
    "cert_challenges",
    "prove_certification",
    "prove_leaf",
    "verify_certification",
    "verify_leaf",
]

BEACON_SIZE = 32

_CERT_PREFIX = b"deoss/idle-cert\x00"
_KEY_SIZE = 32
_MAX_U64 = 2**64 - 1
_MAX_PATH_LENGTH = (MAX_LEAF_COUNT - 1).bit_length()
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _is_key(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == _KEY_SIZE


def _require_key(value: object, name: str) -> None:
    # SECURITY: fixed sizes keep the challenge derivation's input unambiguous.
    if not _is_key(value):
        raise ValueError(f"{name} must be {_KEY_SIZE} bytes, got {value!r}")


def _expect_keys(obj: object, keys: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(obj).__name__}")
    if set(obj) != keys:
        raise ValueError(f"{what} must have exactly the keys {sorted(keys)}, got {sorted(obj)}")
    return obj


@dataclass(frozen=True, slots=True)
class LeafOpening:
    """One leaf with its Merkle path; JSON carries the leaf in base64, hashes in hex."""

    index: int
    leaf: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index < MAX_LEAF_COUNT:
            raise ValueError(f"leaf index must be an int in [0, 2**32), got {self.index!r}")
        if not isinstance(self.leaf, bytes) or not self.leaf:
            raise ValueError("leaf must be non-empty bytes")
        if not isinstance(self.path, tuple) or len(self.path) > _MAX_PATH_LENGTH:
            raise ValueError(f"path must be a tuple of at most {_MAX_PATH_LENGTH} hashes")
        for depth, node in enumerate(self.path):
            if not isinstance(node, bytes) or len(node) != DIGEST_SIZE:
                raise ValueError(f"path hash {depth} is not {DIGEST_SIZE} bytes")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf": base64.b64encode(self.leaf).decode("ascii"),
            "path": [node.hex() for node in self.path],
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fields = _expect_keys(obj, frozenset({"index", "leaf", "path"}), "leaf opening")
        leaf_text, path_text = fields["leaf"], fields["path"]
        if not isinstance(leaf_text, str):
            raise ValueError("leaf must be a base64 string")
        try:
            leaf = base64.b64decode(leaf_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"leaf is not valid base64: {exc}") from None
        # Exactly one encoding per leaf: no missing padding, no stray bits in the last char.
        if base64.b64encode(leaf).decode("ascii") != leaf_text:
            raise ValueError("leaf is not canonical padded base64")
        if not isinstance(path_text, list) or len(path_text) > _MAX_PATH_LENGTH:
            raise ValueError(f"path must be a list of at most {_MAX_PATH_LENGTH} hashes")
        path = []
        for depth, node in enumerate(path_text):
            if not isinstance(node, str) or not _HEX_DIGEST.fullmatch(node):
                raise ValueError(f"path hash {depth} is not 64 lowercase hex characters")
            path.append(bytes.fromhex(node))
        return cls(fields["index"], leaf, tuple(path))


def _opening_json(opening: LeafOpening | None) -> dict[str, Any] | None:
    return None if opening is None else opening.to_json()


def _opening_from_json(obj: object) -> LeafOpening | None:
    return None if obj is None else LeafOpening.from_json(obj)


def _leaf_of(opening: LeafOpening | None) -> bytes | None:
    return None if opening is None else opening.leaf


@dataclass(frozen=True, slots=True)
class LayerConsistencyProof:
    """Leaf ``(layer, i)`` with the leaves it was derived from.

    ``leaf`` opens against ``root[layer]``; ``prev`` against ``root[layer]`` at ``i - 1``,
    or for ``i = 0`` against ``root[layer - 1]`` at ``leaf_count - 1`` (none for layer 0);
    ``lookback`` against ``root[layer - 1]`` (layer 0's own root for layer 0). The
    constructor checks what it can without the spec; the verifier checks the rest.
    """

    layer: int
    leaf: LeafOpening
    prev: LeafOpening | None
    lookback: LeafOpening | None

    def __post_init__(self) -> None:
        if type(self.layer) is not int or not 0 <= self.layer < MAX_LAYERS:
            raise ValueError(f"layer must be an int in [0, {MAX_LAYERS}), got {self.layer!r}")
        openings = (self.leaf, self.prev, self.lookback)
        if not isinstance(self.leaf, LeafOpening) or not all(
            opening is None or isinstance(opening, LeafOpening) for opening in openings
        ):
            raise ValueError("a consistency proof is made of leaf openings")
        index = self.leaf.index
        if self.layer == 0 and index == 0:
            if self.prev is not None:
                raise ValueError("leaf 0 of layer 0 has no prev")
            if self.lookback is not None:
                raise ValueError("leaf 0 of layer 0 comes from the seed alone: no lookback")
            return
        if self.prev is None:
            raise ValueError(f"leaf {index} of layer {self.layer} needs its prev opening")
        if index and self.prev.index != index - 1:
            raise ValueError(
                f"prev of leaf {index} must be leaf {index - 1}, got {self.prev.index}"
            )
        if self.lookback is None:
            raise ValueError(f"leaf {index} of layer {self.layer} needs its lookback opening")
        if self.layer == 0 and self.lookback.index >= index:
            raise ValueError(
                f"lookback of leaf {index} in layer 0 must be an earlier leaf, "
                f"got {self.lookback.index}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "leaf": self.leaf.to_json(),
            "prev": _opening_json(self.prev),
            "lookback": _opening_json(self.lookback),
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        keys = frozenset({"layer", "leaf", "prev", "lookback"})
        fields = _expect_keys(obj, keys, "layer consistency proof")
        return cls(
            fields["layer"],
            LeafOpening.from_json(fields["leaf"]),
            _opening_from_json(fields["prev"]),
            _opening_from_json(fields["lookback"]),
        )


def _prev_position(layer: int, index: int, leaf_count: int) -> tuple[int, int] | None:
    """Where ``prev(layer, index)`` is: the leaf before, or the end of the layer below."""
    if index:
        return layer, index - 1
    if layer:
        return layer - 1, leaf_count - 1
    return None


def prove_leaf(tree: MerkleTree, data: Buffer, leaf_size: int, index: int) -> LeafOpening:
    start = index * leaf_size
    leaf = bytes(memoryview(data)[start : start + leaf_size])
    # A prover must not submit a leaf its own commitment disowns (bitrot, wrong file).
    if leaf_hash(leaf) != tree.leaf_hash(index):
        raise ValueError(f"leaf {index} of the data does not match the tree")
    return LeafOpening(index, leaf, tuple(tree.path(index)))


def verify_leaf(
    root: bytes, leaf_count: int, leaf_size: int, opening: LeafOpening, expected_index: int
) -> bool:
    if not isinstance(opening, LeafOpening) or opening.index != expected_index:
        return False
    if len(opening.leaf) != leaf_size:
        return False
    return verify_path(leaf_hash(opening.leaf), opening.index, leaf_count, opening.path, root)


def _checked_roots(layer_roots: Sequence[bytes]) -> tuple[bytes, ...]:
    if not isinstance(layer_roots, Sequence) or not 1 <= len(layer_roots) <= MAX_LAYERS:
        raise ValueError(f"layer_roots must be a sequence of 1 to {MAX_LAYERS} roots")
    for layer, root in enumerate(layer_roots):
        _require_key(root, f"layer_roots[{layer}]")
    return tuple(layer_roots)


def cert_challenges(
    beacon: bytes,
    layer_roots: Sequence[bytes],
    miner_public_key: bytes,
    unit_index: int,
    count: int,
    leaf_count: int,
) -> list[tuple[int, int]]:
    """``count`` distinct ``(layer, index)`` pairs to check when a unit is certified.

    ``beacon`` is the randomness of the block after the one that committed
    ``layer_roots``. Draw ``k`` goes to layer ``L - 1 - k mod L``: every layer is
    checked, and the last layer, the one later challenged, gets any extra.
    """
    if not isinstance(beacon, bytes) or len(beacon) != BEACON_SIZE:
        raise ValueError(f"beacon must be {BEACON_SIZE} bytes, got {beacon!r}")
    roots = _checked_roots(layer_roots)
    _require_key(miner_public_key, "miner_public_key")
    if type(unit_index) is not int or not 0 <= unit_index <= _MAX_U64:
        raise ValueError(f"unit_index must be an int in [0, 2**64), got {unit_index!r}")
    if type(leaf_count) is not int or not 1 <= leaf_count <= MAX_LEAF_COUNT:
        raise ValueError(f"leaf_count must be in [1, 2**32], got {leaf_count!r}")
    layers = len(roots)
    if type(count) is not int or not 0 <= count <= layers * leaf_count:
        raise ValueError(
            f"count must be in [0, layers * leaf_count = {layers * leaf_count}], got {count!r}"
        )
    # Fixed-size fields and the layer count first: the input parses one way only.
    prefix = b"".join(
        (
            _CERT_PREFIX,
            beacon,
            layers.to_bytes(8, "big"),
            *roots,
            miner_public_key,
            unit_index.to_bytes(8, "big"),
        )
    )
    chosen: dict[tuple[int, int], None] = {}
    counter = 0
    while len(chosen) < count:
        layer = layers - 1 - len(chosen) % layers
        digest = hashlib.sha256(prefix + counter.to_bytes(8, "big")).digest()
        # A repeat is simply redrawn for the same layer with the next counter.
        chosen.setdefault((layer, int.from_bytes(digest[:8], "big") % leaf_count))
        counter += 1
    return list(chosen)


def _check_challenge(spec: IdleSpec, layer: int, index: int) -> None:
    if type(layer) is not int or not 0 <= layer < spec.layers:
        raise ValueError(f"layer must be in [0, {spec.layers}), got {layer!r}")
    if type(index) is not int or not 0 <= index < spec.leaf_count:
        raise ValueError(f"leaf index must be in [0, {spec.leaf_count}), got {index!r}")


def prove_certification(
    spec: IdleSpec, unit: IdleUnit, challenges: Sequence[tuple[int, int]]
) -> list[LayerConsistencyProof]:
    if (
        not isinstance(unit, IdleUnit)
        or len(unit.layers) != spec.layers
        or len(unit.data) != spec.unit_size
    ):
        raise ValueError("the unit is not an idle unit of this spec")
    size = spec.leaf_size
    trees: dict[int, MerkleTree] = {}

    def open_leaf(layer: int, index: int) -> LeafOpening:
        if layer not in trees:
            trees[layer] = MerkleTree.from_data(unit.layers[layer], size)
        return prove_leaf(trees[layer], unit.layers[layer], size, index)

    proofs = []
    for layer, index in challenges:
        _check_challenge(spec, layer, index)
        opening = open_leaf(layer, index)
        prev_at = _prev_position(layer, index, spec.leaf_count)
        prev = None if prev_at is None else open_leaf(*prev_at)
        lookback = None
        if layer or index:
            before = _leaf_of(prev) if index else None
            back_index = lookback_index(spec, unit.seed, layer, index, before)
            lookback = open_leaf(max(layer - 1, 0), back_index)
        proofs.append(LayerConsistencyProof(layer, opening, prev, lookback))
    return proofs


def _openings_in_tree(
    spec: IdleSpec,
    seed: bytes,
    roots: Sequence[bytes],
    proof: object,
    challenge: object,
) -> bool:
    """Everything about one proof except the scrypt step: shapes, paths, the look-back."""
    if not isinstance(challenge, tuple) or len(challenge) != 2:
        return False
    layer, index = challenge
    if type(layer) is not int or type(index) is not int:
        return False
    if not (0 <= layer < spec.layers and 0 <= index < spec.leaf_count):
        return False
    if not isinstance(proof, LayerConsistencyProof) or proof.layer != layer:
        return False
    count, size = spec.leaf_count, spec.leaf_size
    if not verify_leaf(roots[layer], count, size, proof.leaf, index):
        return False
    prev_at = _prev_position(layer, index, count)
    if prev_at is None:
        return proof.prev is None and proof.lookback is None
    prev_layer, prev_index = prev_at
    if proof.prev is None or not verify_leaf(
        roots[prev_layer], count, size, proof.prev, prev_index
    ):
        return False
    if proof.lookback is None:
        return False
    # Sizes are checked by now, so lookback_index cannot raise.
    before = proof.prev.leaf if index else None
    back_index = lookback_index(spec, seed, layer, index, before)
    return verify_leaf(roots[max(layer - 1, 0)], count, size, proof.lookback, back_index)


def verify_certification(
    spec: IdleSpec,
    seed: bytes,
    layer_roots: Sequence[bytes],
    proofs: Sequence[LayerConsistencyProof],
    challenges: Sequence[tuple[int, int]],
) -> bool:
    """Whether every challenged leaf is in its layer and derived correctly.

    Never raises. Every Merkle check runs before any scrypt step: they are cheap, the
    steps are not, so a bad proof costs the chain little.
    """
    if not isinstance(spec, IdleSpec) or not _is_key(seed):
        return False
    if not isinstance(layer_roots, Sequence) or len(layer_roots) != spec.layers:
        return False
    if not all(_is_key(root) for root in layer_roots):
        return False
    if not isinstance(proofs, Sequence) or not isinstance(challenges, Sequence):
        return False
    if len(proofs) != len(challenges):
        return False
    for proof, challenge in zip(proofs, challenges, strict=True):
        if not _openings_in_tree(spec, seed, layer_roots, proof, challenge):
            return False
    for proof in proofs:
        prev, back = _leaf_of(proof.prev), _leaf_of(proof.lookback)
        if proof.leaf.leaf != derive_leaf(spec, seed, proof.layer, proof.leaf.index, prev, back):
            return False
    return True
