"""Miners as real processes against a real chain node process: registration, idle
filling up to the declared capacity or the free-disk floor, a deal converting idle space
to service space (chain and disk agreeing to the byte), challenges passed, and the
penalty and restoral order for a fragment deleted behind the miner's back."""

import asyncio
import functools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio

from chain_client.account import ChainAccount
from chain_client.keys import Keypair, dev_keypair
from chain_client.merkle import file_id, merkle_root, segment_id
from chain_client.params import Genesis, PenaltySchedule, dev_params
from chain_client.request_auth import sign_request
from chain_client.rpc_client import HttpChain
from gateway.devnet import stop_process
from tests.conftest import ChainProcess, start_chain
from tests.e2e.processes import init_miner, miner_command, start_miner, wait_for_url
from tests.polling import eventually

# One event loop for the module: the deal its tests share is a module fixture.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
T = TypeVar("T")
PARAMS = dev_params(
    block_time=0.25,
    blocks_per_day=10_000,  # territories outlive the test run, whatever its pace
    challenge_interval=10**6,  # only the targeted challenges the tests ask for
    challenge_deadline=20,
    offline_after=10**5,
    penalties=PenaltySchedule(force_exit_misses=50, failed_proof_threshold=1),
)
UNIT = PARAMS.idle_unit_size


@dataclass
class Miner:
    directory: Path
    process: subprocess.Popen[bytes]
    address: str
    url: str

    def stat(self) -> dict[str, Any]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "miner_agent.cli",
                "stat",
                "--config",
                str(self.directory / "miner.toml"),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        stat: dict[str, Any] = json.loads(result.stdout)
        return stat


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChainProcess, list[Miner]]]:
    root = tmp_path_factory.mktemp("net")
    genesis = root / "genesis.json"
    genesis.write_text(json.dumps(Genesis(params=PARAMS, dev=True).to_json()))
    chain = start_chain(root / "chain", "--dev", "--genesis", str(genesis))
    miners: list[Miner] = []
    try:
        for number in range(PARAMS.total_shards):
            directory = root / f"miner{number}"
            init_miner(directory, chain.url, 4 * UNIT, "--faucet")
            process = start_miner(directory)
            address = json.loads((directory / "key.json").read_text())["address"]
            miners.append(Miner(directory, process, address, ""))
        for miner in miners:
            miner.url = wait_for_url(miner.directory, miner.process)
        yield chain, miners
    finally:
        for miner in miners:
            stop_process(miner.process)
        chain.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chain(network: tuple[ChainProcess, list[Miner]]) -> AsyncIterator[HttpChain]:
    client = HttpChain(network[0].url)
    yield client
    await client.close()


async def test_miners_register_and_fill_idle_space_to_their_declared_capacity(
    network: tuple[ChainProcess, list[Miner]], chain: HttpChain
) -> None:
    for miner in network[1]:
        record = await eventually(
            functools.partial(chain.query, "sminer.miner", account=miner.address),
            lambda r: r is not None and r["idle"] == 4 * UNIT,
        )
        assert record["state"] == "positive" and record["endpoint"] == miner.url
        stat = miner.stat()
        assert stat["chain"]["idle_space"] == stat["disk"]["idle_bytes"] == 4 * UNIT


def fragments_for(miners: list[Miner]) -> tuple[dict[str, Any], dict[str, bytes]]:
    contents: dict[str, bytes] = {}
    entries: list[dict[str, Any]] = []
    for miner in miners:
        data = os.urandom(PARAMS.fragment_size)
        fragment_id = merkle_root(data, PARAMS.leaf_size).hex()
        contents[fragment_id] = data
        entries.append({"id": fragment_id, "miner": miner.address, "size": len(data)})
    fid = file_id([segment_id([bytes.fromhex(e["id"]) for e in entries])])
    return {"fid": fid, "segments": [{"fragments": entries}]}, contents


async def put_fragment(
    session: aiohttp.ClientSession, gateway: Keypair, miner: Miner, fragment_id: str, data: bytes
) -> dict[str, Any]:
    path = f"/fragment/{fragment_id}"
    headers = sign_request(gateway, "PUT", path, miner.address, content_sha256=fragment_id)
    async with session.put(miner.url + path, data=data, headers=headers) as response:
        assert response.status == 201, await response.text()
        receipt: dict[str, Any] = await response.json()
        return receipt


@dataclass
class Deal:
    """One active file: a fragment on each miner, declared by ``gateway``."""

    layout: dict[str, Any]
    contents: dict[str, bytes]
    gateway: ChainAccount


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deal(network: tuple[ChainProcess, list[Miner]], chain: HttpChain) -> Deal:
    miners = network[1]
    for miner in miners:
        await eventually(
            functools.partial(chain.query, "sminer.miner", account=miner.address),
            lambda r: r is not None and r["idle"] == 4 * UNIT,
        )
    gateway = ChainAccount(chain, Keypair.generate())
    alice = ChainAccount(chain, dev_keypair("Alice"))
    await alice.call("balances.faucet", dest=gateway.address)
    await gateway.call("oss.register", endpoint="http://127.0.0.1:9")
    await gateway.call("storage_handler.mint_territory", name="home", gib=1, days=5)
    layout, contents = fragments_for(miners)
    async with aiohttp.ClientSession() as session:
        for miner, entry in zip(miners, layout["segments"][0]["fragments"], strict=True):
            await put_fragment(session, gateway.keypair, miner, entry["id"], contents[entry["id"]])
    declaration = {
        **layout,
        "owner": gateway.address,
        "territory": "home",
        "key": "obj",
        "size": PARAMS.fragment_size * PARAMS.data_shards,
        "data_shards": PARAMS.data_shards,
        "total_shards": PARAMS.total_shards,
        "sealed_meta": "",
    }
    result = await gateway.call("file_bank.upload_declaration", files=[declaration])
    assert result.events_named("file_bank", "UploadDeclaration"), result.events
    await eventually(
        lambda: chain.query("file_bank.file", fid=layout["fid"]),
        lambda f: f is not None and f["state"] == "active",
        timeout=30,
    )
    return Deal(layout, contents, gateway)


async def test_a_deal_turns_idle_space_into_service_space(
    network: tuple[ChainProcess, list[Miner]], chain: HttpChain, deal: Deal
) -> None:
    miners = network[1]
    for miner in miners:
        # The fragment displaced a whole idle unit: the miner deletes one and reports it.
        record = await eventually(
            functools.partial(chain.query, "sminer.miner", account=miner.address),
            lambda r: r["pending_replacement"] == 0,
            timeout=30,
        )
        assert record["service"] == PARAMS.fragment_size
        assert record["idle"] == 4 * UNIT - PARAMS.fragment_size
        stat = miner.stat()
        assert stat["disk"]["fragment_bytes"] == stat["chain"]["service_space"]
        assert stat["disk"]["idle_bytes"] == stat["chain"]["idle_space"]
        assert stat["fragments"] == 1


async def test_miners_pass_challenges(
    network: tuple[ChainProcess, list[Miner]], chain: HttpChain, deal: Deal
) -> None:
    alice = ChainAccount(chain, dev_keypair("Alice"))
    miner = network[1][0]
    await alice.call("audit.challenge_now", miner=miner.address)
    challenge = (await chain.query("audit.challenges", miner=miner.address))[0]
    assert challenge["service_items"] and challenge["idle_items"]
    done = await eventually(
        lambda: chain.query("audit.challenge", id=challenge["id"]),
        lambda c: c["service_status"] != "open" and c["idle_status"] != "open",
    )
    assert (done["service_status"], done["idle_status"]) == ("passed", "passed")
    assert miner.stat()["challenges"]["passed"] >= 1


async def test_a_fragment_deleted_behind_the_miners_back_is_punished_and_restored(
    network: tuple[ChainProcess, list[Miner]], chain: HttpChain, deal: Deal
) -> None:
    layout = deal.layout
    victim = network[1][1]
    entry = layout["segments"][0]["fragments"][1]
    assert entry["miner"] == victim.address
    path = victim.directory / "fragments" / entry["id"][:2] / entry["id"][2:4] / entry["id"]
    path.unlink()
    before = await chain.query("sminer.miner", account=victim.address)
    alice = ChainAccount(chain, dev_keypair("Alice"))
    await alice.call(
        "audit.challenge_now", miner=victim.address, fid=layout["fid"], segment=0, index=1
    )
    orders = await eventually(
        lambda: chain.query("file_bank.restoral_orders"),
        lambda o: any(x["origin"] == victim.address for x in o),
    )
    assert any(o["reason"] == "proof_failed" and o["idx"] == 1 for o in orders)
    after = await chain.query("sminer.miner", account=victim.address)
    assert after["collateral"] < before["collateral"]
    assert victim.stat()["challenges"]["failed"] >= 1


async def test_a_miner_stops_at_the_free_disk_floor(
    tmp_path: Path, network: tuple[ChainProcess, list[Miner]], chain: HttpChain
) -> None:
    directory = tmp_path / "tight"
    free_file = tmp_path / "free_bytes"
    floor = 64 * 1024
    free_file.write_text(str(floor + 2 * UNIT + UNIT // 2))  # room for two units above it
    init_miner(
        directory, network[0].url, 6 * UNIT, "--faucet", "--free-space-probe", f"file:{free_file}"
    )
    process = start_miner(directory)
    try:
        url = wait_for_url(directory, process)
        address = json.loads((directory / "key.json").read_text())["address"]

        # The probe is a stand-in for the disk: shrink it as the miner writes units.
        async def idle() -> int:
            record = await chain.query("sminer.miner", account=address)
            units = len(list((directory / "idle").iterdir()))
            free_file.write_text(str(floor + 2 * UNIT + UNIT // 2 - units * UNIT))
            return int(record["idle"]) if record else 0

        assert await eventually(idle, lambda v: v == 2 * UNIT) == 2 * UNIT
        await asyncio.sleep(3)  # a dozen blocks later, still two: the floor holds
        assert await idle() == 2 * UNIT
        record = await chain.query("sminer.miner", account=address)
        assert record["declared"] == 6 * UNIT and record["endpoint"] == url
    finally:
        stop_process(process)


async def test_a_miner_the_chain_refuses_says_why(
    tmp_path: Path, network: tuple[ChainProcess, list[Miner]]
) -> None:
    directory = tmp_path / "poor"
    init_miner(directory, network[0].url, 4 * UNIT)  # no --faucet: no money at all
    result = subprocess.run(
        miner_command("run", "--config", str(directory / "miner.toml")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    # An unfunded key cannot even pay the fee of its registration (docs/chain.md §2.2).
    assert "BelowExistentialDeposit" in result.stderr


async def test_tidy_command_removes_what_does_not_belong(
    network: tuple[ChainProcess, list[Miner]],
) -> None:
    miner = network[1][2]
    junk = miner.directory / "fragments" / "zz" / "not-a-fragment"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"junk")
    result = subprocess.run(
        miner_command("tidy", "--config", str(miner.directory / "miner.toml")),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["removed"]["malformed"] and not junk.exists()
    assert miner.stat()["fragments"] == 1  # its real fragment stays


async def test_a_restarted_miner_updates_its_endpoint_and_keeps_its_data(
    network: tuple[ChainProcess, list[Miner]], chain: HttpChain, deal: Deal
) -> None:
    miner = network[1][0]
    old_url = miner.url
    stop_process(miner.process)
    miner.process = start_miner(miner.directory)
    miner.url = wait_for_url(miner.directory, miner.process)
    assert miner.url != old_url
    record = await eventually(
        functools.partial(chain.query, "sminer.miner", account=miner.address),
        lambda r: r["endpoint"] == miner.url,
    )
    assert record["service"] == PARAMS.fragment_size
    entry = deal.layout["segments"][0]["fragments"][0]
    path = f"/fragment/{entry['id']}"
    headers = sign_request(deal.gateway.keypair, "GET", path, miner.address)
    async with (
        aiohttp.ClientSession() as session,
        session.get(miner.url + path, headers=headers) as response,
    ):
        assert response.status == 200
        assert await response.read() == deal.contents[entry["id"]]


async def test_reads_go_on_while_the_chain_is_down(
    network: tuple[ChainProcess, list[Miner]], deal: Deal
) -> None:
    chain_process, miners = network
    miner = miners[3]
    entry = deal.layout["segments"][0]["fragments"][3]
    path = f"/fragment/{entry['id']}"

    async def read() -> int:
        headers = sign_request(deal.gateway.keypair, "GET", path, miner.address)
        async with (
            aiohttp.ClientSession() as session,
            session.get(miner.url + path, headers=headers) as response,
        ):
            return response.status

    assert await read() == 200  # the miner now knows the gateway
    port = chain_process.url.rsplit(":", 1)[1]
    chain_process.stop()
    assert await read() == 200
    restarted = start_chain(chain_process.directory, "--dev", "--listen", f"127.0.0.1:{port}")
    network[0].process = restarted.process
    client = HttpChain(restarted.url)
    try:
        head = await client.head()
        # The miner reconnects by itself: its heartbeats land in new blocks again.
        await eventually(
            functools.partial(client.query, "sminer.miner", account=miner.address),
            lambda r: r["last_heartbeat"] > head.best_block,
            timeout=60,
        )
    finally:
        await client.close()
