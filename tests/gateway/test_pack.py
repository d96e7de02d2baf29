"""The pack format (gateway.pack, docs/packing.md §2): random members round-trip through
packing and ranged member reads from any k fragments, every byte identical."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain_client.merkle import merkle_root
from chain_client.params import KIB, NetworkParams, dev_params
from gateway.codec import Buffer, DecryptionFailed, Layout, decode_stripe, verify_block
from gateway.pack import (
    SealedMember,
    encode_pack,
    member_share,
    open_member,
    pack_layout,
    plan_member_read,
    seal_member,
)
from gateway.records import member_id

PARAMS = dev_params(data_shards=2, total_shards=4, pack_block_size=8 * KIB, pack_size=64 * KIB)
LAYOUT = pack_layout(PARAMS)


def _fill(sizes: list[int], rng: random.Random) -> list[tuple[bytes, SealedMember]]:
    """Members of these sizes, as many as fit one pack."""
    members, used = [], 0
    for size in sizes:
        plain = rng.randbytes(size)
        sealed = seal_member(LAYOUT, plain)
        if used + sealed.cipher_size > LAYOUT.segment_size:
            break
        used += sealed.cipher_size
        members.append((plain, sealed))
    return members


def _read(
    layout: Layout,
    sealed: SealedMember,
    offset: int,
    pack_cipher: int,
    blocks: tuple[tuple[Buffer, ...], ...],
    roots: tuple[tuple[bytes, ...], ...],
    fragments: list[int],
    start: int,
    end: int,
) -> bytes:
    read = plan_member_read(
        layout,
        offset=offset,
        plain_size=sealed.plain_size,
        pack_cipher_size=pack_cipher,
        start=start,
        end=end,
    )
    stripes = []
    for piece in read.stripes:
        chosen = {}
        for i in fragments:
            block = bytes(blocks[i][piece.stripe])
            assert len(block) == piece.block_len
            assert verify_block(
                block,
                piece.stripe,
                piece.stripe_count,
                layout.leaves_per_block,
                layout.leaf_size,
                roots[i][piece.stripe],
            )
            chosen[i] = block
        stripes.append(decode_stripe(layout, chosen, piece.block_len, piece.cipher_len))
    return open_member(
        layout,
        read,
        stripes,
        algorithm=sealed.algorithm,
        dek=sealed.dek,
        unit_id=sealed.unit_id,
    )


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 20 * KIB), min_size=1, max_size=12),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_members_round_trip_through_a_pack(
    sizes: list[int], seed: int, data: st.DataObject
) -> None:
    rng = random.Random(seed)
    members = _fill(sizes, rng)
    segment, offsets = encode_pack(LAYOUT, [sealed.ciphertext for _, sealed in members])
    pack_cipher = sum(sealed.cipher_size for _, sealed in members)
    assert segment.cipher_size == pack_cipher
    for i, fragment in enumerate(segment.fragments):  # the ids the chain recomputes
        assert merkle_root(fragment, LAYOUT.leaf_size).hex() == segment.fragment_ids[i]
    stored = segment.fragment_size * LAYOUT.n
    shares = [member_share(LAYOUT, sealed.cipher_size) for _, sealed in members]
    assert stored <= sum(shares) <= stored + LAYOUT.n * (len(members) - 1)  # the chain's bound
    number = data.draw(st.integers(0, len(members) - 1))
    plain, sealed = members[number]
    start = data.draw(st.integers(0, len(plain)))
    end = data.draw(st.integers(start, len(plain)))
    fragments = sorted(data.draw(st.permutations(range(LAYOUT.n)))[: LAYOUT.k])
    got = _read(
        LAYOUT,
        sealed,
        offsets[number],
        pack_cipher,
        segment.blocks,
        segment.block_roots,
        fragments,
        start,
        end,
    )
    assert got == plain[start:end]


def test_a_member_moved_to_another_pack_reads_the_same() -> None:
    """Repacking moves ciphertext, never keys: the member opens at its new offset."""
    rng = random.Random(7)
    first = _fill([3000, 5000, 700], rng)
    _, offsets = encode_pack(LAYOUT, [s.ciphertext for _, s in first])
    moved = first[1]
    other = seal_member(LAYOUT, rng.randbytes(9000))
    again, new_offsets = encode_pack(LAYOUT, [other.ciphertext, moved[1].ciphertext])
    size = other.cipher_size + moved[1].cipher_size
    got = _read(
        LAYOUT,
        moved[1],
        new_offsets[1],
        size,
        again.blocks,
        again.block_roots,
        [2, 3],
        0,
        len(moved[0]),
    )
    assert got == moved[0]
    assert offsets[1] != new_offsets[1]


def test_a_member_read_at_the_wrong_offset_fails_authentication() -> None:
    rng = random.Random(3)
    members = _fill([4000, 4000], rng)
    segment, offsets = encode_pack(LAYOUT, [s.ciphertext for _, s in members])
    size = sum(s.cipher_size for _, s in members)
    with pytest.raises(DecryptionFailed):
        _read(
            LAYOUT,
            members[1][1],
            offsets[0],  # the other member's bytes
            size,
            segment.blocks,
            segment.block_roots,
            [0, 1],
            0,
            100,
        )


def test_pack_layout_and_limits_follow_the_chain_parameters() -> None:
    real = pack_layout(NetworkParams())
    assert (real.block_size, real.stripe_size, real.segment_size) == (8 * KIB, 32 * KIB, 1 << 20)
    small = NetworkParams(
        segment_size=128 * KIB, fragment_size=32 * KIB, stripe_block_size=32 * KIB
    )
    assert small.pack_capacity == 128 * KIB  # at most one segment
    assert small.pack_limit <= small.pack_capacity - 16
    assert small.pack_limit + 16 * pack_layout(small).chunk_count(small.pack_limit) <= (
        small.pack_capacity
    )
    with pytest.raises(ValueError, match="a pack holds"):
        encode_pack(LAYOUT, [bytes(LAYOUT.segment_size + 1)])
    assert member_id("ab" * 32, 1) != member_id("ab" * 32, 2)
    assert len(member_id("ab" * 32, 0)) == 64
