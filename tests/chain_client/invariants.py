"""The chain's accounting invariants, checked straight on a node's database."""

import sqlite3
from collections import defaultdict

__all__ = ["check_invariants"]


def check_invariants(db: sqlite3.Connection) -> None:
    miners = db.execute(
        "SELECT account, declared, idle, locked, service, pending_replacement, certified, state "
        "FROM sminer_miners"
    ).fetchall()
    totals = dict(db.execute("SELECT key, value FROM sminer_totals").fetchall())
    sums: dict[str, int] = defaultdict(int)
    for account, declared, idle, locked, service, pending, certified, _state in miners:
        for name, value in (
            ("declared", declared),
            ("idle", idle),
            ("locked", locked),
            ("service", service),
            ("pending", pending),
            ("certified", certified),
        ):
            assert value >= 0, f"{account}: {name} = {value} < 0"
        assert idle + locked + service <= declared, (
            f"{account}: {idle}+{locked}+{service} > {declared}"
        )
        assert certified == idle + locked + pending, (
            f"{account}: certified {certified} != idle {idle} + locked {locked} + pending {pending}"
        )
        sums["declared"] += declared
        sums["idle"] += idle
        sums["locked"] += locked
        sums["service"] += service
    for key in ("declared", "idle", "locked", "service"):
        assert totals.get(key, 0) == sums[key], (
            f"network {key} {totals.get(key, 0)} != sum {sums[key]}"
        )

    held: dict[tuple[str, str], int] = defaultdict(int)
    for miner, state, size in db.execute(
        "SELECT f.miner, file.state, f.size FROM fb_fragments f JOIN fb_files file "
        "ON file.fid = f.fid WHERE f.miner IS NOT NULL"
    ):
        held[(miner, state)] += size
    for account, _declared, _idle, locked, service, _pending, _certified, _state in miners:
        assert locked == held[(account, "deal")], (
            f"{account}: locked {locked} != deals {held[(account, 'deal')]}"
        )
        assert service == held[(account, "active")], (
            f"{account}: service {service} != files {held[(account, 'active')]}"
        )

    shared = db.execute(
        "SELECT fragment_id FROM fb_fragments GROUP BY fragment_id HAVING COUNT(*) > 1"
    ).fetchall()
    assert not shared, f"fragments recorded twice: {shared}"

    charged: dict[tuple[str, str, str], int] = defaultdict(int)
    for owner, territory, state, amount in db.execute(
        "SELECT r.owner, r.territory, f.state, r.charged FROM fb_refs r JOIN fb_files f "
        "ON f.fid = r.fid"
    ):
        charged[(owner, territory, state)] += amount
    purchased = 0
    for owner, name, total, used, locked, state in db.execute(
        "SELECT owner, name, total, used, locked, state FROM territories"
    ):
        remaining = total - used - locked
        assert used >= 0 and locked >= 0 and remaining >= 0, (
            f"{owner}/{name}: {used} {locked} {total}"
        )
        assert used + locked + remaining == total
        assert used == charged[(owner, name, "active")], f"{owner}/{name}: used {used}"
        assert locked == charged[(owner, name, "deal")], f"{owner}/{name}: locked {locked}"
        if state != "expired":
            purchased += total
    row = db.execute("SELECT value FROM storage_handler_meta WHERE key = 'purchased'").fetchone()
    assert (row[0] if row else 0) == purchased, "purchased space != sum of live territories"

    issuance_row = db.execute("SELECT value FROM balances_meta WHERE key = 'issuance'").fetchone()
    total_funds = 0
    for account, free, reserved in db.execute("SELECT account, free, reserved FROM balances"):
        assert int(free) >= 0 and int(reserved) >= 0, f"{account}: negative balance"
        total_funds += int(free) + int(reserved)
    assert total_funds == int(issuance_row[0] if issuance_row else 0), "funds != issuance"
