"""Fixtures of the module tests: network parameters without random challenges or
absence, and the ``World`` built on them."""

import pytest

from chain_client.keys import Keypair
from chain_client.params import NetworkParams, dev_params
from tests.chain_client.modules.world import World
from tests.chain_client.sim import (
    MinerState,
    Sim,
)


@pytest.fixture
def params() -> NetworkParams:
    """Random challenges and absence would make these flows' outcomes depend on timing;
    the tests that want them ask for them (``challenge_now``, ``offline_after``)."""
    return dev_params(block_time=0.0, challenge_interval=1000, offline_after=100)


@pytest.fixture
def world(sim: Sim, alice: Keypair) -> World:
    owner, gateway = Keypair.generate(), Keypair.generate()
    miners = [MinerState(Keypair.generate()) for _ in range(6)]
    sim.fund(alice, owner, gateway, *(m.keypair for m in miners))
    for miner in miners:
        sim.add_miner(miner, units=4, declared_units=8)
    sim.ok(gateway, "oss.register", endpoint="http://127.0.0.1:8080")
    sim.ok(owner, "oss.authorize", gateway=gateway.address)
    sim.ok(owner, "storage_handler.mint_territory", name="home", gib=4, days=5)
    result = World(sim, owner, gateway, miners)
    result.check()
    return result
