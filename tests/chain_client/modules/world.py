"""A small network on a real ledger node for the module tests: an owner with a territory,
a registered gateway it authorized, and six miners with certified idle space."""

from dataclasses import dataclass

from chain_client.keys import Keypair
from tests.chain_client.invariants import check_invariants
from tests.chain_client.sim import (
    FileSpec,
    MinerState,
    Sim,
    build_file,
)

__all__ = ["World"]


@dataclass
class World:
    sim: Sim
    owner: Keypair
    gateway: Keypair
    miners: list[MinerState]

    @property
    def addresses(self) -> list[str]:
        return [m.keypair.address for m in self.miners]

    def miner(self, address: str) -> MinerState:
        return next(m for m in self.miners if m.keypair.address == address)

    def declare(self, key: str = "obj", *, miners: list[str] | None = None) -> FileSpec:
        spec = build_file(
            self.sim.params,
            owner=self.owner.address,
            territory="home",
            key=key,
            miners=miners or self.addresses,
        )
        result = self.sim.ok(self.gateway, "file_bank.upload_declaration", files=[spec.declaration])
        assert result.events_named("file_bank", "UploadDeclaration"), result.events
        return spec

    def report_all(self, spec: FileSpec) -> None:
        miners = {f["miner"] for s in spec.declaration["segments"] for f in s["fragments"]}
        for address in sorted(miners):
            self.sim.submit(self.miner(address).keypair, "file_bank.transfer_report", fid=spec.fid)
        self.sim.block()

    def check(self) -> None:
        check_invariants(self.sim.node._db)
