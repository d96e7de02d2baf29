"""The pack format (docs/packing.md §2): many small objects' ciphertext in one segment.

Pure CPU work, like gateway.codec, whose sealing and erasure coding it reuses. Each
member is its own encoding unit (its own data key and unit id), sealed in chunks of the
pack layout's ``chunk_plain``; members are concatenated with no padding::

    pack ciphertext | member 0 | member 1 | ... | member m-1 |
    stripe s        bytes [s*S, (s+1)*S)   (S = k * pack_block_size; the last is short)
    fragment i      block i of every stripe

A member's chunks do not line up with stripes: reading one fetches the stripes its
ciphertext spans, cuts its bytes out and opens its chunks.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from chain_client.params import NetworkParams
from gateway.codec import (
    DEK_SIZE,
    TAG_SIZE,
    UNIT_ID_SIZE,
    Algorithm,
    Buffer,
    EncodedSegment,
    Layout,
    SegmentBuilder,
    StripeSlice,
    default_algorithm,
    open_chunk,
    seal_chunk,
)

__all__ = [
    "MemberRead",
    "SealedMember",
    "encode_pack",
    "file_layout",
    "member_share",
    "open_member",
    "pack_layout",
    "plan_member_read",
    "seal_member",
]


def pack_layout(params: NetworkParams, total_shards: int | None = None) -> Layout:
    k, block = params.data_shards, params.pack_block_size
    return Layout(
        k=k,
        n=params.total_shards if total_shards is None else total_shards,
        block_size=block,
        leaf_size=params.leaf_size,
        stripes_per_segment=params.pack_capacity // (k * block),
    )


def file_layout(params: NetworkParams, *, total_shards: int, block_size: int | None) -> Layout:
    """The layout a file was stored with: the network's, or a pack's small blocks."""
    if block_size is None:
        return Layout.from_params(params, total_shards=total_shards)
    return Layout(
        k=params.data_shards,
        n=total_shards,
        block_size=block_size,
        leaf_size=params.leaf_size,
        stripes_per_segment=max(1, params.segment_size // (params.data_shards * block_size)),
    )


def member_share(layout: Layout, cipher_size: int) -> int:
    """What a member's territory is charged: n blocks of ⌈c / k⌉ bytes."""
    return layout.n * layout.block_len(cipher_size)


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedMember:
    dek: bytes
    unit_id: bytes
    algorithm: Algorithm
    plain_size: int
    md5: str
    ciphertext: bytes

    @property
    def cipher_size(self) -> int:
        return len(self.ciphertext)


def seal_member(
    layout: Layout,
    plaintext: Buffer,
    *,
    dek: bytes | None = None,
    unit_id: bytes | None = None,
    algorithm: Algorithm | None = None,
) -> SealedMember:
    """One small object sealed as its own unit, in chunks of the pack layout."""
    # SECURITY: a fresh DEK per member unless a test pins one: the nonce is the chunk index.
    dek = secrets.token_bytes(DEK_SIZE) if dek is None else dek
    unit_id = secrets.token_bytes(UNIT_ID_SIZE) if unit_id is None else unit_id
    algorithm = algorithm or default_algorithm()
    view = memoryview(plaintext).cast("B")
    size = layout.chunk_plain
    count = layout.chunk_count(view.nbytes)
    sealed = [
        seal_chunk(
            algorithm,
            dek,
            unit_id,
            chunk,
            chunk == count - 1,
            view[chunk * size : (chunk + 1) * size],
        )
        for chunk in range(count)
    ]
    return SealedMember(
        dek=dek,
        unit_id=unit_id,
        algorithm=algorithm,
        plain_size=view.nbytes,
        md5=hashlib.md5(view, usedforsecurity=False).hexdigest(),
        ciphertext=b"".join(sealed),
    )


def encode_pack(layout: Layout, ciphertexts: Sequence[Buffer]) -> tuple[EncodedSegment, list[int]]:
    """The pack of these members' ciphertexts, in order, and where each one starts."""
    offsets, position = [], 0
    for cipher in ciphertexts:
        offsets.append(position)
        position += memoryview(cipher).nbytes
    if not 0 < position <= layout.segment_size:
        raise ValueError(f"a pack holds 1 to {layout.segment_size} bytes, got {position}")
    joined = memoryview(b"".join(ciphertexts))
    builder = SegmentBuilder(layout)
    full = None  # a pack of exactly stripes_per_segment stripes closes on its last one
    for start in range(0, position, layout.stripe_size):
        full = builder.add_stripe(joined[start : start + layout.stripe_size]) or full
    segment = builder.close() or full
    assert segment is not None
    return segment, offsets


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRead:
    """What reading plaintext ``start..end`` of a member takes: the pack's stripes to
    fetch (as ranged block reads) and how to cut the member's chunks out of them."""

    stripes: list[StripeSlice]  # consecutive, the pack's
    skip: int  # ciphertext bytes of the first stripe before the first chunk needed
    first_chunk: int
    chunk_count: int  # of the member
    cipher_len: int  # of the chunks needed, together
    keep_start: int  # plaintext of those chunks to keep
    keep_stop: int


def plan_member_read(
    layout: Layout,
    *,
    offset: int,
    plain_size: int,
    pack_cipher_size: int,
    start: int,
    end: int,
) -> MemberRead:
    if not 0 <= start <= end <= plain_size:
        raise ValueError(f"range [{start}, {end}) is not within a member of {plain_size} bytes")
    size, sealed = layout.chunk_plain, layout.chunk_plain + TAG_SIZE
    count = layout.chunk_count(plain_size)
    first = min(start // size, count - 1)
    last = max(first, -(-end // size) - 1)
    cipher_size = layout.cipher_size(plain_size)
    low = offset + first * sealed
    high = offset + min((last + 1) * sealed, cipher_size)
    if high > pack_cipher_size:
        raise ValueError(f"member bytes {low}..{high} beyond the pack's {pack_cipher_size}")
    stripe_size = layout.stripe_size
    stripe_count = -(-pack_cipher_size // stripe_size)
    stripes = []
    for stripe in range(low // stripe_size, -(-high // stripe_size)):
        cipher_len = min(stripe_size, pack_cipher_size - stripe * stripe_size)
        stripes.append(
            StripeSlice(
                segment=0,
                stripe=stripe,
                stripe_count=stripe_count,
                chunk=0,  # not a chunk of the member: see MemberRead
                last=False,
                block_offset=stripe * layout.block_size,
                block_len=layout.block_len(cipher_len),
                cipher_len=cipher_len,
                keep_start=0,
                keep_stop=cipher_len,
            )
        )
    return MemberRead(
        stripes=stripes,
        skip=low - stripes[0].stripe * stripe_size,
        first_chunk=first,
        chunk_count=count,
        cipher_len=high - low,
        keep_start=start - first * size,
        keep_stop=end - first * size,
    )


def open_member(
    layout: Layout,
    read: MemberRead,
    stripes: Sequence[Buffer],
    *,
    algorithm: Algorithm,
    dek: bytes,
    unit_id: bytes,
) -> bytes:
    """The plaintext ``read`` asked for, from its stripes' decoded ciphertext."""
    joined = b"".join(stripes)[read.skip : read.skip + read.cipher_len]
    sealed = layout.chunk_plain + TAG_SIZE
    plain = []
    for number, position in enumerate(range(0, len(joined), sealed)):
        chunk = read.first_chunk + number
        last = chunk == read.chunk_count - 1
        plain.append(
            open_chunk(algorithm, dek, unit_id, chunk, last, joined[position : position + sealed])
        )
    return b"".join(plain)[read.keep_start : read.keep_stop]
