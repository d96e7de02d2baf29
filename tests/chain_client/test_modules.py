"""The modules' rules, through whole flows on a real node: territories, miners and their
space classes, deals, deletion, timeouts, challenges, penalties, rewards, restoral."""

import base64
from dataclasses import dataclass
from typing import Any

import pytest

from chain_client.keys import Keypair
from chain_client.params import NetworkParams, dev_params
from chain_client.receipt import sign_receipt
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


@pytest.fixture
def params() -> NetworkParams:
    """Random challenges and absence would make these flows' outcomes depend on timing;
    the tests that want them ask for them (``challenge_now``, ``offline_after``)."""
    return dev_params(block_time=0.0, challenge_interval=1000, offline_after=100)


@pytest.fixture
def world(sim: Sim, alice: Keypair) -> World:
    owner, gateway = Keypair.generate(), Keypair.generate()
    miners = [MinerState(Keypair.generate()) for _ in range(6)]
    sim.fund(alice, owner, gateway, *(m.keypair for m in miners))
    for miner in miners:
        sim.add_miner(miner, units=4, declared_units=8)
    sim.ok(gateway, "oss.register", endpoint="http://127.0.0.1:8080")
    sim.ok(owner, "oss.authorize", gateway=gateway.address)
    sim.ok(owner, "storage_handler.mint_territory", name="home", gib=4, days=5)
    result = World(sim, owner, gateway, miners)
    result.check()
    return result


def test_miner_space_classes_follow_a_deal(world: World) -> None:
    sim, params = world.sim, world.sim.params
    unit, size = params.idle_unit_size, params.fragment_size
    spec = world.declare()
    first = sim.query("sminer.miner", account=world.addresses[0])
    assert (first["idle"], first["locked"], first["service"]) == (4 * unit - size, size, 0)
    territory = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    stored = size * params.total_shards
    assert (territory["locked"], territory["used"]) == (stored, 0)
    world.check()

    world.report_all(spec)
    file = sim.query("file_bank.file", fid=spec.fid)
    assert file["state"] == "active"
    first = sim.query("sminer.miner", account=world.addresses[0])
    assert (first["idle"], first["locked"], first["service"]) == (4 * unit - size, 0, size)
    assert first["pending_replacement"] == size
    territory = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    assert (territory["locked"], territory["used"], territory["remaining"]) == (
        0,
        stored,
        4 * params.territory_unit - stored,
    )
    world.check()


def test_a_declaration_names_the_miners_that_owe_reports(world: World) -> None:
    sim = world.sim
    chosen = world.addresses[1:5]
    spec = build_file(
        sim.params, owner=world.owner.address, territory="home", key="obj", miners=chosen
    )

    def declare() -> dict[str, Any]:
        result = sim.ok(world.gateway, "file_bank.upload_declaration", files=[spec.declaration])
        (event,) = result.events_named("file_bank", "UploadDeclaration") or result.events_named(
            "file_bank", "AlreadyDeclared"
        )
        return event

    owed = {
        address: [
            f["id"]
            for s in spec.declaration["segments"]
            for f in s["fragments"]
            if f["miner"] == address
        ]
        for address in sorted(chosen)
    }
    assert declare()["miners"] == owed  # not the two miners left out
    sim.ok(world.miner(chosen[0]).keypair, "file_bank.transfer_report", fid=spec.fid)
    del owed[chosen[0]]
    assert declare()["miners"] == owed  # a retried batch: who still owes
    for address in chosen[1:]:
        sim.ok(world.miner(address).keypair, "file_bank.transfer_report", fid=spec.fid)
    assert sim.query("file_bank.file", fid=spec.fid)["state"] == "active"
    assert declare()["miners"] == {}  # nobody


def test_reports_in_one_extrinsic_stand_alone(world: World) -> None:
    sim = world.sim
    holders = world.addresses[: sim.params.total_shards]
    first, second = world.declare("a", miners=holders), world.declare("b", miners=holders)
    stranger = "ab" * 32
    for address in holders:
        held = [first.fid, stranger, second.fid, first.fid]  # a fid twice counts once
        result = sim.ok(world.miner(address).keypair, "file_bank.transfer_reports", fids=held)
        refused = result.events_named("file_bank", "TransferReportRefused")
        assert [(e["fid"], e["reason"].split(":")[0]) for e in refused] == [
            (stranger, "file_bank.NoSuchDeal")
        ], refused
    for spec in (first, second):
        assert sim.query("file_bank.file", fid=spec.fid)["state"] == "active"
    too_many = [first.fid] * (sim.params.max_files_per_declaration + 1)
    miner = world.miner(world.addresses[0]).keypair
    sim.fails(miner, "file_bank.transfer_reports", "file_bank.BadBatch", fids=too_many)
    world.check()


def test_idle_replacement_settles_owed_space(world: World) -> None:
    sim, params = world.sim, world.sim.params
    unit = params.idle_unit_size
    # Fill one miner's whole unit worth of fragments so it owes a whole unit.
    per_unit = unit // params.fragment_size
    specs = [world.declare(f"k{i}", miners=world.addresses) for i in range(per_unit)]
    for spec in specs:
        world.report_all(spec)
    miner = world.miners[0]
    record = sim.query("sminer.miner", account=miner.keypair.address)
    assert record["pending_replacement"] >= unit
    sim.ok(miner.keypair, "sminer.replace_idle_space", unit_indices=[0])
    after = sim.query("sminer.miner", account=miner.keypair.address)
    assert after["pending_replacement"] == record["pending_replacement"] - unit
    assert after["certified"] == record["certified"] - unit
    sim.fails(
        miner.keypair, "sminer.replace_idle_space", "sminer.NothingToReplace", unit_indices=[1]
    )
    world.check()


def test_declaration_checks(world: World) -> None:
    sim = world.sim
    good = build_file(
        sim.params, owner=world.owner.address, territory="home", key="a", miners=world.addresses
    ).declaration
    cases = {
        "file_bank.FidMismatch": {**good, "fid": "00" * 32},
        "file_bank.BadRedundancy": {**good, "total_shards": 3},
        "file_bank.NoSuchTerritory": {**good, "territory": "nope"},
        "file_bank.MinersNotDistinct": {
            **good,
            "segments": [
                {
                    "fragments": [
                        {**f, "miner": world.addresses[0]} for f in good["segments"][0]["fragments"]
                    ]
                }
            ],
        },
    }
    for reason, declaration in cases.items():
        result = sim.ok(world.gateway, "file_bank.upload_declaration", files=[declaration])
        refused = result.events_named("file_bank", "DeclarationRefused")
        assert refused and refused[0]["reason"].startswith(reason), (reason, refused)
    stranger = Keypair.generate()
    sim.fund(world.owner, stranger)
    result = sim.ok(stranger, "file_bank.upload_declaration", files=[good])
    assert result.events_named("file_bank", "DeclarationRefused")[0]["reason"].startswith(
        "file_bank.NotAuthorized"
    )
    # A batch: the bad file is refused, the good one applies.
    batch = sim.ok(
        world.gateway, "file_bank.upload_declaration", files=[{**good, "fid": "11" * 32}, good]
    )
    assert len(batch.events_named("file_bank", "DeclarationRefused")) == 1
    assert len(batch.events_named("file_bank", "UploadDeclaration")) == 1
    again = sim.ok(world.gateway, "file_bank.upload_declaration", files=[good])
    assert again.events_named("file_bank", "AlreadyDeclared")
    # The same reference with new metadata (a copy onto itself): only its sealed copy moves.
    before = sim.query("file_bank.object", owner=good["owner"], key=good["key"])
    resealed = {**good, "sealed_meta": base64.b64encode(b"new metadata").decode()}
    sim.ok(world.gateway, "file_bank.upload_declaration", files=[resealed])
    after = sim.query("file_bank.object", owner=good["owner"], key=good["key"])
    assert after["sealed_meta"] == resealed["sealed_meta"] != before["sealed_meta"]
    assert after["charged"] == before["charged"]
    world.check()


def test_territory_quota_and_idle_space_are_enforced(world: World) -> None:
    sim = world.sim
    # A miner without idle space left refuses the declaration with a clear reason.
    poor = MinerState(Keypair.generate())
    sim.fund(world.owner, poor.keypair)
    sim.add_miner(poor, units=0, declared_units=1)
    spec = build_file(
        sim.params,
        owner=world.owner.address,
        territory="home",
        key="p",
        miners=[poor.keypair.address, *world.addresses],
    )
    result = sim.ok(world.gateway, "file_bank.upload_declaration", files=[spec.declaration])
    assert result.events_named("file_bank", "DeclarationRefused")[0]["reason"].startswith(
        "sminer.InsufficientIdleSpace"
    )
    world.check()


def test_deal_timeout_reassign_and_cancel(world: World) -> None:
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    late = spec.declaration["segments"][0]["fragments"][0]["miner"]
    for address in world.addresses:
        if address != late:
            sim.submit(world.miner(address).keypair, "file_bank.transfer_report", fid=spec.fid)
    sim.blocks(params.deal_report_timeout)
    events = [e for h in range(sim.node.best()[0] + 1) for e in sim.node.block(h)["events"]]  # type: ignore[index]
    timed_out = [e["data"] for e in events if e["name"] == "DealTimedOut"]
    assert timed_out and timed_out[0]["fragments"][0][2] == late
    world.check()
    spare = next(
        a
        for a in world.addresses
        if a not in {f["miner"] for f in spec.declaration["segments"][0]["fragments"]}
    )
    sim.ok(
        world.gateway, "file_bank.reassign_fragment", fid=spec.fid, segment=0, index=0, miner=spare
    )
    sim.ok(world.miner(spare).keypair, "file_bank.transfer_report", fid=spec.fid)
    assert sim.query("file_bank.file", fid=spec.fid)["state"] == "active"
    world.check()

    # A deal whose timed-out fragments are never reassigned is cancelled, releasing all.
    second = world.declare("second")
    sim.blocks(2 * params.deal_report_timeout + 1)
    assert sim.query("file_bank.file", fid=second.fid) is None
    assert sim.query("file_bank.object", owner=world.owner.address, key="second") is None
    world.check()


def test_delete_counts_references_per_owner_and_key(world: World) -> None:
    sim = world.sim
    spec = world.declare("one")
    world.report_all(spec)
    copy = {**spec.declaration, "key": "two"}
    sim.ok(world.gateway, "file_bank.upload_declaration", files=[copy])
    territory = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    assert (
        territory["used"]
        == 2 * spec.declaration["segments"][0]["fragments"][0]["size"] * sim.params.total_shards
    )
    sim.fails(
        world.gateway,
        "file_bank.delete_file",
        "file_bank.ReferenceChanged",
        owner=world.owner.address,
        key="one",
        fid="ab" * 32,
    )
    sim.ok(
        world.gateway, "file_bank.delete_file", owner=world.owner.address, key="one", fid=spec.fid
    )
    assert sim.query("file_bank.file", fid=spec.fid) is not None  # "two" still points at it
    result = sim.ok(world.owner, "file_bank.delete_file", owner=world.owner.address, key="two")
    assert result.events_named("file_bank", "FileRemoved")
    assert sim.query("file_bank.file", fid=spec.fid) is None
    assert sim.query("sminer.miner", account=world.addresses[0])["service"] == 0
    sim.fails(
        world.owner,
        "file_bank.delete_file",
        "file_bank.NoSuchObject",
        owner=world.owner.address,
        key="two",
    )
    world.check()


def test_territory_freezes_then_expires_and_releases_files(world: World) -> None:
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    world.report_all(spec)
    territory = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    sim.blocks(territory["deadline"] - sim.node.best()[0])
    assert (
        sim.query("storage_handler.territory", owner=world.owner.address, name="home")["state"]
        == "frozen"
    )
    refused = sim.ok(
        world.gateway,
        "file_bank.upload_declaration",
        files=[
            build_file(
                params,
                owner=world.owner.address,
                territory="home",
                key="late",
                miners=world.addresses,
            ).declaration
        ],
    )
    assert refused.events_named("file_bank", "DeclarationRefused")[0]["reason"].startswith(
        "storage_handler.TerritoryNotActive"
    )
    sim.blocks(params.grace_period)
    expired = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    assert expired["state"] == "expired" and expired["used"] == 0
    assert sim.query("file_bank.file", fid=spec.fid) is None
    world.check()
    sim.fails(
        world.owner,
        "storage_handler.renew_territory",
        "storage_handler.TerritoryExpired",
        name="home",
        days=1,
    )
    sim.ok(world.owner, "storage_handler.mint_territory", name="home", gib=1, days=1)
    world.check()


def test_renew_and_expand(world: World) -> None:
    sim = world.sim
    before = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    sim.ok(world.owner, "storage_handler.renew_territory", name="home", days=2)
    after = sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    assert after["deadline"] == before["deadline"] + 2 * sim.params.blocks_per_day
    sim.fails(
        world.owner,
        "storage_handler.expand_territory",
        "storage_handler.InsufficientAvailableSpace",
        name="home",
        gib=1000,
    )
    sim.fails(
        world.owner,
        "storage_handler.mint_territory",
        "storage_handler.TerritoryExists",
        name="home",
        gib=1,
        days=1,
    )


def test_challenge_passed_earns_rewards(world: World) -> None:
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    world.report_all(spec)
    miner = world.miners[0]
    sim.ok(world.owner, "audit.challenge_now", miner=miner.keypair.address)
    challenge = sim.query("audit.challenges", miner=miner.keypair.address)[0]
    assert challenge["service_items"] and challenge["idle_items"]
    sim.ok(
        miner.keypair,
        "audit.submit_service_proof",
        challenge_id=challenge["id"],
        proofs=service_answer(params, challenge, spec.fragments),
    )
    sim.ok(
        miner.keypair,
        "audit.submit_idle_proof",
        challenge_id=challenge["id"],
        proofs=idle_answer(params, challenge, miner),
    )
    done = sim.query("audit.challenge", id=challenge["id"])
    assert (done["service_status"], done["idle_status"]) == ("passed", "passed")
    assert sim.query("audit.era_points")[miner.keypair.address] > 0
    sim.blocks(params.era_length)
    assert sim.query("sminer.miner", account=miner.keypair.address)["rewarded"] > 0
    world.check()


def test_failed_service_proof_opens_restoral_and_repair_moves_the_fragment(world: World) -> None:
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    world.report_all(spec)
    fragment = spec.declaration["segments"][0]["fragments"][1]
    liar = world.miner(fragment["miner"])
    sim.ok(
        world.gateway,
        "audit.report_fragment",
        fid=spec.fid,
        segment=0,
        index=1,
        reason="bad block",
    )
    challenge = sim.query("audit.challenges", miner=liar.keypair.address)[0]
    wrong = {fragment["id"]: bytes(len(spec.fragments[fragment["id"]]))}
    sim.ok(
        liar.keypair,
        "audit.submit_service_proof",
        challenge_id=challenge["id"],
        proofs=service_answer(params, challenge, wrong),
    )
    orders = sim.query("file_bank.restoral_orders")
    assert [(o["fid"], o["idx"], o["reason"]) for o in orders] == [(spec.fid, 1, "proof_failed")]
    world.check()

    holders = {f["miner"] for f in spec.declaration["segments"][0]["fragments"]}
    target = next(m for m in world.miners if m.keypair.address not in holders)
    sim.fails(
        world.gateway,
        "file_bank.restoral_order_complete",
        "file_bank.NotClaimant",
        fid=spec.fid,
        segment=0,
        index=1,
        miner=target.keypair.address,
        receipt="0x" + sign_receipt(target.keypair, fragment["id"]).hex(),
    )
    sim.ok(world.gateway, "file_bank.claim_restoral_order", fid=spec.fid, segment=0, index=1)
    forged = "0x" + sign_receipt(liar.keypair, fragment["id"]).hex()
    sim.fails(
        world.gateway,
        "file_bank.restoral_order_complete",
        "file_bank.BadReceipt",
        fid=spec.fid,
        segment=0,
        index=1,
        miner=target.keypair.address,
        receipt=forged,
    )
    sim.ok(
        world.gateway,
        "file_bank.restoral_order_complete",
        fid=spec.fid,
        segment=0,
        index=1,
        miner=target.keypair.address,
        receipt="0x" + sign_receipt(target.keypair, fragment["id"]).hex(),
    )
    file = sim.query("file_bank.file", fid=spec.fid)
    moved = file["segments"][0]["fragments"][1]
    assert moved["miner"] == target.keypair.address and moved["avail"]
    assert sim.query("file_bank.restoral_orders") == []
    world.check()


def test_missed_challenges_cost_collateral_and_finally_the_miner(world: World) -> None:
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    world.report_all(spec)
    lazy = world.miners[0]
    collateral = sim.query("sminer.miner", account=lazy.keypair.address)["collateral"]
    for _ in range(params.penalties.force_exit_misses):
        sim.ok(world.owner, "audit.challenge_now", miner=lazy.keypair.address)
        sim.blocks(params.challenge_deadline + 1)
        world.check()
        if sim.query("sminer.miner", account=lazy.keypair.address)["state"] == "exited":
            break
    record = sim.query("sminer.miner", account=lazy.keypair.address)
    assert record["state"] == "exited"
    assert record["collateral"] == 0  # what penalties left was returned on exit
    assert sim.query("balances.account", account=lazy.keypair.address)["free"] > 0
    assert collateral > 0
    # Its fragment gets a restoral order once it is gone.
    sim.block()
    assert any(o["origin"] == lazy.keypair.address for o in sim.query("file_bank.restoral_orders"))
    world.check()


def test_offline_miner_is_noticed_and_comes_back(world: World) -> None:
    sim, params = world.sim, world.sim.params
    quiet = world.miners[0]
    for miner in world.miners[1:]:
        sim.submit(miner.keypair, "sminer.heartbeat")
    sim.blocks(params.offline_after + 2)
    assert sim.query("sminer.miner", account=quiet.keypair.address)["state"] == "offline"
    sim.ok(quiet.keypair, "sminer.heartbeat")
    record = sim.query("sminer.miner", account=quiet.keypair.address)
    if record["state"] == "frozen":  # a random challenge it missed while away cost collateral
        sim.ok(
            quiet.keypair,
            "sminer.increase_collateral",
            amount=record["collateral_limit"] - record["collateral"],
        )
    assert sim.query("sminer.miner", account=quiet.keypair.address)["state"] == "positive"
    world.check()


def test_miner_registration_rules(sim: Sim, alice: Keypair) -> None:
    miner = MinerState(Keypair.generate())
    sim.fund(alice, miner.keypair)
    declared = 2 * sim.params.idle_unit_size
    limit = sim.query("sminer.collateral_limit", space=declared)
    sim.fails(
        miner.keypair,
        "sminer.register",
        "sminer.CollateralTooLow",
        endpoint="http://127.0.0.1:1",
        declared_space=declared,
        collateral=limit - 1,
    )
    broke = Keypair.generate()
    sim.fails(
        broke,
        "sminer.register",
        "balances.InsufficientBalance",
        endpoint="http://127.0.0.1:1",
        declared_space=declared,
        collateral=limit,
    )
    sim.ok(
        miner.keypair,
        "sminer.register",
        endpoint="http://127.0.0.1:1",
        declared_space=declared,
        collateral=limit,
    )
    sim.fails(
        miner.keypair,
        "sminer.register",
        "sminer.AlreadyRegistered",
        endpoint="http://127.0.0.1:1",
        declared_space=declared,
        collateral=limit,
    )
    sim.certify(miner, 2)
    with pytest.raises(Exception, match="ExceedsDeclaredSpace"):
        sim.certify(miner, 1)
    sim.ok(miner.keypair, "sminer.update_endpoint", endpoint="http://127.0.0.1:2")
    assert (
        sim.query("sminer.miner", account=miner.keypair.address)["endpoint"] == "http://127.0.0.1:2"
    )
    check_invariants(sim.node._db)


def test_idle_certification_takes_two_steps(sim: Sim, alice: Keypair) -> None:
    miner = MinerState(Keypair.generate())
    sim.fund(alice, miner.keypair)
    sim.add_miner(miner, units=0, declared_units=2)
    address = miner.keypair.address
    future = idle_commitments(sim.params, miner, 0, 1, sim.anchor())
    sim.fails(
        miner.keypair,
        "sminer.cert_idle_space",
        "sminer.BadAnchor",
        units=[{**future[0], "anchor_height": sim.node.best()[0] + 5}],
    )
    sim.fails(
        miner.keypair,
        "sminer.cert_idle_space",
        "sminer.ExceedsDeclaredSpace",
        units=idle_commitments(sim.params, miner, 0, 3, sim.anchor()),
    )
    commitments = idle_commitments(sim.params, miner, 0, 2, sim.anchor())
    # Unit 1 commits roots of junk: a layer root that is not what its leaves hash to.
    commitments[1]["layer_roots"][-1] = "00" * 32
    committed = sim.ok(miner.keypair, "sminer.cert_idle_space", units=commitments)
    assert sim.query("sminer.miner", account=address)["idle"] == 0  # not idle until proven
    early = idle_proofs(sim.params, miner, [0], bytes(32))
    sim.fails(miner.keypair, "sminer.prove_idle_space", "sminer.TooEarly", units=early)
    beacon = sim.beacon(committed.height)
    sim.fails(
        miner.keypair,
        "sminer.prove_idle_space",
        "sminer.BadIdleProof",
        units=idle_proofs(sim.params, miner, [1], beacon),
    )
    sim.fails(
        miner.keypair,
        "sminer.prove_idle_space",
        "sminer.BadIdleProof",
        units=idle_proofs(sim.params, miner, [0], bytes(32)),
    )  # proofs for another beacon
    sim.ok(
        miner.keypair, "sminer.prove_idle_space", units=idle_proofs(sim.params, miner, [0], beacon)
    )
    sim.fails(
        miner.keypair,
        "sminer.prove_idle_space",
        "sminer.NoSuchCommitment",
        units=idle_proofs(sim.params, miner, [0], beacon),
    )
    assert sim.query("sminer.miner", account=address)["idle"] == sim.params.idle_unit_size
    # The junk unit's commitment expires and gives its declared space back.
    sim.blocks(sim.params.idle_anchor_window + 1)
    states = [u["state"] for u in sim.query("sminer.idle_units", account=address)]
    assert states == ["certified"]
    sim.ok(miner.keypair, "sminer.heartbeat")  # it was silent for all those blocks
    sim.certify(miner, 1)
    check_invariants(sim.node._db)


def test_gateway_authorization_limit(sim: Sim, alice: Keypair) -> None:
    owner = Keypair.generate()
    gateways = [Keypair.generate() for _ in range(sim.params.max_authorized_gateways + 1)]
    sim.fund(alice, owner, *gateways)
    for gateway in gateways:
        sim.submit(gateway, "oss.register", endpoint="http://127.0.0.1:9")
    sim.block()
    for gateway in gateways[:-1]:
        sim.submit(owner, "oss.authorize", gateway=gateway.address)
    sim.block()
    sim.fails(owner, "oss.authorize", "oss.TooManyAuthorizations", gateway=gateways[-1].address)
    sim.ok(owner, "oss.cancel_authorize", gateway=gateways[0].address)
    sim.ok(owner, "oss.authorize", gateway=gateways[-1].address)
    assert (
        len(sim.query("oss.authorizations", owner=owner.address))
        == sim.params.max_authorized_gateways
    )
