"""The chain's storage_handler: territory quota, freezing and expiry, renewal and
expansion, as whole flows on a real node (tests/chain_client/modules/world.py)."""

from chain_client.keys import Keypair
from tests.chain_client.modules.world import World
from tests.chain_client.sim import (
    MinerState,
    build_file,
)


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
