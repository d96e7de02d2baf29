"""What repair did lately, for the restoral page: the chain keeps only open restoral
orders (a completed one is deleted), so the console follows the chain's events and keeps
the last restoral events of the file bank (docs/chain.md §5, file_bank)."""

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Any, Final

from chain_client.errors import ChainError
from chain_client.protocol import Chain

__all__ = ["KINDS", "RestoralEvent", "RestoralHistory"]

log = logging.getLogger("deoss.console")
KINDS: Final = {
    "RestoralOrderGenerated": "opened",
    "RestoralOrderClaimed": "claimed",
    "RestoralOrderCompleted": "completed",
    "RestoralClaimLapsed": "lapsed",
}
KEPT: Final = 500  # events kept, newest first
PAGE_BLOCKS: Final = 100
POLL_SECONDS: Final = 10.0
RETRY_SECONDS: Final = 2.0
# Caught up, it asks again at most this often: a page a second late is no loss, and a
# fast chain (tests make blocks every 50 ms) is not asked for every block.
PAUSE_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoralEvent:
    block: int
    kind: str  # a value of KINDS
    fid: str
    segment: int
    index: int
    origin: str | None  # the miner the fragment was on
    miner: str | None  # the miner it was restored onto (completed)
    detail: str  # the reason an order opened; who claimed; what a lapse cost

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> "RestoralEvent | None":
        if event.get("module") != "file_bank" or event.get("name") not in KINDS:
            return None
        data = event.get("data") or {}
        kind = KINDS[event["name"]]
        detail = {
            "opened": data.get("reason"),
            "claimed": data.get("claimer"),
            "lapsed": f"{data.get('claimer')} slashed {data.get('slashed')}",
        }.get(kind)
        return cls(
            block=int(event["block"]),
            kind=kind,
            fid=str(data.get("fid", "")),
            segment=int(data.get("segment", 0)),
            index=int(data.get("index", 0)),
            origin=data.get("origin"),
            miner=data.get("miner"),
            detail="" if detail is None else str(detail),
        )


class RestoralHistory:
    """The last ``KEPT`` restoral events, read back ``history_blocks`` at start and
    followed from then on (a long poll); ``run`` is the loop."""

    def __init__(self, chain: Chain, *, history_blocks: int) -> None:
        self.chain = chain
        self.history_blocks = history_blocks
        self.events: collections.deque[RestoralEvent] = collections.deque(maxlen=KEPT)
        self.counts: collections.Counter[str] = collections.Counter()
        self.since: int | None = None  # the first block read; None until the chain answered
        self.next_height: int | None = None
        self.last_error: str | None = None

    def newest(self, limit: int) -> list[RestoralEvent]:
        return list(self.events)[:limit]

    def record(self, events: tuple[dict[str, Any], ...]) -> None:
        for event in events:
            found = RestoralEvent.from_event(event)
            if found is not None:
                self.events.appendleft(found)
                self.counts[found.kind] += 1

    async def run(self) -> None:
        while True:
            try:
                await self.follow()
            except ChainError as exc:
                self.last_error = str(exc)
                log.warning("console: the chain's events are unreachable: %s", exc)
            except Exception:
                # What the page shows is not worth the gateway: log, and follow again.
                log.exception("console: following the chain's events failed")
                self.last_error = "following the chain's events failed; see the gateway log"
            await asyncio.sleep(RETRY_SECONDS)

    async def follow(self) -> None:
        if self.next_height is None:
            best = (await self.chain.head()).best_block
            self.next_height = self.since = max(1, best - self.history_blocks + 1)
        while True:
            page = await self.chain.events(
                self.next_height, timeout=POLL_SECONDS, max_blocks=PAGE_BLOCKS
            )
            self.record(page.events)
            caught_up = page.next - self.next_height < PAGE_BLOCKS
            self.next_height = page.next
            self.last_error = None
            if caught_up:
                await asyncio.sleep(PAUSE_SECONDS)
