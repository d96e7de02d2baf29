"""Test doubles of the gateway's neighbours, each held to the same contract as the real
thing."""

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

from chain_client.keys import dev_keypair
from chain_client.merkle import merkle_root
from chain_client.params import dev_params
from gateway.codec import Buffer
from gateway.transfer import MinerClient, MinerInfo, TransferError

__all__ = ["PlayedMiners"]

LEAF_SIZE = dev_params().leaf_size
FRAGMENT_SIZE = dev_params().fragment_size


class PlayedMiners(MinerClient):
    """Takes fragments without a network, as a real miner does (the contract suite,
    tests/gateway/test_miner_contract.py, runs against both): a body that is not its id
    is refused, a missing fragment or a range past its end is a TransferError. Each PUT
    first waits for ``gate`` (if any) and then fails if ``failing`` or its miner is one
    of ``refusing``; GETs of ``stalled`` miners never answer. Counts the PUTs in flight."""

    def __init__(self, leaf_size: int = LEAF_SIZE, fragment_size: int = FRAGMENT_SIZE) -> None:
        super().__init__(dev_keypair("Dave"))
        self.leaf_size = leaf_size
        self.fragment_size = fragment_size
        self.gate: asyncio.Event | None = None
        self.failing = False
        self.refusing: set[str] = set()
        self.stalled: set[str] = set()  # miners whose GETs never answer
        self.stored: list[str] = []
        self.data: dict[str, bytes] = {}
        self.gets: collections.Counter[str] = collections.Counter()
        self.in_flight = self.most_in_flight = self.cancelled = 0

    async def put(
        self, miner: MinerInfo, fragment_id: str, pieces: Sequence[Buffer]
    ) -> dict[str, Any]:
        return await self.put_small(miner, fragment_id, b"".join(pieces))

    async def put_small(self, miner: MinerInfo, fragment_id: str, data: bytes) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await asyncio.wait_for(self.gate.wait(), 10)
            if self.failing or miner.account in self.refusing:
                raise TransferError(miner.account, "refused")
            if not 1 <= len(data) <= self.fragment_size:
                raise TransferError(miner.account, "PUT 413: FragmentTooLarge")
            if merkle_root(data, self.leaf_size).hex() != fragment_id:
                raise TransferError(miner.account, "PUT 400: the body is not its id")
            self.stored.append(fragment_id)
            self.data[fragment_id] = data
            return {}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    async def get(self, miner: MinerInfo, fragment_id: str, start: int, end: int) -> bytes:
        self.gets[miner.account] += 1
        if miner.account in self.stalled:
            await asyncio.sleep(3600)
        data = self.data.get(fragment_id)
        if data is None:
            raise TransferError(miner.account, "GET 404")
        if not 0 <= start < end <= len(data):
            raise TransferError(miner.account, "GET 416")
        return data[start:end]
