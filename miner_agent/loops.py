"""The miner's chain loops: follow events (deals, removals, restorals, challenges), keep
idle space filled and replaced, send heartbeats, drop orphans and corrupt fragments.

Every chain call goes through ``_chain``, which retries with backoff while the chain is
unreachable; the HTTP service keeps serving meanwhile. Chain time (block heights), never
the wall clock, decides when an orphan is old enough to drop.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chain_client.errors import ChainError, ChainUnavailable, ExtrinsicFailed, Rejected
from chain_client.idle import IdleUnit, generate_unit, idle_seed
from chain_client.idle_proofs import cert_challenges, prove_certification
from miner_agent import prover
from miner_agent.node import MinerNode
from miner_agent.store import ACTIVE, ORPHAN, IdleRecord
from miner_agent.tidy import tidy

__all__ = ["ChainAdapter", "MinerLoops"]

log = logging.getLogger("deoss-miner")
T = TypeVar("T")
MAX_BACKOFF = 10.0
EVENT_WAIT = 30.0  # the longest an events poll waits (it answers at once for events)
IDLE_POLL = 30.0  # the longest the space manager sleeps with nothing to do and no events
REPORT_DELAY = 0.3  # reports wait this long for others, to go in one extrinsic
IDLE_MEMORY_BUDGET = 256 * 1024 * 1024  # bytes of idle layers held between commit and proof


class ChainAdapter:
    """The chain as tidy sees it (``miner_agent.tidy.ChainView``)."""

    def __init__(self, node: MinerNode) -> None:
        self.node = node

    async def fragment(self, fragment_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.node.chain.query(
            "file_bank.fragment", fragment_id=fragment_id
        )
        return found

    async def idle_unit_states(self) -> dict[int, str]:
        states: dict[int, str] = {}
        start = 0
        while True:  # page through: a big miner has more units than one answer holds
            units = await self.node.chain.query(
                "sminer.idle_units", account=self.node.address, start=start, limit=10_000
            )
            states.update((int(u["unit_index"]), str(u["state"])) for u in units)
            if len(units) < 10_000:
                return states
            start = int(units[-1]["unit_index"]) + 1

    async def report_lost(self, fragment: dict[str, Any]) -> None:
        await self.node.account.submit(
            "file_bank.generate_restoral_order",
            fid=fragment["fid"],
            segment=fragment["segment"],
            index=fragment["idx"],
        )


class MinerLoops:
    def __init__(self, node: MinerNode) -> None:
        self.node = node
        self.chain = node.chain
        self.params = node.params
        self.store = node.store
        self.adapter = ChainAdapter(node)
        self._units: dict[int, IdleUnit] = {}  # generated, committed, not proven yet
        self._last_heartbeat = -(10**9)
        self._isolate = False  # after a refused batch proof: one unit per proof
        self._tasks: set[asyncio.Task[Any]] = set()
        self._to_report: dict[str, None] = {}  # fids whose fragments are all here, in order
        self._report_wake = asyncio.Event()
        self._page_deals: list[tuple[str, list[str]]] = []  # declared in this event page
        self._space_wake = asyncio.Event()  # events arrived: the space manager looks again
        self._owed_seen = 0  # replacement bytes owed since the space manager last woke

    # -- plumbing -----------------------------------------------------------------------

    async def _chain(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.2
        while True:
            try:
                return await call()
            except ChainUnavailable as exc:
                log.warning("%s: chain unreachable (%s); retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _spawn(self, what: str, coroutine: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except (ExtrinsicFailed, Rejected) as exc:
                log.warning("%s refused: %s", what, exc)
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.create_task(guarded(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, name: str, **args: Any) -> Any:
        return await self._chain(name, lambda: self.node.account.call(name, **args))

    async def run(self) -> None:
        try:
            await asyncio.gather(
                self.follow_events(),
                self.manage_space(),
                self.tidy_forever(),
                self.report_forever(),
            )
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- events ---------------------------------------------------------------------------

    async def follow_events(self) -> None:
        head = await self._chain("head", self.chain.head)
        self.node.best_block = head.best_block
        saved = self.store.get_meta("events_next")
        following = int(saved) if saved is not None else head.best_block + 1
        await self.resync()
        while True:
            page = await self._chain(
                "events", functools.partial(self.chain.events, following, timeout=self._wait())
            )
            if any(self._wakes_space(event) for event in page.events):
                self._space_wake.set()
            self._page_deals = []
            for event in page.events:
                try:
                    await self.on_event(event)
                except ChainError as exc:
                    log.warning("event %s/%s: %s", event["module"], event["name"], exc)
                except Exception:  # one odd event must not stop the miner following
                    log.exception("event %s/%s", event["module"], event["name"])
            if self._page_deals:  # a page's new deals, in one transaction
                await self.take_deals(self._page_deals)
            # The commonest event, so a page's completions go in one transaction, after
            # the page's other events (a deal declared and completed within it included).
            completed = [e["data"]["fid"] for e in page.events if e["name"] == "StorageCompleted"]
            if completed:
                await asyncio.to_thread(self.store.activate_files, completed)
            if page.next > following:
                following = page.next
                self.node.best_block = following - 1
                self.store.set_meta("events_next", str(following))
                await self.on_blocks()

    def _wakes_space(self, event: dict[str, Any]) -> bool:
        """Whether an event may give the space manager work: one about this miner's
        space, or replacements owed adding up to a whole idle unit."""
        me, data = self.node.address, event["data"]
        if event["name"] == "ReplacementOwed":
            if data.get("miner") != me:
                return False
            self._owed_seen += int(data.get("space", 0))
            if self._owed_seen < self.params.idle_unit_size:
                return False
            self._owed_seen = 0
            return True
        if event["name"] in ("UploadDeclaration", "AlreadyDeclared"):
            return False  # idle space locked: nothing to make or give up
        named = data.get("miners")  # a list or map of miners in some events, a count in others
        return me in (data.get("miner"), data.get("account")) or (
            isinstance(named, list | dict) and me in named
        )

    def _wait(self) -> float:
        """How long an events poll may wait: until the next heartbeat is due, at most
        ``EVENT_WAIT`` (blocks without events no longer end a poll)."""
        due = self._last_heartbeat + max(1, self.params.heartbeat_interval) - self.node.best_block
        if self.params.block_time <= 0:
            return EVENT_WAIT  # blocks made by hand: no clock to keep
        return min(EVENT_WAIT, max(1, due) * self.params.block_time)

    async def on_event(self, event: dict[str, Any]) -> None:
        me, name, data = self.node.address, event["name"], event["data"]
        if name in ("UploadDeclaration", "AlreadyDeclared"):
            owed = data.get("miners")  # only the deal's miners look at it, without asking
            if owed is None:
                await self.check_deal(data["fid"])
            elif owed.get(me):
                self._page_deals.append((data["fid"], owed[me]))
        elif name == "FragmentReassigned" and data.get("miner") == me:
            await self.check_deal(data["fid"])
        elif name == "FileRemoved" and me in data.get("miners", ()):
            for record in self.store.fragments_of(data["fid"]):
                self.store.delete_fragment(record.id)
        elif name == "DealTimedOut" and any(f[2] == me for f in data["fragments"]):
            for record in self.store.fragments_of(data["fid"]):
                owner = await self.adapter.fragment(record.id)
                if owner is None or owner["miner"] != me:
                    self.store.make_orphan(record.id, self.node.best_block)
        elif name == "RestoralOrderCompleted" and me in (data["origin"], data["miner"]):
            await self.on_restored(data)
        elif name == "ChallengeStarted" and data["miner"] == me:
            self._spawn(f"challenge {data['id']}", self.answer_challenge(int(data["id"])))

    async def check_deal(self, fid: str, mine: list[str] | None = None) -> None:
        """Reports the deal once every fragment of it owed by this miner (``mine``, or
        else as the chain says) is held here."""
        if mine is None:
            file = await self.chain.query("file_bank.file", fid=fid)
            if file is None or file["state"] != "deal":
                return
            mine = [
                f["id"]
                for s in file["segments"]
                for f in s["fragments"]
                if f["miner"] == self.node.address and not f["reported"]
            ]
        if mine:
            await self.take_deals([(fid, mine)])

    async def take_deals(self, deals: list[tuple[str, list[str]]]) -> None:
        """Marks the fragments of these deals (fid, the fragments this miner owes) held,
        in one transaction, and queues for reporting each deal whose fragments are all
        here."""
        taken = await asyncio.to_thread(self.store.take_deals, deals)
        for (fid, mine), held in zip(deals, taken, strict=True):
            if held < len(mine):
                log.warning(
                    "deal %s: %d of my %d fragments never arrived", fid, len(mine) - held, len(mine)
                )
            else:
                self._to_report[fid] = None
                self._report_wake.set()

    async def report_forever(self) -> None:
        """Sends the deals ready to report, those of one moment in one extrinsic; a batch
        the chain did not take is tried again later, a fid it refused is dropped."""
        delay = REPORT_DELAY
        while True:
            await self._report_wake.wait()
            await asyncio.sleep(delay)
            self._report_wake.clear()
            try:
                while self._to_report:
                    await self.report_batch()
                delay = REPORT_DELAY
            except (ChainError, OSError) as exc:
                log.warning("transfer reports: %s; again in %.1f s", exc, delay)
                delay = min(delay * 2, MAX_BACKOFF)
                self._report_wake.set()

    async def report_batch(self) -> None:
        fids = list(self._to_report)[: self.params.max_files_per_declaration]
        result = await self._call("file_bank.transfer_reports", fids=fids)
        for fid in fids:
            self._to_report.pop(fid, None)
        for event in result.events:
            if event["name"] == "TransferReportRefused":
                data = event["data"]
                log.warning("transfer report of %s refused: %s", data["fid"], data["reason"])

    async def on_restored(self, data: dict[str, Any]) -> None:
        file = await self.chain.query("file_bank.file", fid=data["fid"])
        if file is None:
            return
        fragment = file["segments"][data["segment"]]["fragments"][data["index"]]
        if data["miner"] == self.node.address:
            if self.store.fragment(fragment["id"]) is not None:
                self.store.set_fragment_state(fragment["id"], ACTIVE, data["fid"])
        elif data["origin"] == self.node.address:
            self.store.delete_fragment(fragment["id"])

    async def resync(self) -> None:
        """After a restart: what happened to the fragments we hold while we were away."""
        for record in self.store.fragments():
            if record.state == ACTIVE:
                continue
            owner = await self._chain("resync", functools.partial(self.adapter.fragment, record.id))
            if owner is None or owner["miner"] != self.node.address:
                continue
            if owner["file_state"] == "active":
                self.store.set_fragment_state(record.id, ACTIVE, owner["fid"])
            elif not owner["reported"]:
                await self.check_deal(owner["fid"])

    async def on_blocks(self) -> None:
        best = self.node.best_block
        if best - self._last_heartbeat >= max(1, self.params.heartbeat_interval):
            self._last_heartbeat = best
            self._spawn("heartbeat", self.node.account.submit("sminer.heartbeat"))
        for fragment_id in list(self.node.corrupt):
            self.node.corrupt.discard(fragment_id)
            owner = await self.adapter.fragment(fragment_id)
            self.store.delete_fragment(fragment_id)
            if (
                owner is not None
                and owner["miner"] == self.node.address
                and owner["file_state"] == "active"
            ):
                self._spawn(f"report lost {fragment_id}", self.adapter.report_lost(owner))
        for record in self.store.fragments(ORPHAN):
            if record.received_height + self.params.orphan_ttl < best:
                owner = await self.adapter.fragment(record.id)
                if owner is None or owner["miner"] != self.node.address:
                    log.info("dropping orphan %s (no deal within orphan_ttl)", record.id)
                    self.store.delete_fragment(record.id)

    async def answer_challenge(self, challenge_id: int) -> None:
        challenge = await self.chain.query("audit.challenge", id=challenge_id)
        if challenge is None:
            return
        if challenge["service_status"] == "open":
            answer, lost = await asyncio.to_thread(prover.service_answer, self.store, challenge)
            for fragment_id in lost:
                log.warning("challenge %d: fragment %s is gone", challenge_id, fragment_id)
            self.node.metrics.proofs.labels(kind="service").inc()
            await self._call("audit.submit_service_proof", challenge_id=challenge_id, proofs=answer)
        if challenge["idle_status"] == "open":
            idle = await asyncio.to_thread(prover.idle_answer, self.store, challenge)
            self.node.metrics.proofs.labels(kind="idle").inc()
            await self._call("audit.submit_idle_proof", challenge_id=challenge_id, proofs=idle)

    # -- idle space -------------------------------------------------------------------------

    async def manage_space(self) -> None:
        """A step every ``poll_seconds`` while there is work (units to prove or make,
        replacements owed); once a step finds none, ever rarer (up to ``IDLE_POLL``)
        until chain events arrive: an idle miner costs the chain next to nothing."""
        poll = self.node.config.poll_seconds
        delay = poll
        while True:
            busy = True
            try:
                busy = await self.space_step()
            except (ExtrinsicFailed, Rejected) as exc:
                log.warning("space manager: %s", exc)
            except ChainUnavailable:
                pass
            delay = poll if busy else min(max(delay, poll) * 2, max(IDLE_POLL, poll))
            self._space_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._space_wake.wait(), delay)

    async def space_step(self) -> bool:
        """Whether there was work: something proven, replaced or made, or units waiting
        for their beacon block."""
        record = await self._record()
        if record is None or record["state"] != "positive":
            return False
        proven = await self.prove_committed()
        replaced = await self.replace_owed(await self._record())
        # Each step changed the chain: decide on filling from what it says now.
        made = await self.fill(await self._record())
        waiting = bool(self.store.idle_units("committed"))
        return proven or replaced or made or waiting

    async def _record(self) -> dict[str, Any]:
        record: dict[str, Any] = await self.chain.query("sminer.miner", account=self.node.address)
        return record

    def _batch_size(self) -> int:
        """Units committed and proven per extrinsic: bounded by the chain's extrinsic size
        (about 3 leaves per proof sample) and by the memory a unit's layers take until
        they are proven (their last layer alone goes to disk)."""
        params = self.params
        proof_bytes = params.idle_cert_samples * 3 * params.leaf_size * 3 // 2 + 4096
        by_size = params.max_extrinsic_bytes // (proof_bytes * 2)
        by_memory = IDLE_MEMORY_BUDGET // (params.idle_layers * params.idle_unit_size)
        return max(1, min(64, by_size, by_memory))

    async def fill(self, record: dict[str, Any]) -> bool:
        unit = self.params.idle_unit_size
        waiting = len(self.store.idle_units("committed"))
        room = record["declared"] - record["idle"] - record["locked"] - record["service"]
        room -= waiting * unit
        # Disk first: never fill below the free-space floor, whatever is declared.
        by_disk = (self.store.free_bytes() - self.node.config.free_disk_floor) // unit
        count = min(room // unit, by_disk, self._batch_size() - waiting)
        if count <= 0:
            return False
        head = await self.chain.head()
        first = int(record["next_unit"]) + waiting
        spec = self.params.idle_spec()
        commitments = []
        for index in range(first, first + count):
            seed = idle_seed(self.node.keypair.public_key, index, bytes.fromhex(head.best_hash[2:]))
            generated = await asyncio.to_thread(generate_unit, spec, seed)
            roots = [root.hex() for root in generated.layer_roots]
            await asyncio.to_thread(
                self.store.write_idle_unit, index, generated.data, head.best_block, roots
            )
            self._units[index] = generated
            commitments.append({"anchor_height": head.best_block, "layer_roots": roots})
        try:
            result = await self._call("sminer.cert_idle_space", units=commitments)
        except (ExtrinsicFailed, Rejected):
            for index in range(first, first + count):
                self.store.delete_idle_unit(index)
                self._units.pop(index, None)
            raise
        for index in range(first, first + count):
            self.store.set_idle_state(index, "committed", committed_at=result.height)
        return True

    async def _unit(self, record: IdleRecord) -> IdleUnit:
        generated = self._units.get(record.unit_index)
        if generated is None:  # restarted since the commitment: the seed remakes it
            anchor = await self.chain.block(record.anchor_height, header_only=True)
            assert anchor is not None
            seed = idle_seed(
                self.node.keypair.public_key, record.unit_index, bytes.fromhex(anchor["hash"][2:])
            )
            generated = await asyncio.to_thread(generate_unit, self.params.idle_spec(), seed)
        return generated

    async def prove_committed(self) -> bool:
        """Proves, in one extrinsic, every committed unit whose beacon block is out."""
        spec = self.params.idle_spec()
        proven: list[int] = []
        units: list[dict[str, Any]] = []
        limit = 1 if self._isolate else self._batch_size()
        beacons: dict[int, dict[str, Any] | None] = {}  # units committed together share one
        for record in self.store.idle_units("committed")[:limit]:
            assert record.committed_at is not None
            height = record.committed_at + 1
            if height not in beacons:
                beacons[height] = await self.chain.block(height, header_only=True)
            beacon_block = beacons[height]
            if beacon_block is None:
                continue
            generated = await self._unit(record)
            challenges = cert_challenges(
                bytes.fromhex(beacon_block["randomness"][2:]),
                generated.layer_roots,
                self.node.keypair.public_key,
                record.unit_index,
                self.params.idle_cert_samples,
                spec.leaf_count,
            )
            proofs = await asyncio.to_thread(prove_certification, spec, generated, challenges)
            units.append({"unit_index": record.unit_index, "proofs": [p.to_json() for p in proofs]})
            proven.append(record.unit_index)
        if not units:
            return False
        try:
            await self._call("sminer.prove_idle_space", units=units)
        except ExtrinsicFailed as exc:
            if exc.error in ("sminer.NoSuchCommitment", "sminer.BadIdleProof"):
                if len(proven) == 1:  # found it: that unit cannot be certified
                    self.store.delete_idle_unit(proven[0])
                    self._units.pop(proven[0], None)
                    self._isolate = False
                else:  # which one? prove them one by one until it shows
                    self._isolate = True
            raise
        for index in proven:
            self.store.set_idle_state(index, "certified")
            self._units.pop(index, None)
        return True

    async def replace_owed(self, record: dict[str, Any]) -> bool:
        """User data displaced idle units: delete whole units worth what is owed."""
        owed = record["pending_replacement"] // self.params.idle_unit_size
        if owed <= 0:
            return False
        certified = [u.unit_index for u in self.store.idle_units("certified")][:owed]
        if not certified:
            return False
        await self._call("sminer.replace_idle_space", unit_indices=certified)
        for index in certified:
            self.store.delete_idle_unit(index)
        return True

    # -- tidy -------------------------------------------------------------------------------

    async def tidy_forever(self) -> None:
        while True:
            await asyncio.sleep(self.node.config.tidy_seconds)
            try:
                report = await tidy(
                    self.store,
                    self.adapter,
                    me=self.node.address,
                    best_block=self.node.best_block,
                    orphan_ttl=self.params.orphan_ttl,
                    unit_size=self.params.idle_unit_size,
                )
            except ChainError as exc:
                log.warning("tidy skipped: %s", exc)
                continue
            if report.total():
                log.info("tidy removed %s", report.to_json())
