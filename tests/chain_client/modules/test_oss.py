"""The chain's oss: gateways and their authorizations, as whole flows on a real node
(tests/chain_client/modules/world.py)."""

from chain_client.keys import Keypair
from tests.chain_client.sim import (
    Sim,
)


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
