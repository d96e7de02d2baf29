"""Storage handler: territories, the paid quota users store into.

A territory (owner, name) has ``total`` bytes, of which ``used`` hold active files and
``locked`` are promised to deals in flight; ``remaining = total - used - locked``.
Lifecycle: Active until its deadline, then Frozen (readable, no new files, renewable),
then Expired after ``grace_period`` blocks: its files are released (file bank) and the
space leaves the network's purchased total.
"""

import hashlib
import sqlite3
from typing import Any

from chain_client.modules import balances, sminer
from chain_client.runtime import (
    CallContext,
    CallSpec,
    DispatchError,
    ModuleSpec,
    QueryContext,
    QuerySpec,
    checked_add,
    ensure,
)
from chain_client.types import U32, Address, Args, Name, NoArgs

__all__ = ["ACTIVE", "EXPIRED", "FROZEN", "MODULE", "move_territory_space", "territory"]

NAME = "storage_handler"
ACTIVE, FROZEN, EXPIRED = "active", "frozen", "expired"
MAX_GIB = 1 << 30

SCHEMA = """
CREATE TABLE IF NOT EXISTS territories (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    token TEXT NOT NULL,
    total INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    start_block INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS territories_deadline ON territories (state, deadline);
CREATE TABLE IF NOT EXISTS storage_handler_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)
    WITHOUT ROWID;
"""

_COLUMNS = "owner, name, token, total, used, locked, state, start_block, deadline"


def territory(db: sqlite3.Connection, owner: str, name: str) -> dict[str, Any] | None:
    cursor = db.execute(
        f"SELECT {_COLUMNS} FROM territories WHERE owner = ? AND name = ?", (owner, name)
    )
    row = cursor.fetchone()
    return _territory_json(row) if row else None


def expired_territories(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(owner, name) of every expired territory, in order."""
    rows = db.execute(
        "SELECT owner, name FROM territories WHERE state = ? ORDER BY owner, name", (EXPIRED,)
    ).fetchall()
    return [(str(owner), str(name)) for owner, name in rows]


def _territory_json(row: tuple[Any, ...]) -> dict[str, Any]:
    names = [c.strip() for c in _COLUMNS.split(",")]
    record = dict(zip(names, row, strict=True))
    record["remaining"] = record["total"] - record["used"] - record["locked"]
    return record


def _require(db: sqlite3.Connection, owner: str, name: str) -> dict[str, Any]:
    found = territory(db, owner, name)
    if found is None:
        raise DispatchError(NAME, "NoSuchTerritory", f"{owner} has no territory {name!r}")
    return found


def move_territory_space(
    ctx: CallContext, owner: str, name: str, *, used: int = 0, locked: int = 0
) -> dict[str, Any]:
    """Charges or releases territory space. A new charge (a positive net delta) needs an
    Active territory with room; releasing, or moving locked to used, works in any state."""
    found = _require(ctx.db, owner, name)
    if used + locked > 0:
        ensure(
            found["state"] == ACTIVE,
            NAME,
            "TerritoryNotActive",
            f"territory {name!r} of {owner} is {found['state']}",
        )
    new_used, new_locked = found["used"] + used, found["locked"] + locked
    ensure(new_used >= 0 and new_locked >= 0, NAME, "SpaceUnderflow", f"territory {name!r}")
    ensure(
        new_used + new_locked <= found["total"],
        NAME,
        "InsufficientTerritorySpace",
        f"territory {name!r} has {found['remaining']} bytes left, "
        f"needs {max(used, 0) + max(locked, 0)}",
    )
    ctx.db.execute(
        "UPDATE territories SET used = ?, locked = ? WHERE owner = ? AND name = ?",
        (new_used, new_locked, owner, name),
    )
    found.update(used=new_used, locked=new_locked, remaining=found["total"] - new_used - new_locked)
    return found


def _purchased(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM storage_handler_meta WHERE key = 'purchased'").fetchone()
    return int(row[0]) if row else 0


def _add_purchased(ctx: CallContext, delta: int) -> None:
    value = _purchased(ctx.db) + delta
    assert value >= 0, "purchased space cannot go negative"
    ctx.db.execute(
        "INSERT OR REPLACE INTO storage_handler_meta (key, value) VALUES ('purchased', ?)", (value,)
    )


def _sell_space(ctx: CallContext, space: int) -> None:
    """Only certified space can be sold: purchased never exceeds idle + service."""
    available = sminer.certified_space(ctx.db) - _purchased(ctx.db)
    ensure(
        space <= available,
        NAME,
        "InsufficientAvailableSpace",
        f"the network has {max(available, 0)} unsold bytes, asked for {space}",
    )
    _add_purchased(ctx, space)


def _pay(ctx: CallContext, amount: int) -> None:
    balances.debit(ctx, ctx.caller, amount)
    balances.credit(ctx, balances.TREASURY, amount)


class MintArgs(Args):
    name: Name
    gib: U32
    days: U32


def mint_territory(ctx: CallContext, args: MintArgs) -> None:
    params = ctx.params
    ensure(1 <= args.gib <= MAX_GIB, NAME, "BadSize", f"1 to {MAX_GIB} GiB")
    ensure(
        args.days >= params.territory_min_days,
        NAME,
        "LeaseTooShort",
        f"at least {params.territory_min_days} days",
    )
    existing = territory(ctx.db, ctx.caller, args.name)
    ensure(
        existing is None or existing["state"] == EXPIRED,
        NAME,
        "TerritoryExists",
        f"{ctx.caller} already has territory {args.name!r}",
    )
    price = checked_add(NAME, args.gib * args.days * params.territory_unit_price)
    space = args.gib * ctx.params.territory_unit
    _sell_space(ctx, space)
    _pay(ctx, price)
    token = hashlib.sha256(ctx.randomness + ctx.caller.encode() + args.name.encode()).hexdigest()
    deadline = ctx.height + args.days * params.blocks_per_day
    ctx.db.execute(
        f"INSERT OR REPLACE INTO territories ({_COLUMNS}) VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?)",
        (ctx.caller, args.name, token, space, ACTIVE, ctx.height, deadline),
    )
    ctx.emit(
        NAME,
        "TerritoryMinted",
        owner=ctx.caller,
        name=args.name,
        total=space,
        deadline=deadline,
        price=price,
    )


class ExpandArgs(Args):
    name: Name
    gib: U32


def expand_territory(ctx: CallContext, args: ExpandArgs) -> None:
    found = _require(ctx.db, ctx.caller, args.name)
    ensure(
        found["state"] == ACTIVE, NAME, "TerritoryNotActive", f"{args.name!r} is {found['state']}"
    )
    unit = ctx.params.territory_unit
    ensure(
        args.gib >= 1 and found["total"] // unit + args.gib <= MAX_GIB,
        NAME,
        "BadSize",
        f"a territory holds 1 to {MAX_GIB} GiB",
    )
    days_left = -(-(found["deadline"] - ctx.height) // ctx.params.blocks_per_day)
    price = checked_add(NAME, args.gib * days_left * ctx.params.territory_unit_price)
    space = args.gib * ctx.params.territory_unit
    _sell_space(ctx, space)
    _pay(ctx, price)
    ctx.db.execute(
        "UPDATE territories SET total = total + ? WHERE owner = ? AND name = ?",
        (space, ctx.caller, args.name),
    )
    ctx.emit(
        NAME,
        "TerritoryExpanded",
        owner=ctx.caller,
        name=args.name,
        total=found["total"] + space,
        price=price,
    )


class RenewArgs(Args):
    name: Name
    days: U32


def renew_territory(ctx: CallContext, args: RenewArgs) -> None:
    found = _require(ctx.db, ctx.caller, args.name)
    ensure(
        found["state"] in (ACTIVE, FROZEN),
        NAME,
        "TerritoryExpired",
        f"{args.name!r} expired; mint it again",
    )
    ensure(args.days >= 1, NAME, "LeaseTooShort", "at least 1 day")
    gib = found["total"] // ctx.params.territory_unit
    price = checked_add(NAME, gib * args.days * ctx.params.territory_unit_price)
    _pay(ctx, price)
    deadline = max(found["deadline"], ctx.height) + args.days * ctx.params.blocks_per_day
    ctx.db.execute(
        "UPDATE territories SET deadline = ?, state = ? WHERE owner = ? AND name = ?",
        (deadline, ACTIVE, ctx.caller, args.name),
    )
    ctx.emit(
        NAME, "TerritoryRenewed", owner=ctx.caller, name=args.name, deadline=deadline, price=price
    )


def on_finalize(ctx: CallContext) -> None:
    due = ctx.db.execute(
        "SELECT owner, name FROM territories WHERE state = ? AND deadline <= ?",
        (ACTIVE, ctx.height),
    ).fetchall()
    for owner, name in due:
        ctx.db.execute(
            "UPDATE territories SET state = ? WHERE owner = ? AND name = ?", (FROZEN, owner, name)
        )
        ctx.emit(NAME, "TerritoryFrozen", owner=owner, name=name)
    expired = ctx.db.execute(
        "SELECT owner, name, total FROM territories WHERE state = ? AND deadline + ? <= ?",
        (FROZEN, ctx.params.grace_period, ctx.height),
    ).fetchall()
    for owner, name, total in expired:
        ctx.db.execute(
            "UPDATE territories SET state = ? WHERE owner = ? AND name = ?", (EXPIRED, owner, name)
        )
        _add_purchased(ctx, -total)
        ctx.emit(NAME, "TerritoryExpired", owner=owner, name=name)


class TerritoryArgs(Args):
    owner: Address
    name: Name


def query_territory(ctx: QueryContext, args: TerritoryArgs) -> dict[str, Any] | None:
    return territory(ctx.db, args.owner, args.name)


class OwnerArgs(Args):
    owner: Address | None = None


def query_territories(ctx: QueryContext, args: OwnerArgs) -> list[dict[str, Any]]:
    if args.owner is None:
        rows = ctx.db.execute(f"SELECT {_COLUMNS} FROM territories ORDER BY owner, name")
    else:
        rows = ctx.db.execute(
            f"SELECT {_COLUMNS} FROM territories WHERE owner = ? ORDER BY name", (args.owner,)
        )
    return [_territory_json(row) for row in rows]


def query_purchased(ctx: QueryContext, args: NoArgs) -> int:
    return _purchased(ctx.db)


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("mint_territory", MintArgs, mint_territory),
        CallSpec("expand_territory", ExpandArgs, expand_territory),
        CallSpec("renew_territory", RenewArgs, renew_territory),
    ),
    queries=(
        QuerySpec("territory", TerritoryArgs, query_territory),
        QuerySpec("territories", OwnerArgs, query_territories),
        QuerySpec("purchased", NoArgs, query_purchased),
    ),
    on_finalize=on_finalize,
)
