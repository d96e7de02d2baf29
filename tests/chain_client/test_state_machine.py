"""Random sequences of calls on the real SQLite node; the accounting invariants are
checked after every step (every step ends with a block)."""

import hashlib
import random
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from chain_client.keys import Keypair
from chain_client.node import LedgerNode
from chain_client.params import Genesis, dev_params
from tests.chain_client.invariants import check_invariants
from tests.chain_client.sim import (
    FileSpec,
    MinerState,
    Sim,
    build_file,
    idle_answer,
    idle_commitments,
    idle_proofs,
    service_answer,
)


class ChainMachine(RuleBasedStateMachine):
    miners = Bundle("miners")
    owners = Bundle("owners")
    files = Bundle("files")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="deoss-sm-"))
        params = dev_params(
            block_time=0.0,
            deal_report_timeout=4,
            orphan_ttl=50,
            blocks_per_day=6,
            grace_period=6,
            challenge_interval=5,
            challenge_deadline=3,
            era_length=7,
            offline_after=25,
            offline_restoral_delay=10,
            exit_cooldown=3,
        )
        # ed25519 signatures are deterministic (sr25519's are not), and block hashes, hence
        # every random draw, cover the extrinsics: replays must build the same chain.
        self.alice = Keypair.from_seed(hashlib.sha256(b"funder").digest(), "ed25519")
        genesis = Genesis(params=params, dev=True, endowed=((self.alice.address, 10**36),))
        self.node = LedgerNode(self.directory / "chain.db", genesis)
        self.sim = Sim(self.node, deterministic=True)
        # Keys and contents come from fixed seeds too.
        self.rng = random.Random(0)
        self.keys = 0
        self.specs: dict[str, FileSpec] = {}
        self.all_miners: list[MinerState] = []
        self.owner_keys: list[Keypair] = []

    def new_key(self) -> Keypair:
        self.keys += 1
        return Keypair.from_seed(hashlib.sha256(f"key{self.keys}".encode()).digest(), "ed25519")

    def teardown(self) -> None:
        self.node.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @initialize(target=miners, count=st.integers(4, 6))
    def start_network(self, count: int) -> object:
        """Enough miners for files to spread; the rules add more and take them away."""
        started = [MinerState(self.new_key()) for _ in range(count)]
        self.sim.fund(self.alice, *(m.keypair for m in started))
        for miner in started:
            self.sim.add_miner(miner, units=8, declared_units=10, spare_collateral=10**23)
            self.all_miners.append(miner)
        return multiple(*started)

    @invariant()
    def accounting_holds(self) -> None:
        check_invariants(self.node._db)

    @rule(target=miners, units=st.integers(0, 3))
    def register_miner(self, units: int) -> MinerState:
        miner = MinerState(self.new_key())
        self.sim.fund(self.alice, miner.keypair)
        self.sim.add_miner(miner, units=units, declared_units=4)
        self.all_miners.append(miner)
        return miner

    @rule(miner=miners)
    def certify_more(self, miner: MinerState) -> None:
        """Commit one unit, let the beacon block pass, prove it; either step may be refused
        (the miner may be frozen or out of declared space by then)."""
        params = self.sim.params
        record = self.sim.query("sminer.miner", account=miner.keypair.address)
        commitments = idle_commitments(params, miner, record["next_unit"], 1, self.sim.anchor())
        committed = self.sim.run(miner.keypair, "sminer.cert_idle_space", units=commitments)
        if committed.success:
            self.sim.block()
            proofs = idle_proofs(
                params, miner, [record["next_unit"]], self.sim.beacon(committed.height)
            )
            self.sim.run(miner.keypair, "sminer.prove_idle_space", units=proofs)

    @rule(target=owners, days=st.integers(2, 8))
    def mint_territory(self, days: int) -> Keypair:
        owner = self.new_key()
        self.sim.fund(self.alice, owner)
        self.owner_keys.append(owner)
        self.sim.run(owner, "storage_handler.mint_territory", name="t", gib=2, days=days)
        return owner

    @rule(target=files, owner=owners, segments=st.integers(1, 2), data=st.data())
    def declare(self, owner: Keypair, segments: int, data: st.DataObject) -> str:
        return self._declare(owner, segments, data)

    def _declare(self, owner: Keypair, segments: int, data: st.DataObject) -> str:
        positive = [
            m.keypair.address
            for m in self.all_miners
            if self.sim.query("sminer.miner", account=m.keypair.address)["state"] == "positive"
        ]
        if not positive:
            positive = [self.new_key().address]
        chosen = data.draw(st.permutations(positive))
        size = data.draw(
            st.sampled_from(
                [
                    self.sim.params.leaf_size,
                    3 * self.sim.params.leaf_size,
                    self.sim.params.fragment_size,
                ]
            )
        )
        spec = build_file(
            self.sim.params,
            owner=owner.address,
            territory="t",
            key=f"k{len(self.specs)}",
            miners=list(chosen),
            segments=segments,
            fragment_size=size,
            rng=self.rng,
        )
        self.specs[spec.fid] = spec
        self.sim.run(owner, "file_bank.upload_declaration", files=[spec.declaration])
        return spec.fid

    @rule(target=files, owner=owners, data=st.data())
    def store(self, owner: Keypair, data: st.DataObject) -> str:
        """Declare and have every miner report: the common, successful path."""
        fid = self._declare(owner, 1, data)
        file = self.sim.query("file_bank.file", fid=fid)
        if file is not None and file["state"] == "deal":
            for address in sorted({f["miner"] for s in file["segments"] for f in s["fragments"]}):
                miner = next((m for m in self.all_miners if m.keypair.address == address), None)
                if miner is not None:
                    self.sim.submit(miner.keypair, "file_bank.transfer_report", fid=fid)
            self.sim.block()
        return fid

    @rule(fid=files, data=st.data())
    def report(self, fid: str, data: st.DataObject) -> None:
        file = self.sim.query("file_bank.file", fid=fid)
        if file is None or file["state"] != "deal":
            return
        holders = sorted(
            {
                f["miner"]
                for s in file["segments"]
                for f in s["fragments"]
                if f["miner"] and not f["reported"]
            }
        )
        if not holders:
            return
        everyone = data.draw(st.booleans())
        chosen = holders if everyone else data.draw(st.lists(st.sampled_from(holders), unique=True))
        for address in chosen:
            miner = next(m for m in self.all_miners if m.keypair.address == address)
            self.sim.submit(miner.keypair, "file_bank.transfer_report", fid=fid)
        self.sim.block()

    @rule(fid=files, miner=miners)
    def reassign(self, fid: str, miner: MinerState) -> None:
        file = self.sim.query("file_bank.file", fid=fid)
        if file is None or file["state"] != "deal":
            return
        owner = file["refs"][0]["owner"] if file["refs"] else None
        for segment, entry in enumerate(file["segments"]):
            for fragment in entry["fragments"]:
                if fragment["miner"] is None and owner is not None:
                    signer = next((k for k in self.owner_keys if k.address == owner), None)
                    if signer is not None:
                        self.sim.run(
                            signer,
                            "file_bank.reassign_fragment",
                            fid=fid,
                            segment=segment,
                            index=fragment["index"],
                            miner=miner.keypair.address,
                        )
                    return

    @rule(fid=consumes(files))
    def delete(self, fid: str) -> None:
        spec = self.specs[fid]
        owner = next((k for k in self.owner_keys if k.address == spec.declaration["owner"]), None)
        if owner is not None:
            self.sim.run(
                owner, "file_bank.delete_file", owner=owner.address, key=spec.declaration["key"]
            )

    @rule(blocks=st.integers(1, 12))
    def advance(self, blocks: int) -> None:
        self.sim.blocks(blocks)

    @rule(miner=miners)
    def challenge(self, miner: MinerState) -> None:
        self.sim.run(self.alice, "audit.challenge_now", miner=miner.keypair.address)

    @rule(miner=miners, honest=st.booleans())
    def answer(self, miner: MinerState, honest: bool) -> None:
        for challenge in self.sim.query("audit.challenges", miner=miner.keypair.address):
            fragments = {
                fid: data for spec in self.specs.values() for fid, data in spec.fragments.items()
            }
            if not honest:
                fragments = {fid: bytes(len(data)) for fid, data in fragments.items()}
            if challenge["service_status"] == "open":
                self.sim.run(
                    miner.keypair,
                    "audit.submit_service_proof",
                    challenge_id=challenge["id"],
                    proofs=service_answer(self.sim.params, challenge, fragments),
                )
            if challenge["idle_status"] == "open" and honest:
                self.sim.run(
                    miner.keypair,
                    "audit.submit_idle_proof",
                    challenge_id=challenge["id"],
                    proofs=idle_answer(self.sim.params, challenge, miner),
                )

    @rule(miner=miners)
    def replace_idle(self, miner: MinerState) -> None:
        record = self.sim.query("sminer.miner", account=miner.keypair.address)
        owed = record["pending_replacement"] // self.sim.params.idle_unit_size
        units = self.sim.query("sminer.idle_units", account=miner.keypair.address)
        if owed and units:
            chosen = [u["unit_index"] for u in units[:owed]]
            self.sim.run(miner.keypair, "sminer.replace_idle_space", unit_indices=chosen)

    @rule(miner=miners)
    def heartbeat(self, miner: MinerState) -> None:
        self.sim.run(miner.keypair, "sminer.heartbeat")

    @rule(miner=miners, dice=st.integers(0, 3))
    def exit(self, miner: MinerState, dice: int) -> None:
        if dice == 0:  # rarely: an exit takes a miner away for good
            self.sim.run(miner.keypair, "sminer.exit")


ChainMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=50, deadline=None)
TestChainStateMachine = ChainMachine.TestCase
