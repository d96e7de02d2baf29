"""Repair figures: the time to restore full redundancy after one miner is lost, and the
repair throughput, on the fault suite's small network of real processes (k = 2, n = 4,
7 miners, 64 KiB fragments, 0.25 s blocks).

It stores ``--megabytes`` of objects, kills the miner holding the most fragments, and
measures from the kill until every fragment of every object is available again on a live
miner, apart from its segment's others. That time includes detection: the chain calls a
silent miner offline after ``offline_after`` blocks and orders its fragments restored
``offline_restoral_delay`` blocks later (20 blocks, 5 s here). Throughput is the
fragment bytes rebuilt over the time from the first restored fragment to the last.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/

from chain_client.params import KIB, MIB
from chain_client.rpc_client import HttpChain
from tests.e2e.faults.test_faults import MINERS, PARAMS
from tests.e2e.gateway_network import S3_TERRITORY, Network, running_network, signed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import _setup

MB = 10**6
RESTORED = re.compile(r"^(\S+ \S+) deoss\.repair INFO restored (\w+)/(\d+)/(\d+) onto", re.M)


async def _store(network: Network, total: int) -> list[str]:
    fids = []
    async with aiohttp.ClientSession() as session:
        for number in range(-(-total // (256 * KIB))):
            async with session.put(
                f"{network.url}/object/repair/{number}",
                data=os.urandom(256 * KIB),
                headers=signed({"Territory": S3_TERRITORY}),
            ) as response:
                answer = await response.json()
                if response.status != 200:
                    raise SystemExit(f"bench_repair: upload refused: {answer}")
                fids.append(answer["data"]["fid"])
    return fids


async def _measure(network: Network, total: int) -> None:
    await _setup(network)
    fids = await _store(network, total)
    chain = HttpChain(network.chain.url)
    try:
        while True:  # every deal complete: fragments reported and active
            files = [await chain.query("file_bank.file", fid=fid) for fid in fids]
            if all(f and f["state"] == "active" for f in files):
                break
            await asyncio.sleep(0.5)
        held = Counter(
            fragment["miner"] for f in files for s in f["segments"] for fragment in s["fragments"]
        )
        victim, count = held.most_common(1)[0]
        for directory, process, _ in network.miners:
            if json.loads((directory / "key.json").read_text())["address"] == victim:
                process.send_signal(signal.SIGKILL)
        killed = time.time()
        while True:
            files = [await chain.query("file_bank.file", fid=fid) for fid in fids]
            done = all(
                fragment["avail"] and fragment["miner"] != victim
                for f in files
                for s in f["segments"]
                for fragment in s["fragments"]
            ) and all(
                len({x["miner"] for x in s["fragments"]}) == len(s["fragments"])
                for f in files
                for s in f["segments"]
            )
            if done:
                break
            if time.time() - killed > 600:
                raise SystemExit("bench_repair: redundancy did not come back in 10 minutes")
            await asyncio.sleep(0.25)
        restored_at = time.time()
    finally:
        await chain.close()
    log = (network.gateway_dir / "gateway.log").read_text()
    moments = [
        datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in RESTORED.finditer(log)
    ]
    rebuilt = count * PARAMS.fragment_size  # at most: a short last fragment is smaller
    width = 44
    print(
        f"repair: {MINERS} miners, k={PARAMS.data_shards} n={PARAMS.total_shards}, "
        f"{PARAMS.fragment_size // KIB} KiB fragments, {PARAMS.block_time} s blocks",
        flush=True,
    )
    print(f"{'objects stored':<{width}}: {total / MIB:7.1f} MiB in {len(fids)} objects")
    print(f"{'fragments on the lost miner':<{width}}: {count:7d}")
    print(f"{'time to full redundancy after the loss':<{width}}: {restored_at - killed:7.1f} s")
    if len(moments) >= 2:
        span = max(moments) - min(moments)
        print(
            f"{'repair throughput (first to last restore)':<{width}}: "
            f"{rebuilt / max(span, 1e-3) / MB:7.2f} MB/s ({len(moments)} fragments)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--megabytes", type=float, default=4.0, help="objects to store")
    args = parser.parse_args()
    total = int(args.megabytes * MIB)
    with (
        tempfile.TemporaryDirectory(prefix="bench-repair-") as directory,
        running_network(Path(directory), PARAMS, MINERS, 256) as network,
    ):
        asyncio.run(_measure(network, total))


if __name__ == "__main__":
    main()
