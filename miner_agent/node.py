"""``MinerNode``: what the miner's HTTP service and its chain loops share."""

import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chain_client.account import ChainAccount
from chain_client.keys import Keypair
from chain_client.params import NetworkParams
from chain_client.protocol import Chain
from miner_agent.config import MinerConfig
from miner_agent.store import MinerStore

__all__ = ["MinerMetrics", "MinerNode"]

log = logging.getLogger("deoss-miner")


@dataclass
class MinerMetrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.requests = Counter(
            "deoss_miner_requests", "HTTP requests by outcome", ["outcome"], registry=self.registry
        )
        self.bytes_in = Counter(
            "deoss_miner_fragment_bytes_in", "Fragment bytes stored", registry=self.registry
        )
        self.bytes_out = Counter(
            "deoss_miner_fragment_bytes_out", "Fragment bytes served", registry=self.registry
        )
        self.proofs = Counter(
            "deoss_miner_proofs", "Challenge proofs submitted", ["kind"], registry=self.registry
        )


class _StateCollector(Collector):
    def __init__(self, node: "MinerNode") -> None:
        self.node = node

    def collect(self) -> Any:
        store = self.node.store
        for name, value, text in (
            ("deoss_miner_best_block", self.node.best_block, "Best block seen"),
            ("deoss_miner_fragments", len(store.fragments()), "Fragments held"),
            ("deoss_miner_fragment_bytes", store.fragment_bytes(), "Bytes of fragments held"),
            ("deoss_miner_idle_units", len(store.idle_units()), "Idle units on disk"),
            ("deoss_miner_free_bytes", store.free_bytes(), "Free disk bytes (probe)"),
        ):
            yield GaugeMetricFamily(name, text, value=value)


class MinerNode:
    def __init__(
        self,
        *,
        config: MinerConfig,
        keypair: Keypair,
        chain: Chain,
        params: NetworkParams,
        store: MinerStore,
    ) -> None:
        self.config = config
        self.keypair = keypair
        self.chain = chain
        self.params = params
        self.store = store
        self.account = ChainAccount(chain, keypair)
        self.best_block = 0
        self.metrics = MinerMetrics()
        self.metrics.registry.register(_StateCollector(self))
        # Fragments found corrupt while serving; the chain loop drops and reports them.
        self.corrupt: set[str] = set()

    @property
    def address(self) -> str:
        return self.keypair.address

    def on_corrupt(self, fragment_id: str) -> None:
        if fragment_id:
            log.warning("fragment %s failed its bitrot check", fragment_id)
            self.corrupt.add(fragment_id)
