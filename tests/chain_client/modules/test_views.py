"""The typed views (chain_client/views.py) read what a real node answers: a territory, the
miners, an active file with its fragments, and a restoral order."""

from chain_client.views import FileView, MinerView, RestoralOrderView, TerritoryView
from tests.chain_client.modules.world import World


def test_views_read_the_nodes_answers(world: World) -> None:
    sim = world.sim
    territory = TerritoryView.from_json(
        sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    )
    assert territory.state == "active" and territory.remaining == territory.total
    miners = [MinerView.from_json(m) for m in sim.query("sminer.miners", state="positive")]
    assert sorted(m.account for m in miners) == sorted(world.addresses)
    assert all(m.idle == m.certified > 0 for m in miners)

    spec = world.declare()
    world.report_all(spec)
    file = FileView.from_json(sim.query("file_bank.file", fid=spec.fid))
    assert (file.fid, file.state, file.declarer) == (spec.fid, "active", world.gateway.address)
    first = file.segments[0].fragments[0]
    assert first.miner in world.addresses and first.reported and first.avail

    holder = world.miner(str(first.miner))
    sim.ok(holder.keypair, "file_bank.generate_restoral_order", fid=spec.fid, segment=0, index=0)
    (order,) = [RestoralOrderView.from_json(o) for o in sim.query("file_bank.restoral_orders")]
    assert (order.fid, order.segment, order.idx, order.claimer) == (spec.fid, 0, 0, None)
    world.check()
