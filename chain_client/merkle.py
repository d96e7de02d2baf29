"""SHA-256 Merkle trees: fragment ids, segment ids, file ids and leaf proofs.

Every role computes these and the chain verifies them, so the layout is part of the
protocol::

    leaf_hash(leaf)       = sha256(0x00 || leaf)
    node_hash(left, right) = sha256(0x01 || left || right)

- Data is cut into ``leaf_size`` leaves; only the last one may be short. Empty data has
  no root.
- A level with an odd number of nodes pairs its last node with itself,
  ``parent = node_hash(x, x)``, as CESS does. One hash is its own root.
- A Merkle path lists the sibling of each node from the leaf up. Where the node was
  paired with itself its sibling is the node itself. A tree of ``n`` leaves has paths of
  exactly ``ceil(log2 n)`` hashes; ``n`` is at most 2**32.
- ``segment_id = sha256("deoss/segment" || 0x00 || fragment_id_0 || ... )`` over the
  32-byte fragment ids in order; ``file_id`` is the lowercase hex root over the segment
  ids.

Self-pairing means a root does not commit to its leaf count: the leaves ``a b c`` and
``a b c c`` have the same root. So a verifier always takes the leaf count from what it
already trusts (the fragment size recorded on chain, the idle unit size), never from the
prover; ``verify_path`` takes it as an argument for that reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeAlias

__all__ = [
    "DIGEST_SIZE",
    "MAX_LEAF_COUNT",
    "Buffer",
    "MerkleTree",
    "file_id",
    "leaf_hash",
    "leaf_hashes",
    "merkle_path",
    "merkle_root",
    "node_hash",
    "root_of_hashes",
    "segment_id",
    "verify_path",
]

DIGEST_SIZE = 32
MAX_LEAF_COUNT = 2**32

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_SEGMENT_PREFIX = b"deoss/segment\x00"

Buffer: TypeAlias = bytes | bytearray | memoryview


def leaf_hash(leaf: Buffer) -> bytes:
    digest = hashlib.sha256(_LEAF_PREFIX)
    digest.update(leaf)
    return digest.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def leaf_hashes(data: Buffer, leaf_size: int) -> list[bytes]:
    if leaf_size < 1:
        raise ValueError(f"leaf_size must be positive, got {leaf_size}")
    view = memoryview(data).cast("B")
    if not view.nbytes:
        raise ValueError("cannot hash empty data: it has no Merkle root")
    # Slicing a memoryview copies nothing, so hashing a 64 MiB unit allocates only digests.
    return [leaf_hash(view[start : start + leaf_size]) for start in range(0, len(view), leaf_size)]


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if not hashes:
        raise ValueError("a Merkle tree needs at least one leaf")
    if len(hashes) > MAX_LEAF_COUNT:
        raise ValueError(f"a Merkle tree holds at most 2**32 leaves, got {len(hashes)}")
    for position, digest in enumerate(hashes):
        if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
            raise ValueError(f"hash {position} is not {DIGEST_SIZE} bytes: {digest!r}")


def _parent_level(level: Sequence[bytes]) -> list[bytes]:
    last = len(level) - 1
    parents = [node_hash(level[pos], level[pos + 1]) for pos in range(0, last, 2)]
    if last % 2 == 0:
        parents.append(node_hash(level[last], level[last]))
    return parents


def root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    _check_hashes(hashes)
    level: Sequence[bytes] = hashes
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def merkle_root(data: Buffer, leaf_size: int) -> bytes:
    return root_of_hashes(leaf_hashes(data, leaf_size))


class MerkleTree:
    """All levels of one tree, so a prover answers many challenges without rebuilding."""

    __slots__ = ("_levels",)

    def __init__(self, hashes: Sequence[bytes]) -> None:
        _check_hashes(hashes)
        levels = [list(hashes)]
        while len(levels[-1]) > 1:
            levels.append(_parent_level(levels[-1]))
        self._levels: tuple[list[bytes], ...] = tuple(levels)

    @classmethod
    def from_data(cls, data: Buffer, leaf_size: int) -> MerkleTree:
        return cls(leaf_hashes(data, leaf_size))

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    @property
    def leaf_count(self) -> int:
        return len(self._levels[0])

    def leaf_hash(self, index: int) -> bytes:
        return self._levels[0][self._checked_index(index)]

    def path(self, index: int) -> list[bytes]:
        position = self._checked_index(index)
        siblings = []
        for level in self._levels[:-1]:
            sibling = position ^ 1
            # The last node of an odd level is its own sibling (it was paired with itself).
            siblings.append(level[sibling] if sibling < len(level) else level[position])
            position //= 2
        return siblings

    def _checked_index(self, index: int) -> int:
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf index {index} out of range for {self.leaf_count} leaves")
        return index

    def __repr__(self) -> str:
        return f"MerkleTree(leaf_count={self.leaf_count}, root={self.root.hex()})"


def merkle_path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    return MerkleTree(hashes).path(index)


def _is_digest(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_SIZE


def verify_path(
    leaf_digest: bytes, index: int, leaf_count: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``path`` leads from leaf ``index`` of a ``leaf_count``-leaf tree to ``root``.

    Never raises: anything malformed is simply not a valid proof.
    """
    # Exact int checks: bool is an int, and floats would make the index arithmetic lie.
    if type(index) is not int or type(leaf_count) is not int:
        return False
    if not (1 <= leaf_count <= MAX_LEAF_COUNT and 0 <= index < leaf_count):
        return False
    if not (_is_digest(leaf_digest) and _is_digest(root)):
        return False
    if not isinstance(path, Sequence) or len(path) != (leaf_count - 1).bit_length():
        return False
    node, position, width = leaf_digest, index, leaf_count
    for sibling in path:
        if not _is_digest(sibling):
            return False
        if position % 2:
            node = node_hash(sibling, node)
        elif position + 1 < width:
            node = node_hash(node, sibling)
        elif sibling == node:
            node = node_hash(node, node)
        else:
            # SECURITY: a self-paired node must carry itself as sibling; accepting any
            # other hash would let one leaf verify under two different paths.
            return False
        position, width = position // 2, (width + 1) // 2
    return node == root


def segment_id(fragment_ids: Sequence[bytes]) -> bytes:
    if not fragment_ids:
        raise ValueError("a segment has at least one fragment")
    for position, fragment in enumerate(fragment_ids):
        # Fixed-size ids keep the concatenation unambiguous.
        if not isinstance(fragment, bytes) or len(fragment) != DIGEST_SIZE:
            raise ValueError(f"fragment id {position} is not {DIGEST_SIZE} bytes: {fragment!r}")
    return hashlib.sha256(_SEGMENT_PREFIX + b"".join(fragment_ids)).digest()


def file_id(segment_ids: Sequence[bytes]) -> str:
    return root_of_hashes(segment_ids).hex()
