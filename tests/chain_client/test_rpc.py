"""The RPC of a real ``deoss-chain run`` process: errors, health, metrics, restarts."""

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chain_client.account import ChainAccount
from chain_client.errors import Rejected
from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair, dev_keypair
from chain_client.params import dev_params
from chain_client.rpc_client import HttpChain
from gateway.devnet import chain_command
from tests.conftest import ChainProcess, start_chain

ED = dev_params().existential_deposit

pytestmark = pytest.mark.e2e  # a chain node process


async def fetch(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("POST", "/extrinsic", b"{not json", "Malformed"),
        ("POST", "/extrinsic", b"[]", "Malformed"),
        ("POST", "/extrinsic", b'{"call": "x"}', "Malformed"),
        ("POST", "/query", b'{"args": {}}', "Malformed"),
        ("POST", "/query", b'{"name": "balances.account", "args": []}', "Malformed"),
        (
            "POST",
            "/query",
            b'{"name": "balances.account", "args": {"account": 5}}',
            "InvalidArguments",
        ),
        ("GET", "/events?from=abc", None, "Malformed"),
        ("GET", "/events?from=0&timeout=1e9", None, "Malformed"),
        ("GET", "/block/-1", None, "Malformed"),
        ("GET", "/block/0?header=yes", None, "InvalidArguments"),
    ],
)
async def test_malformed_requests_get_400_with_the_reason(
    chain_process: ChainProcess, method: str, path: str, body: bytes | None, code: str
) -> None:
    status, text = await fetch(chain_process.url + path, method, body)
    assert status == 400, text
    assert json.loads(text)["error"]["code"] == code


async def test_unknown_routes_and_records_get_404(chain_process: ChainProcess) -> None:
    for path in (
        "/nowhere",
        "/query/balances.nothing",
        "/block/999999999",
        "/extrinsic/0x" + "00" * 32,
    ):
        status, text = await fetch(chain_process.url + path)
        assert status == 404, (path, text)
        assert "error" in json.loads(text)


async def test_oversized_body_is_refused(chain_process: ChainProcess) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    async with (
        aiohttp.ClientSession() as session,
        session.post(chain_process.url + "/extrinsic", data=body()) as response,
    ):
        assert response.status == 413


async def test_health_metrics_and_lax_queries(chain_process: ChainProcess) -> None:
    status, text = await fetch(chain_process.url + "/health")
    health = json.loads(text)
    assert status == 200 and health["best_block"] >= 0 and health["best_hash"].startswith("0x")
    alice = dev_keypair("Alice").address
    status, text = await fetch(f"{chain_process.url}/query/balances.account?account={alice}")
    assert status == 200 and json.loads(text)["result"]["free"] > 0
    status, text = await fetch(f"{chain_process.url}/query/sminer.collateral_limit?space=5")
    assert status == 200 and json.loads(text)["result"] > 0
    status, text = await fetch(chain_process.url + "/metrics")
    assert status == 200 and "deoss_chain_best_block" in text


async def test_restart_loses_no_committed_block_and_refuses_replays(tmp_path: Path) -> None:
    node = start_chain(tmp_path / "node", "--dev", "--block-time", "0.2")
    chain = HttpChain(node.url)
    try:
        alice = ChainAccount(chain, dev_keypair("Alice"))
        dest = Keypair.generate().address
        results = [
            await alice.call("balances.transfer", dest=dest, amount=ED, timeout=20)
            for _ in range(3)
        ]
        genesis_hash, _ = await chain.genesis()
        replay = Extrinsic.sign(
            alice.keypair, genesis_hash, "balances.transfer", {"dest": dest, "amount": ED}, 0
        )
        # Keep submitting while the node is killed: nothing committed may be lost.
        pending = [await alice.submit("balances.transfer", dest=dest, amount=ED) for _ in range(5)]
        await asyncio.sleep(0.5)
        head = await chain.head()
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()
    finally:
        await chain.close()

    restarted = start_chain(tmp_path / "node", "--dev", "--block-time", "0.2")
    chain = HttpChain(restarted.url)
    try:
        after = await chain.head()
        assert after.best_block >= head.best_block
        kept = await chain.block(head.best_block)
        assert kept is not None and kept["hash"] == head.best_hash
        header = await chain.block(head.best_block, header_only=True)
        assert header == {k: v for k, v in kept.items() if k not in ("extrinsics", "events")}
        for result in results:
            receipt = await chain.receipt(result.hash)
            assert receipt is not None and receipt.height == result.height
        included = [h for h in pending if await chain.receipt(h) is not None]
        balance = await chain.query("balances.account", account=dest)
        assert balance["free"] == ED * (3 + len(included))
        with pytest.raises(Rejected) as refused:
            await chain.submit(replay)
        assert refused.value.code == "StaleNonce"
        # The chain goes on from where it was.
        await asyncio.sleep(0.6)
        assert (await chain.head()).best_block > after.best_block
    finally:
        await chain.close()
        restarted.stop()


def run_node(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs a node that is expected to refuse to start."""
    command = chain_command(directory, *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_cli_refuses_a_dev_chain_started_without_dev(tmp_path: Path) -> None:
    node = start_chain(tmp_path / "n", "--dev", "--block-time", "0")
    node.stop()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chain_client.cli",
            "run",
            "--dir",
            str(tmp_path / "n"),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--dev" in result.stderr


def test_cli_reports_a_bad_genesis_file(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({"params": {"total_shards": "twelve"}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chain_client.cli",
            "run",
            "--dir",
            str(tmp_path / "n"),
            "--listen",
            "127.0.0.1:0",
            "--genesis",
            str(genesis),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "total_shards" in result.stderr and str(genesis) in result.stderr


async def test_produce_block_route_exists_only_in_dev(tmp_path: Path) -> None:
    node = start_chain(tmp_path / "prod", "--block-time", "0")
    try:
        status, _ = await fetch(node.url + "/dev/produce_block", "POST")
        assert status == 404
    finally:
        node.stop()
