"""The chain RPC under fuzz (issue 12 item 6): random and mutated extrinsics, queries and
reads against a real node (a dev ``LocalChain`` producing blocks on demand, served as
``deoss-chain run`` serves it). No answer is a 5xx, no handler crashes, no block hook
fails, the node still answers, and a refused request changes neither the best block nor
the pool."""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from chain_client.account import ChainAccount
from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair, dev_keypair
from chain_client.local import LocalChain
from chain_client.params import Genesis, dev_params
from chain_client.rpc_server import make_app
from chain_client.serving import serve
from tests.fuzz.chain_requests import ChainWorld, SignedCall, chain_requests
from tests.fuzz.harness import (
    EVERYTHING,
    Address,
    CrashWatch,
    State,
    Surface,
    Tally,
    fuzz_settings,
    timeout_for,
)
from tests.fuzz.wire import Request, exchange

pytestmark = pytest.mark.asyncio(loop_scope="package")

BUDGET = 12.0  # seconds of examples; DEOSS_FUZZ_SCALE stretches it


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalChain]:
    root: Path = tmp_path_factory.mktemp("fuzzchain")
    opened = await LocalChain.open(
        root / "chain.db", Genesis(params=dev_params(), dev=True), block_time=0.0
    )
    yield opened
    await opened.close()


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def world(chain: LocalChain) -> AsyncIterator[ChainWorld]:
    """The node served over HTTP, a funded account and an unfunded one, every call and
    query with its argument names, and extrinsics signed at setup."""
    funded, unfunded = Keypair.generate(), Keypair.generate()
    faucet = await ChainAccount(chain, dev_keypair("Alice")).submit(
        "balances.faucet", dest=funded.address
    )
    await chain.produce_block()
    runtime = chain.node.runtime
    genesis_hash, _ = await chain.genesis()
    signed = [
        Extrinsic.sign(
            funded, genesis_hash, "balances.transfer", {"dest": unfunded.address, "amount": 1}, 1000
        ),
        Extrinsic.sign(funded, genesis_hash, "oss.authorize", {"gateway": unfunded.address}, 0),
    ]
    samples = tuple(json.dumps(extrinsic.to_json()).encode() for extrinsic in signed)
    async with serve(make_app(chain), "127.0.0.1", 0) as site:
        yield ChainWorld(
            host=f"127.0.0.1:{site.port}",
            genesis_hash=genesis_hash,
            funded=funded,
            unfunded=unfunded,
            calls=tuple(
                (name, tuple(runtime.call(name, dev=True).args.model_fields))
                for name in runtime.call_names
            ),
            queries=tuple(
                (name, tuple(runtime.query(name).args.model_fields)) for name in runtime.query_names
            ),
            samples=samples,
            tx_hashes=(faucet, "0x" + "ab" * 32),
        )


@pytest.fixture(scope="module")
def surface(chain: LocalChain, world: ChainWorld, tally: Tally, crash_watch: CrashWatch) -> Surface:
    node = chain.node

    async def snapshot() -> State:
        height, best_hash = node.best()
        return {
            "best block": frozenset({(height, best_hash)}),
            "pool": frozenset({node.pool_size()}),
            "admitted": frozenset({node.stats.submitted}),
        }

    async def alive(address: Address) -> bool:
        health = await exchange(*address, Request("GET", "/health", (("Host", world.host),)))
        # A hook that raised is a crash the RPC never answers for.
        return health is not None and health.status == 200 and node.stats.hook_failures == 0

    host, port = world.host.split(":")
    return Surface(
        "chain",
        (host, int(port)),
        tally=tally.of("chain"),
        watch=crash_watch,
        snapshot=snapshot,
        alive=alive,
        budget=BUDGET,
        # A block on demand is made whether or not its answer got back.
        changeable=lambda answer, request: frozenset(
            {EVERYTHING} if answer is None and request.target == "/dev/produce_block" else ()
        ),
    )


@pytest.fixture(scope="module")
def requests(world: ChainWorld) -> st.SearchStrategy[tuple[SignedCall | None, Request]]:
    # Built once: a composite strategy costs a compile each time it is made.
    return chain_requests(world)


@pytest.mark.fuzz
@pytest.mark.timeout(timeout_for(BUDGET))
@fuzz_settings(max_examples=1000)
@given(data=st.data())
async def test_chain_requests(
    requests: st.SearchStrategy[tuple[SignedCall | None, Request]],
    chain: LocalChain,
    world: ChainWorld,
    surface: Surface,
    data: st.DataObject,
) -> None:
    signed, request = data.draw(requests, label="request")
    if surface.over_budget():  # drawn all the same: a shorter draw would be flaky
        return
    if signed is not None:
        signer = world.funded if signed.signer == "funded" else world.unfunded
        body = signed.envelope(world, await chain.next_nonce(signer.address))
        request = dataclasses.replace(request, body=body)
    await surface.send(request)


@pytest.mark.parametrize("route", ["/extrinsic", "/query"])
async def test_a_body_that_breaks_off_is_no_crash(
    world: ChainWorld, crash_watch: CrashWatch, route: str
) -> None:
    # Found by this suite: the ConnectionResetError of a client gone mid-body went
    # unhandled, so aiohttp logged a traceback and answered 500.
    host, port = world.host.split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {route} HTTP/1.1\r\nHost: {world.host}\r\nContent-Length: 100\r\n\r\n{{".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body: then the client goes
    writer.close()
    await asyncio.sleep(0.2)
    assert crash_watch.take() == []
