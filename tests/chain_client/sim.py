"""Test drivers for the chain: a synchronous one over ``LedgerNode`` and builders for
the things tests declare (miners with certified idle space, files with real fragments).
"""

import os
import random
from dataclasses import dataclass, field
from typing import Any

from chain_client.errors import ExtrinsicFailed
from chain_client.extrinsic import Extrinsic
from chain_client.idle import IdleUnit, generate_unit, idle_seed
from chain_client.idle_proofs import cert_challenges, prove_certification, prove_leaf
from chain_client.keys import Keypair
from chain_client.merkle import MerkleTree, file_id, merkle_root, segment_id
from chain_client.node import BlockResult, LedgerNode
from chain_client.params import NetworkParams
from chain_client.protocol import ExtrinsicResult

__all__ = [
    "FileSpec",
    "MinerState",
    "Sim",
    "build_file",
    "idle_answer",
    "idle_commitments",
    "idle_proofs",
    "service_answer",
]


@dataclass
class MinerState:
    """What a test miner keeps: its key and the idle units it generated."""

    keypair: Keypair
    units: dict[int, IdleUnit] = field(default_factory=dict)


def idle_commitments(
    params: NetworkParams, miner: MinerState, first_index: int, count: int, anchor: tuple[int, str]
) -> list[dict[str, Any]]:
    """Generates ``count`` idle units from ``first_index`` on; returns what step 1
    (``sminer.cert_idle_space``) commits."""
    spec = params.idle_spec()
    height, block_hash = anchor
    commitments = []
    for index in range(first_index, first_index + count):
        seed = idle_seed(miner.keypair.public_key, index, bytes.fromhex(block_hash[2:]))
        unit = generate_unit(spec, seed)
        miner.units[index] = unit
        commitments.append(
            {"anchor_height": height, "layer_roots": [root.hex() for root in unit.layer_roots]}
        )
    return commitments


def idle_proofs(
    params: NetworkParams, miner: MinerState, indices: list[int], beacon: bytes
) -> list[dict[str, Any]]:
    """What step 2 (``sminer.prove_idle_space``) sends for units committed before the
    block whose randomness is ``beacon``."""
    spec = params.idle_spec()
    result = []
    for index in indices:
        unit = miner.units[index]
        challenges = cert_challenges(
            beacon,
            unit.layer_roots,
            miner.keypair.public_key,
            index,
            params.idle_cert_samples,
            spec.leaf_count,
        )
        proofs = prove_certification(spec, unit, challenges)
        result.append({"unit_index": index, "proofs": [proof.to_json() for proof in proofs]})
    return result


@dataclass
class FileSpec:
    declaration: dict[str, Any]
    fragments: dict[str, bytes]  # fragment id -> content

    @property
    def fid(self) -> str:
        return str(self.declaration["fid"])


def build_file(
    params: NetworkParams,
    *,
    owner: str,
    territory: str,
    key: str,
    miners: list[str],
    segments: int = 1,
    fragment_size: int | None = None,
    total_shards: int | None = None,
    rng: random.Random | None = None,
) -> FileSpec:
    """A declaration with random fragment contents whose ids are their real Merkle roots,
    placed round-robin on ``miners`` (distinct within a segment when there are enough)."""
    size = fragment_size or params.fragment_size
    n = total_shards or params.total_shards
    fragments: dict[str, bytes] = {}
    declared_segments = []
    segment_ids = []
    for number in range(segments):
        entries: list[dict[str, Any]] = []
        for index in range(n):
            data = rng.randbytes(size) if rng else os.urandom(size)
            fragment_id = merkle_root(data, params.leaf_size).hex()
            fragments[fragment_id] = data
            miner = miners[(number + index) % len(miners)]
            entries.append({"id": fragment_id, "miner": miner, "size": size})
        declared_segments.append({"fragments": entries})
        segment_ids.append(segment_id([bytes.fromhex(e["id"]) for e in entries]))
    declaration = {
        "owner": owner,
        "territory": territory,
        "key": key,
        "fid": file_id(segment_ids),
        "size": size * params.data_shards * segments,
        "data_shards": params.data_shards,
        "total_shards": n,
        "segments": declared_segments,
        "sealed_meta": "c2VhbGVk",
    }
    return FileSpec(declaration, fragments)


def service_answer(
    params: NetworkParams, challenge: dict[str, Any], fragments: dict[str, bytes]
) -> list[list[dict[str, Any]]]:
    answer = []
    for item in challenge["service_items"]:
        data = fragments[item["fragment_id"]]
        tree = MerkleTree.from_data(data, params.leaf_size)
        answer.append(
            [prove_leaf(tree, data, params.leaf_size, leaf).to_json() for leaf in item["leaves"]]
        )
    return answer


def idle_answer(
    params: NetworkParams, challenge: dict[str, Any], miner: MinerState
) -> list[list[dict[str, Any]]]:
    answer = []
    for item in challenge["idle_items"]:
        data = miner.units[item["unit_index"]].data
        tree = MerkleTree.from_data(data, params.leaf_size)
        answer.append([prove_leaf(tree, data, params.leaf_size, item["leaf"]).to_json()])
    return answer


class Sim:
    """Signs and submits synchronously on a node, producing blocks by hand."""

    def __init__(self, node: LedgerNode, *, deterministic: bool = False) -> None:
        self.node = node
        self.params = node.params
        # Block hashes (hence randomness) cover the timestamp; a fixed clock replays alike.
        self.deterministic = deterministic

    def submit(self, signer: Keypair, call: str, /, **args: Any) -> str:
        nonce = self.node.next_nonce(signer.address)
        extrinsic = Extrinsic.sign(signer, self.node.genesis_hash, call, args, nonce)
        return self.node.submit(extrinsic)

    def block(self) -> BlockResult:
        return self.node.produce_block(0.0 if self.deterministic else None)

    def blocks(self, count: int) -> None:
        for _ in range(count):
            self.block()

    def run(self, signer: Keypair, call: str, /, **args: Any) -> ExtrinsicResult:
        tx_hash = self.submit(signer, call, **args)
        block = self.block()
        return next(r for r in block.results if r.hash == tx_hash)

    def ok(self, signer: Keypair, call: str, /, **args: Any) -> ExtrinsicResult:
        result = self.run(signer, call, **args)
        if not result.success:
            raise ExtrinsicFailed(call, result.hash, result.error or "")
        return result

    def fails(self, signer: Keypair, call: str, error: str, /, **args: Any) -> ExtrinsicResult:
        result = self.run(signer, call, **args)
        assert not result.success, f"{call} succeeded; expected {error}"
        assert result.error is not None and result.error.split(":")[0] == error, result.error
        return result

    def query(self, name: str, /, **args: Any) -> Any:
        return self.node.query(name, args)

    def anchor(self) -> tuple[int, str]:
        return self.node.best()

    def fund(self, funder: Keypair, *accounts: Keypair) -> None:
        for account in accounts:
            self.submit(funder, "balances.faucet", dest=account.address)
        self.block()

    def add_miner(
        self,
        miner: MinerState,
        *,
        units: int,
        declared_units: int | None = None,
        spare_collateral: int = 0,
    ) -> None:
        params = self.params
        declared = (declared_units or units) * params.idle_unit_size
        collateral = self.query("sminer.collateral_limit", space=declared) + spare_collateral
        self.ok(
            miner.keypair,
            "sminer.register",
            endpoint="http://127.0.0.1:1",
            declared_space=declared,
            collateral=collateral,
        )
        if units:
            self.certify(miner, units)

    def beacon(self, committed_at: int) -> bytes:
        block = self.node.block(committed_at + 1)
        assert block is not None, "the beacon block is not made yet"
        return bytes.fromhex(block["randomness"][2:])

    def certify(self, miner: MinerState, count: int) -> ExtrinsicResult:
        """Both steps: commit the units, let the beacon block pass, prove them."""
        record = self.query("sminer.miner", account=miner.keypair.address)
        first = record["next_unit"]
        commitments = idle_commitments(self.params, miner, first, count, self.anchor())
        committed = self.ok(miner.keypair, "sminer.cert_idle_space", units=commitments)
        self.block()
        proofs = idle_proofs(
            self.params, miner, list(range(first, first + count)), self.beacon(committed.height)
        )
        return self.ok(miner.keypair, "sminer.prove_idle_space", units=proofs)
