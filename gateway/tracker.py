"""The deal tracker: drains the outbox to the chain in batches and follows the chain
until every declared file is Active (DESIGN.md §4 steps 5-6).

- Declarations go in batches (one extrinsic, many files); each file's outcome is read
  from the events: declared, or refused with a reason.
- Refused for quota (the territory filled or froze): the object stays stored and
  readable, marked ``unpaid``, and is declared again later.
- Refused because a chosen miner lacks idle space, or a miner never reported in time:
  the fragment moves to another miner (``Relocator``) and the file is declared, or the
  fragment reassigned, again.
- ``DealCancelled``: declared again. The outbox is on disk, so all of this survives a
  restart of the gateway.
- A deletion, or a declaration that replaces another file's reference, waits while that
  file is being read (``busy``): the chain would have its miners drop it mid-read.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from chain_client import views
from chain_client.account import ChainAccount
from chain_client.errors import ChainError, ChainUnavailable, ExtrinsicFailed, Rejected
from gateway.index import MetadataIndex
from gateway.records import DECLARE, DECLARED, DELETE, PENDING, REFUSED, UNPAID, OutboxEntry

__all__ = ["DealTracker", "Relocator"]

log = logging.getLogger("deoss.tracker")
EVENT_WAIT = 30.0  # an events poll answers at once for events, else after this

QUOTA_REASONS = (
    "storage_handler.InsufficientTerritorySpace",
    "storage_handler.TerritoryNotActive",
)
MINER_REASONS = ("sminer.InsufficientIdleSpace", "file_bank.MinerNotPositive")
GONE_REASONS = ("file_bank.NoSuchObject", "file_bank.ReferenceChanged")  # nothing to delete
DELETED_MEMORY = 4096  # recent deletions remembered for ?wait=1 callers


class Relocator(Protocol):
    async def relocate(self, fid: str, seg_no: int, idx: int) -> str:
        """Puts fragment (seg_no, idx) of ``fid`` on another miner; returns its account."""
        ...


def _once_per_file(entries: list[OutboxEntry]) -> list[dict[str, Any]]:
    """The batch's declarations, a pack's segments sent with its first member only (the
    chain takes them from there: docs/packing.md §4)."""
    seen: set[str] = set()
    files = []
    for entry in entries:
        declaration = entry.declaration
        if declaration.get("slot") is not None:
            if declaration["fid"] in seen:
                declaration = {**declaration, "segments": []}
            seen.add(declaration["fid"])
        files.append(declaration)
    return files


class DealTracker:
    def __init__(
        self,
        index: MetadataIndex,
        account: ChainAccount,
        relocator: Relocator,
        *,
        batch: int = 256,
        interval: float = 0.5,
        unpaid_retry: float = 30.0,
        busy: Callable[[str], bool] = lambda fid: False,
    ) -> None:
        self.index = index
        self.account = account
        self.chain = account.chain
        self.relocator = relocator
        self.batch = batch
        self.interval = interval
        self.unpaid_retry = unpaid_retry
        self.busy = busy
        self._retry_at: dict[int, float] = {}  # deletions refused lately: not before
        self._tries: dict[int, int] = {}
        self._deleted: dict[str, str | None] = {}  # recent deletions: their block hash
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A new upload is in the outbox: declare it without waiting for the next tick."""
        self._wake.set()

    # -- the outbox's figures, read by the metrics at each scrape (from a thread) -----

    def pending_declarations(self) -> int:
        """Versions stored whose declaration the chain has not accepted yet."""
        return self.index.count_names(PENDING)

    def unpaid_objects(self) -> int:
        return self.index.count_names(UNPAID)

    def oldest_pending_seconds(self) -> float:
        """Since the upload of the declaration first in line (the pending one queued, or
        sent back, longest ago); 0 when none is pending."""
        for entry in self.index.outbox(DECLARE, PENDING, limit=1):
            version = self.index.version(entry.owner, entry.name, entry.version_id)
            if version is not None:
                return max(0.0, time.time() - version.created_at)
        return 0.0

    async def run(self) -> None:
        await asyncio.gather(
            self._declare_forever(), self._follow_forever(), self._retry_unpaid_forever()
        )

    async def _declare_forever(self) -> None:
        while True:
            try:
                while await self.declare_pending():
                    pass
                await self.delete_pending()  # after declaring: never before the file's own
            except ChainUnavailable as exc:
                log.warning("chain unreachable, declarations wait: %s", exc)
            except Exception:
                log.exception("declaring failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def declare_pending(self) -> int:
        """One batch; returns how many declarations it carried."""
        entries = [
            e
            for e in self.index.outbox(DECLARE, PENDING, limit=self.batch)
            if e.replaces is None or not self.busy(e.replaces)
        ]
        if not entries:
            return 0
        try:
            result = await self.account.call(
                "file_bank.upload_declaration", files=_once_per_file(entries)
            )
        except (ExtrinsicFailed, Rejected) as exc:
            log.error("declaration batch refused: %s", exc)
            await asyncio.to_thread(
                self.index.set_entry_states, [e.id for e in entries], PENDING, str(exc)
            )
            return 0
        by_reference = {(e.fid, e.owner, e.ref): e for e in entries}

        def entry_of(event: dict[str, Any]) -> OutboxEntry | None:
            data = event["data"]
            return by_reference.get((data["fid"], data["owner"], data["key"]))

        declared = [
            entry.id
            for event in result.events
            if event["name"] in ("UploadDeclaration", "AlreadyDeclared")
            and (entry := entry_of(event)) is not None
        ]
        await asyncio.to_thread(self.index.set_entry_states, declared, DECLARED)
        for event in result.events:
            if event["name"] == "DeclarationRefused" and (entry := entry_of(event)) is not None:
                await self._refused(entry, event["data"]["reason"])
        return len(entries)

    async def delete_pending(self) -> None:
        """Drops on chain the references of deleted names (all in one block); a refusal
        other than "already gone" is retried with a growing delay."""
        now = time.monotonic()
        entries = [
            e
            for e in self.index.outbox(DELETE, PENDING, limit=self.batch)
            if self._retry_at.get(e.id, 0) <= now and not self.busy(e.fid)
        ]
        await asyncio.gather(*(self._delete(entry) for entry in entries))

    async def _delete(self, entry: OutboxEntry) -> None:
        block_hash = None
        try:
            result = await self.account.call(
                "file_bank.delete_file", owner=entry.owner, key=entry.ref, fid=entry.fid
            )
            block = await self.chain.block(result.height, header_only=True)
            block_hash = block["hash"] if block else None
        except ExtrinsicFailed as exc:
            if exc.error not in GONE_REASONS:
                tries = self._tries[entry.id] = self._tries.get(entry.id, 0) + 1
                self._retry_at[entry.id] = time.monotonic() + min(2.0**tries, 300.0)
                log.warning("deleting %s on chain: %s (try %d)", entry.fid, exc, tries)
                return
        # Remembered before the entry is forgotten: a waiter polling the outbox may see
        # it gone while this coroutine still waits for the thread.
        self._deleted[entry.fid] = block_hash
        while len(self._deleted) > DELETED_MEMORY:
            del self._deleted[next(iter(self._deleted))]
        await asyncio.to_thread(self.index.forget_entry, entry.id)
        self._retry_at.pop(entry.id, None)
        self._tries.pop(entry.id, None)

    async def wait_deleted(self, fid: str, timeout: float) -> tuple[bool, str | None]:
        """(whether the chain dropped every deleted name of ``fid`` within ``timeout``,
        the block hash of the last)."""
        self.wake()
        deadline = time.monotonic() + timeout
        while self.index.deletions_pending(fid):
            if time.monotonic() >= deadline:
                return False, None
            await asyncio.sleep(0.1)
        return True, self._deleted.get(fid)

    async def _refused(self, entry: OutboxEntry, reason: str) -> None:
        fid = entry.fid
        if reason.startswith(QUOTA_REASONS):
            log.warning("%s is stored but unpaid: %s", fid, reason)
            state = UNPAID
        elif reason.startswith(MINER_REASONS):
            miner = reason.split(":", 1)[1].split()[0] if ":" in reason else ""
            moved = 0
            for placement in self.index.fragments(fid):
                if placement.miner == miner:
                    await self.relocator.relocate(fid, placement.seg_no, placement.idx)
                    moved += 1
            log.warning("%s: moved %d fragments off %s (%s)", fid, moved, miner, reason)
            state = PENDING
        else:
            log.error("%s refused for good: %s", fid, reason)
            state = REFUSED
        await asyncio.to_thread(self.index.set_entry_states, [entry.id], state, reason)

    async def _retry_unpaid_forever(self) -> None:
        while True:
            await asyncio.sleep(self.unpaid_retry)
            unpaid = [entry.id for entry in self.index.outbox(DECLARE, UNPAID)]
            await asyncio.to_thread(self.index.set_entry_states, unpaid, PENDING)
            self.wake()

    async def _follow_forever(self) -> None:
        following: int | None = None
        while True:
            try:
                if following is None:
                    following = (await self.chain.head()).best_block + 1
                page = await self.chain.events(following, timeout=EVENT_WAIT)
                completed = [
                    event["data"]["fid"]
                    for event in page.events
                    if event["name"] == "StorageCompleted"
                ]
                if completed:  # the common event, so one transaction per page
                    await asyncio.to_thread(self.index.files_active, completed)
                for event in page.events:
                    await self.on_event(event)
                following = page.next
            except ChainError as exc:
                log.warning("following the chain: %s", exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("tracker event handling failed")
                await asyncio.sleep(1.0)

    async def on_event(self, event: dict[str, Any]) -> None:
        name, data = event["name"], event["data"]
        if name == "DealTimedOut" and self.index.object(data["fid"]) is not None:
            if await views.file(self.chain, data["fid"]) is None:
                return
            for seg_no, idx, _miner in data["fragments"]:
                new_miner = await self.relocator.relocate(data["fid"], seg_no, idx)
                try:
                    await self.account.call(
                        "file_bank.reassign_fragment",
                        fid=data["fid"],
                        segment=seg_no,
                        index=idx,
                        miner=new_miner,
                    )
                except ExtrinsicFailed as exc:
                    log.warning("reassigning %s/%d/%d: %s", data["fid"], seg_no, idx, exc)
        elif name == "DealCancelled" and self.index.object(data["fid"]) is not None:
            log.warning("deal %s cancelled by the chain; declaring again", data["fid"])
            await asyncio.to_thread(self.index.redeclare, data["fid"])
            self.wake()
