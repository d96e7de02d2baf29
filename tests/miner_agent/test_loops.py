"""The miner's chain loops on an in-process chain: orphans go by chain time only, and a
fragment found corrupt is dropped."""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chain_client.keys import Keypair
from chain_client.local import LocalChain
from chain_client.merkle import merkle_root
from chain_client.params import Genesis, dev_params
from miner_agent.config import MinerConfig
from miner_agent.loops import MinerLoops
from miner_agent.node import MinerNode
from miner_agent.store import MinerStore


@pytest.fixture
async def loops(tmp_path: Path) -> AsyncIterator[MinerLoops]:
    params = dev_params(block_time=0.0, orphan_ttl=15)
    chain = await LocalChain.open(
        tmp_path / "c.db", Genesis(params=params, dev=True), block_time=0.0
    )
    config = MinerConfig(
        data_dir=tmp_path / "m",
        declared_space=params.idle_unit_size,
        chain_rpc="http://127.0.0.1:1",
    )
    store = MinerStore(config.data_dir, leaf_size=params.leaf_size)
    node = MinerNode(
        config=config, keypair=Keypair.generate(), chain=chain, params=params, store=store
    )
    yield MinerLoops(node)
    store.close()
    await chain.close()


async def put(loops: MinerLoops, height: int) -> str:
    data = os.urandom(3000)
    fragment_id = merkle_root(data, loops.params.leaf_size).hex()

    async def body() -> AsyncIterator[bytes]:
        yield data

    await loops.store.receive(fragment_id, body(), size=len(data), height=height)
    return fragment_id


async def test_orphans_are_dropped_by_chain_time_not_wall_time(loops: MinerLoops) -> None:
    young, old = await put(loops, 10), await put(loops, 0)
    loops.node.best_block = 15  # old arrived 15 blocks ago: exactly the TTL, not past it
    await loops.on_blocks()
    assert loops.store.fragment(old) is not None
    loops.node.best_block = 16
    await loops.on_blocks()
    assert loops.store.fragment(old) is None
    assert loops.store.fragment(young) is not None
    assert not loops.store.fragment_path(old).exists()


async def test_a_corrupt_fragment_is_dropped(loops: MinerLoops) -> None:
    fragment_id = await put(loops, 0)
    loops.node.on_corrupt(fragment_id)
    await loops.on_blocks()
    assert loops.store.fragment(fragment_id) is None and not loops.node.corrupt
