"""``deoss-miner increase-collateral|exit|withdraw`` as real processes against a chain
node and a running miner of their own (exiting one of the shared network's miners would
take space from every other test)."""

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain_client.params import TOKEN, Genesis, dev_params
from chain_client.rpc_client import HttpChain
from gateway.devnet import stop_process
from tests.conftest import ChainProcess, start_chain
from tests.e2e.processes import init_miner, miner_command, start_miner, wait_for_url

pytestmark = pytest.mark.e2e

PARAMS = dev_params(block_time=0.25, exit_cooldown=40, offline_after=10_000)


@pytest.fixture(scope="module")
def miner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChainProcess, Path]]:
    """A chain node and one registered, running miner: (chain, the miner's config)."""
    root = tmp_path_factory.mktemp("cli-miner")
    genesis = root / "genesis.json"
    genesis.write_text(json.dumps(Genesis(params=PARAMS, dev=True).to_json()))
    chain = start_chain(root / "chain", "--dev", "--genesis", str(genesis))
    process = None
    try:
        directory = root / "miner"
        init_miner(directory, chain.url, 4 * PARAMS.idle_unit_size, "--faucet")
        process = start_miner(directory)
        wait_for_url(directory, process)  # written once the miner is registered
        yield chain, directory / "miner.toml"
    finally:
        if process is not None:
            stop_process(process)
        chain.stop()


def miner_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        miner_command(*args), capture_output=True, text=True, timeout=timeout, check=False
    )


def on_chain(chain: ChainProcess, account: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async def ask() -> tuple[dict[str, Any], dict[str, Any]]:
        client = HttpChain(chain.url)
        try:
            miner = await client.query("sminer.miner", account=account)
            balance = await client.query("balances.account", account=account)
            return miner, balance
        finally:
            await client.close()

    return asyncio.run(ask())


def test_increase_collateral_then_exit_then_withdraw(miner: tuple[ChainProcess, Path]) -> None:
    chain, config = miner
    state = json.loads(miner_cli("withdraw", "--config", str(config), "--json").stdout)
    account = state["account"]
    record, balance = on_chain(chain, account)
    assert record["state"] == "positive" and state["state"] == "positive"
    before = int(balance["reserved"])

    refused = miner_cli("withdraw", "--config", str(config))
    assert refused.returncode == 1 and "not exiting" in refused.stderr, refused.stderr

    added = miner_cli("increase-collateral", "2.5", "--config", str(config), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["collateral"] == before + 5 * TOKEN // 2
    _, balance = on_chain(chain, account)
    assert int(balance["reserved"]) == before + 5 * TOKEN // 2

    left = miner_cli("exit", "--config", str(config))
    assert left.returncode == 0, left.stderr
    assert f"miner       {account} (exiting)" in left.stdout
    assert "the chain finishes it at block" in left.stdout, left.stdout
    record, _ = on_chain(chain, account)
    assert record["state"] == "exiting" and record["exit_at"] is not None

    again = miner_cli("exit", "--config", str(config))
    assert again.returncode == 1 and "sminer.CannotExit" in again.stderr, again.stderr
    late = miner_cli("increase-collateral", "1", "--config", str(config))
    assert late.returncode == 1 and "sminer.Exiting" in late.stderr, late.stderr

    early = miner_cli("withdraw", "--config", str(config), "--json")
    assert early.returncode == 1 and "still exiting" in early.stderr, early.stderr
    waiting = json.loads(early.stdout)
    assert waiting["state"] == "exiting" and waiting["exit_at"] == record["exit_at"]
    assert waiting["exit_in"] == (record["exit_at"] - waiting["best_block"]) * PARAMS.block_time

    _, balance = on_chain(chain, account)
    free_before = int(balance["free"])
    done = miner_cli("withdraw", "--wait", "--config", str(config), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["state"] == "exited" and final["collateral"] == 0
    returned = before + 5 * TOKEN // 2
    assert final["free"] >= free_before + returned - TOKEN  # less a few fees at most
    record, balance = on_chain(chain, account)
    assert record["state"] == "exited" and int(balance["reserved"]) == 0


def test_bad_arguments_exit_2(miner: tuple[ChainProcess, Path]) -> None:
    _, config = miner
    for amount in ("abc", "0", "-1", "1e-30"):
        result = miner_cli("increase-collateral", amount, "--config", str(config))
        assert result.returncode == 2, (amount, result.stderr)
    missing = miner_cli("exit", "--config", str(config.parent / "nope.toml"))
    assert missing.returncode == 2, missing.stderr


def test_exit_help_explains_the_cool_down() -> None:
    shown = miner_cli("exit", "--help").stdout
    assert "exit_cooldown" in shown and "returns all of its collateral" in shown
    assert "DealsInFlight" in shown
