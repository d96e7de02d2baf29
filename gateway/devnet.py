"""``deoss devnet``: a local network of real processes on loopback.

A dev chain node and n + 2 miners (the gateway joins when it is built). The devnet
writes ``.devnet/devnet.json`` (atomically, once every process
answers) so tests and people find the endpoints there.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chain_client.files import write_atomically
from chain_client.keys import dev_accounts
from chain_client.params import MIB, dev_params

__all__ = [
    "DevnetError",
    "chain_command",
    "run_devnet",
    "start_chain_process",
    "start_miner_process",
    "stop_process",
    "wait_for_url",
]


DEVNET_MINER_UNITS = 64  # 4 MiB of idle space per miner with the dev 64 KiB unit
DEVNET_DISK_FLOOR = 256 * MIB


class DevnetError(RuntimeError):
    pass


@dataclass(slots=True)
class ChainProcess:
    process: subprocess.Popen[bytes]
    url: str
    directory: Path


def chain_command(directory: Path, *args: str) -> list[str]:
    """``deoss-chain run`` on a free loopback port; it writes its URL to DIR/rpc.url."""
    return [
        sys.executable,
        "-m",
        "chain_client.cli",
        "run",
        "--dir",
        str(directory),
        "--listen",
        "127.0.0.1:0",
        *args,
    ]


async def wait_for_url(url_file: Path, process: subprocess.Popen[bytes], timeout: float) -> str:
    """Waits until the process has written its URL and that URL answers /health."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DevnetError(f"{process.args!r} exited with {process.returncode}")
            if url_file.exists():
                url = url_file.read_text().strip()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(2)) as r:
                        if r.status == 200:
                            return url
            await asyncio.sleep(0.05)
    raise DevnetError(f"{url_file} did not appear with a live URL within {timeout} s")


async def start_chain_process(
    directory: Path,
    *,
    block_time: float,
    dev: bool = True,
    log_file: Path | None = None,
    extra: tuple[str, ...] = (),
) -> ChainProcess:
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (directory / "rpc.url").unlink()
    command = chain_command(directory, "--block-time", str(block_time), *extra)
    if dev:
        command.append("--dev")
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        url = await wait_for_url(directory / "rpc.url", process, timeout=30)
    except BaseException:
        stop_process(process)
        raise
    return ChainProcess(process, url, directory)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_for_blocks(url: str, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        first: int | None = None
        while time.monotonic() < deadline:
            async with session.get(url + "/health") as response:
                best = int((await response.json())["best_block"])
            first = best if first is None else first
            if best >= first + count:
                return best
            await asyncio.sleep(0.2)
    raise DevnetError(f"the chain at {url} produced no block in {timeout} s")


@dataclass(slots=True)
class MinerProcess:
    process: subprocess.Popen[bytes]
    url: str
    directory: Path
    account: str


async def start_miner_process(
    directory: Path,
    chain_url: str,
    *,
    declared_space: int,
    free_disk_floor: int,
    log_file: Path,
) -> MinerProcess:
    """``deoss-miner init`` (dev: collateral from the faucet) then ``deoss-miner run``."""
    if not (directory / "miner.toml").exists():
        await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "miner_agent.cli",
                "init",
                "--dir",
                str(directory),
                "--declared-space",
                str(declared_space),
                "--chain-rpc",
                chain_url,
                "--faucet",
                "--free-disk-floor",
                str(free_disk_floor),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    (directory / "miner.url").unlink(missing_ok=True)
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "miner_agent.cli",
                "run",
                "--config",
                str(directory / "miner.toml"),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = await wait_for_url(directory / "miner.url", process, timeout=60)
    except BaseException:
        stop_process(process)
        raise
    account = json.loads((directory / "key.json").read_text())["address"]
    return MinerProcess(process, url, directory, str(account))


async def run_devnet(root: Path, *, block_time: float, fresh: bool, miners: int | None) -> int:
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    chain = await start_chain_process(
        root / "chain", block_time=block_time, log_file=root / "chain.log"
    )
    started: list[MinerProcess] = []
    try:
        await _wait_for_blocks(chain.url, 1, timeout=max(10.0, block_time * 5))
        params = dev_params()
        # Repair needs somewhere to go: n + 2 miners (DESIGN.md §8).
        count = params.total_shards + 2 if miners is None else miners
        started = list(
            await asyncio.gather(
                *(
                    start_miner_process(
                        root / f"miner{number}",
                        chain.url,
                        declared_space=DEVNET_MINER_UNITS * params.idle_unit_size,
                        free_disk_floor=DEVNET_DISK_FLOOR,
                        log_file=root / f"miner{number}.log",
                    )
                    for number in range(count)
                )
            )
        )
        info: dict[str, Any] = {
            "chain_rpc": chain.url,
            "chain_dir": str(chain.directory),
            "chain_pid": chain.process.pid,
            "miners": [
                {"account": m.account, "url": m.url, "dir": str(m.directory), "pid": m.process.pid}
                for m in started
            ],
            "dev_accounts": dev_accounts(),
            "started_at": int(time.time()),
        }
        write_atomically(root / "devnet.json", json.dumps(info, indent=2) + "\n")
        miner_lines = "\n".join(f"  miner       {m.url}  {m.account}" for m in started)
        print(
            f"""deoss devnet is up ({root / "devnet.json"}):
  chain RPC   {chain.url}
  health      curl {chain.url}/health
  latest      curl {chain.url}/block/latest
  events      curl '{chain.url}/events?from=0'
  miners      curl '{chain.url}/query/sminer.miners'
{miner_lines}
  miner stat  .venv/bin/deoss-miner stat --config {root / "miner0" / "miner.toml"}
  dev keys    //Alice //Bob ... (e.g. .venv/bin/deoss-chain key show //Alice --dev)
  logs        {root}/*.log
Press Ctrl-C to stop.""",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watched = {
            asyncio.create_task(asyncio.to_thread(p.wait), name=name)
            for name, p in [
                ("chain node", chain.process),
                *((f"miner {m.directory.name}", m.process) for m in started),
            ]
        }
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*watched, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        exited = [task.get_name() for task in done if task is not stopper]
        if exited:
            print(f"deoss devnet: the {exited[0]} exited; see the logs in {root}", file=sys.stderr)
            return 1
        return 0
    finally:
        for miner in started:
            stop_process(miner.process)
        stop_process(chain.process)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / "devnet.json")
