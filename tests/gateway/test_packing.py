"""Packed small objects on a real in-process grid (docs/packing.md): random objects go
through packing, deletion and repacking, and come back byte for byte, with every
territory charged exactly its live members' shares."""

import asyncio
import functools
import random
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import MinersUnavailable
from gateway.objects import ObjectService
from gateway.records import (
    ACTIVE,
    NULL_VERSION,
    NameWrite,
    ObjectRecord,
    PreconditionFailed,
    WriteCondition,
)
from gateway.repack import Repacker
from gateway.stripe_cache import StripeCache
from gateway.transfer import MinerInfo, TransferError
from tests.grid import GRID_PARAMS, TERRITORY, USER, Grid, open_grid
from tests.polling import eventually

OWNER = USER.address
LIMIT = GRID_PARAMS.pack_limit


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put(service: ObjectService, name: str, data: bytes) -> ObjectRecord:
    return await service.put(
        owner=OWNER,
        territory=TERRITORY,
        name=name,
        body=_body(data),
        size_hint=len(data),
        packable=True,
    )


async def _all_active(service: ObjectService, names: list[str]) -> list[ObjectRecord]:
    async def states() -> list[ObjectRecord | None]:
        return [service.index.find(OWNER, name) for name in names]

    found = await eventually(
        states, lambda records: all(r is not None and r.state == ACTIVE for r in records)
    )
    return [r for r in found if r is not None]


async def _read(service: ObjectService, record: ObjectRecord) -> bytes:
    return b"".join([piece async for piece in service.read(record, 0, record.size, None)])


async def _charged(grid: Grid) -> int:
    territory = await grid.chain.query("storage_handler.territory", owner=OWNER, name=TERRITORY)
    return int(territory["used"]) + int(territory["locked"])


async def _settled_charge(grid: Grid, expected: int) -> None:
    await eventually(lambda: _charged(grid), lambda charged: charged == expected)


async def _scenario(root: Path, sizes: list[int], deleted: list[bool], seed: int) -> None:
    rng = random.Random(seed)
    async with open_grid(root) as grid:
        service = grid.gateway.service
        base = await _charged(grid)
        bodies = {f"p/{i}": rng.randbytes(size) for i, size in enumerate(sizes)}
        records = await asyncio.gather(*(_put(service, n, d) for n, d in bodies.items()))
        assert all(r.slot is not None for r in records), "small S3-style puts are packed"
        packs = {r.fid for r in records}
        assert len(packs) < len(records) or len(records) == 1, "concurrent puts share packs"
        await _all_active(service, list(bodies))
        await _settled_charge(grid, base + sum(r.stored for r in records))
        gone = [name for name, dead in zip(bodies, deleted, strict=False) if dead]
        for name in gone:
            await service.delete_version(OWNER, name, NULL_VERSION)
        live = {name: data for name, data in bodies.items() if name not in gone}
        shares = {r.name: r.stored for r in records}
        await _settled_charge(grid, base + sum(shares[name] for name in live))

        repacker = Repacker(service, below=1.0)
        await repacker.step()
        after = await _all_active(service, list(live))
        for record in after:
            assert await _read(service, record) == live[record.name], record.name
        await _settled_charge(grid, base + sum(r.stored for r in after))
        assert sum(r.stored for r in after) == sum(shares[name] for name in live)
        if gone and live:
            assert repacker.moved > 0, "dead space in a pack makes it due"
        for fid in packs:  # a pack whose every member moved or went is gone from chain
            if not any(r.fid == fid for r in after):
                await eventually(
                    functools.partial(grid.chain.query, "file_bank.file", fid=fid),
                    lambda file: file is None,
                )


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(0, min(LIMIT, 12 * 1024)), min_size=2, max_size=10),
    deleted=st.lists(st.booleans(), min_size=2, max_size=10),
    seed=st.integers(0, 2**32),
)
def test_packing_deletion_and_repacking_keep_every_byte_and_charge(
    sizes: list[int], deleted: list[bool], seed: int
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_scenario(Path(root), sizes, deleted, seed))


async def test_a_member_whose_commit_fails_fails_alone(tmp_path: Path) -> None:
    """docs/packing.md §3: members of one pack stand alone at commit; the refused one's
    bytes are dead space, the others are stored and read back."""
    async with open_grid(tmp_path) as grid:
        service = grid.gateway.service
        await _put(service, "exists", b"first")
        create_only = NameWrite(condition=WriteCondition(if_none_match=True))

        async def refused() -> ObjectRecord:
            return await service.put(
                owner=OWNER,
                territory=TERRITORY,
                name="exists",
                body=_body(b"second"),
                size_hint=6,
                write=create_only,
                packable=True,
            )

        outcomes = await asyncio.gather(
            _put(service, "a", b"alpha"),
            refused(),
            _put(service, "b", b"beta"),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], PreconditionFailed)
        a, b = outcomes[0], outcomes[2]
        assert isinstance(a, ObjectRecord) and isinstance(b, ObjectRecord)
        assert a.fid == b.fid and a.slot != b.slot  # one pack
        assert await _read(service, a) == b"alpha" and await _read(service, b) == b"beta"
        current = service.index.find(OWNER, "exists")
        assert current is not None and await _read(service, current) == b"first"


async def test_a_read_after_a_write_is_served_from_the_stripe_cache(tmp_path: Path) -> None:
    """DESIGN.md §5: a pack's ciphertext is cached as it is placed, so reading a member
    back needs no miner; with the cache cold, the miners serve it all the same."""
    async with open_grid(tmp_path) as grid:
        service = grid.gateway.service
        bodies = {f"c/{i}": bytes([i]) * (100 + i) for i in range(3)}
        records = await asyncio.gather(*(_put(service, n, d) for n, d in bodies.items()))
        hits = service.stripes.hits
        for record in records:
            assert await _read(service, record) == bodies[record.name]
        assert service.stripes.hits == hits + len(records)
        service.stripes = StripeCache()
        for record in records:
            assert await _read(service, record) == bodies[record.name]
        # The first cold read fetched the pack's stripe from miners; the others share it.
        assert service.stripes.misses >= 1


async def test_a_pack_that_cannot_be_placed_fails_every_member_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/packing.md §3: no miner takes the pack's fragments, so each member gets the
    error an unpacked upload would (MinersUnavailable), and no name is written."""
    async with open_grid(tmp_path) as grid:
        service = grid.gateway.service

        async def refuse(miner: MinerInfo, fragment_id: str, data: bytes) -> dict[str, Any]:
            raise TransferError(miner.account, "refused by the test")

        monkeypatch.setattr(service.client, "put_small", refuse)
        outcomes = await asyncio.gather(
            *(_put(service, f"never/{i}", b"x" * (i + 1)) for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, MinersUnavailable) for outcome in outcomes), outcomes
        assert all(service.index.find(OWNER, f"never/{i}") is None for i in range(3))
        monkeypatch.undo()
        record = await _put(service, "never/0", b"after")  # the client's retry succeeds
        assert await _read(service, record) == b"after"
