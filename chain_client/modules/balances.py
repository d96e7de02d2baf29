"""Balances: free and reserved funds, transfers, and the dev faucet.

Amounts are u128 base units, stored as decimal TEXT because SQLite integers stop at 2**63.
Reserved funds are miners' collateral; penalties are slashed from them to the treasury.
"""

import hashlib
import sqlite3

from chain_client.keys import dev_accounts
from chain_client.params import Genesis, NetworkParams
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
from chain_client.ss58 import canonical_address, ss58_encode
from chain_client.types import U128, Address, Args, NoArgs

__all__ = [
    "MODULE",
    "TREASURY",
    "balance",
    "credit",
    "debit",
    "extrinsic_fee",
    "mint",
    "pay_fee",
    "reserve",
    "slash_reserved",
    "unreserve",
]

NAME = "balances"
# Nobody holds this key: the address is a hash, so only the runtime moves its funds.
TREASURY = ss58_encode(hashlib.sha256(b"deoss/treasury").digest())

SCHEMA = """
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    free TEXT NOT NULL,
    reserved TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS balances_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


def balance(db: sqlite3.Connection, account: str) -> tuple[int, int]:
    row = db.execute("SELECT free, reserved FROM balances WHERE account = ?", (account,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _store(ctx: CallContext, account: str, free: int, reserved: int) -> None:
    ctx.db.execute(
        "INSERT INTO balances (account, free, reserved) VALUES (?, ?, ?) "
        "ON CONFLICT(account) DO UPDATE SET free = excluded.free, reserved = excluded.reserved",
        (account, str(free), str(reserved)),
    )


def _issuance(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM balances_meta WHERE key = 'issuance'").fetchone()
    return int(row[0]) if row else 0


def mint(ctx: CallContext, account: str, amount: int) -> None:
    """New money: genesis endowments, the dev faucet and era rewards."""
    issuance = checked_add(NAME, _issuance(ctx.db), amount)
    ctx.db.execute(
        "INSERT OR REPLACE INTO balances_meta (key, value) VALUES ('issuance', ?)", (str(issuance),)
    )
    credit(ctx, account, amount)


def credit(ctx: CallContext, account: str, amount: int) -> None:
    free, reserved = balance(ctx.db, account)
    _store(ctx, account, checked_add(NAME, free, amount), reserved)


def debit(ctx: CallContext, account: str, amount: int) -> None:
    free, reserved = balance(ctx.db, account)
    ensure(free >= amount, NAME, "InsufficientBalance", f"{account} has {free}, needs {amount}")
    _store(ctx, account, free - amount, reserved)


def reserve(ctx: CallContext, account: str, amount: int) -> None:
    free, reserved = balance(ctx.db, account)
    ensure(free >= amount, NAME, "InsufficientBalance", f"{account} has {free}, needs {amount}")
    _store(ctx, account, free - amount, checked_add(NAME, reserved, amount))


def unreserve(ctx: CallContext, account: str, amount: int) -> None:
    free, reserved = balance(ctx.db, account)
    amount = min(amount, reserved)
    _store(ctx, account, checked_add(NAME, free, amount), reserved - amount)


def slash_reserved(ctx: CallContext, account: str, amount: int) -> int:
    """Moves up to ``amount`` of reserved funds to the treasury; returns what was taken."""
    free, reserved = balance(ctx.db, account)
    taken = min(amount, reserved)
    _store(ctx, account, free, reserved - taken)
    credit(ctx, TREASURY, taken)
    return taken


def extrinsic_fee(params: NetworkParams, weight: int, length: int) -> int:
    """What an extrinsic of ``length`` signed bytes calling a call of ``weight`` pays
    (docs/chain.md §2.2), as Substrate's transaction payment: base + length + weight."""
    return params.base_fee + params.byte_fee * length + params.weight_fee * weight


def pay_fee(ctx: CallContext, account: str, fee: int) -> bool:
    """Moves an extrinsic's fee from the signer's free balance to the treasury, before its
    call runs; False (nothing moved) when the free balance does not cover it."""
    free, reserved = balance(ctx.db, account)
    if free < fee:
        return False
    _store(ctx, account, free - fee, reserved)
    credit(ctx, TREASURY, fee)
    ctx.emit(NAME, "FeePaid", who=account, fee=fee)
    return True


class TransferArgs(Args):
    dest: Address
    amount: U128


def transfer(ctx: CallContext, args: TransferArgs) -> None:
    ensure(args.dest != ctx.caller, NAME, "SelfTransfer", "sender and destination are the same")
    # An account below the existential deposit cannot transact, so creating one that small
    # would only leave dust on the ledger.
    ensure(
        args.amount >= ctx.params.existential_deposit or sum(balance(ctx.db, args.dest)) > 0,
        NAME,
        "ExistentialDeposit",
        f"a new account needs at least {ctx.params.existential_deposit}",
    )
    debit(ctx, ctx.caller, args.amount)
    credit(ctx, args.dest, args.amount)
    ctx.emit(NAME, "Transfer", source=ctx.caller, dest=args.dest, amount=args.amount)


class FaucetArgs(Args):
    dest: Address | None = None
    amount: U128 | None = None


def faucet(ctx: CallContext, args: FaucetArgs) -> None:
    amount = ctx.params.faucet_amount if args.amount is None else args.amount
    if amount > ctx.params.faucet_amount:
        raise DispatchError(NAME, "FaucetLimit", f"at most {ctx.params.faucet_amount} per call")
    dest = args.dest or ctx.caller
    mint(ctx, dest, amount)
    ctx.emit(NAME, "Faucet", dest=dest, amount=amount)


class AccountArgs(Args):
    account: Address


def query_account(ctx: QueryContext, args: AccountArgs) -> dict[str, int]:
    free, reserved = balance(ctx.db, args.account)
    return {"free": free, "reserved": reserved}


def query_issuance(ctx: QueryContext, args: NoArgs) -> int:
    return _issuance(ctx.db)


def query_treasury(ctx: QueryContext, args: NoArgs) -> str:
    return TREASURY


def genesis(ctx: CallContext, spec: Genesis) -> None:
    for account, amount in spec.endowed:
        mint(ctx, canonical_address(account), amount)
    if spec.dev:
        for address in dev_accounts().values():
            mint(ctx, address, spec.params.dev_endowment)


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("transfer", TransferArgs, transfer),
        CallSpec("faucet", FaucetArgs, faucet, dev_only=True),
    ),
    queries=(
        QuerySpec("account", AccountArgs, query_account),
        QuerySpec("issuance", NoArgs, query_issuance),
        QuerySpec("treasury", NoArgs, query_treasury),
    ),
    genesis=genesis,
)
