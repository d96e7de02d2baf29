"""``LocalChain``: the ``Chain`` contract served in-process by a real ledger node, with a
block producer. ``deoss-chain run`` serves one of these over HTTP; tests use it directly.
"""

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Self

from chain_client.errors import Rejected
from chain_client.extrinsic import Extrinsic
from chain_client.node import BlockResult, LedgerNode
from chain_client.params import Genesis
from chain_client.protocol import EventPage, ExtrinsicResult, Head

__all__ = ["LocalChain"]

log = logging.getLogger(__name__)


class LocalChain:
    """Owns a ``LedgerNode``; produces a block every ``block_time`` seconds (0: manual)."""

    def __init__(self, node: LedgerNode, *, block_time: float | None = None) -> None:
        self.node = node
        self.block_time = node.params.block_time if block_time is None else block_time
        if self.block_time < 0:
            raise ValueError(f"block_time must be >= 0, got {self.block_time}")
        self._waiters: dict[str, asyncio.Future[ExtrinsicResult]] = {}
        self._best = node.best()[0]
        # Set when a block arrives, then replaced: waiters hold the one current at the time.
        self._new_block = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, path: Path, genesis: Genesis | None = None, *, block_time: float | None = None
    ) -> Self:
        node = await asyncio.to_thread(LedgerNode, path, genesis)
        chain = cls(node, block_time=block_time)
        chain.start()
        return chain

    @property
    def manual(self) -> bool:
        return self.block_time == 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.node.add_listener(self._on_block)
        if not self.manual:
            self._producer = asyncio.create_task(self._produce_forever(), name="block-producer")

    async def close(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.cancel()
        await asyncio.to_thread(self.node.close)

    async def _produce_forever(self) -> None:
        due = time.monotonic()
        while True:
            due += self.block_time
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                await asyncio.to_thread(self.node.produce_block)
            except Exception:
                # The block was rolled back and its extrinsics returned to the pool.
                log.exception("block production failed; retrying next tick")
            due = max(due, time.monotonic() - self.block_time)

    def _on_block(self, result: BlockResult) -> None:
        # Called on the producing thread; hand the result to the event loop.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, result)

    def _deliver(self, result: BlockResult) -> None:
        for outcome in result.results:
            waiter = self._waiters.pop(outcome.hash, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)
        for tx_hash, code in result.dropped:
            waiter = self._waiters.pop(tx_hash, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(Rejected(code, "dropped from the block"))
        self._best = max(self._best, result.height)
        self._new_block.set()
        self._new_block = asyncio.Event()

    # -- the Chain contract -------------------------------------------------------

    async def genesis(self) -> tuple[bytes, Genesis]:
        return self.node.genesis_hash, self.node.genesis

    async def head(self) -> Head:
        height, block_hash = self.node.best()
        return Head(height, block_hash)

    async def next_nonce(self, account: str) -> int:
        return self.node.next_nonce(account)

    async def submit(self, extrinsic: Extrinsic) -> str:
        return self.node.submit(extrinsic)

    async def submit_and_wait(
        self, extrinsic: Extrinsic, *, timeout: float = 60.0
    ) -> ExtrinsicResult:
        tx_hash = extrinsic.hash(self.node.genesis_hash)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[tx_hash] = waiter
        try:
            self.node.submit(extrinsic)
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        finally:
            self._waiters.pop(tx_hash, None)

    async def receipt(self, tx_hash: str) -> ExtrinsicResult | None:
        return await asyncio.to_thread(self.node.receipt, tx_hash)

    async def query(self, name: str, /, **args: Any) -> Any:
        return await asyncio.to_thread(self.node.query, name, args)

    async def query_lax(self, name: str, args: dict[str, Any]) -> Any:
        """Query arguments from a URL are strings: let pydantic convert them."""
        return await asyncio.to_thread(self.node.query, name, args, strict=False)

    async def block(self, height: int, *, header_only: bool = False) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.node.block, height, header_only=header_only)

    async def events(
        self, from_height: int, *, timeout: float = 0.0, max_blocks: int = 100
    ) -> EventPage:
        # A follower waits for events, not for blocks: blocks without events are passed
        # over until the timeout (an idle network wakes nobody at every block).
        deadline = time.monotonic() + timeout
        while True:
            while from_height > self._best and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_block.wait(), left)
            events, following = await asyncio.to_thread(
                self.node.events_since, from_height, max_blocks
            )
            if events or following <= from_height or deadline - time.monotonic() <= 0:
                return EventPage(tuple(events), following)
            from_height = following

    async def produce_block(self) -> int:
        if not self.node.dev:
            raise Rejected("DevOnly", "blocks are made on demand only on a dev network")
        if not self.manual:
            raise Rejected("NotManual", f"this node makes a block every {self.block_time} s")
        result = await asyncio.to_thread(self.node.produce_block)
        self._deliver(result)
        return result.height
