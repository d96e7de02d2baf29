"""A gateway whose bond a slash took below gateway_bond bonds it back before it repairs
(docs/chain.md §5 oss): miners refuse unbonded gateways."""

import asyncio
from pathlib import Path

from chain_client.account import ChainAccount
from chain_client.keys import Keypair, dev_keypair
from chain_client.local import LocalChain
from chain_client.params import Genesis, dev_params
from gateway.durability.repair import keep_bonded


async def test_keep_bonded_tops_the_bond_up_and_leaves_a_bonded_one_alone(tmp_path: Path) -> None:
    params = dev_params(block_time=0.0)
    chain = await LocalChain.open(tmp_path / "chain.db", Genesis(params=params, dev=True))
    try:
        gateway = ChainAccount(chain, Keypair.generate())
        alice = ChainAccount(chain, dev_keypair("Alice"))
        for account, call, args in (
            (alice, "balances.faucet", {"dest": gateway.address}),
            (gateway, "oss.register", {"endpoint": "http://127.0.0.1:1", "bond": 5}),
        ):
            await account.submit(call, **args)
            await chain.produce_block()
        assert not (await chain.query("oss.gateway", account=gateway.address))["bonded"]
        bonding = keep_bonded(gateway)
        task = asyncio.ensure_future(bonding)
        while await chain.next_nonce(gateway.address) < 2:
            await asyncio.sleep(0.01)
        await chain.produce_block()
        await task
        record = await chain.query("oss.gateway", account=gateway.address)
        assert (record["bond"], record["bonded"]) == (params.gateway_bond, True)
        await keep_bonded(gateway)  # bonded: nothing to submit
        assert await chain.next_nonce(gateway.address) == 2
    finally:
        await chain.close()
