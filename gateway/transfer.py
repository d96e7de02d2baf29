"""Miners as the gateway sees them: which to place fragments on, and the signed HTTP
calls that store and fetch fragments (docs/miner-protocol.md)."""

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from chain_client import views
from chain_client.errors import ChainError
from chain_client.keys import Keypair
from chain_client.protocol import Chain
from chain_client.receipt import verify_receipt
from chain_client.request_auth import sign_request
from gateway.codec import Buffer

__all__ = ["SMALL_FRAGMENT", "MinerClient", "MinerDirectory", "MinerInfo", "TransferError"]

COOLDOWN_SECONDS = 30.0
PUT_TIMEOUT = 60.0
GET_TIMEOUT = 30.0
MAX_BATCH_FRAGMENTS = 256  # the miner's limit (docs/miner-protocol.md)
SMALL_FRAGMENT = 64 * 1024  # at or below this, fragments are group-committed


class TransferError(Exception):
    """A miner did not take or give a fragment; ``miner`` is who failed."""

    def __init__(self, miner: str, reason: str) -> None:
        super().__init__(f"{miner}: {reason}")
        self.miner = miner
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MinerInfo:
    account: str
    endpoint: str
    idle: int
    scheme: str


RELOAD_WHEN_SHORT = 0.5  # seconds: too few miners fit, and the list is older than this


class MinerDirectory:
    """Positive miners from the chain, refreshed every few seconds; miners that failed
    recently sit out a cooldown."""

    def __init__(
        self, chain: Chain, *, refresh: float = 5.0, rng: random.Random | None = None
    ) -> None:
        self.chain = chain
        self.refresh = refresh
        self._miners: dict[str, MinerInfo] = {}
        self._loaded = 0.0
        self._failed: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._rng = rng or random.Random()

    async def miners(self, *, fresher_than: float | None = None) -> dict[str, MinerInfo]:
        """The positive miners; ``fresher_than`` seconds: reloaded if older than that."""
        limit = self.refresh if fresher_than is None else min(fresher_than, self.refresh)
        async with self._lock:
            if time.monotonic() - self._loaded > limit or not self._miners:
                try:
                    positive = await views.miners(self.chain, "positive")
                except ChainError:
                    if not self._miners:
                        raise
                    return self._miners  # the chain is away: place on what we knew
                self._miners = {
                    m.account: MinerInfo(m.account, m.endpoint, m.idle, m.scheme) for m in positive
                }
                self._loaded = time.monotonic()
            return self._miners

    async def info(self, account: str) -> MinerInfo:
        known = (await self.miners()).get(account)
        if known is not None:
            return known
        found = await views.miner(self.chain, account)
        if found is None:
            raise TransferError(account, "not a registered miner")
        return MinerInfo(account, found.endpoint, found.idle, found.scheme)

    async def may_share(self, total: int) -> bool:
        """Whether a segment of ``total`` fragments may put two on one miner: the chain
        allows it only while fewer than ``total`` miners are positive (reduced
        independence beats no redundancy)."""
        return len(await self.miners()) < total

    def mark_failed(self, account: str) -> None:
        self._failed[account] = time.monotonic()

    def cooling(self, account: str) -> bool:
        failed = self._failed.get(account)
        return failed is not None and time.monotonic() - failed < COOLDOWN_SECONDS

    async def choose(
        self, count: int, need: int, *, exclude: Sequence[str] = (), share: bool = False
    ) -> list[MinerInfo]:
        """Up to ``count`` distinct miners with at least ``need`` idle bytes and not in
        ``exclude``, weighted by idle space; those that failed recently come last. With
        ``share``, the excluded follow, and then miners repeat until there are ``count``
        (the caller has checked the chain allows reduced independence)."""
        fitting = [m for m in (await self.miners()).values() if m.idle >= need]
        if len(fitting) < count:  # the list may predate idle space just certified
            fresh = await self.miners(fresher_than=RELOAD_WHEN_SHORT)
            fitting = [m for m in fresh.values() if m.idle >= need]
        apart = [m for m in fitting if m.account not in exclude]
        tiers = [apart, [m for m in fitting if m.account in exclude]] if share else [apart]
        chosen: list[MinerInfo] = []
        for tier in tiers:
            for pool in (
                [m for m in tier if not self.cooling(m.account)],
                [m for m in tier if self.cooling(m.account)],
            ):
                chosen.extend(self._draw(pool, count - len(chosen)))
        while share and fitting and len(chosen) < count:  # fewer miners than fragments
            chosen.extend(self._draw(list(fitting), count - len(chosen)))
        return chosen

    def _draw(self, pool: list[MinerInfo], count: int) -> list[MinerInfo]:
        """At most ``count`` of ``pool``, without repeats, weighted by idle space."""
        drawn: list[MinerInfo] = []
        while pool and len(drawn) < count:
            pick = self._rng.choices(pool, weights=[max(m.idle, 1) for m in pool], k=1)[0]
            pool.remove(pick)
            drawn.append(pick)
        return drawn


async def _chunks(pieces: Sequence[Buffer]) -> AsyncIterator[memoryview]:
    """A body streamed in pieces of at most 1 MiB: aiohttp sends these far faster than one
    big bytes object (no large copies), and never blocks the loop on one huge write."""
    for piece in pieces:
        view = memoryview(piece).cast("B")
        for offset in range(0, view.nbytes, 1024 * 1024):
            yield view[offset : offset + 1024 * 1024]


def _sha256_hex(pieces: Sequence[Buffer]) -> str:
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


class MinerClient:
    """Signed fragment PUT and ranged GET, on one pooled HTTP session.

    Small fragments are group-committed: those bound for one miner within a couple of
    milliseconds, from any number of concurrent uploads, travel in one batch PUT
    (``POST /fragments``), each still answered by its own signed receipt."""

    def __init__(self, keypair: Keypair, *, batch_delay: float = 0.002) -> None:
        self.keypair = keypair
        self.batch_delay = batch_delay
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[str, list[tuple[str, bytes, asyncio.Future[dict[str, Any]]]]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=16)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def put(
        self, miner: MinerInfo, fragment_id: str, pieces: Sequence[Buffer]
    ) -> dict[str, Any]:
        """Stores a fragment given as its pieces (its blocks, or one bytes object)."""
        path = f"/fragment/{fragment_id}"
        # The miner checks the body against the id (its Merkle root): the id is the
        # signed content hash, and nobody hashes the bytes a second time.
        headers = sign_request(self.keypair, "PUT", path, miner.account, content_sha256=fragment_id)
        headers["Content-Length"] = str(sum(memoryview(piece).nbytes for piece in pieces))
        try:
            async with self._client().put(
                miner.endpoint + path,
                data=_chunks(pieces),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PUT_TIMEOUT),
            ) as response:
                body = await response.json(content_type=None)
                if response.status not in (200, 201):
                    raise TransferError(miner.account, f"PUT {response.status}: {body}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransferError(miner.account, f"PUT failed: {exc!r}") from exc
        signature = bytes.fromhex(str(body.get("signature", "0x"))[2:] or "00")
        # SECURITY: an acknowledgement is only as good as the miner's signed receipt.
        if body.get("fragment_id") != fragment_id or not verify_receipt(
            miner.scheme, miner.account, fragment_id, signature
        ):
            raise TransferError(miner.account, "receipt does not verify")
        result: dict[str, Any] = body
        return result

    async def put_small(self, miner: MinerInfo, fragment_id: str, data: bytes) -> dict[str, Any]:
        """Like ``put``, through the miner's next batch."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(miner.account, []).append((fragment_id, data, future))
        if miner.account not in self._flushers:
            self._flushers[miner.account] = asyncio.create_task(self._flush_later(miner))
        return await future

    async def _flush_later(self, miner: MinerInfo) -> None:
        await asyncio.sleep(self.batch_delay)  # let concurrent uploads join this batch
        batch = self._queues.pop(miner.account, [])
        del self._flushers[miner.account]
        for start in range(0, len(batch), MAX_BATCH_FRAGMENTS):
            part = batch[start : start + MAX_BATCH_FRAGMENTS]
            try:
                results = await self._post_batch(miner, [(i, d) for i, d, _ in part])
            except TransferError as exc:
                for _, _, future in part:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (fragment_id, _, future), result in zip(part, results, strict=True):
                if future.done():
                    continue
                receipt = result.get("receipt") or {}
                signature = bytes.fromhex(str(receipt.get("signature", "0x"))[2:] or "00")
                if result.get("status") in (200, 201) and verify_receipt(
                    miner.scheme, miner.account, fragment_id, signature
                ):
                    future.set_result(receipt)
                else:
                    future.set_exception(TransferError(miner.account, f"batch item: {result}"))

    async def _post_batch(
        self, miner: MinerInfo, items: list[tuple[str, bytes]]
    ) -> list[dict[str, Any]]:
        manifest = json.dumps({"fragments": [{"id": i, "size": len(d)} for i, d in items]}).encode()
        body = len(manifest).to_bytes(4, "big") + manifest + b"".join(d for _, d in items)
        digest = await asyncio.to_thread(_sha256_hex, [body])
        headers = sign_request(
            self.keypair, "POST", "/fragments", miner.account, content_sha256=digest
        )
        headers["Content-Length"] = str(len(body))
        try:
            async with self._client().post(
                miner.endpoint + "/fragments",
                data=_chunks([body]),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PUT_TIMEOUT),
            ) as response:
                answer = await response.json(content_type=None)
                if response.status != 200:
                    raise TransferError(miner.account, f"batch {response.status}: {answer}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransferError(miner.account, f"batch PUT failed: {exc!r}") from exc
        results: list[dict[str, Any]] = answer["results"]
        if [r.get("id") for r in results] != [i for i, _ in items]:
            raise TransferError(miner.account, "batch answer does not match the manifest")
        return results

    async def get(self, miner: MinerInfo, fragment_id: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (exclusive) of a fragment."""
        path = f"/fragment/{fragment_id}"
        headers = sign_request(self.keypair, "GET", path, miner.account)
        headers["Range"] = f"bytes={start}-{end - 1}"
        try:
            async with self._client().get(
                miner.endpoint + path,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=GET_TIMEOUT),
            ) as response:
                if response.status not in (200, 206):
                    raise TransferError(miner.account, f"GET {response.status}")
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransferError(miner.account, f"GET failed: {exc!r}") from exc
        if response.status == 200:
            data = data[start:end]
        if len(data) != end - start:
            raise TransferError(miner.account, f"short read: {len(data)} of {end - start}")
        return data
