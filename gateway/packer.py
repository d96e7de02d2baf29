"""Small uploads placed together (docs/packing.md §3).

Uploads small enough to pack are sealed as they arrive, each as its own unit, and wait
in the open pack. As in a group commit, the pack is flushed ``delay`` after its first
member arrived while no other pack is being placed, else as soon as the one being
placed is done (all that arrived meanwhile go together), and at once when the next
member would not fit. A flushed pack is encoded once, its n fragments placed on n miners
like any segment's, then every member committed through the group commit, each with its
own version and declaration. A member is answered only once its own commit is done; one
that fails (a precondition, a bucket gone) gets its own error and leaves dead space.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.codec import EncodedSegment, Layout
from gateway.keywrap import WrappedKey
from gateway.pack import SealedMember, encode_pack, member_share
from gateway.records import (
    PENDING,
    FragmentPlacement,
    NameWrite,
    ObjectRecord,
    PackedFile,
    SegmentRecord,
    UnitRecord,
    UploadCommit,
)
from gateway.sealed_meta import declaration
from gateway.stripe_cache import StripeCache

__all__ = ["Member", "PackStore", "Packer", "PlacedSegment"]

log = logging.getLogger("deoss.objects")
INLINE_BYTES = 64 * 1024  # packs this small are encoded on the event loop


@dataclass(frozen=True, slots=True)
class PlacedSegment:
    """A one-segment file on its miners (a pack): its fid and its index records."""

    fid: str
    segments: list[SegmentRecord]
    placements: list[FragmentPlacement]


class PackStore(Protocol):
    """What a packer needs of the upload path (gateway.upload.UploadPath)."""

    async def place_segment(self, layout: Layout, segment: EncodedSegment) -> PlacedSegment: ...

    async def commit_one(self, commit: UploadCommit) -> ObjectRecord: ...


@dataclass(kw_only=True)
class Member:
    """One upload waiting for its pack."""

    owner: str
    territory: str
    name: str
    content_type: str
    meta: dict[str, Any]
    write: NameWrite
    sealed: SealedMember
    wrapped_key: WrappedKey
    done: "asyncio.Future[ObjectRecord]" = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Packer:
    def __init__(
        self,
        path: PackStore,
        layout: Layout,
        *,
        delay: float,
        sealed_meta: Callable[[ObjectRecord, list[UnitRecord]], str],
        cache: StripeCache | None = None,
    ) -> None:
        self.path = path
        self.layout = layout
        self.delay = delay
        self.sealed_meta = sealed_meta
        self.cache = cache  # a pack's stripes go in as it is placed: reads after writes hit
        self._open: list[Member] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()  # packs being placed

    async def put(self, member: Member) -> ObjectRecord:
        """The member's version, once its pack is placed and its record committed."""
        if self._bytes + member.sealed.cipher_size > self.layout.segment_size:
            self._flush()
        self._open.append(member)
        self._bytes += member.sealed.cipher_size
        if len(self._open) == 1 and not self._flushes:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._flush)
        return await member.done

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        members, self._open, self._bytes = self._open, [], 0
        if members:
            task = asyncio.create_task(self._store(members), name="pack")
            self._flushes.add(task)
            task.add_done_callback(self._placed)

    def _placed(self, task: "asyncio.Task[None]") -> None:
        self._flushes.discard(task)
        if self._open and not self._flushes:
            self._flush()  # what arrived while that pack was placed

    async def _store(self, members: list[Member]) -> None:
        try:
            outcomes = await self._place_and_commit(members)
        except Exception as exc:  # the pack could not be placed: every member fails alike
            outcomes = [exc] * len(members)
        for member, outcome in zip(members, outcomes, strict=True):
            if member.done.done():
                continue  # its request went away
            if isinstance(outcome, BaseException):
                member.done.set_exception(outcome)
            else:
                member.done.set_result(outcome)

    async def _place_and_commit(self, members: list[Member]) -> list[ObjectRecord | BaseException]:
        layout = self.layout
        ciphertexts = [m.sealed.ciphertext for m in members]
        if self._bytes_of(members) <= INLINE_BYTES:
            segment, offsets = encode_pack(layout, ciphertexts)
        else:
            segment, offsets = await asyncio.to_thread(encode_pack, layout, ciphertexts)
        placed = await self.path.place_segment(layout, segment)
        fid = placed.fid
        if self.cache is not None:
            joined = b"".join(ciphertexts)
            for stripe, start in enumerate(range(0, len(joined), layout.stripe_size)):
                self.cache.put(fid, 0, stripe, joined[start : start + layout.stripe_size])
        file = PackedFile(
            cipher_size=segment.cipher_size,
            stored=segment.fragment_size * layout.n,
            block_size=layout.block_size,
        )
        segments, placements = placed.segments, placed.placements
        commits = []
        for slot, (member, offset) in enumerate(zip(members, offsets, strict=True)):
            sealed = member.sealed
            unit = UnitRecord.packed(
                fid=fid,
                slot=slot,
                unit_id=sealed.unit_id.hex(),
                algorithm=sealed.algorithm,
                plain_size=sealed.plain_size,
                cipher_size=sealed.cipher_size,
                wrapped_key=member.wrapped_key,
                offset=offset,
            )
            record = ObjectRecord(
                fid=fid,
                owner=member.owner,
                name=member.name,
                territory=member.territory,
                size=sealed.plain_size,
                content_type=member.content_type,
                etag=sealed.md5,
                data_shards=layout.k,
                total_shards=layout.n,
                stored=member_share(layout, sealed.cipher_size),
                state=PENDING,
                created_at=time.time(),
                meta=member.meta,
                slot=slot,
                block_size=layout.block_size,
            )
            declared = declaration(
                owner=member.owner,
                territory=member.territory,
                key=member.name,
                fid=fid,
                size=segment.cipher_size,
                data_shards=layout.k,
                total_shards=layout.n,
                segments=segments,
                placements=placements,
                sealed_meta=self.sealed_meta(record, [unit]),
                share=record.stored,
                slot=slot,
            )
            commits.append(
                UploadCommit(
                    record, [unit], segments, placements, declared, member.write, packed=file
                )
            )
        outcomes: list[ObjectRecord | BaseException] = await asyncio.gather(
            *(self.path.commit_one(commit) for commit in commits), return_exceptions=True
        )
        return outcomes

    @staticmethod
    def _bytes_of(members: list[Member]) -> int:
        return sum(m.sealed.cipher_size for m in members)
