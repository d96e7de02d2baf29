"""The gateway <-> miner contract (docs/miner-protocol.md), run against a real miner app
on the in-process grid and against the fake the object tests use (tests/gateway/fakes.py),
so the fake cannot drift from what a miner does."""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from chain_client.merkle import merkle_root
from gateway.transfer import SMALL_FRAGMENT, MinerClient, MinerInfo, TransferError
from tests.gateway.fakes import PlayedMiners
from tests.grid import GRID_PARAMS, Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")
LEAF = GRID_PARAMS.leaf_size


@dataclass
class Miners:
    client: MinerClient
    miner: MinerInfo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("contract")) as running:
        yield running


@pytest_asyncio.fixture(params=["real", "fake"], loop_scope="module")
async def miners(request: pytest.FixtureRequest, grid: Grid) -> Miners:
    if request.param == "fake":
        fake = PlayedMiners(LEAF, GRID_PARAMS.fragment_size)
        return Miners(fake, MinerInfo("m0", "http://127.0.0.1:9", 10**9, "sr25519"))
    service = grid.gateway.service
    miner = sorted((await service.directory.miners()).values(), key=lambda m: m.account)[0]
    return Miners(service.client, miner)


def fragment(size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    return merkle_root(data, LEAF).hex(), data


@pytest.mark.parametrize("size", [1, 1000, GRID_PARAMS.fragment_size])
@pytest.mark.parametrize("batched", [True, False])
async def test_a_stored_fragment_reads_back_in_any_range(
    miners: Miners, size: int, batched: bool
) -> None:
    fragment_id, data = fragment(size)
    if batched:  # small fragments travel in one batch PUT per miner
        assert size <= SMALL_FRAGMENT
        await miners.client.put_small(miners.miner, fragment_id, data)
    else:
        await miners.client.put(miners.miner, fragment_id, [data[: size // 2], data[size // 2 :]])
    assert await miners.client.get(miners.miner, fragment_id, 0, size) == data
    if size > 10:
        part = data[7 : size - 3]
        assert await miners.client.get(miners.miner, fragment_id, 7, size - 3) == part


async def test_a_fragment_put_again_is_accepted(miners: Miners) -> None:
    fragment_id, data = fragment(2000)
    await miners.client.put_small(miners.miner, fragment_id, data)
    await miners.client.put_small(miners.miner, fragment_id, data)  # a retried PUT
    assert await miners.client.get(miners.miner, fragment_id, 0, 2000) == data


async def test_a_body_that_is_not_its_id_is_refused(miners: Miners) -> None:
    fragment_id, data = fragment(3000)
    with pytest.raises(TransferError):
        await miners.client.put_small(miners.miner, fragment_id, data[::-1])
    with pytest.raises(TransferError):  # and nothing was kept
        await miners.client.get(miners.miner, fragment_id, 0, 1)


async def test_a_missing_fragment_or_a_range_past_its_end_is_a_transfer_error(
    miners: Miners,
) -> None:
    missing, _ = fragment(100)
    with pytest.raises(TransferError):
        await miners.client.get(miners.miner, missing, 0, 100)
    fragment_id, data = fragment(500)
    await miners.client.put_small(miners.miner, fragment_id, data)
    with pytest.raises(TransferError):
        await miners.client.get(miners.miner, fragment_id, 400, 600)


async def test_a_fragment_beyond_the_networks_fragment_size_is_refused(miners: Miners) -> None:
    fragment_id, data = fragment(GRID_PARAMS.fragment_size + 1)
    with pytest.raises(TransferError):
        await miners.client.put(miners.miner, fragment_id, [data])
