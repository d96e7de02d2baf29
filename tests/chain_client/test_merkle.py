import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain_client.merkle import (
    MAX_LEAF_COUNT,
    MerkleTree,
    file_id,
    leaf_hash,
    leaf_hashes,
    merkle_path,
    merkle_root,
    node_hash,
    root_of_hashes,
    segment_id,
    verify_path,
)

# 256 bytes plus "deoss", 64-byte leaves: five leaves, the last one short, so both odd
# levels (5 -> 3 -> 2 -> 1) pair a node with itself. Pinned once from this module and
# checked against a tree written out by hand with hashlib:
#   l = [sha256(b"\0" + leaf)], n(a, b) = sha256(b"\1" + a + b)
#   root = n(n(n(l0, l1), n(l2, l3)), n(n(l4, l4), n(l4, l4)))
KNOWN_DATA = bytes(range(256)) + b"deoss"
KNOWN_ROOT = "96bd7693c961d386225e9f4edde11ac684525995c8d7bc34ceb4d4a659c50fdd"
# file_id over sha256(b"a"), sha256(b"b"), sha256(b"c"), pinned the same way.
KNOWN_FILE_ID = "7d49b39582357c19ef3691b619e56418c7a9da4c592cfc980e76ad6c3f3b7884"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def random_data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def flip_bit(value: bytes, position: int = 0) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= 1
    return bytes(changed)


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"abc") == sha256(b"\x00abc")
    left, right = sha256(b"l"), sha256(b"r")
    assert node_hash(left, right) == sha256(b"\x01" + left + right)
    # A leaf holding two hashes must not hash like the node over them.
    assert leaf_hash(left + right) != node_hash(left, right)


def test_known_root() -> None:
    assert merkle_root(KNOWN_DATA, 64).hex() == KNOWN_ROOT
    assert merkle_root(memoryview(KNOWN_DATA), 64).hex() == KNOWN_ROOT
    assert merkle_root(bytearray(KNOWN_DATA), 64).hex() == KNOWN_ROOT


def test_known_root_by_hand() -> None:
    leaves = [sha256(b"\x00" + KNOWN_DATA[i : i + 64]) for i in range(0, len(KNOWN_DATA), 64)]
    assert len(leaves) == 5
    odd = node_hash(leaves[4], leaves[4])
    expected = node_hash(
        node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3])),
        node_hash(odd, odd),
    )
    assert expected.hex() == KNOWN_ROOT


def test_leaf_hashes_cut_with_short_last_leaf() -> None:
    hashes = leaf_hashes(b"x" * 130, 64)
    assert hashes == [leaf_hash(b"x" * 64), leaf_hash(b"x" * 64), leaf_hash(b"xx")]


@pytest.mark.parametrize("leaf_size", [0, -1])
def test_leaf_hashes_rejects_bad_leaf_size(leaf_size: int) -> None:
    with pytest.raises(ValueError, match="leaf_size"):
        leaf_hashes(b"data", leaf_size)


def test_empty_data_has_no_root() -> None:
    with pytest.raises(ValueError, match="empty"):
        leaf_hashes(b"", 64)
    with pytest.raises(ValueError, match="empty"):
        merkle_root(memoryview(b""), 64)
    with pytest.raises(ValueError, match="at least one"):
        root_of_hashes([])
    with pytest.raises(ValueError, match="at least one"):
        MerkleTree([])


def test_single_hash_is_its_own_root() -> None:
    digest = sha256(b"only")
    tree = MerkleTree([digest])
    assert root_of_hashes([digest]) == tree.root == digest
    assert tree.path(0) == []
    assert verify_path(digest, 0, 1, [], digest)


def test_hashes_must_be_digests() -> None:
    with pytest.raises(ValueError, match="hash 1"):
        root_of_hashes([sha256(b"a"), b"short"])
    with pytest.raises(ValueError, match="hash 0"):
        MerkleTree(["00" * 32])  # type: ignore[list-item]


def test_odd_node_is_paired_with_itself() -> None:
    a, b, c = sha256(b"a"), sha256(b"b"), sha256(b"c")
    assert root_of_hashes([a, b, c]) == node_hash(node_hash(a, b), node_hash(c, c))
    assert merkle_path([a, b, c], 2) == [c, node_hash(a, b)]


def test_root_does_not_commit_to_the_leaf_count() -> None:
    # Pinned on purpose: with self-pairing, a b c and a b c c share a root, which is why
    # verifiers take leaf_count from what they trust and never from the prover.
    a, b, c = sha256(b"a"), sha256(b"b"), sha256(b"c")
    assert root_of_hashes([a, b, c]) == root_of_hashes([a, b, c, c])


def test_path_index_out_of_range() -> None:
    tree = MerkleTree([sha256(b"a"), sha256(b"b")])
    for index in (-1, 2):
        with pytest.raises(IndexError):
            tree.path(index)


def test_tree_repr_names_count_and_root() -> None:
    tree = MerkleTree([sha256(b"a"), sha256(b"b"), sha256(b"c")])
    assert repr(tree) == f"MerkleTree(leaf_count=3, root={tree.root.hex()})"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    leaf_size=st.sampled_from([64, 96, 128]),
    leaf_count=st.integers(1, 300),
    short_tail=st.integers(0, 63),
)
def test_every_path_verifies(seed: int, leaf_size: int, leaf_count: int, short_tail: int) -> None:
    size = leaf_count * leaf_size - short_tail
    data = random_data(seed, size)
    hashes = leaf_hashes(data, leaf_size)
    assert len(hashes) == leaf_count
    tree = MerkleTree(hashes)
    assert tree.root == merkle_root(data, leaf_size) == root_of_hashes(hashes)
    assert tree.leaf_count == leaf_count
    depth = (leaf_count - 1).bit_length()
    for index, digest in enumerate(hashes):
        path = tree.path(index)
        assert len(path) == depth
        assert verify_path(digest, index, leaf_count, path, tree.root)
        assert tree.leaf_hash(index) == digest


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    leaf_count=st.integers(2, 300),
    pick=st.integers(0, 2**32),
    other=st.integers(0, 2**32),
)
def test_tampering_fails(seed: int, leaf_count: int, pick: int, other: int) -> None:
    hashes = leaf_hashes(random_data(seed, leaf_count * 64), 64)
    tree = MerkleTree(hashes)
    root = tree.root
    index = pick % leaf_count
    digest, path = hashes[index], tree.path(index)
    assert verify_path(digest, index, leaf_count, path, root)

    assert not verify_path(flip_bit(digest, other), index, leaf_count, path, root)
    assert not verify_path(digest, index, leaf_count, path, flip_bit(root, other))
    wrong_index = (index + 1 + other % (leaf_count - 1)) % leaf_count
    assert not verify_path(digest, wrong_index, leaf_count, path, root)
    level = other % len(path)
    tampered = [*path]
    tampered[level] = flip_bit(tampered[level], other)
    assert not verify_path(digest, index, leaf_count, tampered, root)
    assert not verify_path(digest, index, leaf_count, path[:-1], root)
    assert not verify_path(digest, index, leaf_count, [*path, root], root)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), exponent=st.integers(1, 7))
def test_self_paired_sibling_must_be_the_node_itself(seed: int, exponent: int) -> None:
    # The last leaf of an odd count is paired with itself at the first level.
    leaf_count = 2**exponent + 1
    hashes = leaf_hashes(random_data(seed, leaf_count * 64), 64)
    tree = MerkleTree(hashes)
    index = leaf_count - 1
    path = tree.path(index)
    assert path[0] == hashes[index]
    forged = [sha256(b"anything"), *path[1:]]
    assert not verify_path(hashes[index], index, leaf_count, forged, tree.root)


MALFORMED_CALLS: list[tuple[Any, Any, Any, Any, Any]] = [
    (b"short", 0, 2, [bytes(32)], bytes(32)),
    (bytes(32), 0, 2, [bytes(32)], b"short"),
    ("00" * 32, 0, 2, [bytes(32)], bytes(32)),
    (bytes(32), -1, 2, [bytes(32)], bytes(32)),
    (bytes(32), 2, 2, [bytes(32)], bytes(32)),
    (bytes(32), True, 2, [bytes(32)], bytes(32)),
    (bytes(32), 0.0, 2, [bytes(32)], bytes(32)),
    (bytes(32), "0", 2, [bytes(32)], bytes(32)),
    (bytes(32), 0, 0, [], bytes(32)),
    (bytes(32), 0, MAX_LEAF_COUNT + 1, [bytes(32)] * 33, bytes(32)),
    (bytes(32), 0, None, [bytes(32)], bytes(32)),
    (bytes(32), 0, 2, None, bytes(32)),
    (bytes(32), 0, 2, 42, bytes(32)),
    (bytes(32), 0, 2, "x" * 32, bytes(32)),
    (bytes(32), 0, 2, bytes(32), bytes(32)),
    (bytes(32), 0, 2, [b"short"], bytes(32)),
    (bytes(32), 0, 2, [None], bytes(32)),
    (bytes(32), 0, 2, [bytearray(32)], bytes(32)),
    (bytes(32), 0, 2, [], bytes(32)),
    (bytes(32), 0, 2, [bytes(32), bytes(32)], bytes(32)),
]


@pytest.mark.parametrize(("digest", "index", "leaf_count", "path", "root"), MALFORMED_CALLS)
def test_verify_path_rejects_malformed_input(
    digest: Any, index: Any, leaf_count: Any, path: Any, root: Any
) -> None:
    assert verify_path(digest, index, leaf_count, path, root) is False


def test_largest_leaf_count_is_accepted() -> None:
    # A path at the 2**32 bound has 32 levels; the check runs without building the tree.
    digest = sha256(b"leaf")
    path = [sha256(bytes([level])) for level in range(32)]
    node = digest
    for sibling in path:
        node = node_hash(node, sibling)
    assert verify_path(digest, 0, MAX_LEAF_COUNT, path, node)
    assert not verify_path(digest, 0, MAX_LEAF_COUNT + 1, path, node)


def test_segment_id_hashes_fragment_ids_in_order() -> None:
    first, second = sha256(b"fragment 0"), sha256(b"fragment 1")
    assert segment_id([first, second]) == sha256(b"deoss/segment\x00" + first + second)
    assert segment_id([first, second]) != segment_id([second, first])


@pytest.mark.parametrize("fragment_ids", [[], [b"short"], [bytes(32), bytes(33)]])
def test_segment_id_rejects_bad_fragment_ids(fragment_ids: list[bytes]) -> None:
    with pytest.raises(ValueError, match="fragment"):
        segment_id(fragment_ids)


def test_file_id_is_lowercase_hex_root() -> None:
    segments = [sha256(b"a"), sha256(b"b"), sha256(b"c")]
    fid = file_id(segments)
    assert fid == KNOWN_FILE_ID
    assert fid == root_of_hashes(segments).hex()
    assert len(fid) == 64
    assert fid == fid.lower()
    with pytest.raises(ValueError, match="at least one"):
        file_id([])
