"""The upload path of the object service (DESIGN.md §4): checks before any byte is
read, encryption and encoding, placement, and the one commit.

The body streams through a ``UnitEncoder`` in a worker thread a segment at a time; each
segment's n fragments go to n distinct miners concurrently (while the next segment is
encoded), a failed miner's fragment to another one; the answer comes only when every
fragment has a signed receipt and the object and its declaration are committed in one
index transaction. A client that goes away mid-upload leaves nothing visible; the
fragments it had sent are orphans that miners drop after ``orphan_ttl``.
"""

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chain_client import views
from chain_client.params import NetworkParams
from chain_client.protocol import Chain
from gateway import codec
from gateway.codec import EncodedSegment, Layout, UnitEncoder
from gateway.errors import (
    InsufficientMinerSpace,
    InsufficientTerritorySpace,
    InvalidCopies,
    MinersUnavailable,
    NoSuchFile,
    NoSuchTerritory,
    ObjectTooLarge,
    TerritoryNotActive,
    TooManyCopies,
)
from gateway.index import MetadataIndex
from gateway.keywrap import (
    Secret,
    WrappedKey,
    wrap_master,
    wrap_with_customer_key,
    wrap_with_password,
)
from gateway.pack import SealedMember, seal_member
from gateway.packer import Member, Packer, PlacedSegment
from gateway.records import (
    PENDING,
    PLAIN_WRITE,
    FragmentPlacement,
    NameWrite,
    ObjectRecord,
    SegmentRecord,
    UnitRecord,
    UploadCommit,
)
from gateway.sealed_meta import SealedMeta, declaration
from gateway.transfer import (
    SMALL_FRAGMENT,
    MinerClient,
    MinerDirectory,
    MinerInfo,
    TransferError,
)

__all__ = ["TERRITORY_TTL", "GroupCommit", "PlacedUnit", "UploadPath"]

log = logging.getLogger("deoss.objects")
PUT_ATTEMPTS = 4
INLINE_SEAL = 64 * 1024  # smaller objects are sealed on the event loop
TERRITORY_TTL = 2.0  # seconds a territory's chain view serves upload checks


async def _read_all(body: AsyncIterable[bytes], size: int) -> bytes:
    """A small body whole (at most ``size`` bytes: the length it declared)."""
    data = bytearray()
    async for chunk in body:
        data += chunk
        if len(data) > size:
            raise ValueError(f"the body is longer than its {size} declared bytes")
    return bytes(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacedUnit:
    """An encoding unit whose fragments are on miners (receipts in hand) but that no
    object names yet: a multipart upload's part, or a single upload before its commit.
    Segment numbers are the unit's own, from 0."""

    unit_id: str
    algorithm: str
    plain_size: int
    cipher_size: int
    wrapped_key: WrappedKey
    md5: str
    segments: list[SegmentRecord]
    placements: list[FragmentPlacement]

    def to_json(self) -> dict[str, Any]:
        return {
            **{
                key: getattr(self, key)
                for key in (
                    "unit_id",
                    "algorithm",
                    "plain_size",
                    "cipher_size",
                    "md5",
                )
            },
            "wrapped_key": self.wrapped_key.dumps(),
            "segments": [
                [s.seg_no, s.segment_id, s.stripe_count, s.cipher_size, s.fragment_size]
                for s in self.segments
            ],
            "placements": [
                [p.seg_no, p.idx, p.fragment_id, p.miner, p.size, p.block_roots.hex()]
                for p in self.placements
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlacedUnit":
        return cls(
            unit_id=data["unit_id"],
            algorithm=data["algorithm"],
            plain_size=data["plain_size"],
            cipher_size=data["cipher_size"],
            wrapped_key=WrappedKey.from_json(data["wrapped_key"]),
            md5=data["md5"],
            segments=[
                SegmentRecord(
                    fid="",
                    seg_no=s[0],
                    segment_id=s[1],
                    stripe_count=s[2],
                    cipher_size=s[3],
                    fragment_size=s[4],
                )
                for s in data["segments"]
            ],
            placements=[
                FragmentPlacement(
                    fid="",
                    seg_no=p[0],
                    idx=p[1],
                    fragment_id=p[2],
                    miner=p[3],
                    size=p[4],
                    block_roots=bytes.fromhex(p[5]),
                )
                for p in data["placements"]
            ],
        )


@dataclass
class _Upload:
    layout: Layout
    units: list[UnitRecord] = field(default_factory=list)
    segments: list[SegmentRecord] = field(default_factory=list)
    placements: list[FragmentPlacement] = field(default_factory=list)


class GroupCommit:
    """Uploads committed to the index together: those that finish while a commit is
    under way go in the next one, one transaction (one sync of the database) for all.
    Each still stands alone: one that fails gets its own error."""

    def __init__(self, index: MetadataIndex) -> None:
        self.index = index
        self._waiting: list[tuple[UploadCommit, asyncio.Future[ObjectRecord]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def commit(self, upload: UploadCommit) -> ObjectRecord:
        """The version as written (its version id decided inside the transaction)."""
        done: asyncio.Future[ObjectRecord] = asyncio.get_running_loop().create_future()
        self._waiting.append((upload, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                outcomes = await asyncio.to_thread(
                    self.index.commit_uploads, [upload for upload, _ in batch]
                )
            except Exception as exc:  # the transaction itself: every upload in it failed
                outcomes = [exc] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue  # its request went away; the upload is committed all the same
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)


class UploadPath:
    """The upload half of ``ObjectService``."""

    # What the service holds (gateway.objects.ObjectService sets it).
    params: NetworkParams
    index: MetadataIndex
    directory: MinerDirectory
    client: MinerClient
    chain: Chain
    master_key: bytes
    _argon2: asyncio.Semaphore
    _reserved: dict[tuple[str, str], int]  # uploads in flight, per territory
    # The chain's views of territories lately asked: (when, index generation, view).
    _territories: dict[tuple[str, str], tuple[float, int, "views.TerritoryView | None"]]
    territory_ttl: float
    _commits: "GroupCommit"
    _packer: Packer | None  # None: nothing is packed
    on_committed: Callable[[], None] | None  # the deal tracker's wake-up

    def committed(self) -> None:
        if self.on_committed is not None:
            self.on_committed()

    async def layout_for(self, copies: int | None) -> Layout:
        k, n = self.params.data_shards, self.params.total_shards
        if copies is not None:
            default_copies = -(-n // k)
            if copies < default_copies or copies * k > 255:
                raise InvalidCopies(copies, default_copies, 255 // k)
            n = copies * k
            miners = len(await self.directory.miners())
            if miners < n:
                raise TooManyCopies(copies, n, miners, miners // k)
        return Layout.from_params(self.params, total_shards=n)

    async def _territory(self, owner: str, territory: str) -> views.TerritoryView | None:
        """The chain's view of a territory, asked again after ``territory_ttl`` seconds or
        once any of this gateway's versions reached the chain (whose view then counts
        them, where the index no longer does): not one chain query per upload."""
        key = (owner, territory)
        cached = self._territories.get(key)
        generation = self.index.declared_generation
        if cached is not None:
            asked, seen, found = cached
            if seen == generation and time.monotonic() - asked < self.territory_ttl:
                return found
        found = await views.territory(self.chain, owner=owner, name=territory)
        self._territories[key] = (time.monotonic(), generation, found)
        return found

    async def _check_territory(self, owner: str, territory: str, need: int) -> None:
        found = await self._territory(owner, territory)
        if found is None:
            raise NoSuchTerritory(owner, territory)
        if found.state != "active":
            raise TerritoryNotActive(territory, found.state, found.deadline)
        pending = self.index.pending_bytes(owner, territory) + self._reserved.get(
            (owner, territory), 0
        )
        if found.remaining - pending < need:
            raise InsufficientTerritorySpace(
                territory,
                need,
                total=found.total,
                held=found.total - found.remaining,
                pending=pending,
            )

    @contextlib.asynccontextmanager
    async def reserved(self, owner: str, territory: str, need: int) -> AsyncIterator[None]:
        """Checks that ``need`` bytes fit in the territory, then holds them for the block:
        an upload's bytes count as pending from its check until its commit (or failure),
        so concurrent uploads cannot each pass on the same free space. Nothing awaits
        between the check and the hold."""
        await self._check_territory(owner, territory, need)
        key = (owner, territory)
        self._reserved[key] = self._reserved.get(key, 0) + need
        try:
            yield
        finally:
            self._reserved[key] -= need
            if not self._reserved[key]:
                del self._reserved[key]

    def max_object_size(self, layout: Layout) -> int:
        """The chain's limit: ``max_segments_per_file`` segments of plaintext."""
        return self.params.max_segments_per_file * layout.stripes_per_segment * layout.chunk_plain

    def _check_size(self, layout: Layout, size: int) -> None:
        if size > self.max_object_size(layout):
            raise ObjectTooLarge(size, self.max_object_size(layout))

    async def check_upload(self, owner: str, territory: str, size: int, copies: int | None) -> None:
        """The checks an upload passes before any of its bytes are read."""
        layout = await self.layout_for(copies)
        self._check_size(layout, size)
        await self._check_territory(owner, territory, layout.stored_size(size))

    @contextlib.asynccontextmanager
    async def reserving_upload(
        self, owner: str, territory: str, size: int, copies: int | None
    ) -> AsyncIterator[None]:
        """``check_upload``, then its stored size held until the block ends (a part
        being encoded, until it is recorded)."""
        layout = await self.layout_for(copies)
        self._check_size(layout, size)
        async with self.reserved(owner, territory, layout.stored_size(size)):
            yield

    async def check_unit(
        self, owner: str, territory: str, layout: Layout, unit: "PlacedUnit"
    ) -> None:
        """The upload checks, once a body of unknown length has been placed."""
        self._check_size(layout, unit.plain_size)
        stored = sum(s.fragment_size for s in unit.segments) * layout.n
        await self._check_territory(owner, territory, stored)

    async def put(
        self,
        *,
        owner: str,
        territory: str,
        name: str,
        body: AsyncIterable[bytes],
        size_hint: int | None,
        content_type: str = "application/octet-stream",
        copies: int | None = None,
        secret: Secret = None,
        meta: dict[str, Any] | None = None,
        write: NameWrite = PLAIN_WRITE,
        packable: bool = False,
    ) -> ObjectRecord:
        """Stores an object under ``name`` (a new version of it: replacing the null one
        unless the name's bucket has versioning); ``meta`` is kept with the version (user
        metadata, content headers). ``size_hint`` None is a body of unknown length: the
        territory is checked again once its stored size is known. ``packable``: a small
        one may share a pack (docs/packing.md §1; never through the native API, whose
        answer names the object's own chain file)."""
        layout = await self.layout_for(copies)
        self._check_size(layout, size_hint or 0)
        estimate = layout.stored_size(size_hint or 0)
        packer = self._packer
        if packable and packer is not None and copies is None and size_hint is not None:
            packable = size_hint <= self.params.pack_limit
        else:
            packable = False
        if packer is not None and packable:
            async with self.reserved(owner, territory, estimate):
                plaintext = await _read_all(body, size_hint or 0)
                sealed, wrapped = await self._member(plaintext, packer.layout, secret)
                member = Member(
                    owner=owner,
                    territory=territory,
                    name=name,
                    content_type=content_type,
                    meta=meta or {},
                    write=write,
                    sealed=sealed,
                    wrapped_key=wrapped,
                )
                return await packer.put(member)
        async with self.reserved(owner, territory, estimate):
            unit = await self.encode_unit(body, layout, secret)
            if size_hint is None:
                await self.check_unit(owner, territory, layout, unit)
            return await self.commit(
                owner=owner,
                territory=territory,
                name=name,
                layout=layout,
                units=[unit],
                content_type=content_type,
                meta=meta or {},
                etag=unit.md5,
                write=write,
            )

    async def copy(
        self,
        source: ObjectRecord,
        *,
        owner: str,
        territory: str,
        name: str,
        content_type: str,
        meta: dict[str, Any],
        write: NameWrite = PLAIN_WRITE,
    ) -> ObjectRecord:
        """Another version naming ``source``'s stored file: no data moves. The chain adds
        a reference to the file and charges ``territory`` its stored bytes."""
        await self._check_territory(owner, territory, source.stored)
        record = dataclasses.replace(
            source,
            owner=owner,
            name=name,
            territory=territory,
            content_type=content_type,
            meta=meta,
            state=PENDING,
            created_at=time.time(),
        )
        declaration = self._declaration_of(record)
        if declaration is None:
            raise NoSuchFile(source.fid)
        written = await asyncio.to_thread(self.index.add_name, record, declaration, write)
        self.committed()
        return written

    async def set_meta(self, record: ObjectRecord, meta: dict[str, Any]) -> None:
        """A version's metadata changed in place (its tags), the chain's sealed copy too."""
        changed = dataclasses.replace(record, meta=meta)
        declaration = None if record.marker else self._declaration_of(changed)
        await asyncio.to_thread(self.index.update_meta, record, meta, declaration)
        self.committed()

    def _declaration_of(self, record: ObjectRecord) -> dict[str, Any] | None:
        """The declaration of another reference to ``record``'s file (a copy, changed
        metadata), from one the file already has; None when it has none."""
        template = self.index.declaration_of(record.fid)
        if template is None:
            return None
        declaration = {
            **template,
            "owner": record.owner,
            "territory": record.territory,
            "sealed_meta": self.sealed_meta(record, self.index.units(record.fid, record.slot)),
        }
        declaration.pop("replaces", None)
        if record.slot is not None:  # a packed object: its own share of the pack
            declaration.update(share=record.stored, slot=record.slot)
        return declaration

    def sealed_meta(self, record: ObjectRecord, units: Sequence[UnitRecord]) -> str:
        """A version's ``sealed_meta``: what ``deoss recover`` needs to name it again."""
        return SealedMeta.of(record, units).seal(self.master_key)

    async def _member(
        self, plaintext: bytes, layout: Layout, secret: Secret
    ) -> tuple[SealedMember, WrappedKey]:
        """A small object sealed as its own unit, its data key wrapped."""
        if len(plaintext) <= INLINE_SEAL:
            sealed = seal_member(layout, plaintext)
        else:
            sealed = await asyncio.to_thread(seal_member, layout, plaintext)
        return sealed, await self._wrap(sealed.dek, sealed.unit_id, secret)

    async def _wrap(self, dek: bytes, unit_id: bytes, secret: Secret) -> WrappedKey:
        if isinstance(secret, bytes):
            return wrap_with_customer_key(dek, unit_id, secret)
        if secret is not None:
            async with self._argon2:
                return await asyncio.to_thread(wrap_with_password, dek, unit_id, secret)
        return wrap_master(dek, unit_id, self.master_key)

    async def place_segment(self, layout: Layout, segment: EncodedSegment) -> PlacedSegment:
        """One segment as a file of its own (a pack), its fragments on n miners."""
        upload = _Upload(layout)
        await self._store_segment(upload, segment)
        fid = codec.fid_of([segment.segment_id])
        return PlacedSegment(
            fid,
            [dataclasses.replace(s, fid=fid) for s in upload.segments],
            [dataclasses.replace(p, fid=fid) for p in upload.placements],
        )

    async def commit_one(self, commit: UploadCommit) -> ObjectRecord:
        """One upload committed through the group commit; the tracker woken."""
        written = await self._commits.commit(commit)
        self.committed()
        return written

    async def encode_unit(
        self, body: AsyncIterable[bytes], layout: Layout, secret: Secret = None
    ) -> PlacedUnit:
        """One encoding unit (fresh data key): encrypted, encoded and placed on miners a
        segment at a time, every fragment with a receipt. Nothing is recorded: the
        fragments stay orphans on their miners until a commit names them."""
        encoder = UnitEncoder(layout)
        upload = _Upload(layout)
        # One segment is stored while the next is read and encoded: the miners and the
        # encoder work at once, for at most one more segment in memory. Segments are
        # popped, not iterated: a loop variable would keep a stored segment alive.
        storing: asyncio.Task[None] | None = None

        async def store(segment: EncodedSegment) -> None:
            nonlocal storing
            if storing is not None:
                await storing  # in order, and never two segments in flight
            storing = asyncio.create_task(self._store_segment(upload, segment))

        try:
            async for chunk in body:
                done = await asyncio.to_thread(encoder.feed, chunk)
                while done:
                    await store(done.pop(0))
            done = await asyncio.to_thread(encoder.finish)
            while done:
                await store(done.pop(0))
            if storing is not None:
                await storing
        finally:
            # The body broke, or a store failed: the one in flight stops too (its
            # fragments are orphans), and its outcome is collected.
            if storing is not None:
                storing.cancel()
                await asyncio.gather(storing, return_exceptions=True)
        wrapped = await self._wrap(encoder.dek, encoder.unit_id, secret)
        return PlacedUnit(
            unit_id=encoder.unit_id.hex(),
            algorithm=encoder.algorithm,
            plain_size=encoder.plain_size,
            cipher_size=encoder.cipher_size,
            wrapped_key=wrapped,
            md5=encoder.md5,
            segments=upload.segments,
            placements=upload.placements,
        )

    async def commit(
        self,
        *,
        owner: str,
        territory: str,
        name: str,
        layout: Layout,
        units: list[PlacedUnit],
        content_type: str,
        meta: dict[str, Any],
        etag: str,
        write: NameWrite = PLAIN_WRITE,
    ) -> ObjectRecord:
        """Records placed units, in order, as one object under ``name``: file, version
        and declaration in one index transaction. No data moves. Returns the version as
        written."""
        unit_records: list[UnitRecord] = []
        segments: list[SegmentRecord] = []
        placements: list[FragmentPlacement] = []
        for unit_no, unit in enumerate(units):
            base = len(segments)
            unit_records.append(
                UnitRecord(
                    fid="",
                    unit_no=unit_no,
                    unit_id=unit.unit_id,
                    algorithm=unit.algorithm,
                    plain_size=unit.plain_size,
                    cipher_size=unit.cipher_size,
                    wrapped_key=unit.wrapped_key,
                    first_segment=base,
                    segment_count=len(unit.segments),
                )
            )
            segments += [dataclasses.replace(s, seg_no=base + s.seg_no) for s in unit.segments]
            placements += [dataclasses.replace(p, seg_no=base + p.seg_no) for p in unit.placements]
        fid = codec.fid_of([s.segment_id for s in segments])
        # The fid is known only now: the records made while placing get it here.
        unit_records = [dataclasses.replace(u, fid=fid) for u in unit_records]
        segments = [dataclasses.replace(s, fid=fid) for s in segments]
        placements = [dataclasses.replace(p, fid=fid) for p in placements]
        size = sum(u.plain_size for u in units)
        record = ObjectRecord(
            fid=fid,
            owner=owner,
            name=name,
            territory=territory,
            size=size,
            content_type=content_type,
            etag=etag,
            data_shards=layout.k,
            total_shards=layout.n,
            stored=sum(s.fragment_size for s in segments) * layout.n,
            state=PENDING,
            created_at=time.time(),
            meta=meta,
        )
        sealed = self.sealed_meta(record, unit_records)
        declared = declaration(
            owner=owner,
            territory=territory,
            key=name,
            fid=fid,
            size=size,
            data_shards=layout.k,
            total_shards=layout.n,
            segments=segments,
            placements=placements,
            sealed_meta=sealed,
        )
        return await self.commit_one(
            UploadCommit(record, unit_records, segments, placements, declared, write)
        )

    async def _store_segment(self, upload: _Upload, segment: EncodedSegment) -> None:
        layout = upload.layout
        seg_no = len(upload.segments)
        size = segment.fragment_size
        share = await self.directory.may_share(layout.n)
        miners = await self.directory.choose(layout.n, size, share=share)
        if len(miners) < layout.n:
            # Apart from each other or not at all: the chain would refuse the deal for good
            # after the upload was answered.
            raise InsufficientMinerSpace(layout.n, size)
        used = {m.account for m in miners}
        results = await asyncio.gather(
            *(self._put_fragment(segment, idx, miners[idx], used, share) for idx in range(layout.n))
        )
        upload.segments.append(
            SegmentRecord(
                fid="",
                seg_no=seg_no,
                segment_id=segment.segment_id,
                stripe_count=segment.stripe_count,
                cipher_size=segment.cipher_size,
                fragment_size=size,
            )
        )
        for idx, miner in enumerate(results):
            upload.placements.append(
                FragmentPlacement(
                    fid="",
                    seg_no=seg_no,
                    idx=idx,
                    fragment_id=segment.fragment_ids[idx],
                    miner=miner,
                    size=size,
                    block_roots=segment.packed_block_roots(idx),
                )
            )

    async def _put_fragment(
        self, segment: EncodedSegment, idx: int, miner: MinerInfo, used: set[str], share: bool
    ) -> str:
        """Puts one fragment, retrying on miners the segment does not use yet (on any
        with ``share``); the fragments already put are orphans their miners drop if the
        upload fails."""
        blocks, fragment_id = segment.blocks[idx], segment.fragment_ids[idx]
        size = segment.fragment_size
        for attempt in range(PUT_ATTEMPTS):
            try:
                if size <= SMALL_FRAGMENT:
                    await self.client.put_small(miner, fragment_id, segment.fragment(idx))
                else:
                    await self.client.put(miner, fragment_id, blocks)
                return miner.account
            except TransferError as exc:
                log.warning("fragment %s on %s: %s", fragment_id, miner.account, exc.reason)
                self.directory.mark_failed(miner.account)
                if attempt == PUT_ATTEMPTS - 1:
                    break
                others = await self.directory.choose(1, size, exclude=sorted(used), share=share)
                if not others:
                    break
                miner = others[0]
                used.add(miner.account)
        raise MinersUnavailable(fragment_id)
