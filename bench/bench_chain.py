"""How fast the ledger node applies extrinsics: a mix of upload declarations and the
miners' transfer reports that complete them, on the real SQLite node.

Prints admitted/s (signature and argument checks into the pool), applied/s (block
production: dispatch, savepoints, hooks, commit) and the end-to-end rate.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair, dev_keypair
from chain_client.node import LedgerNode
from chain_client.params import MIB, Genesis, dev_params
from tests.chain_client.sim import MinerState, Sim, build_file


def run(files: int, miners: int, scheme: str) -> None:
    params = dev_params(
        block_time=0.0,
        idle_unit_size=MIB,
        max_block_extrinsics=5000,
        deal_report_timeout=1000,
        orphan_ttl=2000,
        challenge_interval=10**6,
        offline_after=10**6,
        blocks_per_day=10**6,
    )
    with tempfile.TemporaryDirectory() as tmp:
        node = LedgerNode(Path(tmp) / "chain.db", Genesis(params=params, dev=True))
        sim = Sim(node)
        alice = dev_keypair("Alice")
        owner = Keypair.generate(scheme)  # type: ignore[arg-type]
        workers = [MinerState(Keypair.generate(scheme)) for _ in range(miners)]  # type: ignore[arg-type]
        sim.fund(alice, owner, *(m.keypair for m in workers))
        per_miner = files * params.total_shards * params.leaf_size // miners + MIB
        units = -(-per_miner // params.idle_unit_size)
        for miner in workers:
            sim.add_miner(miner, units=units)
        sim.ok(
            owner,
            "storage_handler.mint_territory",
            name="bench",
            gib=files * params.total_shards * params.leaf_size // params.territory_unit + 1,
            days=1,
        )
        addresses = [m.keypair.address for m in workers]
        genesis = node.genesis_hash
        declarations = []
        holders: list[list[Keypair]] = []
        for number in range(files):
            spec = build_file(
                params,
                owner=owner.address,
                territory="bench",
                key=f"k{number}",
                miners=addresses[number % miners :] + addresses[: number % miners],
                fragment_size=params.leaf_size,
            )
            declarations.append(spec)
            fragment_miners = {f["miner"] for f in spec.declaration["segments"][0]["fragments"]}
            holders.append([m.keypair for m in workers if m.keypair.address in fragment_miners])
        nonce = {
            k.address: node.next_nonce(k.address) for k in [owner, *(m.keypair for m in workers)]
        }

        def sign(signer: Keypair, call: str, args: dict[str, object]) -> Extrinsic:
            extrinsic = Extrinsic.sign(signer, genesis, call, args, nonce[signer.address])
            nonce[signer.address] += 1
            return extrinsic

        batches = [
            [
                sign(owner, "file_bank.upload_declaration", {"files": [spec.declaration]})
                for spec in declarations
            ],
            [
                sign(keypair, "file_bank.transfer_report", {"fid": spec.fid})
                for spec, keys in zip(declarations, holders, strict=True)
                for keypair in keys
            ],
        ]
        admit_seconds = apply_seconds = 0.0
        applied = failed = 0
        for batch in batches:
            started = time.perf_counter()
            for extrinsic in batch:
                node.submit(extrinsic)
            admit_seconds += time.perf_counter() - started
            started = time.perf_counter()
            while node.pool_size():
                result = node.produce_block()
                applied += sum(r.success for r in result.results)
                failed += sum(not r.success for r in result.results)
            apply_seconds += time.perf_counter() - started
        active = node.query("file_bank.objects", {"owner": owner.address, "limit": 10})
        node.close()
    total = sum(len(b) for b in batches)
    if failed or len(active) != min(files, 10):
        raise SystemExit(f"benchmark extrinsics must all succeed ({failed} failed)")
    print(
        f"chain: {files} declarations + {total - files} transfer reports ({scheme}), "
        f"{miners} miners"
    )
    print(
        f"chain admit (verify signature, args, nonce): {total / admit_seconds:10.0f} extrinsics/s"
    )
    print(
        f"chain apply (blocks: dispatch, savepoints, hooks, commit): "
        f"{applied / apply_seconds:10.0f} extrinsics/s"
    )
    print(f"chain end to end: {total / (admit_seconds + apply_seconds):10.0f} extrinsics/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--miners", type=int, default=8)
    parser.add_argument("--scheme", choices=["sr25519", "ed25519"], default="sr25519")
    args = parser.parse_args()
    run(args.files, args.miners, args.scheme)


if __name__ == "__main__":
    main()
