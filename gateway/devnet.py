"""``deoss devnet``: a local network of real processes on loopback, under one
directory: a dev chain node, n + 2 miners, a gateway, and a dev user who authorized the
gateway and owns a territory. ``.devnet/devnet.json`` is written (atomically) once every
service answers; a second run resumes the same network.
"""

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chain_client.account import ChainAccount
from chain_client.files import write_atomically
from chain_client.keys import Keypair, dev_accounts, load_key_file, save_key_file
from chain_client.params import MIB, Genesis, NetworkParams, devnet_params
from chain_client.rpc_client import HttpChain
from gateway.native.signing import signed_session

__all__ = [
    "DevnetError",
    "chain_command",
    "gateway_command",
    "run_devnet",
    "start_chain_process",
    "start_gateway_process",
    "start_miner_process",
    "stop_process",
    "wait_for_url",
]


DEVNET_MINER_UNITS = 64  # 16 MiB of idle space per miner with the devnet's 256 KiB unit
DEVNET_DISK_FLOOR = 256 * MIB
DEVNET_TERRITORY = "default"
DEVNET_TERRITORY_UNITS = 256  # 64 MiB with the devnet's 256 KiB territory unit


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


LOG_TAIL_LINES = 5


def _log_tail(log: Path | None) -> str:
    """The last lines of a process's log, to show why it stopped."""
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return "".join(f"\n  | {line}" for line in lines) + f"\n(the whole log: {log})"


async def wait_for_url(
    url_file: Path, process: subprocess.Popen[bytes], timeout: float, log: Path | None = None
) -> str:
    """Waits until the process has written its URL and that URL answers /health; if the
    process exits first, the error ends with its last log lines."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DevnetError(
                    f"{process.args!r} exited with {process.returncode}{_log_tail(log)}"
                )
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
        url = await wait_for_url(directory / "rpc.url", process, timeout=30, log=log_file)
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
        url = await wait_for_url(directory / "miner.url", process, timeout=60, log=log_file)
    except BaseException:
        stop_process(process)
        raise
    account = json.loads((directory / "key.json").read_text())["address"]
    return MinerProcess(process, url, directory, str(account))


async def _init_gateway(directory: Path, chain_url: str) -> None:
    config = directory / "gateway.toml"
    if config.exists():
        _point_at_chain(config, chain_url)
        return
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "gateway",
            "init",
            "--dir",
            str(directory),
            "--chain-rpc",
            chain_url,
            "--native-listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--faucet",
            "--default-territory",
            DEVNET_TERRITORY,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _point_at_chain(config: Path, chain_url: str) -> None:
    """A resumed devnet's chain listens on a new port: tell the others."""
    lines = [
        f'chain_rpc = "{chain_url}"' if line.startswith("chain_rpc") else line
        for line in config.read_text().splitlines()
    ]
    if not any(line.startswith("s3_listen") for line in lines):  # written before S3 was
        lines.append('s3_listen = "127.0.0.1:0"')
    write_atomically(config, "\n".join(lines) + "\n")


def gateway_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "gateway", "run", "--config", str(config)]


async def start_gateway_process(
    directory: Path, chain_url: str, log_file: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The gateway, running: (process, native API URL, S3 URL)."""
    await _init_gateway(directory, chain_url)
    (directory / "native.url").unlink(missing_ok=True)
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            gateway_command(directory / "gateway.toml"), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        url = await wait_for_url(directory / "native.url", process, timeout=60, log=log_file)
    except BaseException:
        stop_process(process)
        raise
    # s3.url is written before native.url.
    return process, url, (directory / "s3.url").read_text().strip()


async def _prepare_user(
    root: Path, chain_url: str, gateway: str, params: NetworkParams, miners: int
) -> Path:
    """The dev user: a key file, funds, this gateway authorized, a territory minted (once
    the miners have certified enough idle space for it)."""
    key_file = root / "user.json"
    if not key_file.exists():
        save_key_file(key_file, Keypair.generate())
    user = load_key_file(key_file)
    chain = HttpChain(chain_url)
    try:
        account = ChainAccount(chain, user)
        if (await chain.query("balances.account", account=user.address))["free"] == 0:
            await account.call("balances.faucet")
        if not await chain.query("oss.is_authorized", owner=user.address, gateway=gateway):
            await account.call("oss.authorize", gateway=gateway)
        if (
            await chain.query(
                "storage_handler.territory", owner=user.address, name=DEVNET_TERRITORY
            )
            is None
        ):
            size = DEVNET_TERRITORY_UNITS * params.territory_unit
            deadline = time.monotonic() + 300
            while True:
                totals = await chain.query("sminer.totals")
                if totals["idle"] >= size:
                    break
                if time.monotonic() > deadline:
                    raise DevnetError(
                        f"the {miners} miners certified only {totals['idle']} "
                        f"bytes of idle space in 5 minutes"
                    )
                await asyncio.sleep(0.5)
            await account.call(
                "storage_handler.mint_territory",
                name=DEVNET_TERRITORY,
                gib=DEVNET_TERRITORY_UNITS,
                days=30,
            )
    finally:
        await chain.close()
    return key_file


async def run_devnet(root: Path, *, block_time: float, fresh: bool, miners: int | None) -> int:
    """Starts (or resumes) the devnet and runs it until Ctrl-C or SIGTERM."""
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    params = devnet_params(block_time=block_time)
    genesis = root / "genesis.json"
    if not genesis.exists():
        write_atomically(genesis, json.dumps(Genesis(params=params, dev=True).to_json(), indent=2))
    chain = await start_chain_process(
        root / "chain",
        block_time=block_time,
        log_file=root / "chain.log",
        extra=("--genesis", str(genesis)),
    )
    processes: list[subprocess.Popen[bytes]] = [chain.process]
    try:
        await _wait_for_blocks(chain.url, 1, timeout=max(10.0, block_time * 5))
        # Repair needs somewhere to go: n + 2 miners (DESIGN.md §8).
        count = params.total_shards + 2 if miners is None else miners
        for number in range(count):
            config = root / f"miner{number}" / "miner.toml"
            if config.exists():
                _point_at_chain(config, chain.url)
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
        processes += [m.process for m in started]
        gateway_process, native, s3 = await start_gateway_process(
            root / "gateway", chain.url, root / "gateway.log"
        )
        processes.append(gateway_process)
        gateway = json.loads((root / "gateway" / "key.json").read_text())["address"]
        key_file = await _prepare_user(root, chain.url, gateway, params, count)
        user = load_key_file(key_file).address
        access_key, secret_key = await _access_key(root, native, load_key_file(key_file))
        info: dict[str, Any] = {
            "chain_rpc": chain.url,
            "native_endpoint": native,
            "s3_endpoint": s3,
            "access_key": access_key,
            "secret_key": secret_key,
            "account": user,
            "key_file": str(key_file.resolve()),
            "territory": DEVNET_TERRITORY,
            "gateway": gateway,
            "chain_pid": chain.process.pid,
            "gateway_pid": gateway_process.pid,
            "miners": [
                {
                    "account": m.account,
                    "endpoint": m.url,
                    "config": str((m.directory / "miner.toml").resolve()),
                    "pid": m.process.pid,
                }
                for m in started
            ],
            "dev_accounts": dev_accounts(),
        }
        write_atomically(root / "devnet.json", json.dumps(info, indent=2) + "\n")
        _print_usage(root, info)
        return await _wait_until_stopped(root, processes)
    finally:
        for process in reversed(processes):
            stop_process(process)
        _remove_own_info(root / "devnet.json", chain.process.pid)


async def _access_key(root: Path, native: str, user: Keypair) -> tuple[str, str]:
    """The dev user's S3 access key: made once through the native API, then kept (the
    gateway shows a secret only when it creates it)."""
    path = root / "s3-key.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return saved["access_key"], saved["secret_key"]
    async with (
        signed_session(native, user) as session,
        session.post(f"{native}/keys", data=b'{"label": "devnet"}') as response,
    ):
        answer = await response.json()
        if response.status != 200:
            raise DevnetError(f"the gateway made no access key: {answer}")
    data = answer["data"]
    write_atomically(path, json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)
    return data["access_key"], data["secret_key"]


def _remove_own_info(path: Path, chain_pid: int) -> None:
    """devnet.json goes with the network that wrote it (not with another one's)."""
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        if json.loads(path.read_text())["chain_pid"] == chain_pid:
            path.unlink()


def _print_usage(root: Path, info: dict[str, Any]) -> None:
    sign = f".venv/bin/deoss sign --key {info['key_file']} --gateway {info['gateway']}"
    native = info["native_endpoint"]
    print(
        f"""deoss devnet is up ({root / "devnet.json"}):
  chain RPC    {info["chain_rpc"]}   (curl {info["chain_rpc"]}/health)
  native API   {native}
  miners       {len(info["miners"])}: curl '{info["chain_rpc"]}/query/sminer.miners'
  dev user     {info["account"]}  key {info["key_file"]}  territory {info["territory"]}

A signature is for one request (method, path, body) to this gateway, used once.
  upload       curl -X PUT $({sign} PUT /object/hello.txt --unsigned) \
                 --data-binary @FILE {native}/object/hello.txt
  download     curl $({sign} GET /file/download/FID) {native}/file/download/FID -o out
  a range      curl $({sign} GET /file/open/FID) -H 'Range: bytes=0-99' {native}/file/open/FID
  metadata     curl $({sign} GET /file/metadata/FID) {native}/file/metadata/FID
  list         curl $({sign} GET /file/list) {native}/file/list
  delete       curl -X DELETE $({sign} DELETE /file/FID) {native}/file/FID
  or simply    .venv/bin/deoss put FILE | get FID -o out | ls | rm FID

S3 API         {info["s3_endpoint"]}  (buckets go to territory {info["territory"]})
  export AWS_ACCESS_KEY_ID={info["access_key"]} AWS_SECRET_ACCESS_KEY={info["secret_key"]}
  aws --endpoint-url {info["s3_endpoint"]} s3 mb s3://my-bucket
  aws --endpoint-url {info["s3_endpoint"]} s3 cp FILE s3://my-bucket/
  aws --endpoint-url {info["s3_endpoint"]} s3 ls s3://my-bucket/
  logs         {root}/*.log
Ctrl-C stops every process; `make devnet` again resumes this network.""",
        flush=True,
    )


async def _wait_until_stopped(root: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watched = {
        asyncio.create_task(asyncio.to_thread(p.wait), name=f"process {p.pid}") for p in processes
    }
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*watched, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    exited = [task.get_name() for task in done if task is not stopper]
    if exited:
        print(
            f"deoss devnet: a process exited ({exited[0]}); see the logs in {root}", file=sys.stderr
        )
        return 1
    return 0
