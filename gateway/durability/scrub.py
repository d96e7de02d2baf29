"""Scrubbing (docs/durability.md §4): fetching a sample of the fragments this gateway
placed and checking each against its id, so damage is found before a read needs the
fragment. A fragment that does not come back intact is reported to the chain
(``audit.report_fragment``): its miner gets a targeted challenge, and a failed proof
opens the restoral order the repair worker then serves.

The gateway scrubs a small sample every ``scrub_interval``; ``deoss scrub`` checks as much
as asked, at once.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from chain_client.account import ChainAccount
from chain_client.errors import ChainError
from chain_client.keys import load_signer
from chain_client.merkle import merkle_root
from chain_client.rpc_client import HttpChain
from gateway import codec
from gateway.config import GatewayConfig
from gateway.durability.repair import FragmentMover
from gateway.index import MetadataIndex
from gateway.pack import file_layout
from gateway.records import FragmentPlacement
from gateway.transfer import MinerClient, MinerDirectory

__all__ = ["ScrubReport", "ScrubStats", "Scrubber", "scrub_now"]

log = logging.getLogger("deoss.scrub")


@dataclass
class ScrubReport:
    checked: int = 0
    bad: list[tuple[str, int, int]] = field(default_factory=list)  # (fid, segment, index)


@dataclass
class ScrubStats:
    """Every scrub of this ``Scrubber`` together (the gateway's metrics read its own)."""

    checked: int = 0
    bad: int = 0


class Scrubber:
    def __init__(
        self,
        *,
        index: MetadataIndex,
        mover: FragmentMover,
        account: ChainAccount,
        rng: random.Random | None = None,
    ) -> None:
        self.index = index
        self.mover = mover
        self.account = account
        self.rng = rng or random.Random()
        self.stats = ScrubStats()

    async def scrub(
        self, sample: float = 1.0, *, progress: Callable[[int], None] | None = None
    ) -> ScrubReport:
        """Checks each fragment with probability ``sample``; reports the bad ones.
        ``progress(1)`` after each fragment looked at, checked or not."""
        report = ScrubReport()
        after = ""
        while fids := self.index.file_ids(after, 256):
            for fid in fids:
                for placement in self.index.fragments(fid):
                    if progress is not None:
                        progress(1)
                    if self.rng.random() >= sample:
                        continue
                    report.checked += 1
                    intact, block = await self._check(placement)
                    self.stats.checked += 1
                    if intact:
                        continue
                    self.stats.bad += 1
                    report.bad.append((fid, placement.seg_no, placement.idx))
                    await self._report(fid, placement.seg_no, placement.idx, block)
            after = fids[-1]
        return report

    async def _check(self, placement: FragmentPlacement) -> tuple[bool, int | None]:
        """(intact, the first block that fails its root, when that can be told)."""
        data = await self.mover.fetch(placement)
        if data is None:
            return False, None
        if merkle_root(data, self.mover.params.leaf_size).hex() == placement.fragment_id:
            return True, None
        record = self.index.object(placement.fid)
        segment = self.index.segments(placement.fid)[placement.seg_no]
        if record is None:
            return False, None
        layout = file_layout(
            self.mover.params, total_shards=record.total_shards, block_size=record.block_size
        )
        roots = await asyncio.to_thread(codec.block_roots, data, segment.stripe_count, layout)
        for block, root in enumerate(roots):
            if root != placement.block_root(block):
                return False, block
        return False, None

    async def _report(self, fid: str, segment: int, index: int, block: int | None) -> None:
        if not self.index.file_active(fid):
            return  # the chain challenges only fragments of active files
        try:
            # With the bad block named, the challenge covers all its leaves: a sample
            # could miss the one damaged leaf.
            await self.account.call(
                "audit.report_fragment",
                fid=fid,
                segment=segment,
                index=index,
                block=block,
                reason="scrub: the fragment did not come back intact",
            )
        except ChainError as exc:
            log.warning("could not report %s/%d/%d: %s", fid, segment, index, exc)

    async def run(self, interval: float, sample: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ChainError):
                report = await self.scrub(sample)
                if report.bad:
                    log.warning("scrub: %d of %d fragments bad", len(report.bad), report.checked)


async def scrub_now(
    config: GatewayConfig, sample: float, *, progress: Callable[[int], None] | None = None
) -> ScrubReport:
    """``deoss scrub``: beside a running gateway (its index is shared, WAL), or alone."""
    keypair = load_signer(config.key_spec, dev=config.dev)
    chain = HttpChain(config.chain_rpc)
    index = MetadataIndex(config.data_dir / "index.db")
    client = MinerClient(keypair)
    try:
        _, genesis = await chain.genesis()
        mover = FragmentMover(
            params=genesis.params, index=index, directory=MinerDirectory(chain), client=client
        )
        scrubber = Scrubber(index=index, mover=mover, account=ChainAccount(chain, keypair))
        return await scrubber.scrub(sample, progress=progress)
    finally:
        await client.close()
        await chain.close()
        index.close()
