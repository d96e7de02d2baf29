"""``deoss territory ls``'s rows (gateway/chain_commands.py) over an in-process chain,
and how the human listing words a territory's expiry."""

from pathlib import Path

import pytest

from chain_client.keys import Keypair, dev_keypair
from chain_client.local import LocalChain
from chain_client.node import LedgerNode
from chain_client.params import TOKEN, Genesis, dev_params
from gateway.chain_commands import expiry_text, territory_rows, tokens
from tests.chain_client.sim import MinerState, Sim


@pytest.mark.parametrize("block_time", [0.0, 2.0])
async def test_rows_estimate_time_only_with_a_block_time(tmp_path: Path, block_time: float) -> None:
    params = dev_params(block_time=block_time)
    node = LedgerNode(tmp_path / "chain.db", Genesis(params=params, dev=True))
    try:
        sim, alice = Sim(node), dev_keypair("Alice")
        miner = MinerState(Keypair.generate())
        sim.fund(alice, miner.keypair)
        sim.add_miner(miner, units=8)  # certified space for the territory to buy
        sim.ok(alice, "storage_handler.mint_territory", name="t", gib=1, days=2)
        sim.blocks(3)
        (row,) = await territory_rows(LocalChain(node), alice.address)
        best = node.best()[0]
        deadline = row["deadline"]
        assert row["state"] == "active" and row["total"] == params.territory_unit
        assert row["expires_at"] == deadline + params.grace_period
        if block_time:
            assert row["deadline_in"] == (deadline - best) * block_time
            assert row["expires_in"] == (deadline + params.grace_period - best) * block_time
        else:  # manual blocks: no time to tell
            assert row["deadline_in"] is None and row["expires_in"] is None
        assert await territory_rows(LocalChain(node), miner.keypair.address) == []
    finally:
        node.close()


def test_expiry_words() -> None:
    row = {"deadline": 100, "expires_at": 120, "deadline_in": 7200.0, "expires_in": 7300.0}
    assert expiry_text({**row, "state": "active"}) == "freezes at block 100 (in 2.0 h)"
    assert expiry_text({**row, "state": "frozen"}) == "expires at block 120 (in 2.0 h)"
    assert expiry_text({**row, "state": "expired"}) == "expired"
    manual = {**row, "deadline_in": None, "state": "active"}
    assert expiry_text(manual) == "freezes at block 100"
    assert expiry_text({**row, "deadline_in": 3 * 86_400.0, "state": "active"}).endswith("3.0 d)")
    assert expiry_text({**row, "deadline_in": 600.0, "state": "active"}).endswith("10 min)")


def test_tokens() -> None:
    assert tokens(30 * TOKEN) == "30"
    assert tokens(TOKEN // 2) == "0.5"
    assert tokens(TOKEN // 1000 + 2 * TOKEN) == "2.001"
    assert tokens(0) == "0"
