"""``deoss devnet``: a local network of real processes on loopback, under one
directory: a dev chain node, n + 2 miners, a gateway, and a dev user who authorized the
gateway and owns a territory. ``DIR/devnet.json`` is written (atomically) once every
service answers and the territory exists; a second run resumes the same network, on
the same ports when they are free.

The territory starts with what the miners certified by then and grows in the
background, as they certify the rest of their declared idle space, to its planned size
(``plan_capacity``: 4 GiB, or what the disk holds less the floor). Every role runs
under ``gateway.devnet_child``, so it stops with the launcher, even a SIGKILLed one.
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from chain_client.account import ChainAccount
from chain_client.errors import ChainError
from chain_client.files import private_directory, write_atomically
from chain_client.keys import Keypair, dev_accounts, load_key_file, save_key_file
from chain_client.params import GIB, MIB, ConfigError, Genesis, NetworkParams, devnet_params
from chain_client.rpc_client import HttpChain
from gateway.config import GatewayConfig
from gateway.native.signing import signed_session
from miner_agent.config import MinerConfig, render_config

__all__ = [
    "DEVNET_TERRITORY",
    "CapacityPlan",
    "DevnetError",
    "TerritoryKeeper",
    "chain_command",
    "gateway_command",
    "plan_capacity",
    "prepare_user",
    "run_devnet",
    "start_chain_process",
    "start_gateway_process",
    "start_miner_process",
    "stop_process",
    "wait_for_url",
]

log = logging.getLogger("deoss.devnet")

DEVNET_TERRITORY = "default"
DEVNET_TERRITORY_TARGET = 4 * GIB
DEVNET_DISK_FLOOR = 2 * GIB  # what the miners leave free on the disk they share
MIN_TERRITORY = 64 * MIB  # below this the disk is too full for a devnet worth the name
FIRST_TERRITORY = 64 * MIB  # minted once this much is certified (sooner with less, if slow)
TERRITORY_DAYS = 30
RENEW_BEFORE_DAYS = 2
KEEPER_INTERVAL = 2.0
KEEPER_IDLE_INTERVAL = 60.0
STOP_TIMEOUT = 15.0


class DevnetError(RuntimeError):
    pass


# -- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """What the devnet's miners declare and how large its territory grows. The territory
    counts stored bytes (fragments: an object takes n/k times its size), and the miners
    declare it with two miners' share to spare, so any two can fail and the rest still
    hold every fragment of it."""

    miners: int
    per_miner: int  # declared bytes, each
    territory: int  # the territory's planned size, bytes
    free: int  # the disk's free bytes when planned
    floor: int
    redundancy: float  # n / k

    @property
    def declared(self) -> int:
        return self.per_miner * self.miners

    def describe(self) -> str:
        return (
            f"{self.miners} miners declare {_size(self.per_miner)} each "
            f"({_size(self.declared)} in all, of {_size(self.free)} free on the disk less a "
            f"{_size(self.floor)} floor); the territory grows to {_size(self.territory)} of "
            f"fragments: {_size(int(self.territory / self.redundancy))} of objects at "
            f"n/k = {self.redundancy:g}"
        )


def _size(count: int) -> str:
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / MIB:.0f} MiB"


def plan_capacity(
    params: NetworkParams, miners: int, free: int, *, target: int, floor: int
) -> CapacityPlan:
    """The largest territory up to ``target`` whose declared space fits in ``free`` less
    ``floor``; DevnetError when not even MIN_TERRITORY does."""
    if miners < params.total_shards:
        raise DevnetError(f"a devnet needs at least n = {params.total_shards} miners")
    spare = max(miners - 2, params.total_shards)  # the miners that must hold it all
    unit, territory_unit = params.idle_unit_size, params.territory_unit

    def per_miner(territory: int) -> int:
        return -(-territory // spare // unit) * unit + unit

    territory = target // territory_unit * territory_unit
    usable = free - floor
    if per_miner(territory) * miners > usable:
        each = max(usable // miners - unit, 0) // unit * unit  # a whole count of units
        territory = each * spare // territory_unit * territory_unit
    if territory < MIN_TERRITORY:
        raise DevnetError(
            f"the disk has {_size(free)} free: with a {_size(floor)} floor that holds no "
            f"devnet (a territory of {_size(MIN_TERRITORY)} needs "
            f"{_size(per_miner(MIN_TERRITORY) * miners + floor)})"
        )
    return CapacityPlan(
        miners=miners,
        per_miner=per_miner(territory),
        territory=territory,
        free=free,
        floor=floor,
        redundancy=params.total_shards / params.data_shards,
    )


# -- processes ----------------------------------------------------------------------------


@dataclass(slots=True)
class ChainProcess:
    process: subprocess.Popen[bytes]
    url: str
    directory: Path


def chain_command(directory: Path, *args: str, listen: str = "127.0.0.1:0") -> list[str]:
    """``deoss-chain run`` (on a free loopback port by default); it writes its URL to
    DIR/rpc.url."""
    return [
        sys.executable,
        "-m",
        "chain_client.cli",
        "run",
        "--dir",
        str(directory),
        "--listen",
        listen,
        *args,
    ]


LOG_TAIL_LINES = 5


def _log_tail(log_file: Path | None) -> str:
    """The last lines of a process's log, to show why it stopped."""
    if log_file is None or not log_file.exists():
        return ""
    lines = log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return "".join(f"\n  | {line}" for line in lines) + f"\n(the whole log: {log_file})"


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


def _spawn(
    command: list[str], log_file: Path | None, *, with_launcher: bool
) -> subprocess.Popen[bytes]:
    """Starts a role, its output appended to ``log_file``; ``with_launcher``: under
    ``gateway.devnet_child``, so it gets SIGTERM when this process dies."""
    if with_launcher:
        command = [sys.executable, "-m", "gateway.devnet_child", str(os.getpid()), *command]
    output: IO[bytes] | int = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    finally:
        if not isinstance(output, int):
            output.close()


async def start_chain_process(
    directory: Path,
    *,
    block_time: float,
    dev: bool = True,
    log_file: Path | None = None,
    extra: tuple[str, ...] = (),
    listen: str = "127.0.0.1:0",
    with_launcher: bool = False,
) -> ChainProcess:
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (directory / "rpc.url").unlink()
    command = chain_command(directory, "--block-time", str(block_time), *extra, listen=listen)
    if dev:
        command.append("--dev")
    process = _spawn(command, log_file, with_launcher=with_launcher)
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


def init_miner(
    directory: Path,
    chain_url: str,
    *,
    declared_space: int,
    free_disk_floor: int,
    listen: str = "127.0.0.1:0",
) -> None:
    """What ``deoss-miner init --faucet`` writes (a key and miner.toml), in-process."""
    directory.mkdir(parents=True, exist_ok=True)
    config = MinerConfig(
        data_dir=directory.resolve(),
        declared_space=declared_space,
        chain_rpc=chain_url,
        listen=listen,
        key_file="key.json",
        faucet=True,
        free_disk_floor=free_disk_floor,
        source=str(directory / "miner.toml"),
    )
    config.validate()
    _write_role(directory, "miner.toml", render_config(config))


async def start_miner_process(
    directory: Path,
    chain_url: str,
    *,
    declared_space: int,
    free_disk_floor: int,
    log_file: Path,
    with_launcher: bool = False,
) -> MinerProcess:
    """A miner (its config and key written first, if missing), running and registered."""
    if not (directory / "miner.toml").exists():
        init_miner(
            directory, chain_url, declared_space=declared_space, free_disk_floor=free_disk_floor
        )
    (directory / "miner.url").unlink(missing_ok=True)
    process = _spawn(
        [sys.executable, "-m", "miner_agent.cli", "run", "--config", str(directory / "miner.toml")],
        log_file,
        with_launcher=with_launcher,
    )
    try:
        url = await wait_for_url(directory / "miner.url", process, timeout=60, log=log_file)
    except BaseException:
        stop_process(process)
        raise
    account = json.loads((directory / "key.json").read_text())["address"]
    return MinerProcess(process, url, directory, str(account))


def init_gateway(
    directory: Path,
    chain_url: str,
    *,
    native_listen: str = "127.0.0.1:0",
    s3_listen: str = "127.0.0.1:0",
) -> None:
    """What ``deoss gateway init --faucet --default-territory default`` writes."""
    private_directory(directory)
    config = GatewayConfig(
        data_dir=directory.resolve(),
        chain_rpc=chain_url,
        native_listen=native_listen,
        s3_listen=s3_listen,
        key_file="key.json",
        faucet=True,
        default_territory=DEVNET_TERRITORY,
        source=str(directory / "gateway.toml"),
    )
    config.validate()
    _write_role(directory, "gateway.toml", config.render())


def _write_role(directory: Path, name: str, config: str) -> None:
    """A role's key (kept if there is one) and its validated config."""
    if not (directory / "key.json").exists():
        save_key_file(directory / "key.json", Keypair.generate())
    write_atomically(directory / name, config)


def gateway_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "gateway", "run", "--config", str(config)]


async def start_gateway_process(
    directory: Path, chain_url: str, log_file: Path, *, with_launcher: bool = False
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The gateway (its config and key written first, if missing), running: (process,
    native API URL, S3 URL)."""
    if not (directory / "gateway.toml").exists():
        init_gateway(directory, chain_url)
    (directory / "native.url").unlink(missing_ok=True)
    process = _spawn(
        gateway_command(directory / "gateway.toml"), log_file, with_launcher=with_launcher
    )
    try:
        url = await wait_for_url(directory / "native.url", process, timeout=60, log=log_file)
    except BaseException:
        stop_process(process)
        raise
    # s3.url is written before native.url.
    return process, url, (directory / "s3.url").read_text().strip()


# -- resuming -----------------------------------------------------------------------------


def _free_port(preferred: int = 0) -> int:
    """``preferred`` when nothing listens on it (the port of the run before), else any."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise DevnetError("no free port on 127.0.0.1")


def _port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def _settle_miner(config_path: Path, chain_url: str) -> None:
    """A resumed miner: its chain's URL, and its port again, or a free one (the miner
    tells the chain its new endpoint)."""
    config = MinerConfig.load(config_path)
    listen = f"127.0.0.1:{_free_port(_port_of(config.listen))}"
    if (config.chain_rpc, config.listen) != (chain_url, listen):
        write_atomically(
            config_path,
            render_config(dataclasses.replace(config, chain_rpc=chain_url, listen=listen)),
        )


def _settle_gateway(config_path: Path, chain_url: str) -> None:
    config = GatewayConfig.load(config_path)
    native = f"127.0.0.1:{_free_port(_port_of(config.native_listen))}"
    s3 = f"127.0.0.1:{_free_port(_port_of(config.s3_listen))}"
    if (config.chain_rpc, config.native_listen, config.s3_listen) != (chain_url, native, s3):
        changed = dataclasses.replace(
            config, chain_rpc=chain_url, native_listen=native, s3_listen=s3
        )
        write_atomically(config_path, changed.render())


class LauncherLock:
    """One launcher per directory: a second ``make devnet`` beside a running one says so
    instead of fighting it over ports and databases. The kernel drops the lock when the
    launcher dies, however it dies."""

    def __init__(self, root: Path) -> None:
        self.path = root / "launcher.lock"
        self._file: IO[str] | None = None

    def __enter__(self) -> "LauncherLock":
        self._file = open(self.path, "a+")  # held for the launcher's life
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "?"
            self._file.close()
            raise DevnetError(
                f"a devnet already runs from {self.path.parent} (launcher pid {holder}); "
                "stop it first (Ctrl-C in its terminal)"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._file is not None
        self._file.close()


def _stop_strays(root: Path) -> None:
    """Roles a SIGKILLed launcher left (each got SIGTERM from the kernel; this waits for
    them to finish, and stops one that did not), found by the pids it recorded."""
    path = root / "pids.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pids = [int(pid) for pid in json.loads(path.read_text())]
        strays = [pid for pid in pids if _is_role_of(pid, root)]
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while strays and time.monotonic() < deadline:
            strays = [pid for pid in strays if _is_role_of(pid, root)]
            time.sleep(0.1)
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


def _is_role_of(pid: int, root: Path) -> bool:
    """Whether ``pid`` is alive and one of this devnet's roles (pids are reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and str(root.resolve()).encode() in command


# -- the user and the territory -----------------------------------------------------------


async def prepare_user(root: Path, chain_url: str, gateway: str) -> Path:
    """The dev user: a key file, funds, this gateway authorized."""
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
    finally:
        await chain.close()
    return key_file


class TerritoryKeeper:
    """Keeps the dev user's territory: minted from what the miners certified, grown
    toward ``target`` as they certify more, renewed before it freezes, funded from the
    dev faucet when a step costs more than the user holds."""

    def __init__(self, chain: HttpChain, user: Keypair, params: NetworkParams, target: int) -> None:
        self.chain, self.params, self.target = chain, params, target
        self.account = ChainAccount(chain, user)
        self.address = user.address

    async def territory(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.chain.query(
            "storage_handler.territory", owner=self.address, name=DEVNET_TERRITORY
        )
        return found

    async def unsold(self) -> int:
        totals = await self.chain.query("sminer.totals")
        certified = int(totals["idle"]) + int(totals["service"]) + int(totals["locked"])
        return certified - int(await self.chain.query("storage_handler.purchased"))

    async def step(self, minimum: int) -> dict[str, Any] | None:
        """One look: mint (once ``minimum`` bytes are for sale), grow or renew."""
        unit = self.params.territory_unit
        found = await self.territory()
        if found is not None and found["state"] == "expired":
            found = None
        have = 0 if found is None else int(found["total"])
        units = min(await self.unsold(), self.target - have) // unit
        if found is None:
            if units * unit >= min(minimum, self.target):
                days = TERRITORY_DAYS
                await self._afford(units * days * self.params.territory_unit_price)
                await self.account.call(
                    "storage_handler.mint_territory", name=DEVNET_TERRITORY, gib=units, days=days
                )
                return await self.territory()
            return None
        days_left = -(
            -(int(found["deadline"]) - (await self.chain.head()).best_block)
            // (self.params.blocks_per_day)
        )
        if found["state"] == "active" and units >= 1:
            await self._afford(units * max(days_left, 1) * self.params.territory_unit_price)
            await self.account.call(
                "storage_handler.expand_territory", name=DEVNET_TERRITORY, gib=units
            )
        if days_left <= RENEW_BEFORE_DAYS:
            total = int((await self.territory() or found)["total"])
            await self._afford(total // unit * TERRITORY_DAYS * self.params.territory_unit_price)
            await self.account.call(
                "storage_handler.renew_territory", name=DEVNET_TERRITORY, days=TERRITORY_DAYS
            )
        return await self.territory()

    async def _afford(self, price: int) -> None:
        while (await self.chain.query("balances.account", account=self.address))["free"] < (
            price + self.params.existential_deposit + self.params.base_fee * 10
        ):
            await self.account.call("balances.faucet")

    async def run(self) -> None:
        """Until cancelled; a refused step is logged and tried again. Once the territory
        is at its target, a look a minute is enough (renewal is days ahead)."""
        while True:
            interval = KEEPER_INTERVAL
            try:
                found = await self.step(minimum=1)
                if found is not None and int(found["total"]) >= self.target:
                    interval = KEEPER_IDLE_INTERVAL
            except (ChainError, aiohttp.ClientError, OSError) as exc:
                log.warning("territory keeper: %s", exc)
            await asyncio.sleep(interval)


async def _placeable(chain: HttpChain, params: NetworkParams, timeout: float) -> None:
    """Until n miners have idle space for a whole fragment each: a territory minted from
    the first few miners' certified space does not yet let the gateway place a segment."""
    deadline = time.monotonic() + timeout
    while True:
        miners = await chain.query("sminer.miners", state="positive")
        ready = sum(1 for m in miners if int(m["idle"]) >= params.fragment_size)
        if ready >= params.total_shards:
            return
        if time.monotonic() > deadline:
            raise DevnetError(
                f"{ready} miners have idle space for a fragment after {timeout:.0f} s; "
                f"{params.total_shards} are needed"
            )
        await asyncio.sleep(0.5)


async def _first_territory(keeper: TerritoryKeeper, miners: int, timeout: float) -> dict[str, Any]:
    """The territory, minted as soon as FIRST_TERRITORY bytes are certified (sooner with
    less, past half the timeout)."""
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        found = await keeper.step(minimum=FIRST_TERRITORY if waited < timeout / 2 else 1)
        if found is not None:
            return found
        if waited > timeout:
            raise DevnetError(
                f"the {miners} miners certified no idle space to sell in {timeout:.0f} s"
            )
        await asyncio.sleep(0.5)


# -- the launcher -------------------------------------------------------------------------


def _load_params(genesis: Path, block_time: float) -> NetworkParams:
    if not genesis.exists():
        params = devnet_params(block_time=block_time)
        write_atomically(genesis, json.dumps(Genesis(params=params, dev=True).to_json(), indent=2))
        return params
    return Genesis.load(genesis).params  # a resumed network keeps its own


def _refuse_old_state(root: Path, error: DevnetError) -> DevnetError:
    """A devnet directory an older deoss wrote: say how to start over."""
    if "ledger schema" in str(error):
        return DevnetError(
            f"{root} holds a devnet made by an older deoss, which this one cannot resume; "
            f"`deoss devnet --fresh --dir {root}` (or `make devnet FRESH=1`) starts a new "
            f"one, deleting it{_log_tail(root / 'chain.log')}"
        )
    return error


@contextlib.contextmanager
def _recording(root: Path, processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Every role started, its pid in DIR/pids.json, and stopped at the end (last
    started first)."""
    try:
        yield
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=STOP_TIMEOUT)
        (root / "pids.json").unlink(missing_ok=True)


def _record_pids(root: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    write_atomically(root / "pids.json", json.dumps([p.pid for p in processes]) + "\n")


async def run_devnet(
    root: Path,
    *,
    block_time: float,
    fresh: bool,
    miners: int | None,
    territory: int = DEVNET_TERRITORY_TARGET,
) -> int:
    """Starts (or resumes) the devnet and runs it until Ctrl-C or SIGTERM."""
    started = time.monotonic()
    if fresh and root.exists():
        with LauncherLock(root):  # never delete under a running devnet, nor its strays
            _stop_strays(root)
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    with LauncherLock(root):
        _stop_strays(root)
        try:
            params = _load_params(root / "genesis.json", block_time)
        except ConfigError as exc:
            raise DevnetError(f"{exc}; `deoss devnet --fresh` starts over") from exc
        processes: list[subprocess.Popen[bytes]] = []
        with _recording(root, processes):
            return await _run(root, params, processes, miners, territory, started)


async def _run(
    root: Path,
    params: NetworkParams,
    processes: list[subprocess.Popen[bytes]],
    miners: int | None,
    target: int,
    started: float,
) -> int:
    (root / "devnet.json").unlink(missing_ok=True)  # a killed launcher's: not ready yet
    ports_file = root / "ports.json"
    ports = json.loads(ports_file.read_text()) if ports_file.exists() else {}
    chain_port = _free_port(int(ports.get("chain", 0)))
    try:
        chain = await start_chain_process(
            root / "chain",
            block_time=params.block_time,
            log_file=root / "chain.log",
            extra=("--genesis", str(root / "genesis.json")),
            listen=f"127.0.0.1:{chain_port}",
            with_launcher=True,
        )
    except DevnetError as exc:
        raise _refuse_old_state(root, exc) from None
    processes.append(chain.process)
    _record_pids(root, processes)
    write_atomically(ports_file, json.dumps({"chain": chain_port}) + "\n")
    await _wait_for_blocks(chain.url, 1, timeout=max(10.0, params.block_time * 5))
    # Repair needs somewhere to go: n + 2 miners (DESIGN.md §8).
    count = params.total_shards + 2 if miners is None else miners
    plan_file = root / "plan.json"
    if plan_file.exists():  # resumed: the miners keep what they declared
        plan = CapacityPlan(**json.loads(plan_file.read_text()))
    else:
        free = shutil.disk_usage(root).free
        plan = plan_capacity(params, count, free, target=target, floor=DEVNET_DISK_FLOOR)
        write_atomically(plan_file, json.dumps(dataclasses.asdict(plan)) + "\n")
    print(f"deoss devnet: {plan.describe()}", flush=True)
    for number in range(count):
        config = root / f"miner{number}" / "miner.toml"
        if config.exists():
            _settle_miner(config, chain.url)
        else:
            init_miner(
                root / f"miner{number}",
                chain.url,
                declared_space=plan.per_miner,
                free_disk_floor=plan.floor,
                listen=f"127.0.0.1:{_free_port()}",
            )
    gateway_dir = root / "gateway"
    if (gateway_dir / "gateway.toml").exists():
        _settle_gateway(gateway_dir / "gateway.toml", chain.url)
    else:
        init_gateway(
            gateway_dir,
            chain.url,
            native_listen=f"127.0.0.1:{_free_port()}",
            s3_listen=f"127.0.0.1:{_free_port()}",
        )
    results = await asyncio.gather(
        *(
            start_miner_process(
                root / f"miner{number}",
                chain.url,
                declared_space=plan.per_miner,
                free_disk_floor=plan.floor,
                log_file=root / f"miner{number}.log",
                with_launcher=True,
            )
            for number in range(count)
        ),
        start_gateway_process(gateway_dir, chain.url, root / "gateway.log", with_launcher=True),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, MinerProcess):
            processes.append(result.process)
        elif isinstance(result, tuple):
            processes.append(result[0])
    _record_pids(root, processes)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    started_miners = [r for r in results if isinstance(r, MinerProcess)]
    gateway_process, native, s3 = next(r for r in results if isinstance(r, tuple))
    gateway = json.loads((gateway_dir / "key.json").read_text())["address"]
    key_file = await prepare_user(root, chain.url, gateway)
    user = load_key_file(key_file)
    access_key, secret_key = await _access_key(root, native, user)
    chain_client = HttpChain(chain.url)
    keeper = TerritoryKeeper(chain_client, user, params, plan.territory)
    try:
        found = await _first_territory(keeper, count, timeout=120.0)
        await _placeable(chain_client, params, timeout=120.0)
        info: dict[str, Any] = {
            "chain_rpc": chain.url,
            "native_endpoint": native,
            "s3_endpoint": s3,
            "access_key": access_key,
            "secret_key": secret_key,
            "account": user.address,
            "key_file": str(key_file.resolve()),
            "territory": DEVNET_TERRITORY,
            "territory_size": int(found["total"]),
            "territory_target": plan.territory,
            "plan": dataclasses.asdict(plan),
            "gateway": gateway,
            "chain_pid": chain.process.pid,
            "gateway_pid": gateway_process.pid,
            "launcher_pid": os.getpid(),
            "miners": [
                {
                    "account": m.account,
                    "endpoint": m.url,
                    "config": str((m.directory / "miner.toml").resolve()),
                    "pid": m.process.pid,
                    "metrics": m.url + "/metrics",
                }
                for m in started_miners
            ],
            "metrics": {
                "chain": chain.url + "/metrics",
                "gateway": native + "/metrics",
                "miners": [m.url + "/metrics" for m in started_miners],
            },
            "console": native + "/console/",
            "ready_seconds": round(time.monotonic() - started, 1),
            "dev_accounts": dev_accounts(),
        }
        write_atomically(root / "devnet.json", json.dumps(info, indent=2) + "\n")
        _print_usage(root, info)
        keeping = asyncio.create_task(keeper.run(), name="territory keeper")
        try:
            return await _wait_until_stopped(root, processes)
        finally:
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeping
    finally:
        await chain_client.close()
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
    metrics = info["metrics"]
    print(
        f"""deoss devnet is up in {info["ready_seconds"]} s ({root / "devnet.json"}):
  chain RPC    {info["chain_rpc"]}   (curl {info["chain_rpc"]}/health)
  native API   {native}
  web console  {info["console"]}
  miners       {len(info["miners"])}: curl '{info["chain_rpc"]}/query/sminer.miners'
  dev user     {info["account"]}  key {info["key_file"]}
  territory    {info["territory"]}: {_size(info["territory_size"])} now, growing to \
{_size(info["territory_target"])} as the miners certify idle space
  metrics      chain {metrics["chain"]}
               gateway {metrics["gateway"]}
               miners {metrics["miners"][0]} ... ({len(metrics["miners"])}, in devnet.json)

A signature is for one request (method, path, body) to this gateway, used once.
  upload       curl -X PUT $({sign} PUT /object/hello.txt --unsigned) \\
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
Ctrl-C stops every process; `make devnet` again resumes this network, on these ports
when they are free; `deoss devnet --fresh` (make devnet FRESH=1) starts over.""",
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
