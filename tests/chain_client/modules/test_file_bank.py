"""The chain's file_bank: deals, their reports and timeouts, declarations, references and
deletion, as whole flows on a real node (tests/chain_client/modules/world.py)."""

import base64
from typing import Any

from chain_client.keys import Keypair
from tests.chain_client.modules.world import World
from tests.chain_client.sim import (
    build_file,
)


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


def _charges(world: World) -> tuple[int, int]:
    territory = world.sim.query("storage_handler.territory", owner=world.owner.address, name="home")
    return territory["locked"], territory["used"]


def test_packed_references_charge_their_shares(world: World) -> None:
    """docs/packing.md §4: members of one file, each charging its share; the file's
    segments travel once per batch; the file goes with its last member."""
    sim = world.sim
    spec = build_file(
        sim.params, owner=world.owner.address, territory="home", key="a", miners=world.addresses
    )
    pack = spec.declaration
    stored = sum(f["size"] for s in pack["segments"] for f in s["fragments"])
    first = {**pack, "share": stored // 2, "slot": 0}
    # The second member carries no segments: the batch's first one does, even refused.
    second = {**pack, "key": "b", "segments": [], "share": stored - stored // 2, "slot": 1}
    refused_first = {**first, "territory": "nope"}
    result = sim.ok(world.gateway, "file_bank.upload_declaration", files=[refused_first, second])
    assert len(result.events_named("file_bank", "DeclarationRefused")) == 1
    assert _charges(world) == (stored - stored // 2, 0)
    result = sim.ok(world.gateway, "file_bank.upload_declaration", files=[first])
    assert result.events_named("file_bank", "UploadDeclaration")
    assert _charges(world) == (stored, 0)
    assert sim.query("file_bank.object", owner=world.owner.address, key="b")["slot"] == 1
    world.check()

    def refusal(declaration: dict[str, Any]) -> str:
        result = sim.ok(world.gateway, "file_bank.upload_declaration", files=[declaration])
        (event,) = result.events_named("file_bank", "DeclarationRefused")
        return str(event["reason"].split(":")[0])

    assert refusal({**second, "key": "c", "share": 7}) == "file_bank.BadShare"  # slot 1's is set
    assert refusal({**second, "key": "c", "slot": 2}) == "file_bank.BadShare"  # beyond stored
    assert refusal({**second, "key": "c", "slot": None}) == "file_bank.BadShare"
    assert refusal({**second, "key": "c", "share": stored + 1, "slot": 5}) == "file_bank.BadShare"
    assert refusal({**second, "key": "c", "fid": "ab" * 32}) == "file_bank.NoSuchFile"
    # A copy of a member charges the member's share again.
    sim.ok(world.gateway, "file_bank.upload_declaration", files=[{**second, "key": "c"}])
    assert _charges(world) == (stored + stored - stored // 2, 0)
    world.check()
    # A key overwritten by another member of the same pack is another reference.
    sim.ok(world.gateway, "file_bank.upload_declaration", files=[{**first, "key": "c"}])
    assert sim.query("file_bank.object", owner=world.owner.address, key="c")["slot"] == 0
    assert _charges(world) == (stored + stored // 2, 0)
    world.check()

    world.report_all(spec)
    assert _charges(world)[0] == 0
    for key in ("a", "b"):
        sim.ok(world.gateway, "file_bank.delete_file", owner=world.owner.address, key=key)
    assert sim.query("file_bank.file", fid=pack["fid"]) is not None  # "c" still names it
    result = sim.ok(world.gateway, "file_bank.delete_file", owner=world.owner.address, key="c")
    assert result.events_named("file_bank", "FileRemoved")
    assert _charges(world) == (0, 0)
    world.check()


def test_a_move_is_declared_only_while_the_key_names_the_old_file(world: World) -> None:
    sim = world.sim
    old = world.declare("moved")
    new = build_file(
        sim.params,
        owner=world.owner.address,
        territory="home",
        key="moved",
        miners=world.addresses,
    ).declaration
    other = "cd" * 32
    result = sim.ok(
        world.gateway, "file_bank.upload_declaration", files=[{**new, "replaces": other}]
    )
    (event,) = result.events_named("file_bank", "DeclarationRefused")
    assert event["reason"].startswith("file_bank.ReferenceChanged")
    result = sim.ok(
        world.gateway, "file_bank.upload_declaration", files=[{**new, "replaces": old.fid}]
    )
    assert result.events_named("file_bank", "UploadDeclaration")
    assert sim.query("file_bank.file", fid=old.fid) is None  # its one reference moved
    again = sim.ok(
        world.gateway, "file_bank.upload_declaration", files=[{**new, "replaces": old.fid}]
    )
    assert again.events_named("file_bank", "AlreadyDeclared")  # a retried move
    world.check()
