"""One network of real processes for every test that needs a gateway: a chain node,
n + 2 miners and the gateway (native and S3 APIs), started once per test session."""

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain_client.account import ChainAccount
from chain_client.keys import Keypair, dev_keypair
from chain_client.params import KIB, Genesis, NetworkParams, PenaltySchedule, dev_params
from chain_client.rpc_client import HttpChain
from gateway.devnet import gateway_command, stop_process
from gateway.native.signing import ACCOUNT_HEADER, sign_request, signing_middleware
from tests.conftest import ChainProcess, start_chain
from tests.e2e.processes import init_miner, start_miner, wait_for_url
from tests.polling import eventually

__all__ = [
    "GATEWAY_LOGS",
    "INTERNAL_ERRORS",
    "MINERS",
    "MIN_PART",
    "PARAMS",
    "S3_DOMAIN",
    "S3_TERRITORY",
    "USER",
    "Network",
    "gateway_network",
    "prepare_s3",
    "running_network",
    "s3_keys",
    "signed",
    "start_gateway",
]

PARAMS = dev_params(
    data_shards=4,
    total_shards=12,
    fragment_size=64 * KIB,
    segment_size=256 * KIB,
    stripe_block_size=16 * KIB,
    block_time=0.25,
    blocks_per_day=10_000,  # territories outlive the test run, whatever its pace
    challenge_interval=10**6,
    challenge_deadline=20,
    offline_after=10**5,
    penalties=PenaltySchedule(force_exit_misses=50, failed_proof_threshold=1),
)
MINERS = PARAMS.total_shards + 2
MIN_PART = 256 * KIB  # the gateway's multipart minimum here (AWS: 5 MiB)
S3_TERRITORY = "s3home"  # the gateway's default territory (the S3 tests mint it)
S3_DOMAIN = "s3.deoss.test"  # virtual-host style buckets: <bucket>.s3.deoss.test
USER = dev_keypair("Alice")
# Every gateway log a running network writes, for the check that no request hit a 500
# (tests/e2e/conftest.py): both APIs log each one they answer with this marker.
GATEWAY_LOGS: list[Path] = []
INTERNAL_ERRORS = ("internal error",)


@dataclass
class Network:
    chain: ChainProcess
    miners: list[tuple[Path, subprocess.Popen[bytes], str]]
    gateway: subprocess.Popen[bytes]
    gateway_dir: Path
    url: str
    s3_url: str

    @property
    def gateway_account(self) -> str:
        return str(json.loads((self.gateway_dir / "key.json").read_text())["address"])


def start_gateway(directory: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """The gateway process and its native and S3 URLs."""
    for stale in ("native.url", "s3.url"):  # a killed gateway leaves its own behind
        (directory / stale).unlink(missing_ok=True)
    with open(directory / "gateway.log", "ab") as log:
        process = subprocess.Popen(
            gateway_command(directory / "gateway.toml"), stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while not (directory / "native.url").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError((directory / "gateway.log").read_text()[-3000:])
        time.sleep(0.05)
    urls = (directory / name for name in ("native.url", "s3.url"))
    native, s3 = (path.read_text().strip() for path in urls)
    return process, native, s3


@pytest.fixture(scope="session")
def s3_keys(gateway_network: Network) -> tuple[str, str]:
    return asyncio.run(prepare_s3(gateway_network))


@pytest.fixture(scope="session")
def gateway_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("gwnet"), PARAMS, MINERS, 144) as network:
        yield network


@contextlib.contextmanager
def running_network(
    root: Path, params: NetworkParams, miner_count: int, declared_units: int
) -> Iterator[Network]:
    """A chain node, ``miner_count`` miners declaring ``declared_units`` idle units each,
    and a gateway, as real processes; all stopped on the way out."""
    genesis = root / "genesis.json"
    genesis.write_text(json.dumps(Genesis(params=params, dev=True).to_json()))
    chain = start_chain(root / "chain", "--dev", "--genesis", str(genesis))
    miners: list[tuple[Path, subprocess.Popen[bytes], str]] = []
    net: Network | None = None
    try:
        for number in range(miner_count):
            directory = root / f"miner{number}"
            init_miner(directory, chain.url, declared_units * params.idle_unit_size, "--faucet")
            miners.append((directory, start_miner(directory), ""))
        miners = [(d, p, wait_for_url(d, p)) for d, p, _ in miners]
        gateway_dir = root / "gateway"
        GATEWAY_LOGS.append(gateway_dir / "gateway.log")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "gateway",
                "init",
                "--dir",
                str(gateway_dir),
                "--chain-rpc",
                chain.url,
                "--native-listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
                "--default-territory",
                S3_TERRITORY,
                "--s3-domain",
                S3_DOMAIN,
                "--faucet",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        config = gateway_dir / "gateway.toml"  # small parts, small tests
        config.write_text(
            "\n".join(
                f"multipart_min_part_size = {MIN_PART}"
                if line.startswith("multipart_min_part_size")
                else line
                for line in config.read_text().splitlines()
            )
            + "\n"
        )
        gateway, url, s3_url = start_gateway(gateway_dir)
        net = Network(chain, miners, gateway, gateway_dir, url, s3_url)
        yield net
    finally:
        if net is not None:  # a test may have restarted any of them
            stop_process(net.gateway)
            miners, chain = net.miners, net.chain
        for _, process, _ in miners:
            stop_process(process)
        chain.stop()


def signed(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers that make a ``native_session`` sign the request as the dev user."""
    return {ACCOUNT_HEADER: USER.address, **(extra or {})}


def native_session(network: Network) -> aiohttp.ClientSession:
    """A session that signs each request carrying ``signed()`` for this gateway, as the
    ``deoss`` client does."""
    return aiohttp.ClientSession(middlewares=(signing_middleware(USER, network.gateway_account),))


def signed_for(
    network: Network,
    method: str,
    target: str,
    body: bytes | None = b"",
    extra: dict[str, str] | None = None,
    keypair: Keypair = USER,
) -> dict[str, str]:
    """One request's signature made by hand, as curl users do (``body=None``: UNSIGNED)."""
    headers = sign_request(
        keypair, gateway=network.gateway_account, method=method, target=target, body=body
    )
    return {**headers, **(extra or {})}


async def prepare_s3(network: Network) -> tuple[str, str]:
    """The dev user has authorized the gateway, owns the S3 territory, and has an access
    key: (access key, secret)."""
    chain = HttpChain(network.chain.url)
    try:
        address = network.gateway_account
        await eventually(
            functools.partial(chain.query, "sminer.miners", state="positive"),
            lambda m: len(m) >= PARAMS.total_shards,
        )
        user = ChainAccount(chain, USER)
        if not await chain.query("oss.is_authorized", owner=USER.address, gateway=address):
            await user.call("oss.authorize", gateway=address)
        if (
            await chain.query("storage_handler.territory", owner=USER.address, name=S3_TERRITORY)
            is None
        ):
            await user.call("storage_handler.mint_territory", name=S3_TERRITORY, gib=120, days=5)
    finally:
        await chain.close()
    async with (
        native_session(network) as session,
        session.post(f"{network.url}/keys", data=b"{}", headers=signed()) as response,
    ):
        answer = await response.json()
        assert response.status == 200, answer
    data = answer["data"]
    return str(data["access_key"]), str(data["secret_key"])


async def settled(network: Network, chain: HttpChain, timeout: float = 120.0) -> None:
    """Until the gateway has declared everything it holds and the chain completed every
    deal it declared: tests that measure the network as a whole start from rest."""

    async def pending() -> tuple[float, int]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{network.url}/metrics") as response,
        ):
            text = await response.text()
        outbox = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("deoss_tracker_pending_declarations")
        )
        files = await chain.query(
            "file_bank.files_declared_by", declarer=network.gateway_account, limit=1000
        )
        return outbox, sum(1 for f in files if f["state"] != "active")

    await eventually(pending, lambda found: found == (0, 0), timeout=timeout)


async def active(chain: HttpChain, fid: str, timeout: float = 60.0) -> dict[str, Any]:
    """The chain's record of ``fid`` once its deal is complete."""
    file: dict[str, Any] = await eventually(
        functools.partial(chain.query, "file_bank.file", fid=fid),
        lambda f: f is not None and f["state"] == "active",
        timeout=timeout,
    )
    return file
