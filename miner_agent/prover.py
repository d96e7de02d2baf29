"""Answers to storage challenges: the sampled leaves with their Merkle paths, read from
disk and checked against the stored hashes. A leaf the miner cannot produce is left out,
which the chain counts as a failed item (an honest answer beats a missed deadline)."""

from typing import Any

from chain_client.idle_proofs import LeafOpening
from chain_client.merkle import MerkleTree
from miner_agent.store import MinerStore, StoreError

__all__ = ["idle_answer", "service_answer"]


def service_answer(
    store: MinerStore, challenge: dict[str, Any]
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """Openings per service item, and the fragment ids this miner could not prove."""
    answer: list[list[dict[str, Any]]] = []
    lost: list[str] = []
    for item in challenge["service_items"]:
        fragment_id = item["fragment_id"]
        try:
            tree = MerkleTree(store.fragment_leaf_hashes(fragment_id))
            openings = [
                LeafOpening(
                    index=leaf,
                    leaf=store.read_fragment_leaf(fragment_id, leaf),
                    path=tuple(tree.path(leaf)),
                ).to_json()
                for leaf in item["leaves"]
            ]
        except (StoreError, OSError):
            lost.append(fragment_id)
            openings = []
        answer.append(openings)
    return answer, lost


def idle_answer(store: MinerStore, challenge: dict[str, Any]) -> list[list[dict[str, Any]]]:
    answer: list[list[dict[str, Any]]] = []
    for item in challenge["idle_items"]:
        unit, leaf = item["unit_index"], item["leaf"]
        try:
            tree = MerkleTree(store.idle_leaf_hashes(unit))
            opening = LeafOpening(
                index=leaf, leaf=store.read_idle_leaf(unit, leaf), path=tuple(tree.path(leaf))
            )
            answer.append([opening.to_json()])
        except (StoreError, OSError):
            answer.append([])
    return answer
