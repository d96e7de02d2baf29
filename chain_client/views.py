"""Typed views of the chain query answers the gateway and the miner read (docs/chain.md
§5), so a field's name and type are checked once, here, not at every ``row["idle"]``.

Each view reads the fields it names and ignores the others: a node may answer more
than a client knows (a newer runtime), never less. The query helpers return None where
the chain does.
"""

from dataclasses import dataclass
from typing import Any, Self

from chain_client.protocol import Chain

__all__ = [
    "FileView",
    "FragmentView",
    "MinerView",
    "RestoralOrderView",
    "SegmentView",
    "TerritoryView",
    "file",
    "miner",
    "miners",
    "restoral_orders",
    "territory",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TerritoryView:
    owner: str
    name: str
    state: str  # active, frozen or expired
    total: int
    used: int
    locked: int
    remaining: int  # total - used - locked: what new files may take
    deadline: int  # the block at which an active territory freezes

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            owner=str(data["owner"]),
            name=str(data["name"]),
            state=str(data["state"]),
            total=int(data["total"]),
            used=int(data["used"]),
            locked=int(data["locked"]),
            remaining=int(data["remaining"]),
            deadline=int(data["deadline"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MinerView:
    account: str
    endpoint: str
    scheme: str
    state: str  # positive, frozen, offline, exiting or exited
    declared: int
    idle: int  # certified idle space a new fragment may take
    service: int
    certified: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            account=str(data["account"]),
            endpoint=str(data["endpoint"]),
            scheme=str(data["scheme"]),
            state=str(data["state"]),
            declared=int(data["declared"]),
            idle=int(data["idle"]),
            service=int(data["service"]),
            certified=int(data["certified"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentView:
    index: int
    id: str
    miner: str | None  # None: its miner timed out of the deal, not yet reassigned
    size: int
    reported: bool
    avail: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            index=int(data["index"]),
            id=str(data["id"]),
            miner=None if data["miner"] is None else str(data["miner"]),
            size=int(data["size"]),
            reported=bool(data["reported"]),
            avail=bool(data["avail"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentView:
    id: str
    fragments: tuple[FragmentView, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            id=str(data["id"]),
            fragments=tuple(FragmentView.from_json(f) for f in data["fragments"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FileView:
    fid: str
    state: str  # deal or active
    size: int
    stored: int
    data_shards: int
    total_shards: int
    declarer: str
    segments: tuple[SegmentView, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            fid=str(data["fid"]),
            state=str(data["state"]),
            size=int(data["size"]),
            stored=int(data["stored"]),
            data_shards=int(data["data_shards"]),
            total_shards=int(data["total_shards"]),
            declarer=str(data["declarer"]),
            segments=tuple(SegmentView.from_json(s) for s in data["segments"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoralOrderView:
    fid: str
    segment: int
    idx: int
    origin: str  # the miner that held the fragment
    reason: str
    created_at: int
    claimer: str | None
    deadline: int | None  # the block a claim lapses at

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            fid=str(data["fid"]),
            segment=int(data["segment"]),
            idx=int(data["idx"]),
            origin=str(data["origin"]),
            reason=str(data["reason"]),
            created_at=int(data["created_at"]),
            claimer=None if data["claimer"] is None else str(data["claimer"]),
            deadline=None if data["deadline"] is None else int(data["deadline"]),
        )


async def territory(chain: Chain, *, owner: str, name: str) -> TerritoryView | None:
    found = await chain.query("storage_handler.territory", owner=owner, name=name)
    return None if found is None else TerritoryView.from_json(found)


async def miner(chain: Chain, account: str) -> MinerView | None:
    found = await chain.query("sminer.miner", account=account)
    return None if found is None else MinerView.from_json(found)


async def miners(chain: Chain, state: str | None = None) -> list[MinerView]:
    rows = await chain.query("sminer.miners", **({} if state is None else {"state": state}))
    return [MinerView.from_json(row) for row in rows]


async def file(chain: Chain, fid: str) -> FileView | None:
    found = await chain.query("file_bank.file", fid=fid)
    return None if found is None else FileView.from_json(found)


async def restoral_orders(chain: Chain, limit: int = 10_000) -> list[RestoralOrderView]:
    rows = await chain.query("file_bank.restoral_orders", limit=limit)
    return [RestoralOrderView.from_json(row) for row in rows]
