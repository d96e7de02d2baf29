"""The ledger node: blocks, persistence, and refusal of every kind of bad input."""

import itertools
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from chain_client.errors import GenesisMismatch, Rejected
from chain_client.extrinsic import Extrinsic, MalformedExtrinsic, canonical_json
from chain_client.keys import Keypair, dev_keypair
from chain_client.node import LedgerNode
from chain_client.params import TOKEN, Genesis, NetworkParams, dev_params
from tests.chain_client.sim import Sim

ED = dev_params().existential_deposit  # the least a new account may be given


def signed(
    node: LedgerNode, signer: Keypair, call: str, nonce: int | None = None, **args: object
) -> Extrinsic:
    if nonce is None:
        nonce = node.next_nonce(signer.address)
    return Extrinsic.sign(signer, node.genesis_hash, call, dict(args), nonce)


def state_dump(node: LedgerNode) -> list[tuple[object, ...]]:
    db = sqlite3.connect(node.path)
    try:
        rows: list[tuple[object, ...]] = []
        for (table,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT IN ('blocks', 'extrinsics', 'events', 'nonces') ORDER BY name"
        ):
            rows.extend((table, *row) for row in db.execute(f"SELECT * FROM {table} ORDER BY 1"))
        return rows
    finally:
        db.close()


def test_blocks_are_hash_linked_with_randomness_from_the_parent(sim: Sim) -> None:
    sim.blocks(3)
    blocks = [sim.node.block(h) for h in range(4)]
    assert all(b is not None for b in blocks)
    for parent, child in itertools.pairwise(blocks):
        assert parent is not None and child is not None
        assert child["parent_hash"] == parent["hash"]
        assert child["randomness"] != parent["randomness"]
    assert len({b["hash"] for b in blocks if b}) == 4


def test_transfer_applies_and_emits_events(sim: Sim, alice: Keypair) -> None:
    bob = Keypair.generate()
    result = sim.ok(alice, "balances.transfer", dest=bob.address, amount=ED + 1234)
    assert result.events_named("balances", "Transfer") == [
        {"source": alice.address, "dest": bob.address, "amount": ED + 1234}
    ]
    assert result.events_named("system", "ExtrinsicSuccess")
    assert sim.query("balances.account", account=bob.address) == {"free": ED + 1234, "reserved": 0}
    # Dust would be an account that cannot transact: refused.
    sim.fails(
        alice,
        "balances.transfer",
        "balances.ExistentialDeposit",
        dest=Keypair.generate().address,
        amount=ED - 1,
    )


def test_failed_extrinsic_changes_nothing_but_its_nonce_and_pays_its_fee(
    sim: Sim, alice: Keypair
) -> None:
    poor = Keypair.generate()
    sim.ok(alice, "balances.transfer", dest=poor.address, amount=TOKEN)
    treasury = sim.query("balances.treasury")
    before = state_dump(sim.node)
    result = sim.fails(
        poor,
        "balances.transfer",
        "balances.InsufficientBalance",
        dest=alice.address,
        amount=2 * TOKEN,
    )
    assert result.events_named("system", "ExtrinsicFailed")[0]["reason"].startswith(
        "balances.InsufficientBalance"
    )
    (paid,) = result.events_named("balances", "FeePaid")
    assert paid["who"] == poor.address and paid["fee"] > 0
    # The fee is by weight and length (docs/chain.md §2.2), and moved to the treasury.
    block = sim.node.block(result.height)
    assert block is not None
    included = block["extrinsics"][result.index]
    body = {k: v for k, v in included.items() if k not in ("index", "hash", "success", "error")}
    params = sim.node.params
    length = len(canonical_json(body))
    assert paid["fee"] == params.base_fee + params.byte_fee * length + params.weight_fee
    after = state_dump(sim.node)

    def free(rows: list[tuple[object, ...]], account: str) -> int:
        found = [r for r in rows if r[0] == "balances" and r[1] == account]
        return int(str(found[0][2])) if found else 0

    assert free(after, poor.address) == free(before, poor.address) - paid["fee"]
    assert free(after, treasury) == free(before, treasury) + paid["fee"]
    assert [r for r in after if r[0] != "balances"] == [r for r in before if r[0] != "balances"]
    assert sim.node.next_nonce(poor.address) == 1


def test_a_failure_inside_a_call_rolls_back_its_earlier_writes(sim: Sim, alice: Keypair) -> None:
    """register reserves collateral before it checks the rest; a refusal must undo it."""
    miner = Keypair.generate()
    sim.fund(alice, miner)
    before = sim.query("balances.account", account=miner.address)
    result = sim.fails(
        miner,
        "sminer.register",
        "sminer.DeclaredSpaceTooSmall",
        endpoint="http://127.0.0.1:1",
        declared_space=1,
        collateral=10**30,
    )
    (paid,) = result.events_named("balances", "FeePaid")  # the fee only: nothing reserved
    assert sim.query("balances.account", account=miner.address) == {
        "free": before["free"] - paid["fee"],
        "reserved": 0,
    }


def test_restart_continues_from_the_last_committed_block(
    tmp_path: Path, params: NetworkParams, alice: Keypair
) -> None:
    genesis = Genesis(params=params, dev=True)
    node = LedgerNode(tmp_path / "c.db", genesis)
    sim = Sim(node)
    bob = Keypair.generate()
    sim.ok(alice, "balances.transfer", dest=bob.address, amount=ED + 5)
    sim.blocks(2)
    best = node.best()
    extrinsic = signed(node, alice, "balances.transfer", dest=bob.address, amount=7)
    node.submit(extrinsic)
    node.produce_block()
    node.close()

    reopened = LedgerNode(tmp_path / "c.db")  # no genesis needed: the chain is on disk
    assert reopened.best()[0] == best[0] + 1
    assert reopened.block(best[0])["hash"] == best[1]  # type: ignore[index]
    assert reopened.query("balances.account", {"account": bob.address})["free"] == ED + 12
    # SECURITY: the same signed extrinsic is refused after the restart.
    with pytest.raises(Rejected) as refused:
        reopened.submit(extrinsic)
    assert refused.value.code == "StaleNonce"
    reopened.produce_block()
    assert reopened.block(best[0] + 2)["parent_hash"] == reopened.block(best[0] + 1)["hash"]  # type: ignore[index]
    reopened.close()


def test_another_genesis_is_refused(tmp_path: Path, params: NetworkParams) -> None:
    LedgerNode(tmp_path / "c.db", Genesis(params=params, dev=True)).close()
    with pytest.raises(GenesisMismatch):
        LedgerNode(tmp_path / "c.db", Genesis(params=params.replace(chain_name="other"), dev=True))
    with pytest.raises(GenesisMismatch):
        LedgerNode(tmp_path / "empty.db")


def test_a_chain_of_another_schema_is_refused_clearly(
    tmp_path: Path, params: NetworkParams
) -> None:
    genesis = Genesis(params=params, dev=True)
    LedgerNode(tmp_path / "c.db", genesis).close()
    with sqlite3.connect(tmp_path / "c.db") as db:  # as a node before versioning left it
        db.execute("DELETE FROM chain_meta WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(GenesisMismatch, match="ledger schema before 1; this node knows"):
        LedgerNode(tmp_path / "c.db", genesis)
    LedgerNode(tmp_path / "new.db", genesis).close()
    LedgerNode(tmp_path / "new.db", genesis).close()  # its own schema reopens


def test_a_chain_of_the_previous_schema_and_genesis_is_brought_up_to_date(
    tmp_path: Path, params: NetworkParams
) -> None:
    """A ledger written before packed references (schema 2, no ``pack_*`` parameters in
    its genesis) reopens with the given genesis: migrated in place, defaults filled."""
    genesis = Genesis(params=params, dev=True)
    LedgerNode(tmp_path / "c.db", genesis).close()
    with sqlite3.connect(tmp_path / "c.db") as db:
        db.execute("ALTER TABLE fb_refs DROP COLUMN slot")
        db.execute("UPDATE chain_meta SET value = '2' WHERE key = 'schema_version'")
        (stored,) = db.execute("SELECT value FROM chain_meta WHERE key = 'genesis'").fetchone()
        old = json.loads(stored)
        for key in ("pack_object_limit", "pack_size", "pack_block_size"):
            del old["params"][key]
        db.execute("UPDATE chain_meta SET value = ? WHERE key = 'genesis'", (json.dumps(old),))
    db.close()
    node = LedgerNode(tmp_path / "c.db", genesis)
    assert node.params.pack_size == params.pack_size
    columns = [row[1] for row in node._db.execute("PRAGMA table_info(fb_refs)")]
    assert "slot" in columns
    node.close()
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("SELECT value FROM chain_meta WHERE key = 'schema_version'").fetchone()
    db.close()
    LedgerNode(tmp_path / "c.db", genesis).close()


def test_replayed_extrinsic_is_refused(node: LedgerNode, alice: Keypair) -> None:
    extrinsic = signed(node, alice, "balances.transfer", dest=Keypair.generate().address, amount=ED)
    node.submit(extrinsic)
    with pytest.raises(Rejected) as in_pool:
        node.submit(extrinsic)
    assert in_pool.value.code == "AlreadyInPool"
    node.produce_block()
    with pytest.raises(Rejected) as stale:
        node.submit(extrinsic)
    assert stale.value.code == "StaleNonce"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: replace(e, signature=bytes(64)), "BadSignature"),
        (lambda e: replace(e, args={**e.args, "amount": 2 * ED}), "BadSignature"),
        (lambda e: replace(e, nonce=e.nonce + 1), "BadSignature"),
    ],
)
def test_tampered_extrinsics_are_refused(
    node: LedgerNode, alice: Keypair, mutate: object, code: str
) -> None:
    extrinsic = signed(node, alice, "balances.transfer", dest=Keypair.generate().address, amount=ED)
    tampered = mutate(extrinsic)  # type: ignore[operator]
    with pytest.raises(Rejected) as refused:
        node.submit(tampered)
    assert refused.value.code == code
    assert node.pool_size() == 0


def test_extrinsic_for_another_chain_is_refused(
    tmp_path: Path, node: LedgerNode, params: NetworkParams, alice: Keypair
) -> None:
    other = LedgerNode(
        tmp_path / "other.db", Genesis(params=params.replace(chain_name="x"), dev=True)
    )
    extrinsic = signed(
        other, alice, "balances.transfer", dest=Keypair.generate().address, amount=ED
    )
    other.close()
    with pytest.raises(Rejected) as refused:
        node.submit(extrinsic)
    assert refused.value.code == "BadSignature"


@pytest.mark.parametrize(
    ("call", "args", "code"),
    [
        ("balances.nosuch", {}, "UnknownCall"),
        ("nosuch.call", {}, "UnknownCall"),
        ("balances.transfer", {"dest": "cXnotanaddress", "amount": 1}, "InvalidArguments"),
        (
            "balances.transfer",
            {"dest": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "amount": "1"},
            "InvalidArguments",
        ),
        (
            "balances.transfer",
            {"dest": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "amount": -1},
            "InvalidArguments",
        ),
        (
            "balances.transfer",
            {"dest": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "amount": 2**128},
            "InvalidArguments",
        ),
        (
            "balances.transfer",
            {"dest": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"},
            "InvalidArguments",
        ),
        (
            "balances.transfer",
            {"dest": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "amount": 1, "extra": 1},
            "InvalidArguments",
        ),
        (
            "storage_handler.mint_territory",
            {"name": "x" * 64, "gib": 1, "days": 1},
            "InvalidArguments",
        ),
        ("oss.register", {"endpoint": "ftp://example"}, "InvalidArguments"),
    ],
)
def test_bad_calls_are_refused_before_the_pool(
    node: LedgerNode, alice: Keypair, call: str, args: dict[str, object], code: str
) -> None:
    extrinsic = Extrinsic.sign(alice, node.genesis_hash, call, args, node.next_nonce(alice.address))
    with pytest.raises(Rejected) as refused:
        node.submit(extrinsic)
    assert refused.value.code == code
    assert node.pool_size() == 0
    assert node.next_nonce(alice.address) == 0


def test_wrong_nonces_are_refused(node: LedgerNode, alice: Keypair) -> None:
    dest = Keypair.generate().address
    with pytest.raises(Rejected) as future:
        node.submit(signed(node, alice, "balances.transfer", nonce=5, dest=dest, amount=ED))
    assert future.value.code == "FutureNonce"
    node.submit(signed(node, alice, "balances.transfer", dest=dest, amount=ED))
    node.submit(signed(node, alice, "balances.transfer", dest=dest, amount=ED))  # nonce 1, pooled
    assert node.next_nonce(alice.address) == 2
    block = node.produce_block()
    assert [r.success for r in block.results] == [True, True]


def test_oversized_extrinsic_is_refused(
    tmp_path: Path, params: NetworkParams, alice: Keypair
) -> None:
    small = LedgerNode(
        tmp_path / "s.db", Genesis(params=params.replace(max_extrinsic_bytes=2048), dev=True)
    )
    extrinsic = signed(small, alice, "file_bank.delete_file", owner=alice.address, key="k" * 1024)
    extrinsic = Extrinsic.sign(
        alice, small.genesis_hash, "oss.register", {"endpoint": "http://" + "a" * 4000}, 0
    )
    with pytest.raises(Rejected) as refused:
        small.submit(extrinsic)
    assert refused.value.code == "TooLarge"
    small.close()


def test_wrong_role_and_overflow_fail_in_the_block(sim: Sim, alice: Keypair) -> None:
    stranger = Keypair.generate()
    sim.fund(alice, stranger)
    sim.fails(stranger, "sminer.heartbeat", "sminer.NotMiner")
    sim.fails(
        stranger,
        "file_bank.claim_restoral_order",
        "file_bank.NotGateway",
        fid="ab" * 32,
        segment=0,
        index=0,
    )
    sim.fails(
        stranger, "file_bank.delete_file", "file_bank.NotAuthorized", owner=alice.address, key="k"
    )
    sim.fails(stranger, "balances.faucet", "balances.FaucetLimit", amount=2**128 - 1)
    sim.fails(
        alice,
        "storage_handler.mint_territory",
        "storage_handler.BadSize",
        name="t",
        gib=2**31,
        days=2**31,
    )
    declared = sim.params.idle_unit_size
    sim.ok(
        stranger,
        "sminer.register",
        endpoint="http://127.0.0.1:1",
        declared_space=declared,
        collateral=sim.query("sminer.collateral_limit", space=declared),
    )
    before = sim.query("sminer.miner", account=stranger.address)
    sim.fails(stranger, "sminer.increase_declared_space", "sminer.Overflow", space=2**63 - 1)
    assert sim.query("sminer.miner", account=stranger.address) == before


def test_dev_accounts_and_dev_calls_only_exist_on_a_dev_network(
    tmp_path: Path, params: NetworkParams
) -> None:
    node = LedgerNode(tmp_path / "prod.db", Genesis(params=params, dev=False))
    alice = dev_keypair("Alice")
    with pytest.raises(Rejected) as dev_account:
        node.submit(
            signed(node, alice, "balances.transfer", dest=Keypair.generate().address, amount=ED)
        )
    assert dev_account.value.code == "DevAccountRefused"
    someone = Keypair.generate()
    with pytest.raises(Rejected) as faucet:
        node.submit(signed(node, someone, "balances.faucet"))
    assert faucet.value.code == "UnknownCall"
    with pytest.raises(Rejected) as challenge:
        node.submit(signed(node, someone, "audit.challenge_now", miner=someone.address))
    assert challenge.value.code == "UnknownCall"
    assert node.query("balances.account", {"account": alice.address})["free"] == 0
    node.close()


def test_envelope_parsing_names_the_bad_field(node: LedgerNode, alice: Keypair) -> None:
    good = signed(node, alice, "balances.transfer", dest=alice.address, amount=1).to_json()
    assert Extrinsic.from_json(json.loads(canonical_json(good))).to_json() == good
    for field, value in [
        ("call", "Balances.Transfer"),
        ("nonce", -1),
        ("nonce", True),
        ("scheme", "ecdsa"),
        ("signature", "0x12"),
        ("signer", "nobody"),
        ("args", []),
    ]:
        with pytest.raises(MalformedExtrinsic) as bad:
            Extrinsic.from_json({**good, field: value})
        assert bad.value.field == field
    with pytest.raises(MalformedExtrinsic):
        Extrinsic.from_json({**good, "fee": 1})
    with pytest.raises(MalformedExtrinsic):
        Extrinsic.from_json([good])
