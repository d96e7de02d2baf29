import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from chain_client.merkle import leaf_hashes, merkle_root
from miner_agent.store import MinerStore
from miner_agent.tidy import CATEGORIES, TidyReport, tidy

LEAF = 1024
UNIT = 4 * LEAF
ME, OTHER = "cXme", "cXother"
BEST, TTL = 1000, 100
OLD = time.time() - 7200


class FakeChain:
    def __init__(self) -> None:
        self.fragments: dict[str, dict[str, Any]] = {}
        self.units: dict[int, str] = {}
        self.reported: list[str] = []
        self.refuse_reports = False

    def place(self, fragment_id: str, size: int, *, miner: str = ME, state: str = "active") -> None:
        self.fragments[fragment_id] = {
            "fid": "f" * 63 + str(len(self.fragments) % 10),
            "segment": 0,
            "idx": len(self.fragments),
            "fragment_id": fragment_id,
            "size": size,
            "miner": miner,
            "reported": True,
            "avail": True,
            "file_state": state,
        }

    async def fragment(self, fragment_id: str) -> dict[str, Any] | None:
        found = self.fragments.get(fragment_id)
        return dict(found) if found is not None else None

    async def idle_unit_states(self) -> dict[int, str]:
        return dict(self.units)

    async def report_lost(self, fragment: dict[str, Any]) -> None:
        if self.refuse_reports:
            raise ConnectionError("chain unreachable")
        self.reported.append(fragment["fragment_id"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MinerStore]:
    miner_store = MinerStore(tmp_path / "miner", leaf_size=LEAF)
    yield miner_store
    miner_store.close()


_random = random.Random(7)


def fragment_bytes(size: int = 3 * LEAF - 100) -> tuple[str, bytes]:
    data = _random.randbytes(size)
    return merkle_root(data, LEAF).hex(), data


async def put(store: MinerStore, *, height: int, state: str = "orphan") -> tuple[str, bytes]:
    fragment_id, data = fragment_bytes()

    async def body() -> AsyncIterator[bytes]:
        yield data[:1000]
        yield data[1000:]

    assert await store.receive(fragment_id, body(), size=len(data), height=height)
    if state != "orphan":
        store.set_fragment_state(fragment_id, state, "a" * 64)
    return fragment_id, data


def plant(path: Path, data: bytes, *, old: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (OLD, OLD))
    return path


async def run(store: MinerStore, chain: FakeChain) -> TidyReport:
    return await tidy(store, chain, me=ME, best_block=BEST, orphan_ttl=TTL, unit_size=UNIT)


def expected(**removed: list[str]) -> dict[str, list[str]]:
    return {category: sorted(removed.get(category, [])) for category in CATEGORIES}


async def test_tidy_removes_exactly_what_is_invalid(store: MinerStore, tmp_path: Path) -> None:
    chain = FakeChain()
    size = 3 * LEAF - 100

    kept, _ = await put(store, height=10, state="active")
    chain.place(kept, size)
    moved_away, _ = await put(store, height=10, state="active")
    chain.place(moved_away, size, miner=OTHER)
    file_deleted, _ = await put(store, height=10, state="deal")
    old_orphan, _ = await put(store, height=BEST - TTL - 1)
    young_orphan, _ = await put(store, height=BEST - TTL)
    claimed_orphan, _ = await put(store, height=10)
    chain.place(claimed_orphan, size, state="deal")

    corrupt, _ = await put(store, height=10, state="active")
    chain.place(corrupt, size)
    path = store.fragment_path(corrupt)
    damaged = bytearray(path.read_bytes())
    damaged[LEAF + 5] ^= 0xFF
    path.write_bytes(damaged)
    truncated, _ = await put(store, height=10, state="active")
    chain.place(truncated, size)
    with open(store.fragment_path(truncated), "r+b") as handle:
        handle.truncate(LEAF)
    missing, _ = await put(store, height=10, state="deal")
    chain.place(missing, size, state="deal")  # not active: the chain takes no loss report
    store.fragment_path(missing).unlink()

    adoptable, data = fragment_bytes()
    plant(store.fragment_path(adoptable), data)
    chain.place(adoptable, len(data))
    unknown, data = fragment_bytes()
    plant(store.fragment_path(unknown), data)
    bad_hash = "ab" * 32
    plant(store.fragment_path(bad_hash), b"not what the id says")
    in_flight, data = fragment_bytes()  # renamed into place, not indexed yet
    plant(store.fragment_path(in_flight), data, old=False)

    wrong_shard, data = fragment_bytes()
    shard = "00" if not wrong_shard.startswith("00") else "11"
    fragments = store.fragment_dir
    plant(fragments / shard / shard / wrong_shard, data)
    plant(fragments / "junk.txt", b"x")
    plant(fragments / "zz" / "file", b"x")
    plant(fragments / "ab" / "cd" / "not-an-id", b"x")
    (fragments / "ab" / "cd" / ("abcd" + "0" * 60)).mkdir()
    outside = plant(tmp_path / "outside", b"must survive")
    (fragments / "ab" / "cd" / ("abcd" + "1" * 60)).symlink_to(outside)

    plant(store.tmp_dir / "old.part", b"x")
    plant(store.tmp_dir / "fresh.part", b"x", old=False)

    store.write_idle_unit(0, bytes(UNIT), anchor_height=1, layer_roots=["00" * 32])
    store.write_idle_unit(1, bytes(UNIT), anchor_height=1, layer_roots=["00" * 32])
    store.set_idle_state(1, "certified")
    chain.units[1] = "certified"
    store.write_idle_unit(2, bytes(UNIT), anchor_height=1, layer_roots=["00" * 32])
    store.set_idle_state(2, "committed", committed_at=5)
    store.write_idle_unit(3, bytes(LEAF), anchor_height=1, layer_roots=["00" * 32])
    plant(store.idle_dir / "99", bytes(UNIT))
    plant(store.idle_dir / "98", bytes(UNIT), old=False)  # indexed as soon as it is hashed
    plant(store.idle_dir / "007", bytes(UNIT))
    plant(store.idle_dir / "notanumber", b"x")

    report = await run(store, chain)

    assert report.removed == expected(
        expired_temp=["old.part"],
        malformed=[
            f"{shard}/{shard}/{wrong_shard}",
            "junk.txt",
            "zz",
            "ab/cd/not-an-id",
            "ab/cd/abcd" + "0" * 60,
            "ab/cd/abcd" + "1" * 60,
        ],
        unknown=[unknown, bad_hash],
        missing=[missing],
        wrong_size=[truncated],
        corrupt=[corrupt],
        orphan=[old_orphan],
        not_ours=[moved_away, file_deleted],
        idle_unknown=["2", "3", "99", "007", "notanumber"],
    )
    assert report.adopted == [adoptable]
    assert report.reported_lost == sorted([corrupt, truncated])
    assert sorted(chain.reported) == sorted([corrupt, truncated])
    assert report.total() == sum(len(names) for names in report.removed.values()) + 1
    assert report.to_json()["total"] == report.total()

    held = {record.id: record for record in store.fragments()}
    assert set(held) == {kept, young_orphan, claimed_orphan, adoptable}
    claimed_fid = chain.fragments[claimed_orphan]["fid"]
    assert (held[claimed_orphan].state, held[claimed_orphan].fid) == ("deal", claimed_fid)
    assert held[young_orphan].state == "orphan"
    adoptable_fid = chain.fragments[adoptable]["fid"]
    assert (held[adoptable].state, held[adoptable].fid) == ("active", adoptable_fid)
    assert held[adoptable].received_height == BEST
    adopted_data = store.fragment_path(adoptable).read_bytes()
    assert store.fragment_leaf_hashes(adoptable) == leaf_hashes(adopted_data, LEAF)
    read = b"".join([piece async for piece in store.read_range(adoptable, 0, len(adopted_data))])
    assert read == adopted_data

    assert store.fragment_path(in_flight).exists()
    assert outside.read_bytes() == b"must survive"
    assert os.listdir(store.tmp_dir) == ["fresh.part"]
    assert [unit.unit_index for unit in store.idle_units()] == [0, 1]
    assert sorted(os.listdir(store.idle_dir)) == ["0", "1", "98"]

    again = await run(store, chain)
    assert again.total() == 0
    assert again.removed == expected()
    assert again.reported_lost == []
    assert len(chain.reported) == 2


async def test_a_failed_loss_report_is_retried_next_run(store: MinerStore) -> None:
    chain = FakeChain()
    corrupt, _ = await put(store, height=10, state="active")
    chain.place(corrupt, 3 * LEAF - 100)
    path = store.fragment_path(corrupt)
    path.write_bytes(b"\0" + path.read_bytes()[1:])
    chain.refuse_reports = True

    with pytest.raises(ConnectionError):
        await run(store, chain)
    assert store.fragment(corrupt) is not None

    chain.refuse_reports = False
    report = await run(store, chain)
    assert report.removed["corrupt"] == [corrupt]
    assert report.reported_lost == [corrupt] == chain.reported


async def test_an_open_restoral_order_is_not_reported_again(store: MinerStore) -> None:
    chain = FakeChain()
    missing, _ = await put(store, height=10, state="active")
    chain.place(missing, 3 * LEAF - 100)
    chain.fragments[missing]["avail"] = False
    store.fragment_path(missing).unlink()

    report = await run(store, chain)

    assert report.removed["missing"] == [missing]
    assert report.reported_lost == chain.reported == []


async def test_a_padded_copy_with_the_same_root_is_not_adopted(store: MinerStore) -> None:
    # Self-pairing: leaves a b c and a b c c share a root, so the size must match too.
    chain = FakeChain()
    data = _random.randbytes(3 * LEAF)
    fragment_id = merkle_root(data, LEAF).hex()
    padded = data + data[-LEAF:]
    assert merkle_root(padded, LEAF).hex() == fragment_id
    plant(store.fragment_path(fragment_id), padded)
    chain.place(fragment_id, len(data))

    report = await run(store, chain)

    assert report.adopted == []
    assert report.removed["unknown"] == [fragment_id]
    assert not store.fragment_path(fragment_id).exists()


async def test_a_verified_fragment_the_chain_places_here_is_never_removed(
    store: MinerStore,
) -> None:
    chain = FakeChain()
    for state, chain_state in [("orphan", "deal"), ("deal", "deal"), ("active", "active")]:
        fragment_id, _ = await put(store, height=1, state=state)
        chain.place(fragment_id, 3 * LEAF - 100, state=chain_state)

    report = await tidy(
        store, chain, me=ME, best_block=10**6, orphan_ttl=1, unit_size=UNIT, temp_age=0.0
    )

    assert report.total() == 0
    assert {record.id for record in store.fragments()} == set(chain.fragments)
