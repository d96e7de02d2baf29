"""Encryption, erasure coding and hashing of encoding units (DESIGN.md §3).

Pure CPU work: callers run these functions in a thread pool (libsodium, zfec and hashlib
release the GIL). An *encoding unit* is a single-part object or one part of a multipart
upload; every unit has its own random data key (DEK) and 16-byte unit id. Its layout::

    plaintext   | chunk 0 (chunk_plain) | chunk 1 | ... | last chunk (0..chunk_plain) |
                  each chunk sealed alone: AEAD, 16-byte tag
    ciphertext  | stripe 0 (stripe_size)| stripe 1 | ... | last stripe (short)        |
                  a stripe is cut into k blocks; zfec adds n - k parity blocks
    segment s   stripes s*S .. s*S + S - 1        (S = stripes_per_segment)
    fragment i  | block i of stripe 0 | block i of stripe 1 | ... |  (one miner each)

- Chunk c is sealed with nonce = c (big-endian, zero-padded to the nonce size) and
  associated data = unit_id (16) || c (u64 BE) || last flag (1 byte). A unit has
  max(1, ceil(plain_size / chunk_plain)) chunks: an empty unit is one empty chunk, and a
  unit that fills its last chunk exactly has no extra empty one.
- Full stripes have blocks of ``block_size``. The last stripe's blocks shrink to
  ceil(len / k) and the stripe is zero-padded to k of them; the true ciphertext length is
  derived from the unit's plaintext size, so decoding trims the padding.
- A fragment's id is the Merkle root (chain_client.merkle) over its leaves. Its *block
  roots* are the tree's nodes at height log2(leaves_per_block): one per block, so a
  fetched block is verified on its own. A one-block fragment's block root is its root.
- Segment id and file id (fid) come from chain_client.merkle; the fid covers every
  segment of every unit of an object, in order.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Final, Literal, TypeAlias

import nacl.exceptions
import zfec
from nacl import bindings

from chain_client import merkle
from chain_client.params import NetworkParams

__all__ = [
    "AES_GCM_AVAILABLE",
    "ALGORITHMS",
    "DEK_SIZE",
    "TAG_SIZE",
    "UNIT_ID_SIZE",
    "Algorithm",
    "Buffer",
    "DecryptionFailed",
    "EncodedSegment",
    "Layout",
    "NotEnoughBlocks",
    "SegmentBuilder",
    "StripeSlice",
    "UnitEncoder",
    "algorithm_named",
    "block_roots",
    "decode_stripe",
    "decrypt_stripe",
    "default_algorithm",
    "fid_of",
    "measure_codec",
    "open_chunk",
    "plan_range",
    "rebuild_fragments",
    "seal_chunk",
    "verify_block",
]

Algorithm: TypeAlias = Literal["aes256gcm", "xchacha20poly1305"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = ("aes256gcm", "xchacha20poly1305")


def algorithm_named(name: str) -> Algorithm:
    """The recorded algorithm of a unit, checked (the index stores it as text)."""
    for algorithm in ALGORITHMS:
        if algorithm == name:
            return algorithm
    raise ValueError(f"unknown AEAD algorithm {name!r}, expected one of {ALGORITHMS}")


TAG_SIZE: Final = 16
DEK_SIZE: Final = 32
UNIT_ID_SIZE: Final = 16

Buffer: TypeAlias = bytes | bytearray | memoryview


def _probe_aes_gcm() -> bool:
    # pynacl exposes no is_available(); its AES-GCM calls raise UnavailableError without
    # AES-NI (or the ARM crypto extensions), so one tiny seal answers the question.
    try:
        bindings.crypto_aead_aes256gcm_encrypt(b"", None, bytes(12), bytes(32))
    except nacl.exceptions.UnavailableError:
        return False
    return True


AES_GCM_AVAILABLE: Final[bool] = _probe_aes_gcm()


class DecryptionFailed(Exception):
    """A chunk failed authentication: tampered, reordered, truncated or the wrong key."""

    def __init__(self, unit: str, chunk: int) -> None:
        super().__init__(f"chunk {chunk} of unit {unit} failed authentication")
        self.unit = unit
        self.chunk = chunk


class NotEnoughBlocks(Exception):
    def __init__(self, needed: int, got: int) -> None:
        super().__init__(f"need {needed} distinct blocks to decode, got {got}")
        self.needed = needed
        self.got = got


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    k: int
    n: int
    block_size: int
    leaf_size: int
    stripes_per_segment: int

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, reason: str) -> None:
            if not ok:
                raise ValueError(f"layout: {key}: {reason} (got {getattr(self, key)!r})")

        need(self.k >= 1, "k", "at least 1")
        need(self.k <= self.n <= 255, "n", f"need k ({self.k}) <= n <= 255")
        need(self.leaf_size >= 1, "leaf_size", "at least 1")
        need(
            self.block_size >= self.leaf_size and self.block_size % self.leaf_size == 0,
            "block_size",
            f"a multiple of leaf_size ({self.leaf_size})",
        )
        lpb = self.block_size // self.leaf_size
        need(lpb & (lpb - 1) == 0, "block_size", "leaves per block must be a power of two")
        need(self.k * self.block_size > TAG_SIZE, "block_size", "a stripe must exceed the tag")
        need(self.stripes_per_segment >= 1, "stripes_per_segment", "at least 1")

    @classmethod
    def from_params(cls, params: NetworkParams, total_shards: int | None = None) -> Layout:
        k, block = params.data_shards, params.stripe_block_size
        return cls(
            k=k,
            n=params.total_shards if total_shards is None else total_shards,
            block_size=block,
            leaf_size=params.leaf_size,
            stripes_per_segment=params.segment_size // (k * block),
        )

    @property
    def stripe_size(self) -> int:
        return self.k * self.block_size

    @property
    def chunk_plain(self) -> int:
        return self.stripe_size - TAG_SIZE

    @property
    def segment_size(self) -> int:
        return self.stripes_per_segment * self.stripe_size

    @property
    def leaves_per_block(self) -> int:
        return self.block_size // self.leaf_size

    def chunk_count(self, plain_size: int) -> int:
        return max(1, -(-plain_size // self.chunk_plain))

    def chunk_plain_len(self, plain_size: int, chunk: int) -> int:
        return min(self.chunk_plain, plain_size - chunk * self.chunk_plain)

    def cipher_size(self, plain_size: int) -> int:
        return plain_size + TAG_SIZE * self.chunk_count(plain_size)

    def segment_count(self, plain_size: int) -> int:
        return -(-self.chunk_count(plain_size) // self.stripes_per_segment)

    def stripe_count(self, plain_size: int, segment: int) -> int:
        first = segment * self.stripes_per_segment
        return min(self.stripes_per_segment, self.chunk_count(plain_size) - first)

    def block_len(self, cipher_len: int) -> int:
        return -(-cipher_len // self.k)

    def stored_size(self, plain_size: int) -> int:
        """Bytes the miners hold (and the territory is charged) for a unit: n blocks per
        stripe, the last stripe's blocks shortened to its ciphertext."""
        chunks = self.chunk_count(plain_size)
        last_cipher = self.chunk_plain_len(plain_size, chunks - 1) + TAG_SIZE
        return self.n * ((chunks - 1) * self.block_size + self.block_len(last_cipher))

    def fragment_size(self, plain_size: int, segment: int) -> int:
        stripes = self.stripe_count(plain_size, segment)
        last_chunk = segment * self.stripes_per_segment + stripes - 1
        last_cipher = self.chunk_plain_len(plain_size, last_chunk) + TAG_SIZE
        return (stripes - 1) * self.block_size + self.block_len(last_cipher)


def default_algorithm() -> Algorithm:
    return "aes256gcm" if AES_GCM_AVAILABLE else "xchacha20poly1305"


def _check_algorithm(algorithm: str) -> Algorithm:
    if algorithm == "aes256gcm":
        return "aes256gcm"
    if algorithm == "xchacha20poly1305":
        return "xchacha20poly1305"
    raise ValueError(f"unknown AEAD algorithm {algorithm!r}, expected one of {ALGORITHMS}")


def _associated_data(unit_id: bytes, index: int, last: bool) -> bytes:
    return unit_id + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def seal_chunk(
    algorithm: Algorithm, dek: bytes, unit_id: bytes, index: int, last: bool, plaintext: Buffer
) -> bytes:
    # SECURITY: the nonce is just the chunk index; that is safe only because a DEK never
    # seals two units (UnitEncoder draws a fresh one per unit).
    ad = _associated_data(unit_id, index, last)
    if _check_algorithm(algorithm) == "aes256gcm":
        nonce = index.to_bytes(bindings.crypto_aead_aes256gcm_NPUBBYTES, "big")
        return bindings.crypto_aead_aes256gcm_encrypt(bytes(plaintext), ad, nonce, dek)
    nonce = index.to_bytes(bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "big")
    return bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), ad, nonce, dek)


def open_chunk(
    algorithm: Algorithm, dek: bytes, unit_id: bytes, index: int, last: bool, ciphertext: Buffer
) -> bytes:
    ad = _associated_data(unit_id, index, last)
    try:
        if _check_algorithm(algorithm) == "aes256gcm":
            nonce = index.to_bytes(bindings.crypto_aead_aes256gcm_NPUBBYTES, "big")
            return bindings.crypto_aead_aes256gcm_decrypt(bytes(ciphertext), ad, nonce, dek)
        nonce = index.to_bytes(bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "big")
        return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            bytes(ciphertext), ad, nonce, dek
        )
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionFailed(unit_id.hex(), index) from exc


def _subtree_root(block: Buffer, leaf_size: int) -> tuple[bytes, int]:
    hashes = merkle.leaf_hashes(block, leaf_size)
    return merkle.root_of_hashes(hashes), len(hashes)


def _lift(node: bytes, leaf_count: int, height: int) -> bytes:
    # A short last block sits at the end of every level below the block height, so a
    # fragment tree of several blocks pairs its subtree root with itself up to that height.
    for _ in range(height - (leaf_count - 1).bit_length()):
        node = merkle.node_hash(node, node)
    return node


def verify_block(
    block_bytes: Buffer,
    block_index: int,
    block_count: int,
    leaves_per_block: int,
    leaf_size: int,
    expected_root: bytes,
) -> bool:
    """Whether ``block_bytes`` is block ``block_index`` of a ``block_count``-block fragment
    whose block root is ``expected_root``. Never raises: malformed input is just invalid."""
    for value in (block_index, block_count, leaves_per_block, leaf_size):
        if type(value) is not int:
            return False
    if not (0 <= block_index < block_count and leaves_per_block >= 1 and leaf_size >= 1):
        return False
    if leaves_per_block & (leaves_per_block - 1):
        return False
    size = memoryview(block_bytes).nbytes
    full = leaves_per_block * leaf_size
    # Only the last block may be short; the counts come from the index, never the miner.
    if not 0 < size <= full or (block_index < block_count - 1 and size != full):
        return False
    root, leaf_count = _subtree_root(block_bytes, leaf_size)
    if block_count > 1:
        root = _lift(root, leaf_count, (leaves_per_block - 1).bit_length())
    return root == expected_root


def block_roots(fragment: Buffer, stripe_count: int, layout: Layout) -> list[bytes]:
    """The block roots of a whole fragment of ``stripe_count`` blocks (the last one may
    be short), as UnitEncoder records them: to re-derive them from fetched bytes."""
    view = memoryview(fragment).cast("B")
    height = (layout.leaves_per_block - 1).bit_length()
    roots = []
    for index in range(stripe_count):
        block = view[index * layout.block_size : (index + 1) * layout.block_size]
        root, leaf_count = _subtree_root(block, layout.leaf_size)
        if stripe_count > 1 and index == stripe_count - 1:
            root = _lift(root, leaf_count, height)
        roots.append(root)
    return roots


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedSegment:
    """One segment's n fragments, each kept as its blocks: joining them would double the
    segment's memory (n x fragment_size) just before it is sent, a block at a time."""

    index: int  # within the unit
    blocks: tuple[tuple[Buffer, ...], ...]  # [fragment][stripe]
    fragment_ids: tuple[str, ...]  # hex Merkle roots
    block_roots: tuple[tuple[bytes, ...], ...]  # [fragment][stripe], 32-byte digests
    segment_id: str  # hex
    stripe_count: int
    cipher_size: int  # true ciphertext bytes in this segment, without padding
    last_block_size: int

    @property
    def fragment_size(self) -> int:
        return sum(memoryview(block).nbytes for block in self.blocks[0])

    def fragment(self, index: int) -> bytes:
        """Fragment ``index`` as one bytes object (a copy)."""
        return b"".join(self.blocks[index])

    @property
    def fragments(self) -> tuple[bytes, ...]:
        """Every fragment joined: a copy of the whole segment, for tests and rebuilds."""
        return tuple(self.fragment(i) for i in range(len(self.blocks)))

    def packed_block_roots(self, fragment: int) -> bytes:
        return b"".join(self.block_roots[fragment])


class SegmentBuilder:
    """Erasure-codes and hashes ciphertext a stripe at a time into segments of
    ``layout``: each stripe is at most ``stripe_size`` bytes, and only the last one of a
    segment may be short. Holds at most one segment of fragments."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.segment_ids: list[str] = []
        self._zfec = zfec.Encoder(layout.k, layout.n)
        self._parity_nums = tuple(range(layout.k, layout.n))
        self._height = (layout.leaves_per_block - 1).bit_length()
        self._start_segment()

    def _start_segment(self) -> None:
        n = self.layout.n
        self._blocks: list[list[Buffer]] = [[] for _ in range(n)]
        self._roots: list[list[bytes]] = [[] for _ in range(n)]
        self._stripes = 0
        self._segment_cipher = 0
        self._block_len = 0

    def add_stripe(self, cipher: Buffer) -> EncodedSegment | None:
        """The segment this stripe completes, if it does."""
        layout = self.layout
        length = memoryview(cipher).nbytes
        if not 0 < length <= layout.stripe_size:
            raise ValueError(f"a stripe is 1 to {layout.stripe_size} bytes, got {length}")
        if self._stripes and self._block_len < layout.block_size:
            raise ValueError("only the last stripe of a segment may be short")
        self._segment_cipher += length
        block_len = layout.block_len(length)
        if length < layout.k * block_len:
            cipher = bytes(cipher) + bytes(layout.k * block_len - length)
        view = memoryview(cipher).cast("B")
        primaries = tuple(view[i * block_len : (i + 1) * block_len] for i in range(layout.k))
        parity = self._zfec.encode(primaries, self._parity_nums) if self._parity_nums else []
        # Hash while the block is still in cache. A short last block's root is lifted to
        # the block height in close(), once the segment's block count is known.
        coded = chain(primaries, parity)
        for blocks, roots, block in zip(self._blocks, self._roots, coded, strict=True):
            blocks.append(block)
            roots.append(_subtree_root(block, layout.leaf_size)[0])
        self._stripes += 1
        self._block_len = block_len
        if self._stripes == layout.stripes_per_segment:
            return self.close()
        return None

    def close(self) -> EncodedSegment | None:
        """The segment under way, if it has a stripe."""
        stripes = self._stripes
        if not stripes:
            return None
        roots = self._roots
        if stripes > 1:
            leaf_count = -(-self._block_len // self.layout.leaf_size)
            for fragment_roots in roots:
                fragment_roots[-1] = _lift(fragment_roots[-1], leaf_count, self._height)
        # Above the block height the fragment tree is the plain tree over its block roots.
        fragment_roots_raw = [merkle.root_of_hashes(r) for r in roots]
        segment = EncodedSegment(
            index=len(self.segment_ids),
            blocks=tuple(tuple(blocks) for blocks in self._blocks),
            fragment_ids=tuple(root.hex() for root in fragment_roots_raw),
            block_roots=tuple(tuple(r) for r in roots),
            segment_id=merkle.segment_id(fragment_roots_raw).hex(),
            stripe_count=stripes,
            cipher_size=self._segment_cipher,
            last_block_size=self._block_len,
        )
        self.segment_ids.append(segment.segment_id)
        self._start_segment()
        return segment


class UnitEncoder:
    """Seals, erasure-codes and hashes one encoding unit as its plaintext streams in.

    Holds at most one chunk of plaintext and one segment of fragments.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        dek: bytes | None = None,
        unit_id: bytes | None = None,
        algorithm: Algorithm | None = None,
    ) -> None:
        # SECURITY: a caller-chosen DEK must never be reused for another unit (the nonce
        # is the chunk index); the parameters exist for tests and reproducible vectors.
        self.dek = secrets.token_bytes(DEK_SIZE) if dek is None else dek
        self.unit_id = secrets.token_bytes(UNIT_ID_SIZE) if unit_id is None else unit_id
        if len(self.dek) != DEK_SIZE:
            raise ValueError(f"dek must be {DEK_SIZE} bytes, got {len(self.dek)}")
        if len(self.unit_id) != UNIT_ID_SIZE:
            raise ValueError(f"unit_id must be {UNIT_ID_SIZE} bytes, got {len(self.unit_id)}")
        self.algorithm: Algorithm = _check_algorithm(algorithm or default_algorithm())
        self.layout = layout
        self.plain_size = 0
        self.cipher_size = 0
        self.chunk_count = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._pending = bytearray()
        self._finished = False
        self._segments = SegmentBuilder(layout)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def segment_ids(self) -> list[str]:
        return self._segments.segment_ids

    def feed(self, plaintext: Buffer) -> list[EncodedSegment]:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        view = memoryview(plaintext).cast("B")
        self._md5.update(view)
        self.plain_size += view.nbytes
        size = self.layout.chunk_plain
        done: list[EncodedSegment] = []
        # A full chunk is sealed only once a byte beyond it has arrived: until then it may
        # be the last chunk, whose flag the AEAD binds.
        pos = 0
        if self._pending:
            pos = min(view.nbytes, size - len(self._pending))
            self._pending += view[:pos]
            if len(self._pending) == size and pos < view.nbytes:
                done += self._add_chunk(bytes(self._pending), last=False)
                self._pending.clear()
        while view.nbytes - pos > size:
            done += self._add_chunk(view[pos : pos + size], last=False)
            pos += size
        self._pending += view[pos:]
        return done

    def finish(self) -> list[EncodedSegment]:
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        done = self._add_chunk(bytes(self._pending), last=True)
        self._pending = bytearray()
        closed = self._segments.close()
        return done + ([closed] if closed is not None else [])

    def _add_chunk(self, plaintext: Buffer, *, last: bool) -> list[EncodedSegment]:
        cipher = seal_chunk(
            self.algorithm, self.dek, self.unit_id, self.chunk_count, last, plaintext
        )
        self.chunk_count += 1
        self.cipher_size += len(cipher)
        segment = self._segments.add_stripe(cipher)
        return [segment] if segment is not None else []


def fid_of(segment_ids_in_object_order: Sequence[str | bytes]) -> str:
    ids = [bytes.fromhex(s) if isinstance(s, str) else s for s in segment_ids_in_object_order]
    return merkle.file_id(ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class StripeSlice:
    """One chunk a ranged read needs: where its blocks sit in the segment's fragments
    (HTTP Range ``block_offset`` .. ``block_offset + block_len``) and which plaintext
    bytes of the chunk to keep."""

    segment: int
    stripe: int  # within the segment; also the block index for verify_block
    stripe_count: int  # of the segment: the block count for verify_block
    chunk: int  # within the unit: the AEAD index
    last: bool
    block_offset: int
    block_len: int
    cipher_len: int
    keep_start: int
    keep_stop: int


def plan_range(
    layout: Layout, unit_plain_size: int, start: int, end_exclusive: int
) -> list[StripeSlice]:
    if not 0 <= start <= end_exclusive <= unit_plain_size:
        raise ValueError(
            f"range [{start}, {end_exclusive}) is not within a unit of {unit_plain_size} bytes"
        )
    size = layout.chunk_plain
    last_chunk = layout.chunk_count(unit_plain_size) - 1
    pieces = []
    for chunk in range(start // size, -(-end_exclusive // size)):
        segment, stripe = divmod(chunk, layout.stripes_per_segment)
        cipher_len = layout.chunk_plain_len(unit_plain_size, chunk) + TAG_SIZE
        pieces.append(
            StripeSlice(
                segment=segment,
                stripe=stripe,
                stripe_count=layout.stripe_count(unit_plain_size, segment),
                chunk=chunk,
                last=chunk == last_chunk,
                block_offset=stripe * layout.block_size,
                block_len=layout.block_len(cipher_len),
                cipher_len=cipher_len,
                keep_start=max(start - chunk * size, 0),
                keep_stop=min(end_exclusive - chunk * size, cipher_len - TAG_SIZE),
            )
        )
    return pieces


def _primaries(layout: Layout, blocks: Mapping[int, Buffer], block_len: int) -> list[Buffer]:
    for num, block in blocks.items():
        if not 0 <= num < layout.n:
            raise ValueError(f"block number {num} is outside 0..{layout.n - 1}")
        if memoryview(block).nbytes != block_len:
            raise ValueError(f"block {num} is {memoryview(block).nbytes} bytes, not {block_len}")
    if all(num in blocks for num in range(layout.k)):
        # Systematic code: the first k blocks are the stripe itself.
        return [blocks[num] for num in range(layout.k)]
    if len(blocks) < layout.k:
        raise NotEnoughBlocks(layout.k, len(blocks))
    chosen = tuple(sorted(blocks)[: layout.k])
    decoder = zfec.Decoder(layout.k, layout.n)
    decoded: list[Buffer] = decoder.decode(tuple(blocks[num] for num in chosen), chosen)
    return decoded


def decode_stripe(
    layout: Layout, blocks: Mapping[int, Buffer], block_len: int, cipher_len: int
) -> bytes:
    if not 0 < cipher_len <= layout.k * block_len:
        raise ValueError(f"cipher_len {cipher_len} does not fit {layout.k} x {block_len}")
    data = b"".join(_primaries(layout, blocks, block_len))
    return data[:cipher_len]


def decrypt_stripe(
    algorithm: Algorithm, dek: bytes, unit_id: bytes, piece: StripeSlice, ciphertext: Buffer
) -> bytes:
    plaintext = open_chunk(algorithm, dek, unit_id, piece.chunk, piece.last, ciphertext)
    return plaintext[piece.keep_start : piece.keep_stop]


def rebuild_fragments(
    layout: Layout, fragments: Mapping[int, Buffer], wanted: Iterable[int]
) -> dict[int, bytes]:
    """Recreate fragments ``wanted`` of one segment from any k of its others (repair:
    ciphertext only, no key needed). Stripe geometry follows from the fragment size."""
    wanted_nums = tuple(wanted)
    if any(not 0 <= num < layout.n for num in wanted_nums):
        raise ValueError(f"wanted fragments {wanted_nums} are outside 0..{layout.n - 1}")
    sizes = {memoryview(fragment).nbytes for fragment in fragments.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"fragments of one segment share one non-zero size, got {sizes}")
    size = sizes.pop()
    views = {num: memoryview(fragment).cast("B") for num, fragment in fragments.items()}
    encoder = zfec.Encoder(layout.k, layout.n)
    parts: dict[int, list[Buffer]] = {num: [] for num in wanted_nums}
    for offset in range(0, size, layout.block_size):
        block_len = min(layout.block_size, size - offset)
        blocks = {num: view[offset : offset + block_len] for num, view in views.items()}
        primaries = tuple(_primaries(layout, blocks, block_len))
        for num, block in zip(wanted_nums, encoder.encode(primaries, wanted_nums), strict=True):
            parts[num].append(block)
    return {num: b"".join(blocks) for num, blocks in parts.items()}


def measure_codec(layout: Layout, size: int) -> float:
    """Seal + encode + hash (Merkle and MD5) MB/s (10**6) for one ``size``-byte unit, fed
    in 1 MiB pieces as a request body would be: the codec bound of an upload."""
    piece = os.urandom(min(size, 1 << 20))
    encoder = UnitEncoder(layout)
    started = time.perf_counter()
    remaining = size
    while remaining:
        take = min(remaining, len(piece))
        encoder.feed(piece if take == len(piece) else piece[:take])
        remaining -= take
    encoder.finish()
    elapsed = time.perf_counter() - started
    return size / elapsed / 1e6
