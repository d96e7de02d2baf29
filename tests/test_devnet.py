"""``deoss devnet``, as ``make devnet`` runs it: real processes, a live chain."""

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest


def health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


@pytest.mark.e2e
def test_devnet_starts_a_chain_and_miners(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "devnet",
            "--dir",
            str(root),
            "--block-time",
            "0.3",
            "--fresh",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (root / "devnet.json").exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "devnet.json never appeared"
            time.sleep(0.1)
        info = json.loads((root / "devnet.json").read_text())
        first = int(health(info["chain_rpc"])["best_block"])
        time.sleep(1.5)
        assert int(health(info["chain_rpc"])["best_block"]) > first
        assert "Alice" in info["dev_accounts"]
        # n + 2 real miner processes, registered on the chain and filling idle space.
        assert len(info["miners"]) == 6
        for miner in info["miners"]:
            with urllib.request.urlopen(miner["url"] + "/health", timeout=5) as response:
                assert json.loads(response.read())["account"] == miner["account"]
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(
                info["chain_rpc"] + "/query/sminer.miners", timeout=5
            ) as response:
                miners = json.loads(response.read())["result"]
            if len(miners) == 6 and all(m["idle"] > 0 for m in miners):
                break
            assert time.monotonic() < deadline, miners
            time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "chain RPC" in output
    assert not (root / "devnet.json").exists()
