"""Starting the miner agent as a real process, for the end-to-end tests."""

import subprocess
import sys
import time
from pathlib import Path

__all__ = ["init_miner", "miner_command", "start_miner", "wait_for_url"]


def miner_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "miner_agent.cli", *args]


def init_miner(directory: Path, chain_url: str, declared: int, *extra: str) -> None:
    subprocess.run(
        miner_command(
            "init",
            "--dir",
            str(directory),
            "--declared-space",
            str(declared),
            "--chain-rpc",
            chain_url,
            "--free-disk-floor",
            str(64 * 1024),
            *extra,
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )


def start_miner(directory: Path) -> subprocess.Popen[bytes]:
    with open(directory / "miner.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            miner_command("run", "--config", str(directory / "miner.toml")),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for_url(directory: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while not (directory / "miner.url").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError((directory / "miner.log").read_text()[-3000:])
        time.sleep(0.05)
    return (directory / "miner.url").read_text().strip()
