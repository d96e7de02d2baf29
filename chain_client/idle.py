"""Idle data: the filler behind proof of idle space.

A miner fills its unused capacity with idle units. The chain must check a commitment to
a unit cheaply, and a miner that did not keep the unit must be unable to answer a
challenge on it in time.

Layout. A unit of ``unit_size`` bytes is ``leaf_count`` leaves of ``leaf_size`` bytes;
its commitment is the Merkle root of those leaves (``chain_client.merkle``)::

    seed    = sha256("deoss/idle-seed" 0x00 || miner_public_key(32) || unit_index(u64 BE)
                     || anchor_hash(32))
    leaf_0  = scrypt(seed, salt="deoss/idle-leaf" || u64 BE 0, N, r, p=1, leaf_size)
    j(i)    = u64 BE(sha256(leaf_{i-1})[:8]) mod i                        for i >= 1
    mix_i   = scrypt(sha256(seed || u64 BE i || leaf_{i-1} || leaf_j(i)),
                     salt="deoss/idle-leaf" || u64 BE i, N, r, p=1, leaf_size)
    leaf_i  = leaf_{i-1} XOR leaf_j(i) XOR mix_i

Why this shape:

- ``anchor_hash`` is a recent block hash, so no unit can be made before that block, and
  the miner's key and the unit index make every unit distinct: nothing is shared or
  precomputed across miners or units.
- Each leaf needs the one before it in full, so the only way to a leaf from nothing is to
  replay the chain from the nearest complete leaf one keeps: regeneration is sequential
  and extra cores do not shorten one unit's replay. Keeping hashes or seeds instead of
  leaves does not help: a leaf is a function of whole leaves, not of their digests.
- ``j(i)`` depends on the previous leaf's bytes, as in scrypt's ROMix, so the replay
  cannot know in advance which earlier leaves it will need and must hold all of them:
  generation needs memory the size of the unit.
- Each step costs one small scrypt (``N``, ``r``). Rebuilding a random leaf from nothing
  replays half a unit on average, so the per-leaf factor (replay time over challenge
  deadline) is the honest generation time over twice the deadline, whatever ``N`` and
  ``r``: the step cost must be chosen from the deadline. At about 1 ms a step
  (``N=1024, r=4`` on the build box) a 64 MiB unit of 8 KiB leaves takes about 10 s to
  make, which outlasts only deadlines of a few seconds. ``bench/bench_idle.py`` measures.
- The chain checks a unit without the unit: a consistency proof opens leaf ``i``, leaf
  ``i-1`` and leaf ``j(i)`` against the root and recomputes one step. Certification
  samples leaves by Fiat-Shamir over the root (``cert_sample_indices``), so the miner
  cannot choose which leaves are checked.

Limits, stated so parameters are chosen with them in mind. The factor is for a prover
that kept nothing. One that keeps part of a unit rebuilds a missing leaf from the leaves
it kept: on an 8192-leaf unit with a random half kept that takes about a dozen steps on
average, with a tenth kept about 1700, with nothing kept about 4100 (``bench_idle.py``
prints these). So a deadline catches provers that dropped nearly all of a unit, not
ones that dropped a part. Fiat-Shamir sampling can also be ground by a miner who varies
leaves it does not care about: with a fraction ``d`` of wrong leaves, ``count`` samples
pass with probability ``(1 - d) ** count`` per attempt, so ``count`` must make that
negligible even after many attempts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from chain_client.merkle import (
    DIGEST_SIZE,
    MAX_LEAF_COUNT,
    Buffer,
    MerkleTree,
    leaf_hash,
    merkle_root,
    verify_path,
)

__all__ = [
    "SCRYPT_MAXMEM",
    "IdleConsistencyProof",
    "IdleSpec",
    "LeafOpening",
    "cert_sample_indices",
    "first_leaf",
    "generate_unit",
    "idle_seed",
    "leaf_step",
    "lookback_index",
    "prove_consistency",
    "prove_leaf",
    "regenerate_leaf",
    "unit_root",
    "verify_consistency",
    "verify_leaf",
]

# Generous, so scrypt never refuses a valid spec; IdleSpec rejects specs that exceed it.
SCRYPT_MAXMEM = 256 * 1024 * 1024

_SEED_PREFIX = b"deoss/idle-seed\x00"
_LEAF_SALT = b"deoss/idle-leaf"
_CERT_PREFIX = b"deoss/idle-cert\x00"
_KEY_SIZE = 32
_MAX_U64 = 2**64 - 1
_MAX_PATH_LENGTH = (MAX_LEAF_COUNT - 1).bit_length()
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleSpec:
    unit_size: int
    leaf_size: int
    scrypt_n: int
    scrypt_r: int

    def __post_init__(self) -> None:
        for name in ("unit_size", "leaf_size", "scrypt_n", "scrypt_r"):
            value = getattr(self, name)
            if type(value) is not int:
                raise ValueError(f"IdleSpec.{name} must be an int, got {value!r}")
        if self.leaf_size < 64 or self.leaf_size % 64:
            raise ValueError(
                f"IdleSpec.leaf_size must be a positive multiple of 64, got {self.leaf_size}"
            )
        if self.unit_size < 1 or self.unit_size % self.leaf_size:
            raise ValueError(
                f"IdleSpec.unit_size must be a positive multiple of leaf_size "
                f"({self.leaf_size}), got {self.unit_size}"
            )
        if self.leaf_count > MAX_LEAF_COUNT:
            raise ValueError(f"IdleSpec.unit_size {self.unit_size} makes more than 2**32 leaves")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise ValueError(f"IdleSpec.scrypt_n must be a power of two >= 2, got {self.scrypt_n}")
        if self.scrypt_r < 1:
            raise ValueError(f"IdleSpec.scrypt_r must be >= 1, got {self.scrypt_r}")
        # OpenSSL's own limits, checked here so a bad spec fails when loaded, not mid-unit.
        if self.scrypt_n.bit_length() - 1 >= 16 * self.scrypt_r:
            raise ValueError(
                f"IdleSpec.scrypt_n must be below 2**(16 * scrypt_r), got {self.scrypt_n}"
            )
        if 128 * self.scrypt_r * (self.scrypt_n + 3) > SCRYPT_MAXMEM:
            raise ValueError(
                f"IdleSpec.scrypt_n * scrypt_r needs more than {SCRYPT_MAXMEM} bytes, "
                f"got scrypt_n={self.scrypt_n}, scrypt_r={self.scrypt_r}"
            )

    @property
    def leaf_count(self) -> int:
        return self.unit_size // self.leaf_size


def _u64(value: int, name: str) -> bytes:
    if type(value) is not int or not 0 <= value <= _MAX_U64:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return value.to_bytes(8, "big")


def _require_key(value: object, name: str) -> None:
    # SECURITY: fixed sizes keep every concatenation below unambiguous.
    if not isinstance(value, bytes) or len(value) != _KEY_SIZE:
        raise ValueError(f"{name} must be {_KEY_SIZE} bytes, got {value!r}")


def idle_seed(miner_public_key: bytes, unit_index: int, anchor_hash: bytes) -> bytes:
    _require_key(miner_public_key, "miner_public_key")
    _require_key(anchor_hash, "anchor_hash")
    encoded_index = _u64(unit_index, "unit_index")
    return hashlib.sha256(_SEED_PREFIX + miner_public_key + encoded_index + anchor_hash).digest()


def _scrypt(spec: IdleSpec, password: bytes, index: int) -> bytes:
    return hashlib.scrypt(
        password,
        salt=_LEAF_SALT + index.to_bytes(8, "big"),
        n=spec.scrypt_n,
        r=spec.scrypt_r,
        p=1,
        maxmem=SCRYPT_MAXMEM,
        dklen=spec.leaf_size,
    )


def first_leaf(spec: IdleSpec, seed: bytes) -> bytes:
    _require_key(seed, "seed")
    return _scrypt(spec, seed, 0)


def lookback_index(prev_leaf: Buffer, index: int) -> int:
    if index < 1:
        raise ValueError(f"leaf {index} has no look-back; only leaves from 1 on do")
    # The 64-bit value's modulo bias is below 2**-32 for any unit of at most 2**32 leaves.
    return int.from_bytes(hashlib.sha256(prev_leaf).digest()[:8], "big") % index


def _step(
    spec: IdleSpec, seed: bytes, index: int, prev_leaf: Buffer, lookback_leaf: Buffer
) -> bytes:
    password = hashlib.sha256(seed)
    password.update(index.to_bytes(8, "big"))
    password.update(prev_leaf)
    password.update(lookback_leaf)
    mix = _scrypt(spec, password.digest(), index)
    # XOR of whole leaves as big integers: one C-level operation instead of a byte loop.
    combined = (
        int.from_bytes(prev_leaf, "big")
        ^ int.from_bytes(lookback_leaf, "big")
        ^ int.from_bytes(mix, "big")
    )
    return combined.to_bytes(spec.leaf_size, "big")


def leaf_step(
    spec: IdleSpec, seed: bytes, index: int, prev_leaf: Buffer, lookback_leaf: Buffer
) -> bytes:
    _require_key(seed, "seed")
    if type(index) is not int or not 1 <= index < spec.leaf_count:
        raise ValueError(f"leaf index must be in [1, {spec.leaf_count}), got {index!r}")
    for name, leaf in (("prev_leaf", prev_leaf), ("lookback_leaf", lookback_leaf)):
        if memoryview(leaf).nbytes != spec.leaf_size:
            raise ValueError(f"{name} must be {spec.leaf_size} bytes")
    return _step(spec, seed, index, prev_leaf, lookback_leaf)


def _generate_prefix(spec: IdleSpec, seed: bytes, leaf_count: int) -> bytearray:
    size = spec.leaf_size
    # The look-back reaches any earlier leaf, so all of them stay in memory.
    unit = bytearray(leaf_count * size)
    prev = first_leaf(spec, seed)
    unit[:size] = prev
    with memoryview(unit) as view:
        for index in range(1, leaf_count):
            back = lookback_index(prev, index)
            prev = _step(spec, seed, index, prev, view[back * size : (back + 1) * size])
            view[index * size : (index + 1) * size] = prev
    return unit


def generate_unit(spec: IdleSpec, seed: bytes) -> bytes:
    """The whole unit. CPU-bound for seconds at network sizes: call it in a thread."""
    return bytes(_generate_prefix(spec, seed, spec.leaf_count))


def regenerate_leaf(spec: IdleSpec, seed: bytes, index: int) -> bytes:
    """Leaf ``index`` from nothing, as a prover that kept nothing must: ``index + 1`` steps."""
    if type(index) is not int or not 0 <= index < spec.leaf_count:
        raise ValueError(f"leaf index must be in [0, {spec.leaf_count}), got {index!r}")
    prefix = _generate_prefix(spec, seed, index + 1)
    return bytes(prefix[index * spec.leaf_size :])


def unit_root(spec: IdleSpec, data: Buffer) -> bytes:
    if memoryview(data).nbytes != spec.unit_size:
        raise ValueError(f"an idle unit is {spec.unit_size} bytes, got {memoryview(data).nbytes}")
    return merkle_root(data, spec.leaf_size)


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


@dataclass(frozen=True, slots=True)
class IdleConsistencyProof:
    """Leaf ``i`` with the two leaves it was derived from (none for leaf 0)."""

    leaf: LeafOpening
    prev: LeafOpening | None
    lookback: LeafOpening | None

    def __post_init__(self) -> None:
        openings = (self.leaf, self.prev, self.lookback)
        if not isinstance(self.leaf, LeafOpening) or not all(
            opening is None or isinstance(opening, LeafOpening) for opening in openings
        ):
            raise ValueError("a consistency proof is made of leaf openings")
        index = self.leaf.index
        if index == 0:
            if self.prev is not None or self.lookback is not None:
                raise ValueError("leaf 0 is derived from the seed alone: no prev or lookback")
            return
        if self.prev is None or self.lookback is None:
            raise ValueError(f"leaf {index} needs both its prev and lookback openings")
        if self.prev.index != index - 1:
            raise ValueError(
                f"prev of leaf {index} must be leaf {index - 1}, got {self.prev.index}"
            )
        if self.lookback.index >= index:
            raise ValueError(
                f"lookback of leaf {index} must be an earlier leaf, got {self.lookback.index}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf.to_json(),
            "prev": None if self.prev is None else self.prev.to_json(),
            "lookback": None if self.lookback is None else self.lookback.to_json(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fields = _expect_keys(obj, frozenset({"leaf", "prev", "lookback"}), "consistency proof")
        prev, lookback = fields["prev"], fields["lookback"]
        return cls(
            LeafOpening.from_json(fields["leaf"]),
            None if prev is None else LeafOpening.from_json(prev),
            None if lookback is None else LeafOpening.from_json(lookback),
        )


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


def prove_consistency(
    spec: IdleSpec, data: Buffer, tree: MerkleTree, index: int
) -> IdleConsistencyProof:
    if tree.leaf_count != spec.leaf_count or memoryview(data).nbytes != spec.unit_size:
        raise ValueError("the data and tree are not an idle unit of this spec")
    size = spec.leaf_size
    opening = prove_leaf(tree, data, size, index)
    if index == 0:
        return IdleConsistencyProof(opening, None, None)
    prev = prove_leaf(tree, data, size, index - 1)
    lookback = prove_leaf(tree, data, size, lookback_index(prev.leaf, index))
    return IdleConsistencyProof(opening, prev, lookback)


def verify_consistency(
    spec: IdleSpec, seed: bytes, root: bytes, proof: IdleConsistencyProof, expected_index: int
) -> bool:
    """Whether leaf ``expected_index`` is in the unit under ``root`` and derived correctly.

    Never raises. The Merkle checks run first: they are cheap, the scrypt step is not.
    """
    if not isinstance(spec, IdleSpec) or not isinstance(proof, IdleConsistencyProof):
        return False
    if not isinstance(seed, bytes) or len(seed) != _KEY_SIZE:
        return False
    count, size, opening = spec.leaf_count, spec.leaf_size, proof.leaf
    if not verify_leaf(root, count, size, opening, expected_index):
        return False
    if opening.index == 0:
        return opening.leaf == _scrypt(spec, seed, 0)
    prev, lookback = proof.prev, proof.lookback
    if prev is None or lookback is None:
        return False
    if not verify_leaf(root, count, size, prev, opening.index - 1):
        return False
    if not verify_leaf(root, count, size, lookback, lookback_index(prev.leaf, opening.index)):
        return False
    return opening.leaf == _step(spec, seed, opening.index, prev.leaf, lookback.leaf)


def cert_sample_indices(
    root: bytes, miner_public_key: bytes, unit_index: int, count: int, leaf_count: int
) -> list[int]:
    """``count`` distinct leaf indices to check when a unit is certified, in draw order.

    Fiat-Shamir: they follow from the root, so they are fixed only once the unit is.
    """
    _require_key(root, "root")
    _require_key(miner_public_key, "miner_public_key")
    prefix = _CERT_PREFIX + root + miner_public_key + _u64(unit_index, "unit_index")
    if type(leaf_count) is not int or not 1 <= leaf_count <= MAX_LEAF_COUNT:
        raise ValueError(f"leaf_count must be in [1, 2**32], got {leaf_count!r}")
    if type(count) is not int or not 0 <= count <= leaf_count:
        raise ValueError(f"count must be in [0, leaf_count={leaf_count}], got {count!r}")
    chosen: dict[int, None] = {}
    counter = 0
    while len(chosen) < count:
        digest = hashlib.sha256(prefix + counter.to_bytes(8, "big")).digest()
        chosen.setdefault(int.from_bytes(digest[:8], "big") % leaf_count)
        counter += 1
    return list(chosen)
