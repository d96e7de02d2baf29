"""The extrinsic pool (docs/chain.md §2.3) and the fee at admission (§2.2): a flood from
many funded keys does not keep an honest signer out of the next blocks, and a key that
holds nothing cannot transact at all (security review #2)."""

from pathlib import Path

import pytest

from chain_client.errors import Rejected
from chain_client.extrinsic import Extrinsic
from chain_client.keys import Keypair, dev_keypair
from chain_client.node import LedgerNode
from chain_client.params import TOKEN, Genesis, dev_params
from chain_client.pool import Pending, Pool

ALICE = dev_keypair("Alice")


def pending(signer: str, nonce: int, fee: int = 10, size: int = 100) -> Pending:
    extrinsic = Extrinsic.sign(ALICE, b"\0" * 32, "balances.transfer", {}, nonce)
    return Pending(extrinsic, f"{signer}/{nonce}", signer, size, fee)


def test_a_full_pool_lets_a_lighter_signer_in_by_evicting_a_heavier_ones_last() -> None:
    pool = Pool(max_extrinsics=6, max_bytes=10**6, max_per_signer=4)
    for nonce in range(3):
        pool.admit(pending("flood-a", nonce))
        pool.admit(pending("flood-b", nonce, fee=12))
    evicted = pool.admit(pending("honest", 0, fee=5))  # pays less, holds less
    assert [p.hash for p in evicted] == ["flood-a/2"]  # a tail: nonces stay consecutive
    assert pool.queued("flood-a") == (2, 20)
    # flood-a, now one lighter than flood-b, takes flood-b's cheaper last one; but nothing
    # from honest, who holds less, though honest pays less.
    assert [p.hash for p in pool.admit(pending("flood-a", 2, fee=100))] == ["flood-b/2"]
    with pytest.raises(Rejected) as refused:
        pool.admit(pending("flood-a", 3, fee=1000))
    assert refused.value.code == "PoolFull"
    assert len(pool) == 6 and "honest/0" in pool


def test_the_lowest_fee_goes_first_among_equals_and_a_cap_per_signer() -> None:
    pool = Pool(max_extrinsics=2, max_bytes=10**6, max_per_signer=2)
    pool.admit(pending("a", 0, fee=10))
    pool.admit(pending("b", 0, fee=30))
    assert [p.hash for p in pool.admit(pending("c", 0, fee=20))] == ["a/0"]
    with pytest.raises(Rejected):  # no one heavier, and no one cheaper
        pool.admit(pending("d", 0, fee=5))
    capped = Pool(max_extrinsics=10, max_bytes=10**6, max_per_signer=2)
    capped.admit(pending("a", 0))
    capped.admit(pending("a", 1))
    with pytest.raises(Rejected) as refused:
        capped.admit(pending("a", 2))
    assert refused.value.code == "TooManyPending"


def test_bytes_are_bounded_too() -> None:
    pool = Pool(max_extrinsics=100, max_bytes=1000, max_per_signer=10)
    pool.admit(pending("big", 0, size=600))
    pool.admit(pending("big", 1, size=300))
    assert [p.hash for p in pool.admit(pending("small", 0, size=300))] == ["big/1"]
    with pytest.raises(Rejected):
        pool.admit(pending("huge", 0, size=1001))


def test_blocks_serve_the_least_recently_served_signers_first() -> None:
    pool = Pool(max_extrinsics=100, max_bytes=10**6, max_per_signer=10)
    for nonce in range(5):
        pool.admit(pending("flood", nonce))
    first = pool.take(2)
    assert [p.hash for p in first] == ["flood/0", "flood/1"]
    pool.release(first)
    pool.admit(pending("honest", 0))  # arrived after the flood's queue
    assert [p.hash for p in pool.take(2)] == ["honest/0", "flood/2"]
    assert pool.queued("flood") == (3, 30)  # one in the block being built, two waiting


def test_a_failed_block_puts_its_extrinsics_back_in_order() -> None:
    pool = Pool(max_extrinsics=100, max_bytes=10**6, max_per_signer=10)
    for nonce in range(3):
        pool.admit(pending("a", nonce))
    batch = pool.take(2)
    pool.put_back(batch)
    assert [p.hash for p in pool.take(3)] == ["a/0", "a/1", "a/2"]


def test_an_unfunded_key_cannot_transact_and_fees_count_what_is_queued(tmp_path: Path) -> None:
    params = dev_params(block_time=0.0)
    node = LedgerNode(tmp_path / "chain.db", Genesis(params=params, dev=True))
    try:
        stranger = Keypair.generate()
        refused = pytest.raises(Rejected)
        with refused as below:
            node.submit(
                Extrinsic.sign(
                    stranger, node.genesis_hash, "oss.register", {"endpoint": "http://x"}, 0
                )
            )
        assert below.value.code == "BelowExistentialDeposit"
        # The dev faucet is free, so fresh keys on a dev network can fund themselves.
        node.submit(Extrinsic.sign(stranger, node.genesis_hash, "balances.faucet", {}, 0))
        node.produce_block()
        # Barely funded: the first extrinsic's fee is covered, a second one queued is not.
        poor = Keypair.generate()
        transfer = {"dest": poor.address, "amount": params.existential_deposit + params.base_fee}
        node.submit(Extrinsic.sign(ALICE, node.genesis_hash, "balances.transfer", transfer, 0))
        node.produce_block()
        args = {"dest": ALICE.address, "amount": 1}
        node.submit(Extrinsic.sign(poor, node.genesis_hash, "balances.transfer", args, 0))
        with pytest.raises(Rejected) as short:
            node.submit(Extrinsic.sign(poor, node.genesis_hash, "balances.transfer", args, 1))
        assert short.value.code in ("InsufficientFee", "BelowExistentialDeposit")
    finally:
        node.close()


def test_a_flood_from_fifty_funded_keys_leaves_honest_users_included_within_three_blocks(
    tmp_path: Path,
) -> None:
    """The must-show at small parameters; bench/bench_chain.py runs it for 3 minutes."""
    params = dev_params(
        block_time=0.0, max_pool_extrinsics=200, max_pool_per_signer=8, max_block_extrinsics=40
    )
    node = LedgerNode(tmp_path / "chain.db", Genesis(params=params, dev=True))
    try:
        flooders = [Keypair.generate() for _ in range(50)]
        honest = [Keypair.generate() for _ in range(3)]
        for key in flooders + honest:
            node.submit(Extrinsic.sign(key, node.genesis_hash, "balances.faucet", {}, 0))
        while node.pool_size():
            node.produce_block()
        junk = {"fids": ["00" * 32] * 300}  # fails in dispatch, and pays for its length
        waits = []
        for round_number in range(30):
            for key in flooders:  # every flooder tops up to its share, at the pool cap
                while True:
                    nonce = node.next_nonce(key.address)
                    call = Extrinsic.sign(
                        key, node.genesis_hash, "file_bank.transfer_reports", junk, nonce
                    )
                    try:
                        node.submit(call)
                    except Rejected:
                        break
            assert node.pool_size() == params.max_pool_extrinsics
            user = honest[round_number % len(honest)]
            tx = Extrinsic.sign(
                user,
                node.genesis_hash,
                "balances.transfer",
                {"dest": ALICE.address, "amount": TOKEN},
                node.next_nonce(user.address),
            )
            tx_hash = node.submit(tx)
            for waited in range(1, 4):
                node.produce_block()
                if node.receipt(tx_hash) is not None:
                    waits.append(waited)
                    break
            else:
                pytest.fail(f"round {round_number}: not included within 3 blocks")
        assert max(waits) <= 3
    finally:
        node.close()
