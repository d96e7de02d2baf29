"""One contract suite for every ``Chain``: the in-process node and the HTTP client
talking to a real ``deoss-chain run`` process. Both sit on a real SQLite node."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from chain_client.account import ChainAccount
from chain_client.errors import ExtrinsicFailed, InvalidArguments, Rejected, UnknownCall
from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair, dev_keypair
from chain_client.local import LocalChain
from chain_client.params import Genesis, dev_params
from chain_client.protocol import Chain
from chain_client.rpc_client import HttpChain
from tests.conftest import ChainProcess

ED = dev_params().existential_deposit
ALICE = dev_keypair("Alice").address


@pytest.fixture(params=["local", pytest.param("http", marks=pytest.mark.e2e)])
async def chain(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Chain]:
    if request.param == "local":
        local = await LocalChain.open(
            tmp_path / "chain.db",
            Genesis(params=dev_params(block_time=0.0), dev=True),
            block_time=0.0,
        )
        yield local
        await local.close()
    else:
        process: ChainProcess = request.getfixturevalue("chain_process")
        remote = HttpChain(process.url)
        yield remote
        await remote.close()


async def included(chain: Chain, tx_hash: str) -> None:
    await chain.produce_block()
    assert await chain.receipt(tx_hash) is not None


async def funded(chain: Chain) -> ChainAccount:
    account = ChainAccount(chain, Keypair.generate())
    alice = ChainAccount(chain, dev_keypair("Alice"))
    await included(chain, await alice.submit("balances.faucet", dest=account.address))
    return account


async def test_genesis_and_head(chain: Chain) -> None:
    genesis_hash, genesis = await chain.genesis()
    assert len(genesis_hash) == 32 and genesis.dev
    head = await chain.head()
    height = await chain.produce_block()
    assert height == head.best_block + 1
    after = await chain.head()
    assert after.best_block == height
    block = await chain.block(height)
    assert block is not None and block["parent_hash"] == head.best_hash
    assert block["hash"] == after.best_hash
    assert await chain.block(height + 1000) is None


async def test_submit_include_and_receipt(chain: Chain) -> None:
    sender = await funded(chain)
    dest = Keypair.generate().address
    tx_hash = await sender.submit("balances.transfer", dest=dest, amount=ED + 77)
    assert await chain.receipt(tx_hash) is None
    await chain.produce_block()
    receipt = await chain.receipt(tx_hash)
    assert receipt is not None and receipt.success and receipt.error is None
    assert receipt.events_named("balances", "Transfer")[0]["amount"] == ED + 77
    assert await chain.query("balances.account", account=dest) == {"free": ED + 77, "reserved": 0}


async def test_call_waits_for_its_block(chain: Chain) -> None:
    sender = await funded(chain)
    call = asyncio.create_task(
        sender.call("balances.transfer", dest=Keypair.generate().address, amount=ED, timeout=20)
    )
    while await chain.next_nonce(sender.address) == 0:
        await asyncio.sleep(0.01)
    await chain.produce_block()
    result = await call
    assert result.success and result.height == (await chain.head()).best_block


async def test_failed_call_raises_with_the_reason(chain: Chain) -> None:
    poor = await funded(chain)
    much = 10**37  # more than the faucet gave, within u128
    call = asyncio.create_task(
        poor.call("balances.transfer", dest=Keypair.generate().address, amount=much, timeout=20)
    )
    while await chain.next_nonce(poor.address) == 0:
        await asyncio.sleep(0.01)
    await chain.produce_block()
    with pytest.raises(ExtrinsicFailed) as failed:
        await call
    assert failed.value.error == "balances.InsufficientBalance"
    assert await chain.next_nonce(poor.address) == 1


async def test_rejections_are_the_same_everywhere(chain: Chain) -> None:
    genesis_hash, _ = await chain.genesis()
    unfunded = Extrinsic.sign(
        Keypair.generate(), genesis_hash, "balances.transfer", {"dest": ALICE, "amount": ED}, 0
    )
    with pytest.raises(Rejected) as refused:
        await chain.submit(unfunded)
    assert refused.value.code == "BelowExistentialDeposit"
    signer = (await funded(chain)).keypair
    good = Extrinsic.sign(
        signer, genesis_hash, "balances.transfer", {"dest": signer.address, "amount": 1}, 0
    )
    cases = [
        (replace(good, signature=bytes(64)), "BadSignature"),
        (
            Extrinsic.sign(
                signer, genesis_hash, "balances.transfer", {"dest": signer.address, "amount": 1}, 3
            ),
            "FutureNonce",
        ),
        (Extrinsic.sign(signer, genesis_hash, "balances.mint", {}, 0), "UnknownCall"),
        (
            Extrinsic.sign(
                signer,
                genesis_hash,
                "balances.transfer",
                {"dest": signer.address, "amount": "1"},
                0,
            ),
            "InvalidArguments",
        ),
    ]
    for extrinsic, code in cases:
        with pytest.raises(Rejected) as refused:
            await chain.submit(extrinsic)
        assert refused.value.code == code


async def test_an_events_poll_passes_over_blocks_without_events(chain: Chain) -> None:
    """Followers wake for events or at their timeout, never for an empty block."""
    head = await chain.head()
    poll = asyncio.create_task(chain.events(head.best_block + 1, timeout=1.5))
    await asyncio.sleep(0.1)
    await chain.produce_block()
    await asyncio.sleep(0.3)
    assert not poll.done(), "an empty block woke the follower"
    page = await poll
    assert page.events == () and page.next == head.best_block + 2


async def test_queries(chain: Chain) -> None:
    with pytest.raises(UnknownCall):
        await chain.query("balances.nothing")
    with pytest.raises(InvalidArguments):
        await chain.query("balances.account", account="not-an-address")
    assert await chain.query("sminer.miner", account=Keypair.generate().address) is None
    assert isinstance(await chain.query("balances.issuance"), int)


async def test_events_long_poll(chain: Chain) -> None:
    head = await chain.head()
    empty = await chain.events(head.best_block + 1)
    assert empty.events == () and empty.next == head.best_block + 1
    poll = asyncio.create_task(chain.events(head.best_block + 1, timeout=20))
    await asyncio.sleep(0.2)
    assert not poll.done()
    sender = await funded(chain)  # produces a block
    page = await poll
    assert page.next >= head.best_block + 2
    later = await chain.events(head.best_block + 1)
    assert any(e["name"] == "Faucet" and e["data"]["dest"] == sender.address for e in later.events)
