"""The chain's oss: gateways and their authorizations, as whole flows on a real node
(tests/chain_client/modules/world.py)."""

from chain_client.keys import Keypair
from tests.chain_client.modules.world import World
from tests.chain_client.sim import Sim, service_answer


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


def test_registering_reserves_the_bond_and_destroy_returns_it(sim: Sim, alice: Keypair) -> None:
    gateway = Keypair.generate()
    sim.fund(alice, gateway)
    before = sim.query("balances.account", account=gateway.address)
    result = sim.ok(gateway, "oss.register", endpoint="http://127.0.0.1:1")
    (fee,) = (e["fee"] for e in result.events_named("balances", "FeePaid"))
    bond = sim.params.gateway_bond
    assert sim.query("balances.account", account=gateway.address) == {
        "free": before["free"] - fee - bond,
        "reserved": bond,
    }
    record = sim.query("oss.gateway", account=gateway.address)
    assert (record["bond"], record["bonded"]) == (bond, True)
    sim.ok(gateway, "oss.destroy")
    assert sim.query("balances.account", account=gateway.address)["reserved"] == 0
    # A key that cannot pay the bond cannot register at all.
    poor = Keypair.generate()
    sim.ok(alice, "balances.transfer", dest=poor.address, amount=bond // 2)
    sim.fails(poor, "oss.register", "balances.InsufficientBalance", endpoint="http://127.0.0.1:1")


def test_an_unbonded_gateway_cannot_claim_and_a_lapsed_claim_costs_the_bond(
    world: World,
) -> None:
    """Security review #4: a free "gateway" claimed every restoral order, renewably."""
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    world.report_all(spec)
    fragment = spec.declaration["segments"][0]["fragments"][2]
    holder = world.miner(fragment["miner"])
    sim.ok(holder.keypair, "file_bank.generate_restoral_order", fid=spec.fid, segment=0, index=2)
    where = {"fid": spec.fid, "segment": 0, "index": 2}

    stranger = Keypair.generate()  # registered, bonded with nothing
    sim.fund(world.owner, stranger)
    sim.ok(stranger, "oss.register", endpoint="http://127.0.0.1:9", bond=0)
    assert not sim.query("oss.gateway", account=stranger.address)["bonded"]
    sim.fails(stranger, "file_bank.claim_restoral_order", "file_bank.NotGateway", **where)

    bond_before = sim.query("oss.gateway", account=world.gateway.address)["bond"]
    sim.ok(world.gateway, "file_bank.claim_restoral_order", **where)
    (order,) = sim.query("file_bank.restoral_orders")
    assert order["claimer"] == world.gateway.address
    sim.blocks(params.restoral_order_life + 1)  # the claim lapses, not completed
    (order,) = sim.query("file_bank.restoral_orders")
    assert order["claimer"] is None and order["deadline"] is None  # open again
    record = sim.query("oss.gateway", account=world.gateway.address)
    assert record["bond"] == bond_before - params.restoral_claim_slash
    assert not record["bonded"]  # below gateway_bond now: no further claims
    sim.fails(world.gateway, "file_bank.claim_restoral_order", "file_bank.NotGateway", **where)
    sim.ok(world.gateway, "oss.bond", amount=params.restoral_claim_slash)
    sim.ok(world.gateway, "file_bank.claim_restoral_order", **where)
    world.check()


def test_only_the_declarer_reports_and_a_disproved_report_costs_it(world: World) -> None:
    sim, params = world.sim, world.sim.params
    spec = world.declare()
    world.report_all(spec)
    fragment = spec.declaration["segments"][0]["fragments"][0]
    other = Keypair.generate()
    sim.fund(world.owner, other)
    sim.ok(other, "oss.register", endpoint="http://127.0.0.1:9")  # bonded, not the declarer
    report = {"fid": spec.fid, "segment": 0, "index": 0, "reason": "x"}
    sim.fails(other, "audit.report_fragment", "audit.NotDeclarer", **report)
    assert sim.query("audit.challenges", miner=fragment["miner"]) == []

    bond = sim.query("oss.gateway", account=world.gateway.address)["bond"]
    sim.ok(world.gateway, "audit.report_fragment", **report)
    miner = world.miner(fragment["miner"])
    challenge = sim.query("audit.challenges", miner=miner.keypair.address)[0]
    sim.ok(
        miner.keypair,
        "audit.submit_service_proof",
        challenge_id=challenge["id"],
        proofs=service_answer(params, challenge, spec.fragments),
    )
    assert sim.query("oss.gateway", account=world.gateway.address)["bond"] == (
        bond - params.false_report_slash
    )
    world.check()
