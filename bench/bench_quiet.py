"""What an idle network costs: the CPU of a devnet-shaped network doing nothing.

Starts, under a temporary directory, what ``deoss devnet`` starts (gateway.devnet): a
chain node with the devnet's parameters and 1 s blocks, 14 miners and the gateway, each
miner declaring a little space so that idle filling is over in seconds. Once every
miner has certified all it declared, and a settling pause has passed, it reads each
process's CPU time (utime + stime, ``/proc/<pid>/stat``) at the start and the end of a
quiet window and prints each role's share of one core, the total, and the target:
under 5 % of one core for the whole network (issue 14).

    python bench/bench_quiet.py [--seconds 60] [--dir DIR]
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chain_client.files import write_atomically
from chain_client.params import MIB, Genesis, devnet_params
from chain_client.rpc_client import HttpChain
from gateway.devnet import (
    _wait_for_blocks,
    start_chain_process,
    start_gateway_process,
    start_miner_process,
    stop_process,
)

MINERS = 14
BLOCK_TIME = 1.0
DECLARED = 8 * MIB  # per miner: eight of the devnet's 1 MiB idle units
DISK_FLOOR = 256 * MIB
SETTLE_SECONDS = 15.0
TARGET_PERCENT = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far (fields 14 and 15 of /proc/pid/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _certified(chain_url: str, wanted: int, timeout: float = 600.0) -> None:
    chain = HttpChain(chain_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            miners = await chain.query("sminer.miners", state="positive")
            if len(miners) == MINERS and all(m["certified"] >= wanted for m in miners):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_quiet: the miners did not certify {wanted} bytes")
            await asyncio.sleep(1.0)
    finally:
        await chain.close()


async def measure(root: Path, seconds: float) -> dict[str, float]:
    processes: dict[str, list[subprocess.Popen[bytes]]] = {"chain": [], "miners": [], "gateway": []}
    try:
        genesis = root / "genesis.json"
        params = devnet_params(block_time=BLOCK_TIME)
        write_atomically(genesis, json.dumps(Genesis(params=params, dev=True).to_json()))
        chain = await start_chain_process(
            root / "chain",
            block_time=BLOCK_TIME,
            log_file=root / "chain.log",
            extra=("--genesis", str(genesis)),
        )
        processes["chain"].append(chain.process)
        await _wait_for_blocks(chain.url, 1, timeout=10.0)
        miners = await asyncio.gather(
            *(
                start_miner_process(
                    root / f"miner{n}",
                    chain.url,
                    declared_space=DECLARED,
                    free_disk_floor=DISK_FLOOR,
                    log_file=root / f"miner{n}.log",
                )
                for n in range(MINERS)
            )
        )
        processes["miners"] += [m.process for m in miners]
        gateway, _, _ = await start_gateway_process(
            root / "gateway", chain.url, root / "gateway.log"
        )
        processes["gateway"].append(gateway)
        await _certified(chain.url, DECLARED)
        await asyncio.sleep(SETTLE_SECONDS)
        before = {role: sum(cpu_seconds(p.pid) for p in group) for role, group in processes.items()}
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        after = {role: sum(cpu_seconds(p.pid) for p in group) for role, group in processes.items()}
        return {role: 100 * (after[role] - before[role]) / elapsed for role in processes}
    finally:
        for group in processes.values():
            for process in group:
                stop_process(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, default=None, help="keep the network here")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="deoss-quiet-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        shares = asyncio.run(measure(root, args.seconds))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    total = sum(shares.values())
    print(f"idle network, {args.seconds:.0f} s, share of one core:")
    for role, share in shares.items():
        each = f" ({share / MINERS:.2f} % each)" if role == "miners" else ""
        print(f"  {role:<8} {share:6.2f} %{each}")
    verdict = "meets" if total < TARGET_PERCENT else "misses"
    print(f"  {'total':<8} {total:6.2f} %  ({verdict} the target of < {TARGET_PERCENT:.0f} %)")


if __name__ == "__main__":
    main()
