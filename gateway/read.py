"""The read path of the object service (DESIGN.md §5): only the needed blocks are
fetched, verified, decoded and decrypted.

Systematic fragments first (decoding is then a pass-through), one ranged GET per
fragment per segment; a block that fails its root is fetched from another fragment and
reported to the chain; a miner late or failing is asked last for ``LATE_SECONDS``.
"""

import asyncio
import collections
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from chain_client.account import ChainAccount
from chain_client.errors import ChainError
from chain_client.params import NetworkParams
from gateway import codec, pack
from gateway.codec import Layout
from gateway.errors import (
    CipherRequired,
    FragmentsUnavailable,
    NoSuchFile,
    ReplacedMeanwhile,
    SseKeyRequired,
    WrongCipher,
    WrongSseKey,
)
from gateway.index import MetadataIndex
from gateway.keywrap import (
    KeyRequired,
    Secret,
    WrongKey,
    unwrap,
)
from gateway.pack import file_layout
from gateway.records import (
    FragmentPlacement,
    ObjectRecord,
    UnitRecord,
)
from gateway.stripe_cache import StripeCache
from gateway.transfer import (
    MinerClient,
    MinerDirectory,
    TransferError,
)

__all__ = ["ReadPath"]

log = logging.getLogger("deoss.objects")
FETCH_STRIPES = 8  # stripes fetched per ranged GET: 2 MiB per fragment at the defaults
# Stripes this small are decoded and decrypted on the event loop: a trip to a worker
# thread costs more than the work (tens of microseconds).
INLINE_BYTES = 64 * 1024
HEDGE_FACTOR = 4.0  # a fetch this many times slower than usual gets a hedge
HEDGE_DELAY = (0.2, 5.0)  # bounds of the hedge delay, seconds
LATE_SECONDS = 30.0  # a miner that was late or failed a read is asked last this long


class ReadPath:
    """The read half of ``ObjectService``."""

    # What the service holds (gateway.objects.ObjectService sets it).
    params: NetworkParams
    index: MetadataIndex
    directory: MinerDirectory
    client: MinerClient
    account: ChainAccount
    master_key: bytes
    fragments_reported: int  # a counter for the metrics
    _argon2: asyncio.Semaphore
    # Moving averages of fetch time per byte and of fetch size, for the hedge delay.
    _fetch_per_byte: float
    _fetch_bytes: float
    # Miners whose reads were late or failed (when): later reads ask them last, so a
    # stalled miner costs one hedge delay, not one per stripe group.
    _late: dict[str, float]
    stripes: StripeCache  # ciphertext of small objects lately written or read
    _tasks: set["asyncio.Task[Any]"]
    # Files being read now: the tracker holds back the chain calls that would make
    # their miners drop them until the reads end (docs/s3.md §7).
    _reading: "collections.Counter[str]"

    def reading(self, fid: str) -> bool:
        return self._reading[fid] > 0

    def lookup(self, fid: str, owner: str) -> ObjectRecord:
        record = self.index.lookup(fid, owner)
        # SECURITY: someone else's fid looks exactly like a missing one.
        if record is None:
            raise NoSuchFile(fid)
        return record

    def data_key(self, unit: UnitRecord, secret: Secret) -> bytes:
        try:
            return unwrap(
                unit.wrapped_key,
                bytes.fromhex(unit.unit_id),
                master_key=self.master_key,
                password=secret if isinstance(secret, str) else None,
                customer_key=secret if isinstance(secret, bytes) else None,
            )
        except KeyRequired as exc:
            raise SseKeyRequired() if exc.scheme == "sse-c" else CipherRequired() from None
        except WrongKey as exc:
            raise WrongSseKey() if exc.scheme == "sse-c" else WrongCipher() from None

    async def _unit_key(self, unit: UnitRecord, secret: Secret) -> bytes:
        if not isinstance(secret, str):
            return self.data_key(unit, secret)  # one AEAD open of 32 bytes: microseconds
        async with self._argon2:  # 64 MiB of memory each
            return await asyncio.to_thread(self.data_key, unit, secret)

    async def check_secret(self, record: ObjectRecord, secret: Secret) -> None:
        """Raises as a read would when ``secret`` does not open the object (for HEAD)."""
        for unit in self.index.units(record.fid, record.slot):
            await self._unit_key(unit, secret)

    async def read(
        self, record: ObjectRecord, start: int, end: int, secret: Secret
    ) -> AsyncGenerator[bytes, None]:
        """Plaintext bytes ``start..end`` (exclusive), streamed in order, across the
        object's units (one per part of a multipart upload). A unit's key is opened
        before any of its bytes: a wrong Cipher is an error, never garbage.

        The placements it needs are read from the index at once, before the first byte,
        and the file counts as being read until the stream ends: an overwrite or delete
        meanwhile changes neither what this read fetches nor, until it ends, what the
        miners keep (the tracker holds the chain call back)."""
        if record.slot is not None:
            async for piece in self._read_member(record, start, end, secret):
                yield piece
            return
        layout = Layout.from_params(self.params, total_shards=record.total_shards)
        plans: list[tuple[UnitRecord, list[codec.StripeSlice]]] = []
        offset = 0
        units = self.index.units(record.fid)
        for unit in units:
            low, high = offset, offset + unit.plain_size
            offset = high
            if high <= start or low >= end:
                continue
            plan = codec.plan_range(
                layout, unit.plain_size, max(start, low) - low, min(end, high) - low
            )
            if plan:
                plans.append((unit, plan))
        placements: dict[int, list[FragmentPlacement]] = {}
        if plans:
            first = plans[0][0].first_segment + plans[0][1][0].segment
            last = plans[-1][0].first_segment + plans[-1][1][-1].segment
            for placement in self.index.fragments(record.fid, first, last):
                placements.setdefault(placement.seg_no, []).append(placement)
        if not units or any(
            unit.first_segment + piece.segment not in placements
            for unit, plan in plans
            for piece in plan
        ):
            raise ReplacedMeanwhile(record.name)
        self._reading[record.fid] += 1
        try:
            for unit, plan in plans:
                async for piece in self._read_unit(record, layout, unit, plan, placements, secret):
                    yield piece
        finally:
            self._reading[record.fid] -= 1
            if not self._reading[record.fid]:
                del self._reading[record.fid]

    async def _read_member(
        self, record: ObjectRecord, start: int, end: int, secret: Secret
    ) -> AsyncIterator[bytes]:
        """A packed object's bytes: the pack's stripes its ciphertext spans, from k
        verified fragments, and only its own chunks opened (docs/packing.md §2)."""
        layout = file_layout(
            self.params, total_shards=record.total_shards, block_size=record.block_size
        )
        units = self.index.units(record.fid, record.slot)
        segments = self.index.segments(record.fid)
        placements = self.index.fragments(record.fid, 0)
        offset = units[0].cipher_offset if units else None
        if offset is None or not segments:
            raise ReplacedMeanwhile(record.name)
        unit = units[0]
        plan = pack.plan_member_read(
            layout,
            offset=offset,
            plain_size=unit.plain_size,
            pack_cipher_size=segments[0].cipher_size,
            start=start,
            end=end,
        )
        self._reading[record.fid] += 1
        try:
            dek = await self._unit_key(unit, secret)
            stripes = await self._fetch_stripes(record, layout, plan.stripes, 0, placements)
            yield pack.open_member(
                layout,
                plan,
                stripes,
                algorithm=codec.algorithm_named(unit.algorithm),
                dek=dek,
                unit_id=bytes.fromhex(unit.unit_id),
            )
        finally:
            self._reading[record.fid] -= 1
            if not self._reading[record.fid]:
                del self._reading[record.fid]

    async def member_ciphertext(self, record: ObjectRecord, unit: UnitRecord) -> bytes:
        """A packed object's ciphertext as its pack holds it (``record`` names the pack),
        verified block by block: what a repack moves, with no key."""
        layout = file_layout(
            self.params, total_shards=record.total_shards, block_size=record.block_size
        )
        segment = self.index.segments(record.fid)[0]
        if unit.cipher_offset is None:
            raise ValueError(f"unit {unit.unit_id} is not packed")
        plan = pack.plan_member_read(
            layout,
            offset=unit.cipher_offset,
            plain_size=unit.plain_size,
            pack_cipher_size=segment.cipher_size,
            start=0,
            end=unit.plain_size,
        )
        placements = self.index.fragments(record.fid, 0)
        stripes = await self._fetch_stripes(record, layout, plan.stripes, 0, placements)
        return b"".join(stripes)[plan.skip : plan.skip + plan.cipher_len]

    async def _read_unit(
        self,
        record: ObjectRecord,
        layout: Layout,
        unit: UnitRecord,
        plan: list[codec.StripeSlice],
        placements: dict[int, list[FragmentPlacement]],
        secret: Secret,
    ) -> AsyncIterator[bytes]:
        dek = await self._unit_key(unit, secret)
        algorithm = codec.algorithm_named(unit.algorithm)
        unit_id = bytes.fromhex(unit.unit_id)
        index = 0
        while index < len(plan):
            group = [plan[index]]
            while (
                index + len(group) < len(plan)
                and len(group) < FETCH_STRIPES
                and plan[index + len(group)].segment == group[0].segment
            ):
                group.append(plan[index + len(group)])
            index += len(group)
            seg_no = unit.first_segment + group[0].segment  # the unit's, in the object
            stripes = await self._fetch_stripes(record, layout, group, seg_no, placements[seg_no])
            for piece, ciphertext in zip(group, stripes, strict=True):
                args = (algorithm, dek, unit_id, piece, ciphertext)
                if len(ciphertext) <= INLINE_BYTES:
                    yield codec.decrypt_stripe(*args)
                else:
                    yield await asyncio.to_thread(codec.decrypt_stripe, *args)

    async def _fetch_stripes(
        self,
        record: ObjectRecord,
        layout: Layout,
        group: list[codec.StripeSlice],
        seg_no: int,
        placements: list[FragmentPlacement],
    ) -> list[bytes]:
        """The ciphertext of consecutive stripes of one segment, from k verified blocks
        each; systematic fragments first, others when a fetch fails or lies. A small
        object's stripes come from the cache when they are there, and go into it."""
        cacheable = record.slot is not None or record.size <= self.stripes.object_limit
        if cacheable:
            cached = self.stripes.get(record.fid, seg_no, [piece.stripe for piece in group])
            if cached is not None:
                return cached
        first, last = group[0], group[-1]
        start, end = first.block_offset, last.block_offset + last.block_len
        # 0..k-1 first (decoding is then a copy), but miners lately slow or failing last.
        unused = sorted(range(layout.n), key=lambda i: (self._is_late(placements[i].miner), i))
        running: dict[asyncio.Task[list[bytes] | None], int] = {}

        def launch(count: int) -> None:
            for i in unused[:count]:
                fetch = self._fetch_blocks(record, placements[i], group, start, end, layout)
                running[asyncio.create_task(fetch)] = i
            del unused[:count]

        good: dict[int, list[bytes]] = {}
        launch(layout.k)
        try:
            while len(good) < layout.k:
                if not running:
                    raise FragmentsUnavailable(record.fid, seg_no, len(good), layout.k)
                done, _ = await asyncio.wait(
                    running, timeout=self._hedge_delay(), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    for i in running.values():
                        self._late[placements[i].miner] = time.monotonic()
                    launch(1)  # a miner is late: hedge with another fragment
                for task in done:
                    i = running.pop(task)
                    blocks = task.result()
                    if blocks is None:
                        self._late[placements[i].miner] = time.monotonic()
                        launch(1)  # failed or lied: another fragment instead
                    else:
                        good[i] = blocks
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        result = []
        for position, piece in enumerate(group):
            args = (layout, {i: good[i][position] for i in good}, piece.block_len, piece.cipher_len)
            if piece.cipher_len <= INLINE_BYTES:
                result.append(codec.decode_stripe(*args))
            else:
                result.append(await asyncio.to_thread(codec.decode_stripe, *args))
        if cacheable:
            for piece, data in zip(group, result, strict=True):
                self.stripes.put(record.fid, seg_no, piece.stripe, data)
        return result

    def _is_late(self, miner: str) -> bool:
        since = self._late.get(miner)
        if since is not None and time.monotonic() - since >= LATE_SECONDS:
            del self._late[miner]
            since = None
        return since is not None

    def _hedge_delay(self) -> float:
        """How long to wait for the first of a batch of fetches before asking one more
        miner: a few times what a fetch usually takes, within HEDGE_DELAY bounds."""
        usual = self._fetch_per_byte * self._fetch_bytes
        return min(max(HEDGE_FACTOR * usual, HEDGE_DELAY[0]), HEDGE_DELAY[1])

    async def _fetch_blocks(
        self,
        record: ObjectRecord,
        placement: FragmentPlacement,
        group: list[codec.StripeSlice],
        start: int,
        end: int,
        layout: Layout,
    ) -> list[bytes] | None:
        started = time.monotonic()
        try:
            miner = await self.directory.info(placement.miner)
            data = await self.client.get(miner, placement.fragment_id, start, end)
        except (TransferError, ChainError) as exc:
            log.warning("fragment %s: %s", placement.fragment_id, exc)
            self.directory.mark_failed(placement.miner)
            return None
        # Per byte, so that small and large reads share one estimate.
        per_byte = (time.monotonic() - started) / max(end - start, 1)
        self._fetch_per_byte += (per_byte - self._fetch_per_byte) * 0.1
        self._fetch_bytes += (end - start - self._fetch_bytes) * 0.1
        blocks = []
        for piece in group:
            offset = piece.block_offset - start
            block = data[offset : offset + piece.block_len]
            if not codec.verify_block(
                block,
                piece.stripe,
                piece.stripe_count,
                layout.leaves_per_block,
                layout.leaf_size,
                placement.block_root(piece.stripe),
            ):
                log.error(
                    "fragment %s from %s failed its block root",
                    placement.fragment_id,
                    placement.miner,
                )
                self._report(record.fid, placement, piece.stripe, "block failed its Merkle root")
                return None
            blocks.append(block)
        return blocks

    def _report(self, fid: str, placement: FragmentPlacement, block: int, reason: str) -> None:
        self.fragments_reported += 1

        async def report() -> None:
            try:
                await self.account.submit(
                    "audit.report_fragment",
                    fid=fid,
                    segment=placement.seg_no,
                    index=placement.idx,
                    block=block,
                    reason=reason,
                )
            except ChainError as exc:
                log.warning("could not report %s: %s", placement.fragment_id, exc)

        task = asyncio.create_task(report())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
