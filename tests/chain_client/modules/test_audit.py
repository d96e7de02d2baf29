"""The chain's audit: challenges, proofs, rewards, penalties and the restoral a failure
opens, as whole flows on a real node (tests/chain_client/modules/world.py)."""

from chain_client.receipt import sign_receipt
from tests.chain_client.modules.world import World
from tests.chain_client.sim import (
    idle_answer,
    service_answer,
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
