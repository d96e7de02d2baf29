"""``ChainAccount``: signs calls with one key and submits them through any ``Chain``,
keeping the account's nonce so concurrent calls do not collide."""

import asyncio
from typing import Any

from chain_client.errors import ExtrinsicFailed, Rejected
from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair
from chain_client.protocol import Chain, ExtrinsicResult

__all__ = ["ChainAccount"]

# Signed again with the chain's next nonce this often: many calls at once (a batch of
# deletions beside reports and repairs) can each find their nonce taken.
NONCE_ATTEMPTS = 4
FUTURE_WAITS = 5  # a nonce ahead of the node's is sent again this often, first
FUTURE_WAIT_SECONDS = 0.02


class ChainAccount:
    def __init__(self, chain: Chain, keypair: Keypair) -> None:
        self.chain = chain
        self.keypair = keypair
        self._nonce: int | None = None
        self._genesis_hash: bytes | None = None
        self._lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return self.keypair.address

    async def _sign(self, call: str, args: dict[str, Any], *, refresh: bool) -> Extrinsic:
        async with self._lock:
            if self._genesis_hash is None:
                self._genesis_hash, _ = await self.chain.genesis()
            if self._nonce is None or refresh:
                self._nonce = await self.chain.next_nonce(self.address)
            extrinsic = Extrinsic.sign(self.keypair, self._genesis_hash, call, args, self._nonce)
            self._nonce += 1
            return extrinsic

    async def _send(self, call: str, args: dict[str, Any], *, wait: float | None) -> Any:
        refresh = False
        for attempt in range(NONCE_ATTEMPTS):
            extrinsic = await self._sign(call, args, refresh=refresh)
            for early in range(FUTURE_WAITS + 1):
                try:
                    if wait is None:
                        return await self.chain.submit(extrinsic)
                    return await self.chain.submit_and_wait(extrinsic, timeout=wait)
                except Rejected as exc:
                    if exc.code == "FutureNonce" and early < FUTURE_WAITS:
                        # An earlier nonce of ours is still on its way to the node (calls
                        # at once arrive in any order): the same extrinsic, a little later.
                        await asyncio.sleep(FUTURE_WAIT_SECONDS * (early + 1))
                        continue
                    # Another writer (or a restarted node's empty pool) moved the nonce on.
                    if exc.code not in ("StaleNonce", "FutureNonce") or (
                        attempt == NONCE_ATTEMPTS - 1
                    ):
                        self._nonce = None
                        raise
                    refresh = True
                    break
        raise AssertionError("unreachable")

    async def submit(self, call: str, /, **args: Any) -> str:
        """Queues the call; returns the extrinsic hash without waiting for a block."""
        tx_hash: str = await self._send(call, args, wait=None)
        return tx_hash

    async def call(self, call: str, /, *, timeout: float = 60.0, **args: Any) -> ExtrinsicResult:
        """Submits the call and waits for its block; raises ``ExtrinsicFailed`` when the
        call was refused there."""
        result: ExtrinsicResult = await self._send(call, args, wait=timeout)
        if not result.success:
            raise ExtrinsicFailed(call, result.hash, result.error or "unknown")
        return result
