"""make soak: minutes of mixed load with faults on a small network of real processes.

A chain node, 7 miners (k = 2, n = 4) and a gateway. Writers upload objects of random
sizes, readers read random ones back and verify them, and every ``--fault-every`` seconds
one fault is injected in turn: a miner killed (and started again a while later), a
fragment flipped on disk and challenged, a miner stopped for a few seconds. At the end
the network is given time to heal, every object is read back, and the run reports what
was written, read, verified, the faults and the repairs, and how many objects were lost
(the exit status is 1 unless that is 0). Bounded: ``--minutes`` of load plus the heal.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/

from chain_client.account import ChainAccount
from chain_client.params import KIB
from chain_client.rpc_client import HttpChain
from tests.e2e.faults.test_faults import MINERS, PARAMS
from tests.e2e.gateway_network import (
    S3_TERRITORY,
    USER,
    Network,
    running_network,
    signed,
)
from tests.e2e.processes import start_miner, wait_for_url

HEAL_TIMEOUT = 300.0


@dataclass
class Tally:
    written: int = 0
    read: int = 0
    verified: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # fid -> sha256 of its bytes

    def fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1


def _accounts(network: Network) -> dict[str, int]:
    return {
        json.loads((d / "key.json").read_text())["address"]: i
        for i, (d, _, _) in enumerate(network.miners)
    }


async def _setup(network: Network) -> None:
    chain = HttpChain(network.chain.url)
    try:
        gateway = json.loads((network.gateway_dir / "key.json").read_text())["address"]
        deadline = time.monotonic() + 120
        while len(await chain.query("sminer.miners", state="positive")) < MINERS:
            if time.monotonic() > deadline:
                raise SystemExit("soak: the miners never became positive")
            await asyncio.sleep(0.5)
        user = ChainAccount(chain, USER)
        await user.call("oss.authorize", gateway=gateway)
        while True:
            totals = await chain.query("sminer.totals")
            if totals["idle"] >= 48 * PARAMS.territory_unit:
                break
            await asyncio.sleep(0.5)
        await user.call("storage_handler.mint_territory", name=S3_TERRITORY, gib=40, days=5)
    finally:
        await chain.close()


async def _writer(network: Network, tally: Tally, until: float, rng: random.Random) -> None:
    async with aiohttp.ClientSession() as session:
        number = 0
        while time.monotonic() < until:
            data = rng.randbytes(rng.choice([1, 700, 5 * KIB, 60 * KIB, 200 * KIB]))
            number += 1
            try:
                async with session.put(
                    f"{network.url}/object/soak/{number}",
                    data=data,
                    headers=signed({"Territory": S3_TERRITORY}),
                ) as response:
                    if response.status != 200:
                        await asyncio.sleep(0.5)  # a refusal under a fault: try again later
                        continue
                    fid = (await response.json())["data"]["fid"]
            except aiohttp.ClientError:
                await asyncio.sleep(0.5)
                continue
            tally.digests[fid] = hashlib.sha256(data).hexdigest()
            tally.written += 1
            await asyncio.sleep(0.2)


async def _read(session: aiohttp.ClientSession, network: Network, fid: str) -> str | None:
    try:
        async with session.get(f"{network.url}/file/download/{fid}", headers=signed()) as response:
            if response.status != 200:
                return None
            return hashlib.sha256(await response.read()).hexdigest()
    except aiohttp.ClientError:
        return None


async def _reader(network: Network, tally: Tally, until: float, rng: random.Random) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            if tally.digests:
                fid = rng.choice(list(tally.digests))
                got = await _read(session, network, fid)
                tally.read += 1
                if got == tally.digests[fid]:
                    tally.verified += 1
            await asyncio.sleep(0.1)


async def _faults(
    network: Network, tally: Tally, until: float, every: float, rng: random.Random
) -> None:
    chain = HttpChain(network.chain.url)
    killed: list[int] = []
    kinds = ["kill", "corrupt", "stop"]
    try:
        turn = 0
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            kind = kinds[turn % len(kinds)]
            turn += 1
            live = [i for i, (_, p, _) in enumerate(network.miners) if p.poll() is None]
            if killed:  # the miner killed last time comes back
                index = killed.pop()
                directory, _, _ = network.miners[index]
                (directory / "miner.url").unlink(missing_ok=True)
                process = start_miner(directory)
                url = await asyncio.to_thread(wait_for_url, directory, process)
                network.miners[index] = (directory, process, url)
            if kind == "kill" and len(live) > PARAMS.total_shards + 1:
                index = rng.choice(live)
                network.miners[index][1].send_signal(signal.SIGKILL)
                killed.append(index)
            elif kind == "stop":
                process = network.miners[rng.choice(live)][1]
                process.send_signal(signal.SIGSTOP)
                await asyncio.sleep(4)
                process.send_signal(signal.SIGCONT)
            elif kind == "corrupt" and tally.digests:
                fid = rng.choice(list(tally.digests))
                file = await chain.query("file_bank.file", fid=fid)
                if file is None or file["state"] != "active":
                    continue
                fragment = rng.choice(file["segments"][0]["fragments"])
                index = _accounts(network).get(fragment["miner"], -1)
                if index < 0 or network.miners[index][1].poll() is not None:
                    continue
                directory = network.miners[index][0]
                path = (
                    directory
                    / "fragments"
                    / fragment["id"][:2]
                    / fragment["id"][2:4]
                    / fragment["id"]
                )
                with contextlib.suppress(OSError):
                    content = bytearray(path.read_bytes())
                    content[0] ^= 0xFF
                    path.write_bytes(bytes(content))
                    await ChainAccount(chain, USER).call(
                        "audit.challenge_now",
                        miner=fragment["miner"],
                        fid=fid,
                        segment=0,
                        index=fragment["index"],
                    )
            else:
                continue
            tally.fault(kind)
    finally:
        await chain.close()


async def _heal_and_verify(network: Network, tally: Tally) -> int:
    """Waits for the repair backlog of our files to drain; returns the objects lost."""
    chain = HttpChain(network.chain.url)
    try:
        deadline = time.monotonic() + HEAL_TIMEOUT
        while time.monotonic() < deadline:
            orders = await chain.query("file_bank.restoral_orders")
            if not [o for o in orders if o["fid"] in tally.digests]:
                break
            await asyncio.sleep(1)
    finally:
        await chain.close()
    lost = 0
    async with aiohttp.ClientSession() as session:
        for fid, digest in tally.digests.items():
            if await _read(session, network, fid) != digest:
                lost += 1
    return lost


async def _soak(network: Network, minutes: float, every: float, seed: int) -> int:
    await _setup(network)
    rng = random.Random(seed)
    tally = Tally()
    until = time.monotonic() + minutes * 60
    await asyncio.gather(
        _writer(network, tally, until, random.Random(rng.random())),
        _reader(network, tally, until, random.Random(rng.random())),
        _faults(network, tally, until, every, random.Random(rng.random())),
    )
    lost = await _heal_and_verify(network, tally)
    log = (network.gateway_dir / "gateway.log").read_text()
    repairs = log.count("deoss.repair INFO restored")
    print(
        f"soak: {minutes:g} min of load on {MINERS} miners (k={PARAMS.data_shards}, "
        f"n={PARAMS.total_shards})"
    )
    print(f"  objects written      {tally.written}")
    print(f"  reads / verified     {tally.read} / {tally.verified} (during faults)")
    print(f"  objects verified     {len(tally.digests) - lost} of {len(tally.digests)} at the end")
    faults = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.faults.items())) or "none"
    print(f"  faults injected      {faults}")
    print(f"  repairs done         {repairs}")
    print(f"  lost                 {lost}")
    return 1 if lost else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--fault-every", type=float, default=20.0, help="seconds")
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    args = parser.parse_args()
    print(f"soak: seed {args.seed}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as directory,
        running_network(Path(directory), PARAMS, MINERS, 64) as network,
    ):
        status = asyncio.run(_soak(network, args.minutes, args.fault_every, args.seed))
    sys.exit(status)


if __name__ == "__main__":
    main()
