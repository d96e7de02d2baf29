"""The restoral history (docs/console.md §4.6): the file bank's restoral events, newest
first, the last 500 kept, counted by kind; other events ignored."""

import asyncio
from typing import Any

import pytest

from chain_client.protocol import EventPage, Head
from gateway.console.events import KEPT, RestoralHistory

FID = "ab" * 32


class NoChain:
    pass


def _event(block: int, name: str, **data: Any) -> dict[str, Any]:
    return {"block": block, "index": 0, "module": "file_bank", "name": name, "data": data}


def test_restoral_events_are_kept_newest_first() -> None:
    history = RestoralHistory(NoChain(), history_blocks=10)  # type: ignore[arg-type]
    where = {"fid": FID, "segment": 1, "index": 2}
    history.record(
        (
            _event(5, "RestoralOrderGenerated", **where, origin="m1", reason="miner_gone"),
            _event(6, "RestoralOrderClaimed", **where, claimer="g", deadline=20),
            {"block": 6, "module": "balances", "name": "FeePaid", "data": {}},
            _event(6, "FileDeleted", fid=FID),
            _event(7, "RestoralOrderCompleted", **where, origin="m1", miner="m2"),
            _event(9, "RestoralClaimLapsed", **where, claimer="g", slashed=100),
        )
    )
    kinds = [(e.block, e.kind, e.detail) for e in history.newest(10)]
    assert kinds == [
        (9, "lapsed", "g slashed 100"),
        (7, "completed", ""),
        (6, "claimed", "g"),
        (5, "opened", "miner_gone"),
    ]
    completed = history.newest(10)[1]
    assert (completed.fid, completed.segment, completed.index) == (FID, 1, 2)
    assert (completed.origin, completed.miner) == ("m1", "m2")
    assert dict(history.counts) == {"opened": 1, "claimed": 1, "completed": 1, "lapsed": 1}


def test_only_the_last_ones_are_kept() -> None:
    history = RestoralHistory(NoChain(), history_blocks=10)  # type: ignore[arg-type]
    history.record(
        tuple(
            _event(block, "RestoralOrderGenerated", fid=FID, segment=0, index=0, reason="r")
            for block in range(KEPT + 100)
        )
    )
    assert KEPT == 500 and len(history.events) == KEPT
    assert history.newest(1)[0].block == KEPT + 99 and history.counts["opened"] == KEPT + 100


class PagedChain:
    """A chain at block 5000 whose events come a page at a time, then stop the loop."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    async def head(self) -> Head:
        return Head(best_block=5000, best_hash="0x00")

    async def events(self, from_height: int, *, timeout: float, max_blocks: int) -> EventPage:
        self.asked.append(from_height)
        if len(self.asked) == 3:
            raise asyncio.CancelledError
        event = _event(from_height, "RestoralOrderCompleted", fid=FID, segment=0, index=0)
        return EventPage((event,), from_height + max_blocks)


async def test_it_reads_back_history_blocks_then_follows() -> None:
    chain = PagedChain()
    history = RestoralHistory(chain, history_blocks=2000)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await history.run()
    assert history.since == 3001 and chain.asked == [3001, 3101, 3201]
    assert [e.block for e in history.newest(5)] == [3101, 3001]
