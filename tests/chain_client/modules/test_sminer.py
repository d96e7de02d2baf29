"""The chain's sminer: registration, idle certification and replacement, absence, as whole
flows on a real node (tests/chain_client/modules/world.py)."""

import pytest

from chain_client.keys import Keypair
from tests.chain_client.invariants import check_invariants
from tests.chain_client.modules.world import World
from tests.chain_client.sim import (
    MinerState,
    Sim,
    idle_commitments,
    idle_proofs,
)


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
    broke = Keypair.generate()  # enough for fees, not for the collateral
    sim.ok(alice, "balances.transfer", dest=broke.address, amount=limit // 2)
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
