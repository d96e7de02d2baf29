"""OSS: gateways register their endpoint and bond; users authorize gateways to act for
them.

An authorized gateway may declare, delete and repair files for its owner (file bank
checks ``may_act_for``). At most ``max_authorized_gateways`` per owner, as CESS.

Registering reserves a bond (``gateway_bond`` unless told otherwise), and only a gateway
whose bond holds at least ``gateway_bond`` counts as one (``is_bonded``): miners serve
it, it may claim restoral orders and report fragments. Registering alone grants nothing:
before bonds, any fresh key registered for free and then wrote junk to every miner,
stalled repair by claiming every order and opened challenges at will (security review
#3, #4). A lapsed restoral claim and a report the miner disproves are slashed from the
bond (``slash_bond``); ``bond`` tops it up; ``destroy`` returns what is left.
"""

import sqlite3
from typing import Any

from chain_client.modules import balances
from chain_client.params import NetworkParams
from chain_client.runtime import (
    CallContext,
    CallSpec,
    ModuleSpec,
    QueryContext,
    QuerySpec,
    ensure,
)
from chain_client.types import U128, Address, Args, Endpoint, NoArgs

__all__ = ["MODULE", "gateway_endpoint", "is_bonded", "is_gateway", "may_act_for", "slash_bond"]

NAME = "oss"

SCHEMA = """
CREATE TABLE IF NOT EXISTS oss_gateways (
    account TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    scheme TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    bond TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oss_authorizations (
    owner TEXT NOT NULL,
    gateway TEXT NOT NULL,
    authorized_at INTEGER NOT NULL,
    PRIMARY KEY (owner, gateway)
) WITHOUT ROWID;
"""


def is_gateway(db: sqlite3.Connection, account: str) -> bool:
    row = db.execute("SELECT 1 FROM oss_gateways WHERE account = ?", (account,)).fetchone()
    return row is not None


def _bond(db: sqlite3.Connection, account: str) -> int | None:
    row = db.execute("SELECT bond FROM oss_gateways WHERE account = ?", (account,)).fetchone()
    return int(row[0]) if row else None


def is_bonded(db: sqlite3.Connection, params: NetworkParams, account: str) -> bool:
    """A registered gateway whose bond covers ``gateway_bond``: one that counts."""
    bond = _bond(db, account)
    return bond is not None and bond >= params.gateway_bond


def slash_bond(ctx: CallContext, account: str, amount: int, reason: str) -> int:
    """Takes up to ``amount`` of a gateway's bond to the treasury; what was taken."""
    bond = _bond(ctx.db, account)
    if not bond:
        return 0
    taken = balances.slash_reserved(ctx, account, min(amount, bond))
    ctx.db.execute(
        "UPDATE oss_gateways SET bond = ? WHERE account = ?", (str(bond - taken), account)
    )
    ctx.emit(NAME, "BondSlashed", account=account, amount=taken, reason=reason)
    return taken


def gateway_endpoint(db: sqlite3.Connection, account: str) -> str | None:
    row = db.execute("SELECT endpoint FROM oss_gateways WHERE account = ?", (account,)).fetchone()
    return str(row[0]) if row else None


def may_act_for(db: sqlite3.Connection, operator: str, owner: str) -> bool:
    if operator == owner:
        return True
    row = db.execute(
        "SELECT 1 FROM oss_authorizations WHERE owner = ? AND gateway = ?", (owner, operator)
    ).fetchone()
    return row is not None


class EndpointArgs(Args):
    endpoint: Endpoint


class RegisterArgs(EndpointArgs):
    bond: U128 | None = None  # what to reserve; gateway_bond when absent


def register(ctx: CallContext, args: RegisterArgs) -> None:
    ensure(not is_gateway(ctx.db, ctx.caller), NAME, "AlreadyRegistered", ctx.caller)
    bond = ctx.params.gateway_bond if args.bond is None else args.bond
    balances.reserve(ctx, ctx.caller, bond)
    ctx.db.execute(
        "INSERT INTO oss_gateways (account, endpoint, scheme, registered_at, bond) "
        "VALUES (?, ?, ?, ?, ?)",
        (ctx.caller, args.endpoint, ctx.scheme, ctx.height, str(bond)),
    )
    ctx.emit(NAME, "GatewayRegistered", account=ctx.caller, endpoint=args.endpoint, bond=bond)


class BondArgs(Args):
    amount: U128


def bond(ctx: CallContext, args: BondArgs) -> None:
    held = _bond(ctx.db, ctx.caller)
    ensure(held is not None, NAME, "NotRegistered", ctx.caller)
    assert held is not None
    balances.reserve(ctx, ctx.caller, args.amount)
    total = held + args.amount
    ctx.db.execute("UPDATE oss_gateways SET bond = ? WHERE account = ?", (str(total), ctx.caller))
    ctx.emit(NAME, "Bonded", account=ctx.caller, amount=args.amount, bond=total)


def update(ctx: CallContext, args: EndpointArgs) -> None:
    ensure(is_gateway(ctx.db, ctx.caller), NAME, "NotRegistered", ctx.caller)
    ctx.db.execute(
        "UPDATE oss_gateways SET endpoint = ? WHERE account = ?", (args.endpoint, ctx.caller)
    )
    ctx.emit(NAME, "GatewayUpdated", account=ctx.caller, endpoint=args.endpoint)


def destroy(ctx: CallContext, args: NoArgs) -> None:
    held = _bond(ctx.db, ctx.caller)
    ensure(held is not None, NAME, "NotRegistered", ctx.caller)
    balances.unreserve(ctx, ctx.caller, held or 0)
    ctx.db.execute("DELETE FROM oss_gateways WHERE account = ?", (ctx.caller,))
    ctx.emit(NAME, "GatewayDestroyed", account=ctx.caller)


class GatewayArgs(Args):
    gateway: Address


def authorize(ctx: CallContext, args: GatewayArgs) -> None:
    ensure(args.gateway != ctx.caller, NAME, "SelfAuthorization", "an owner always acts for itself")
    ensure(is_gateway(ctx.db, args.gateway), NAME, "NotRegistered", f"{args.gateway} is no gateway")
    ensure(
        not may_act_for(ctx.db, args.gateway, ctx.caller), NAME, "AlreadyAuthorized", args.gateway
    )
    (count,) = ctx.db.execute(
        "SELECT COUNT(*) FROM oss_authorizations WHERE owner = ?", (ctx.caller,)
    ).fetchone()
    limit = ctx.params.max_authorized_gateways
    ensure(count < limit, NAME, "TooManyAuthorizations", f"at most {limit} gateways per owner")
    ctx.db.execute(
        "INSERT INTO oss_authorizations (owner, gateway, authorized_at) VALUES (?, ?, ?)",
        (ctx.caller, args.gateway, ctx.height),
    )
    ctx.emit(NAME, "Authorized", owner=ctx.caller, gateway=args.gateway)


def cancel_authorize(ctx: CallContext, args: GatewayArgs) -> None:
    cursor = ctx.db.execute(
        "DELETE FROM oss_authorizations WHERE owner = ? AND gateway = ?", (ctx.caller, args.gateway)
    )
    ensure(cursor.rowcount == 1, NAME, "NotAuthorized", args.gateway)
    ctx.emit(NAME, "AuthorizationCancelled", owner=ctx.caller, gateway=args.gateway)


class AccountArgs(Args):
    account: Address


def query_gateway(ctx: QueryContext, args: AccountArgs) -> dict[str, Any] | None:
    row = ctx.db.execute(
        "SELECT account, endpoint, scheme, registered_at, bond FROM oss_gateways WHERE account = ?",
        (args.account,),
    ).fetchone()
    return _gateway_json(ctx.params, row) if row else None


def query_gateways(ctx: QueryContext, args: NoArgs) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        "SELECT account, endpoint, scheme, registered_at, bond FROM oss_gateways ORDER BY account"
    )
    return [_gateway_json(ctx.params, row) for row in rows]


def _gateway_json(params: NetworkParams, row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "account": row[0],
        "endpoint": row[1],
        "scheme": row[2],
        "registered_at": row[3],
        "bond": int(row[4]),
        "bonded": int(row[4]) >= params.gateway_bond,
    }


class OwnerArgs(Args):
    owner: Address


def query_authorizations(ctx: QueryContext, args: OwnerArgs) -> list[str]:
    rows = ctx.db.execute(
        "SELECT gateway FROM oss_authorizations WHERE owner = ? ORDER BY authorized_at, gateway",
        (args.owner,),
    )
    return [row[0] for row in rows]


class AuthorizedArgs(Args):
    owner: Address
    gateway: Address


def query_is_authorized(ctx: QueryContext, args: AuthorizedArgs) -> bool:
    return may_act_for(ctx.db, args.gateway, args.owner)


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("register", RegisterArgs, register),
        CallSpec("update", EndpointArgs, update),
        CallSpec("bond", BondArgs, bond),
        CallSpec("destroy", NoArgs, destroy),
        CallSpec("authorize", GatewayArgs, authorize),
        CallSpec("cancel_authorize", GatewayArgs, cancel_authorize),
    ),
    queries=(
        QuerySpec("gateway", AccountArgs, query_gateway),
        QuerySpec("gateways", NoArgs, query_gateways),
        QuerySpec("authorizations", OwnerArgs, query_authorizations),
        QuerySpec("is_authorized", AuthorizedArgs, query_is_authorized),
    ),
)
