"""The network's roles, each started inside its own host (``netns.HostNetwork``) with the
real command lines an operator types: ``deoss-chain run``, ``deoss-miner init`` and
``run``, ``deoss gateway init`` and ``run``. Each listens on its host's address, on the
port it would use on a machine of its own, and every role reaches the others across the
bridge, never over loopback.

``running`` yields a live network and, on the way out however it leaves (an error, a
signal turned into SystemExit, a failed test), stops every role, kills what is left
inside the namespaces and removes them and the bridge.
"""

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain_client.account import ChainAccount
from chain_client.keys import dev_keypair
from chain_client.params import Genesis, NetworkParams
from chain_client.rpc_client import HttpChain
from deploy.account import authorize, mint_territory
from deploy.multihost.netns import Host, HostNetwork, clean_leftovers
from gateway.native.signing import signed_session

__all__ = [
    "CHAIN_PORT",
    "GATEWAY_NATIVE_PORT",
    "GATEWAY_S3_PORT",
    "MINER_PORT",
    "Network",
    "Role",
    "RoleFailed",
    "prepare_user",
    "running",
]

CHAIN_PORT = 9944
MINER_PORT = 15001
GATEWAY_NATIVE_PORT = 8080
GATEWAY_S3_PORT = 8081
TERRITORY = "multihost"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
LOG_TAIL = 3000
GATEWAY_DIRECTORY_REFRESH = 5.5  # gateway/transfer.py: MinerDirectory's refresh, 5 s


class RoleFailed(RuntimeError):
    pass


@dataclass(slots=True)
class Role:
    name: str
    host: Host
    process: subprocess.Popen[bytes]
    directory: Path
    log: Path
    url: str = ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(slots=True)
class Network:
    hosts: HostNetwork
    chain: Role
    miners: list[Role]
    gateway: Role
    s3_url: str
    root: Path

    @property
    def gateway_account(self) -> str:
        return str(json.loads((self.gateway.directory / "key.json").read_text())["address"])

    def endpoints(self) -> dict[str, object]:
        return {
            "chain_rpc": self.chain.url,
            "native_endpoint": self.gateway.url,
            "s3_endpoint": self.s3_url,
            "gateway_account": self.gateway_account,
            "miners": {miner.name: miner.url for miner in self.miners},
            "metrics": {
                "chain": self.chain.url + "/metrics",
                "gateway": self.gateway.url + "/metrics",
                "miners": [miner.url + "/metrics" for miner in self.miners],
            },
            "namespaces": {host.name: host.namespace for host in self.hosts.hosts.values()},
            "bridge": self.hosts.bridge,
            "subnet": str(self.hosts.subnet),
            "logs": str(self.root),
        }


def _cli(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _spawn(host: Host, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:  # the child keeps its own descriptor
        # A session of its own: Ctrl-C reaches only the launcher, which stops the roles
        # in order (gateway, miners, chain) instead of all at once.
        return subprocess.Popen(
            host.command(argv), stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def _finish(processes: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
    for name, process, log in processes:
        if process.wait(START_TIMEOUT) != 0:
            raise RoleFailed(f"{name}: {process.args!r} exited {process.returncode}{_tail(log)}")


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace")[-LOG_TAIL:] if log.exists() else ""
    return f"\n{text}\n(the whole log: {log})"


def _healthy(url: str) -> bool:
    with (
        contextlib.suppress(urllib.error.URLError, OSError),
        urllib.request.urlopen(url + "/health", timeout=2) as answer,  # noqa: S310
    ):
        return int(answer.status) == 200
    return False


def _wait_ready(roles: list[Role], url_file: str, deadline: float) -> None:
    """Until each role has written its URL and answers /health there, from this (the
    root) namespace, across the bridge."""
    waiting = list(roles)
    while waiting:
        for role in list(waiting):
            if role.process.poll() is not None:
                raise RoleFailed(f"{role.name} exited {role.process.returncode}{_tail(role.log)}")
            path = role.directory / url_file
            if path.exists() and _healthy(url := path.read_text().strip()):
                role.url = url
                waiting.remove(role)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(role.name for role in waiting)
            raise RoleFailed(
                f"no 200 from /health in {START_TIMEOUT} s: {names}{_tail(waiting[0].log)}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    root: Path,
    *,
    params: NetworkParams,
    miners: int | None = None,
    declared_units: int = 96,
    subnet: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[Network]:
    """A chain host, ``miners`` miner hosts (n + 2 by default) and a gateway host, all
    running; everything stopped and removed on the way out."""
    count = params.total_shards + 2 if miners is None else miners
    root.mkdir(parents=True, exist_ok=True)
    for tag in clean_leftovers():
        say(f"removed the namespaces a dead run left ({tag})")
    hosts = HostNetwork()
    started: list[Role] = []
    try:
        names = ["chain", *(f"miner{number:02d}" for number in range(count)), "gateway"]
        hosts.create(names, subnet)
        say(f"{len(names)} hosts on bridge {hosts.bridge}, {hosts.subnet}")
        yield _start(root, hosts, params, names[1:-1], declared_units, started, say)
    finally:
        _stop(started)
        left = hosts.teardown()
        if left:
            print(f"multihost: could not remove {', '.join(left)}", file=sys.stderr)


def _start(
    root: Path,
    hosts: HostNetwork,
    params: NetworkParams,
    miner_names: list[str],
    declared_units: int,
    started: list[Role],
    say: Callable[[str], None],
) -> Network:
    deadline = time.monotonic() + START_TIMEOUT
    genesis = root / "genesis.json"
    genesis.write_text(json.dumps(Genesis(params=params, dev=True).to_json(), indent=2))
    host = hosts.hosts["chain"]
    chain = _run_role(
        root,
        "chain",
        host,
        _cli(
            "chain_client.cli",
            "run",
            "--dir",
            str(root / "chain"),
            "--listen",
            f"{host.address}:{CHAIN_PORT}",
            "--genesis",
            str(genesis),
            "--block-time",
            str(params.block_time),
            "--dev",
        ),
    )
    started.append(chain)
    _wait_ready([chain], "rpc.url", deadline)
    say(f"chain at {chain.url}")
    inits = []
    for name in miner_names:
        host = hosts.hosts[name]
        command = _cli(
            "miner_agent.cli",
            "init",
            "--dir",
            str(root / name),
            "--declared-space",
            str(declared_units * params.idle_unit_size),
            "--chain-rpc",
            chain.url,
            "--listen",
            f"{host.address}:{MINER_PORT}",
            "--free-disk-floor",
            str(64 * 1024),
            "--faucet",
        )
        inits.append((name, _spawn(host, command, root / f"{name}.log"), root / f"{name}.log"))
    host = hosts.hosts["gateway"]
    gateway_init = _cli(
        "gateway.cli",
        "gateway",
        "init",
        "--dir",
        str(root / "gateway"),
        "--chain-rpc",
        chain.url,
        "--native-listen",
        f"{host.address}:{GATEWAY_NATIVE_PORT}",
        "--s3-listen",
        f"{host.address}:{GATEWAY_S3_PORT}",
        "--default-territory",
        TERRITORY,
        "--faucet",
    )
    inits.append(
        ("gateway", _spawn(host, gateway_init, root / "gateway.log"), root / "gateway.log")
    )
    _finish(inits)
    miners = []
    for name in miner_names:
        config = root / name / "miner.toml"
        miners.append(
            _run_role(
                root,
                name,
                hosts.hosts[name],
                _cli("miner_agent.cli", "run", "--config", str(config)),
            )
        )
        started.append(miners[-1])
    _wait_ready(miners, "miner.url", deadline)
    say(f"{len(miners)} miners registered")
    config = root / "gateway" / "gateway.toml"
    gateway = _run_role(
        root, "gateway", host, _cli("gateway.cli", "gateway", "run", "--config", str(config))
    )
    started.append(gateway)
    _wait_ready([gateway], "native.url", deadline)
    s3_url = (root / "gateway" / "s3.url").read_text().strip()  # written before native.url
    return Network(hosts, chain, miners, gateway, s3_url, root)


def _run_role(root: Path, name: str, host: Host, argv: list[str]) -> Role:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    for url_file in ("rpc.url", "miner.url", "native.url", "s3.url"):
        (directory / url_file).unlink(missing_ok=True)
    log = root / f"{name}.log"
    return Role(name, host, _spawn(host, argv, log), directory, log)


def _stop(roles: list[Role]) -> None:
    """The gateway first, then the miners together, then the chain."""
    gateway = [role for role in roles if role.name == "gateway"]
    miners = [role for role in roles if role.name.startswith("miner")]
    chain = [role for role in roles if role.name == "chain"]
    for group in (gateway, miners, chain):
        for role in group:
            with contextlib.suppress(ProcessLookupError):
                if role.process.poll() is None:
                    role.process.terminate()
        for role in group:
            role.stop()


async def _roomy(chain: HttpChain, need: int) -> list[dict[str, Any]]:
    positive: list[dict[str, Any]] = await chain.query("sminer.miners", state="positive")
    return [miner for miner in positive if int(miner["idle"]) >= need]


async def prepare_user(network: Network, territory_units: int = 40) -> tuple[str, str]:
    """The dev user //Alice: the gateway authorized, a territory minted from the space
    the miners certified, and an S3 access key: (access key, secret)."""
    alice = dev_keypair("Alice")
    chain = HttpChain(network.chain.url)
    try:
        params = (await chain.genesis())[1].params
        deadline = time.monotonic() + START_TIMEOUT
        # The gateway places a fragment only on a positive miner with the idle space for
        # it: n of them, then long enough for its miner directory to see them too.
        while len(await _roomy(chain, params.fragment_size)) < params.total_shards:
            if time.monotonic() > deadline:
                raise RoleFailed(f"fewer than {params.total_shards} miners with idle space")
            await asyncio.sleep(0.25)
        await asyncio.sleep(GATEWAY_DIRECTORY_REFRESH)
        account = ChainAccount(chain, alice)
        await authorize(account, network.gateway_account)
        await mint_territory(account, params, TERRITORY, territory_units, 30, START_TIMEOUT)
    finally:
        await chain.close()
    async with (
        signed_session(network.gateway.url, alice) as session,
        session.post(f"{network.gateway.url}/keys", data=b'{"label": "multihost"}') as answer,
    ):
        body = await answer.json()
        if answer.status != 200:
            raise RoleFailed(f"the gateway made no access key: {body}")
    return str(body["data"]["access_key"]), str(body["data"]["secret_key"])
