import hashlib
import random
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain_client.merkle import file_id, leaf_hashes, merkle_root, node_hash
from chain_client.params import KIB, MIB, NetworkParams, dev_params
from gateway.codec import (
    AES_GCM_AVAILABLE,
    ALGORITHMS,
    TAG_SIZE,
    Algorithm,
    DecryptionFailed,
    EncodedSegment,
    Layout,
    NotEnoughBlocks,
    StripeSlice,
    UnitEncoder,
    block_roots,
    decode_stripe,
    decrypt_stripe,
    default_algorithm,
    fid_of,
    measure_codec,
    open_chunk,
    plan_range,
    rebuild_fragments,
    seal_chunk,
    verify_block,
)

# AES-GCM needs AES-NI; XChaCha20-Poly1305 runs everywhere.
USABLE_ALGORITHMS: list[Algorithm] = [
    a for a in ALGORITHMS if a != "aes256gcm" or AES_GCM_AVAILABLE
]
SMALL = Layout(k=3, n=5, block_size=64, leaf_size=32, stripes_per_segment=2)


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    k = draw(st.integers(2, 4))
    leaf_size = draw(st.sampled_from([32, 64]))
    return Layout(
        k=k,
        n=draw(st.integers(k, 6)),
        block_size=leaf_size * draw(st.sampled_from([2, 4, 8])),
        leaf_size=leaf_size,
        stripes_per_segment=draw(st.integers(1, 3)),
    )


def boundary_sizes(layout: Layout) -> list[int]:
    chunk, segment = layout.chunk_plain, layout.stripes_per_segment * layout.chunk_plain
    sizes = [0, 1, chunk - 1, chunk, chunk + 1, segment - 1, segment, segment + 1]
    return sorted({*sizes, 2 * segment + chunk // 2, 3 * segment})


def encode(
    layout: Layout,
    data: bytes,
    *,
    rng: random.Random | None = None,
    dek: bytes | None = None,
    unit_id: bytes | None = None,
    algorithm: Algorithm | None = None,
) -> tuple[UnitEncoder, list[EncodedSegment]]:
    """Feeds ``data`` in random pieces (as a request body arrives), checking that each
    segment comes out as soon as its chunks are known not to be the last, and no sooner."""
    rng = rng or random.Random(0)
    encoder = UnitEncoder(layout, dek=dek, unit_id=unit_id, algorithm=algorithm)
    segments: list[EncodedSegment] = []
    pos = 0
    while pos < len(data):
        take = rng.randint(1, 2 * layout.stripe_size)
        segments += encoder.feed(data[pos : pos + take])
        pos = min(pos + take, len(data))
        sealed_chunks = (pos - 1) // layout.chunk_plain
        assert len(segments) == sealed_chunks // layout.stripes_per_segment
    segments += encoder.finish()
    assert [s.index for s in segments] == list(range(len(segments)))
    return encoder, segments


def block(segment: EncodedSegment, fragment: int, piece: StripeSlice) -> bytes:
    # What an HTTP Range request on the miner returns.
    return segment.fragments[fragment][piece.block_offset : piece.block_offset + piece.block_len]


def read(
    layout: Layout,
    encoder: UnitEncoder,
    segments: list[EncodedSegment],
    start: int,
    end: int,
    fragments: tuple[int, ...],
    *,
    plain_size: int | None = None,
) -> bytes:
    out = []
    size = encoder.plain_size if plain_size is None else plain_size
    for piece in plan_range(layout, size, start, end):
        segment = segments[piece.segment]
        blocks = {i: block(segment, i, piece) for i in fragments}
        cipher = decode_stripe(layout, blocks, piece.block_len, piece.cipher_len)
        out.append(decrypt_stripe(encoder.algorithm, encoder.dek, encoder.unit_id, piece, cipher))
    return b"".join(out)


def tree_levels(data: bytes, leaf_size: int) -> list[list[bytes]]:
    # Written out independently of gateway.codec: the whole tree, level by level.
    levels = [leaf_hashes(data, leaf_size)]
    while len(levels[-1]) > 1:
        level = levels[-1] + ([levels[-1][-1]] if len(levels[-1]) % 2 else [])
        levels.append([node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)])
    return levels


def test_layout_from_params() -> None:
    layout = Layout.from_params(NetworkParams())
    assert (layout.k, layout.n, layout.block_size, layout.leaf_size) == (4, 12, 256 * KIB, 8 * KIB)
    assert layout.stripes_per_segment == 32
    assert layout.stripe_size == MIB
    assert layout.chunk_plain == MIB - 16
    assert layout.segment_size == 32 * MIB
    assert layout.leaves_per_block == 32
    assert Layout.from_params(NetworkParams(), total_shards=8).n == 8
    dev = Layout.from_params(dev_params())
    assert (dev.k, dev.n, dev.stripes_per_segment) == (2, 4, 4)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"k": 0}, "k"),
        ({"n": 2}, "n"),
        ({"n": 256}, "n"),
        ({"block_size": 96}, "block_size"),
        ({"block_size": 96, "leaf_size": 32}, "block_size"),
        ({"block_size": 16}, "block_size"),
        ({"leaf_size": 0}, "leaf_size"),
        ({"stripes_per_segment": 0}, "stripes_per_segment"),
        ({"k": 1, "n": 1, "block_size": 16, "leaf_size": 16}, "block_size"),
    ],
)
def test_layout_rejects(changes: dict[str, int], key: str) -> None:
    values = {"k": 3, "n": 5, "block_size": 64, "leaf_size": 32, "stripes_per_segment": 2}
    with pytest.raises(ValueError, match=f"layout: {key}:"):
        Layout(**{**values, **changes})


@given(layouts(), st.data())
def test_round_trip_at_boundaries(layout: Layout, data: st.DataObject) -> None:
    size = data.draw(st.sampled_from(boundary_sizes(layout)), label="size")
    plaintext = random.Random(size).randbytes(size)
    algorithm = data.draw(st.sampled_from(USABLE_ALGORITHMS), label="algorithm")
    encoder, segments = encode(
        layout, plaintext, rng=random.Random(data.draw(st.integers(0, 99))), algorithm=algorithm
    )
    assert encoder.algorithm == algorithm
    assert encoder.plain_size == size
    assert encoder.md5 == hashlib.md5(plaintext).hexdigest()
    assert encoder.chunk_count == layout.chunk_count(size) == max(1, -(-size // layout.chunk_plain))
    assert encoder.cipher_size == layout.cipher_size(size) == sum(s.cipher_size for s in segments)
    assert len(segments) == layout.segment_count(size)
    assert encoder.segment_ids == [s.segment_id for s in segments]
    assert layout.stored_size(size) == layout.n * sum(s.fragment_size for s in segments)
    for segment in segments:
        assert len(segment.fragments) == layout.n
        assert {len(f) for f in segment.fragments} == {layout.fragment_size(size, segment.index)}
        assert segment.stripe_count == layout.stripe_count(size, segment.index)
    # Every k-subset of fragments rebuilds the unit; the systematic one needs no decoding.
    for subset in combinations(range(layout.n), layout.k):
        assert read(layout, encoder, segments, 0, size, subset) == plaintext


@pytest.mark.parametrize("algorithm", USABLE_ALGORITHMS)
def test_round_trip_default_layout_small_object(algorithm: Algorithm) -> None:
    # A 1 KiB object costs n blocks of ceil((1024 + 16) / k) bytes, not a 32 MiB segment.
    layout = Layout.from_params(NetworkParams())
    plaintext = random.Random(1).randbytes(KIB)
    encoder, segments = encode(layout, plaintext, algorithm=algorithm)
    [segment] = segments
    assert segment.fragment_size == segment.last_block_size == (KIB + TAG_SIZE) // 4
    assert segment.stripe_count == 1
    assert read(layout, encoder, segments, 0, KIB, (4, 7, 9, 11)) == plaintext


def test_empty_unit_is_one_empty_chunk() -> None:
    encoder, [segment] = encode(SMALL, b"")
    assert encoder.chunk_count == 1
    assert encoder.cipher_size == TAG_SIZE
    assert segment.fragment_size == -(-TAG_SIZE // SMALL.k)
    assert plan_range(SMALL, 0, 0, 0) == []
    cipher = decode_stripe(
        SMALL,
        {0: segment.fragments[0], 1: segment.fragments[1], 4: segment.fragments[4]},
        segment.fragment_size,
        TAG_SIZE,
    )
    assert open_chunk(encoder.algorithm, encoder.dek, encoder.unit_id, 0, True, cipher) == b""


def test_full_last_chunk_gets_no_extra_empty_chunk() -> None:
    plaintext = bytes(2 * SMALL.chunk_plain)
    encoder = UnitEncoder(SMALL)
    # Fed exactly a chunk at a time: the encoder must hold the second one back until
    # finish() says it is the last.
    assert encoder.feed(plaintext[: SMALL.chunk_plain]) == []
    assert encoder.feed(plaintext[SMALL.chunk_plain :]) == []
    [segment] = encoder.finish()
    assert encoder.chunk_count == 2
    assert segment.last_block_size == SMALL.block_size
    assert read(SMALL, encoder, [segment], 0, len(plaintext), (2, 3, 4)) == plaintext


def test_feed_after_finish_is_refused() -> None:
    encoder = UnitEncoder(SMALL)
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.feed(b"x")
    with pytest.raises(RuntimeError):
        encoder.finish()


@given(layouts(), st.integers(0, 2000), st.data())
def test_ranged_reads_match_the_slice(layout: Layout, size: int, data: st.DataObject) -> None:
    plaintext = random.Random(size).randbytes(size)
    encoder, segments = encode(layout, plaintext)
    start = data.draw(st.integers(0, size), label="start")
    end = data.draw(st.integers(start, size), label="end")
    subset = tuple(sorted(data.draw(st.permutations(range(layout.n)))[: layout.k]))
    assert read(layout, encoder, segments, start, end, subset) == plaintext[start:end]
    # Only the chunks that overlap the range are fetched and decrypted.
    plan = plan_range(layout, size, start, end)
    wanted = set(range(start // layout.chunk_plain, -(-end // layout.chunk_plain)))
    assert [piece.chunk for piece in plan] == sorted(wanted)


def test_plan_range_rejects_ranges_outside_the_unit() -> None:
    for start, end in [(-1, 3), (5, 4), (0, 101)]:
        with pytest.raises(ValueError, match="range"):
            plan_range(SMALL, 100, start, end)


@given(layouts(), st.integers(0, 2000))
def test_block_roots_are_the_fragment_tree_nodes(layout: Layout, size: int) -> None:
    _, segments = encode(layout, random.Random(size).randbytes(size))
    height = (layout.leaves_per_block - 1).bit_length()
    for segment in segments:
        for fragment, fragment_id, roots in zip(
            segment.fragments, segment.fragment_ids, segment.block_roots, strict=True
        ):
            assert merkle_root(fragment, layout.leaf_size).hex() == fragment_id
            levels = tree_levels(fragment, layout.leaf_size)
            expected = levels[min(height, len(levels) - 1)]
            assert list(roots) == expected
            assert len(roots) == segment.stripe_count
            # What recovery re-derives from a fetched fragment is the same.
            assert block_roots(fragment, segment.stripe_count, layout) == list(roots)


@given(layouts(), st.integers(0, 2000), st.randoms(use_true_random=False))
def test_every_block_verifies_and_a_flipped_byte_does_not(
    layout: Layout, size: int, rng: random.Random
) -> None:
    _, segments = encode(layout, random.Random(size).randbytes(size))
    lpb, leaf = layout.leaves_per_block, layout.leaf_size
    for segment in segments:
        count = segment.stripe_count
        for stripe in range(count):
            offset = stripe * layout.block_size
            length = segment.last_block_size if stripe == count - 1 else layout.block_size
            for i in range(layout.n):
                data = segment.fragments[i][offset : offset + length]
                assert len(data) == length
                root = segment.block_roots[i][stripe]
                assert verify_block(data, stripe, count, lpb, leaf, root)
                flipped = bytearray(data)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                assert not verify_block(flipped, stripe, count, lpb, leaf, root)
                other = segment.block_roots[(i + 1) % layout.n][stripe]
                if other != root:
                    assert not verify_block(data, stripe, count, lpb, leaf, other)


def test_verify_block_rejects_malformed_arguments() -> None:
    layout = SMALL
    _, [segment, *_] = encode(layout, bytes(layout.segment_size))
    data, root = segment.fragments[0][: layout.block_size], segment.block_roots[0][0]
    lpb, leaf = layout.leaves_per_block, layout.leaf_size
    assert verify_block(data, 0, 2, lpb, leaf, root)
    assert not verify_block(data, 2, 2, lpb, leaf, root)  # index beyond the count
    assert not verify_block(data, 0, 2, 3, leaf, root)  # not a power of two
    assert not verify_block(data + b"x", 0, 2, lpb, leaf, root)  # longer than a block
    assert not verify_block(data[:40], 0, 2, lpb, leaf, root)  # short but not last
    assert not verify_block(b"", 1, 2, lpb, leaf, root)
    assert not verify_block(data, True, 2, lpb, leaf, root)  # a bool is not an index


@pytest.mark.parametrize("algorithm", USABLE_ALGORITHMS)
def test_tampering_is_detected(algorithm: Algorithm) -> None:
    dek, unit_id = bytes(range(32)), bytes(range(16))
    chunks = [b"a" * 10, b"b" * 10, b"c" * 5]
    sealed = [
        seal_chunk(algorithm, dek, unit_id, i, i == 2, chunk) for i, chunk in enumerate(chunks)
    ]
    for i, chunk in enumerate(chunks):
        assert open_chunk(algorithm, dek, unit_id, i, i == 2, sealed[i]) == chunk
    cases = {
        "swapped": (dek, unit_id, 0, False, sealed[1]),
        "moved to another unit": (dek, bytes(16), 0, False, sealed[0]),
        "wrong dek": (bytes(32), unit_id, 0, False, sealed[0]),
        # Truncated after chunk 1: the reader believes chunk 1 is last, its flag says not.
        "truncated": (dek, unit_id, 1, True, sealed[1]),
        "last flag dropped": (dek, unit_id, 2, False, sealed[2]),
        "bit flip": (dek, unit_id, 0, False, bytes([sealed[0][0] ^ 1]) + sealed[0][1:]),
        "tag cut": (dek, unit_id, 2, True, sealed[2][:-1]),
    }
    for name, (key, unit, index, last, cipher) in cases.items():
        with pytest.raises(DecryptionFailed) as caught:
            open_chunk(algorithm, key, unit, index, last, cipher)
        assert caught.value.chunk == index, name
        assert caught.value.unit == unit.hex(), name


def test_truncated_unit_is_detected_end_to_end() -> None:
    plaintext = random.Random(3).randbytes(3 * SMALL.chunk_plain + 7)
    encoder, segments = encode(SMALL, plaintext)
    # An index that lost the last chunk claims a unit of exactly two chunks.
    claimed = 2 * SMALL.chunk_plain
    with pytest.raises(DecryptionFailed) as caught:
        read(SMALL, encoder, segments, 0, claimed, (0, 1, 2), plain_size=claimed)
    assert caught.value.chunk == 1


def test_wrong_dek_or_unit_id_fails_to_decrypt() -> None:
    encoder, segments = encode(SMALL, b"secret" * 30)
    [piece, *_] = plan_range(SMALL, encoder.plain_size, 0, 10)
    blocks = {i: block(segments[0], i, piece) for i in range(SMALL.k)}
    cipher = decode_stripe(SMALL, blocks, piece.block_len, piece.cipher_len)
    with pytest.raises(DecryptionFailed):
        decrypt_stripe(encoder.algorithm, bytes(32), encoder.unit_id, piece, cipher)
    with pytest.raises(DecryptionFailed):
        decrypt_stripe(encoder.algorithm, encoder.dek, bytes(16), piece, cipher)
    assert (
        decrypt_stripe(encoder.algorithm, encoder.dek, encoder.unit_id, piece, cipher)
        == (b"secret" * 2)[:10]
    )


def test_decode_stripe_needs_k_blocks_of_the_right_length() -> None:
    _, [segment, *_] = encode(SMALL, bytes(500))
    blocks = {i: segment.fragments[i][:64] for i in range(SMALL.n)}
    with pytest.raises(NotEnoughBlocks) as caught:
        decode_stripe(SMALL, {3: blocks[3], 4: blocks[4]}, 64, 192)
    assert (caught.value.needed, caught.value.got) == (3, 2)
    with pytest.raises(ValueError, match="block 1"):
        decode_stripe(SMALL, {0: blocks[0], 1: blocks[1][:-1], 2: blocks[2]}, 64, 192)
    with pytest.raises(ValueError, match="block number"):
        decode_stripe(SMALL, {0: blocks[0], 1: blocks[1], 9: blocks[2]}, 64, 192)
    with pytest.raises(ValueError, match="cipher_len"):
        decode_stripe(SMALL, blocks, 64, 193)


@given(layouts(), st.integers(0, 2000), st.data())
def test_rebuild_fragments_from_any_k(layout: Layout, size: int, data: st.DataObject) -> None:
    _, segments = encode(layout, random.Random(size).randbytes(size))
    segment = data.draw(st.sampled_from(segments), label="segment")
    order = data.draw(st.permutations(range(layout.n)), label="order")
    have = {i: segment.fragments[i] for i in order[: layout.k]}
    missing = order[layout.k :]
    rebuilt = rebuild_fragments(layout, have, missing)
    assert rebuilt == {i: segment.fragments[i] for i in missing}


def test_fid_is_deterministic_given_the_fragments() -> None:
    plaintext = random.Random(5).randbytes(5 * SMALL.chunk_plain)
    first, first_segments = encode(
        SMALL, plaintext, rng=random.Random(1), dek=bytes(32), unit_id=bytes(16)
    )
    second, second_segments = encode(
        SMALL, plaintext, rng=random.Random(2), dek=bytes(32), unit_id=bytes(16)
    )
    assert [s.fragments for s in first_segments] == [s.fragments for s in second_segments]
    assert fid_of(first.segment_ids) == fid_of(second.segment_ids)
    assert fid_of(first.segment_ids) == fid_of([bytes.fromhex(s) for s in first.segment_ids])
    assert len(fid_of(first.segment_ids)) == 64
    # A fresh DEK is a different ciphertext, so a different fid.
    third, _ = encode(SMALL, plaintext)
    assert fid_of(third.segment_ids) != fid_of(first.segment_ids)
    # A multipart object: the fid covers every unit's segments in object order.
    part, _ = encode(SMALL, b"second part")
    both = first.segment_ids + part.segment_ids
    assert fid_of(both) == file_id([bytes.fromhex(s) for s in both])
    assert fid_of(both) != fid_of(part.segment_ids + first.segment_ids)


def test_encoder_checks_its_key_material() -> None:
    with pytest.raises(ValueError, match="dek"):
        UnitEncoder(SMALL, dek=bytes(31))
    with pytest.raises(ValueError, match="unit_id"):
        UnitEncoder(SMALL, unit_id=bytes(15))
    with pytest.raises(ValueError, match="algorithm"):
        UnitEncoder(SMALL, algorithm="rot13")  # type: ignore[arg-type]
    assert UnitEncoder(SMALL).algorithm == default_algorithm()
    assert UnitEncoder(SMALL).dek != UnitEncoder(SMALL).dek


def test_measure_codec_reports_a_rate() -> None:
    assert (
        measure_codec(
            Layout(k=2, n=4, block_size=4 * KIB, leaf_size=KIB, stripes_per_segment=4), 100 * KIB
        )
        > 0
    )
