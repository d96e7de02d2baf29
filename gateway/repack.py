"""Repacking (docs/packing.md §6): a pack whose live members are charged less than
``below`` of its stored bytes has them moved, ciphertext as it is, into a new pack; the
chain moves each reference (guarded by the old pack's fid) and drops the old pack with
its last one.

Nothing is deleted here: the new pack holds receipts from n miners and its records are
committed before any reference moves, and the old pack's fragments go only when the
chain removes its file (after reads in flight, which hold the deletion back).
"""

import asyncio
import dataclasses
import logging
import time

from gateway.objects import ObjectService
from gateway.pack import encode_pack, file_layout
from gateway.records import ObjectRecord, PackedFile, UploadCommit
from gateway.sealed_meta import declaration

__all__ = ["Repacker"]

log = logging.getLogger("deoss.repack")


class Repacker:
    def __init__(self, service: ObjectService, *, below: float, interval: float = 30.0) -> None:
        self.service = service
        self.below = below
        self.interval = interval
        self.repacked = 0  # packs, for the metrics
        self.moved = 0  # members

    async def run(self) -> None:
        if self.below <= 0:
            return
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("repacking failed; trying again later")
            await asyncio.sleep(self.interval)

    async def step(self) -> int:
        """Repacks every pack due now; how many members moved."""
        moved = 0
        for fid in self.service.index.repack_candidates(self.below):
            moved += await self.repack(fid)
        return moved

    async def repack(self, fid: str) -> int:
        service = self.service
        members = service.index.pack_members(fid)
        if not members:
            return 0
        first = members[0][1][0]
        layout = file_layout(
            service.params, total_shards=first.total_shards, block_size=first.block_size
        )
        ciphertexts = [await service.member_ciphertext(first, unit) for unit, _ in members]
        segment, offsets = await asyncio.to_thread(encode_pack, layout, ciphertexts)
        placed = await service.place_segment(layout, segment)
        file = PackedFile(
            cipher_size=segment.cipher_size,
            stored=segment.fragment_size * layout.n,
            block_size=layout.block_size,
        )
        moves = []
        pack_record: ObjectRecord | None = None
        for slot, ((unit, versions), offset) in enumerate(zip(members, offsets, strict=True)):
            new_unit = dataclasses.replace(unit, fid=placed.fid, unit_no=slot, cipher_offset=offset)
            declared = []
            for version in versions:
                record = dataclasses.replace(version, fid=placed.fid, slot=slot)
                pack_record = pack_record or record
                entry = declaration(
                    owner=record.owner,
                    territory=record.territory,
                    key=record.ref,
                    fid=placed.fid,
                    size=segment.cipher_size,
                    data_shards=layout.k,
                    total_shards=layout.n,
                    segments=placed.segments,
                    placements=placed.placements,
                    sealed_meta=service.sealed_meta(record, [new_unit]),
                    share=record.stored,
                    slot=slot,
                    replaces=fid,
                )
                declared.append((version, entry))
            moves.append((unit, new_unit, declared))
        assert pack_record is not None
        pack = UploadCommit(
            dataclasses.replace(pack_record, created_at=time.time()),
            [],
            placed.segments,
            placed.placements,
            {},
            packed=file,
        )
        moved = await asyncio.to_thread(service.index.move_members, fid, pack, moves)
        service.committed()
        self.repacked += 1
        self.moved += moved
        log.info("repacked %s: %d of %d members moved to %s", fid, moved, len(moves), placed.fid)
        return moved
