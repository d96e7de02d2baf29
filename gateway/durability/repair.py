"""Moving and restoring fragments (DESIGN.md §8, docs/durability.md).

``FragmentMover`` puts one fragment of a segment on another miner: copied from its miner
when that still serves it intact (deal time: a miner that never reported), or rebuilt
from k verified siblings: ciphertext only, no key needed.

``RepairWorker`` drains the chain's restoral orders for the files this gateway holds:
lowest segment health first (the segment with the most open orders), a few at a time.
For each it claims the order, rebuilds the fragment, places it on a miner apart from the
segment's others (sharing one only when too few miners exist: reduced independence),
and completes the order with the new miner's signed receipt. The index moves the
fragment only once the chain has accepted the completion: nothing is dropped before its
replacement is confirmed. Each pass also takes the health of the gateway's segments from
the open orders (``segment_health``), for the metrics.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chain_client import views
from chain_client.account import ChainAccount
from chain_client.errors import ChainError, ExtrinsicFailed
from chain_client.merkle import merkle_root
from chain_client.params import NetworkParams
from gateway import codec
from gateway.errors import (
    FragmentsUnavailable,
    MinersUnavailable,
    NoSuchFile,
    ObjectError,
    RebuildMismatch,
)
from gateway.index import MetadataIndex
from gateway.pack import file_layout
from gateway.records import FragmentPlacement
from gateway.transfer import MinerClient, MinerDirectory, TransferError

__all__ = [
    "SEGMENT_HEALTH",
    "FragmentMover",
    "RepairStats",
    "RepairWorker",
    "keep_bonded",
    "segment_health",
]

log = logging.getLogger("deoss.repair")
PLACE_ATTEMPTS = 4
# What the chain's open restoral orders leave of a segment of n fragments: degraded,
# more than k (it survives one more loss); at_risk, exactly k (the next loss makes it
# unreadable); lost, fewer than k (it cannot be rebuilt).
SEGMENT_HEALTH = ("degraded", "at_risk", "lost")


class FragmentMover:
    def __init__(
        self,
        *,
        params: NetworkParams,
        index: MetadataIndex,
        directory: MinerDirectory,
        client: MinerClient,
    ) -> None:
        self.params = params
        self.index = index
        self.directory = directory
        self.client = client

    async def relocate(self, fid: str, seg_no: int, idx: int) -> str:
        """The deal tracker's move: copy or rebuild, place, and record at once (the chain
        is told by the declaration or the reassignment that follows)."""
        placements = self.index.fragments(fid, seg_no)
        data = await self.whole_fragment(placements[idx])
        if data is None:
            data = await self.rebuild(fid, seg_no, idx)
        miner, _ = await self.place(placements, idx, data)
        await asyncio.to_thread(self.index.move_fragment, fid, seg_no, idx, miner)
        return miner

    async def rebuild(self, fid: str, seg_no: int, idx: int) -> bytes:
        """Fragment ``idx`` of a segment from k siblings whose bytes hash to their ids."""
        record = self.index.object(fid)
        if record is None:
            raise NoSuchFile(fid)
        layout = file_layout(
            self.params, total_shards=record.total_shards, block_size=record.block_size
        )
        placements = self.index.fragments(fid, seg_no)
        siblings: dict[int, bytes] = {}
        for other in placements:  # systematic ones first: the cheapest to decode from
            if other.idx != idx and len(siblings) < layout.k:
                fetched = await self.whole_fragment(other)
                if fetched is not None:
                    siblings[other.idx] = fetched
        if len(siblings) < layout.k:
            raise FragmentsUnavailable(fid, seg_no, len(siblings), layout.k)
        rebuilt = await asyncio.to_thread(codec.rebuild_fragments, layout, siblings, [idx])
        data = rebuilt[idx]
        if merkle_root(data, self.params.leaf_size).hex() != placements[idx].fragment_id:
            raise RebuildMismatch(placements[idx].fragment_id)
        return data

    async def place(
        self, placements: list[FragmentPlacement], idx: int, data: bytes
    ) -> tuple[str, str]:
        """Puts the fragment on a miner apart from the segment's others, or, with too few
        miners, on any but its current one. Returns (miner, receipt signature)."""
        target = placements[idx]
        segment_miners = sorted({p.miner for p in placements})
        candidates = await self.directory.choose(PLACE_ATTEMPTS, len(data), exclude=segment_miners)
        if not candidates and await self.directory.may_share(len(placements)):
            # Reduced independence beats no redundancy: share a miner, the one holding the
            # fewest of this segment's fragments, so the segment spans as many as remain.
            held = Counter(p.miner for p in placements if p.idx != idx)
            candidates = sorted(
                await self.directory.choose(len(placements), len(data), exclude=[target.miner]),
                key=lambda miner: held[miner.account],
            )[:PLACE_ATTEMPTS]
        for miner in candidates:
            try:
                receipt = await self.client.put(miner, target.fragment_id, [data])
            except TransferError:
                self.directory.mark_failed(miner.account)
                continue
            return miner.account, str(receipt["signature"])
        raise MinersUnavailable(target.fragment_id)

    async def fetch(self, placement: FragmentPlacement) -> bytes | None:
        """A fragment's bytes as its miner serves them (unchecked); None if it does not."""
        try:
            miner = await self.directory.info(placement.miner)
            return await self.client.get(miner, placement.fragment_id, 0, placement.size)
        except (TransferError, ChainError):
            return None

    async def whole_fragment(self, placement: FragmentPlacement) -> bytes | None:
        """A fragment's bytes, only if they hash to its id."""
        data = await self.fetch(placement)
        if data is None:
            return None
        ok = merkle_root(data, self.params.leaf_size).hex() == placement.fragment_id
        return data if ok else None


@dataclass
class RepairStats:
    """Since the gateway started; ``failed`` counts attempts (an order that stays open is
    tried again, and may fail again, on a later pass)."""

    claimed: int = 0
    repaired: int = 0  # orders completed
    failed: int = 0
    bytes: int = 0  # of the fragments rebuilt for completed orders


def segment_health(
    orders: Iterable[views.RestoralOrderView], shards: Callable[[str], tuple[int, int] | None]
) -> dict[str, int]:
    """Segments by ``SEGMENT_HEALTH``, each open order a fragment lost; ``shards`` gives a
    file's (k, n), None when it is not this gateway's. Segments without an order are
    whole and not counted: that would take a scan of the index."""
    health = dict.fromkeys(SEGMENT_HEALTH, 0)
    for (fid, _), lost in Counter((o.fid, o.segment) for o in orders).items():
        found = shards(fid)
        if found is None:
            continue
        k, n = found
        left = n - lost
        health["degraded" if left > k else "at_risk" if left == k else "lost"] += 1
    return health


async def keep_bonded(account: ChainAccount) -> None:
    """Tops the gateway's bond back up to ``gateway_bond`` when a slash took it below, so
    miners keep serving it (docs/chain.md §5 oss); a gateway with no record registers
    elsewhere (``gateway.app.register_gateway``)."""
    record = await account.chain.query("oss.gateway", account=account.address)
    if record is None or record["bonded"]:
        return
    _, genesis = await account.chain.genesis()
    shortfall = genesis.params.gateway_bond - int(record["bond"])
    log.warning("gateway bond %s is short by %d; bonding it", record["bond"], shortfall)
    await account.call("oss.bond", amount=shortfall)


class RepairWorker:
    def __init__(
        self,
        *,
        index: MetadataIndex,
        mover: FragmentMover,
        account: ChainAccount,
        interval: float = 2.0,
        parallel: int = 2,
        batch: int = 64,
    ) -> None:
        self.index = index
        self.mover = mover
        self.account = account
        self.chain = account.chain
        self.interval = interval
        self.parallel = parallel
        self.batch = batch
        self.stats = RepairStats()
        self.segment_health = dict.fromkeys(SEGMENT_HEALTH, 0)  # as of the last pass
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.repair_pending():
                    pass
            except ChainError as exc:
                log.warning("repair: the chain is unreachable: %s", exc)
            except Exception:
                log.exception("repair pass failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def repair_pending(self) -> int:
        """One pass over the open orders of files this gateway holds; how many it repaired."""
        # A lapsed claim or a disproved report may have slashed the bond: miners serve
        # only bonded gateways, so restore it before anything else.
        await keep_bonded(self.account)
        orders = await views.restoral_orders(self.chain)
        self.segment_health = segment_health(orders, self._shards)
        height = (await self.chain.head()).best_block
        me = self.account.address
        # Health of a segment: the fewer fragments it has left, the more orders it has.
        open_per_segment = Counter((o.fid, o.segment) for o in orders)
        ours = [
            o
            for o in orders
            if (o.claimer in (None, me) or (o.deadline or 0) < height) and self.index.units(o.fid)
        ]
        ours.sort(key=lambda o: -open_per_segment[(o.fid, o.segment)])
        gate = asyncio.Semaphore(self.parallel)

        async def one(order: views.RestoralOrderView) -> bool:
            async with gate:
                mine = order.claimer == me and (order.deadline or 0) >= height
                return await self.repair(order, claimed=mine)

        done = await asyncio.gather(*(one(o) for o in ours[: self.batch]))
        return sum(done)

    def _shards(self, fid: str) -> tuple[int, int] | None:
        record = self.index.object(fid)
        return None if record is None else (record.data_shards, record.total_shards)

    async def repair(self, order: views.RestoralOrderView, *, claimed: bool = False) -> bool:
        fid, seg_no, idx = order.fid, order.segment, order.idx
        where: dict[str, Any] = {"fid": fid, "segment": seg_no, "index": idx}
        try:
            # Rebuilt before it is claimed: a claim this gateway cannot complete lapses and
            # costs it restoral_claim_slash of its bond (docs/chain.md §5).
            data = await self.mover.rebuild(fid, seg_no, idx)
            if not claimed:
                await self.account.call("file_bank.claim_restoral_order", **where)
                self.stats.claimed += 1
            placements = self.index.fragments(fid, seg_no)
            miner, receipt = await self.mover.place(placements, idx, data)
            await self.account.call(
                "file_bank.restoral_order_complete", **where, miner=miner, receipt=receipt
            )
        except ExtrinsicFailed as exc:
            log.warning("restoral order %s/%d/%d: %s", fid, seg_no, idx, exc)
            self.stats.failed += 1
            return False
        except ObjectError as exc:
            log.warning("restoral order %s/%d/%d: %s", fid, seg_no, idx, exc)
            self.stats.failed += 1
            return False
        # Only now, with the chain's record moved, does the index follow.
        await asyncio.to_thread(self.index.move_fragment, fid, seg_no, idx, miner)
        self.stats.repaired += 1
        self.stats.bytes += len(data)
        log.info("restored %s/%d/%d onto %s", fid, seg_no, idx, miner)
        return True
