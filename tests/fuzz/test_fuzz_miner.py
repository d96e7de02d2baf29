"""The miner API under fuzz (issue 12 item 6): random and mutated fragment and batch
PUTs, GETs and HEADs, most of them signed by the grid's registered gateway, against
the grid's real miners. No answer is a 5xx, no handler crashes, the miner still
answers, and a refused request stores no fragment."""

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from chain_client.keys import Keypair
from chain_client.merkle import merkle_root
from chain_client.request_auth import sign_request
from tests.fuzz.harness import (
    Address,
    CrashWatch,
    State,
    Surface,
    Tally,
    fuzz_settings,
    timeout_for,
)
from tests.fuzz.miner_requests import MinerWorld, miner_requests
from tests.fuzz.stored import miner_state
from tests.fuzz.wire import Request, exchange
from tests.grid import Grid

pytestmark = pytest.mark.asyncio(loop_scope="package")

BUDGET = 12.0  # seconds of examples; DEOSS_FUZZ_SCALE stretches it


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def world(grid: Grid) -> AsyncIterator[MinerWorld]:
    """The grid's miners (account and address) and a fragment stored on each of two."""
    gateway = grid.gateway.account.keypair
    params = grid.miners[0].params
    miners = []
    for node in grid.miners:
        found = await grid.chain.query("sminer.miner", account=node.address)
        url = URL(found["endpoint"])
        assert url.host is not None and url.port is not None
        miners.append((node.address, url.host, url.port))
    fragments = []
    async with aiohttp.ClientSession() as session:
        for account, host, port in miners[:2]:
            data = os.urandom(3000)
            fragment_id = merkle_root(data, params.leaf_size).hex()
            path = f"/fragment/{fragment_id}"
            headers = sign_request(gateway, "PUT", path, account, content_sha256=fragment_id)
            async with session.put(
                f"http://{host}:{port}{path}", data=data, headers=headers
            ) as put:
                assert put.status == 201, await put.text()
            fragments.append(fragment_id)
    yield MinerWorld(
        miners=tuple(miners),
        gateway=gateway,
        stranger=Keypair.generate(),
        fragments=tuple(fragments),
        leaf_size=params.leaf_size,
        fragment_size=params.fragment_size,
    )


@pytest.fixture(scope="module")
def surface(grid: Grid, world: MinerWorld, tally: Tally, crash_watch: CrashWatch) -> Surface:
    async def snapshot() -> State:
        return miner_state(grid)

    async def alive(address: Address) -> bool:
        health = await exchange(*address, Request("GET", "/health", (("Host", "miner"),)))
        return health is not None and health.status == 200

    _, host, port = world.miners[0]
    return Surface(
        "miner",
        (host, port),
        tally=tally.of("miner"),
        watch=crash_watch,
        snapshot=snapshot,
        alive=alive,
        budget=BUDGET,
        # Miners drop the fragments of deleted files; a refusal never leaves one, as a
        # miner keeps a fragment only once all of it checked out.
        shrinking=frozenset({"fragments"}),
    )


@pytest.fixture(scope="module")
def requests(world: MinerWorld) -> st.SearchStrategy[tuple[Address, Request]]:
    # Built once: a composite strategy costs a compile each time it is made.
    return miner_requests(world)


@pytest.mark.fuzz
@pytest.mark.timeout(timeout_for(BUDGET))
@fuzz_settings(max_examples=800)
@given(data=st.data())
async def test_miner_requests(
    requests: st.SearchStrategy[tuple[Address, Request]],
    surface: Surface,
    data: st.DataObject,
) -> None:
    address, request = data.draw(requests, label="request")
    if not surface.over_budget():  # drawn all the same: a shorter draw would be flaky
        await surface.send(request, to=address)
