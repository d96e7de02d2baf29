"""Sminer: storage miners, their collateral and their space classes.

Space classes per miner (bytes):

- ``declared``: what the miner staked collateral for; unverified, earns nothing.
- ``idle``: certified idle units not promised to any file; this is what can be bought.
- ``locked``: promised to files whose deal is in flight.
- ``service``: holding user data of active files.
- ``pending_replacement``: user data that arrived while the idle units it displaced are
  still on disk; the miner owes the deletion of that many idle bytes.
- ``certified``: bytes of idle units committed on chain.

Invariants, checked after every change: every class >= 0; idle + locked + service <=
declared; certified == idle + locked + pending_replacement (an idle unit stays on disk
until it is replaced, whatever it was promised to); the network totals are the sums.
"""

import json
import sqlite3
from typing import Any

from pydantic import BaseModel, Field

from chain_client.idle import idle_seed
from chain_client.idle_proofs import LayerConsistencyProof, cert_challenges, verify_certification
from chain_client.modules import balances
from chain_client.params import TIB, NetworkParams
from chain_client.runtime import (
    CallContext,
    CallSpec,
    DispatchError,
    ModuleSpec,
    QueryContext,
    QuerySpec,
    checked_add,
    ensure,
    one_row,
)
from chain_client.ss58 import ss58_decode
from chain_client.types import U32, U64, U128, Address, Args, Endpoint, Hash32, NoArgs

__all__ = [
    "MODULE",
    "SPACE_FIELDS",
    "collateral_limit",
    "force_exit",
    "is_positive",
    "miner_row",
    "move_space",
    "power",
    "punish",
    "reward",
]

NAME = "sminer"
SPACE_FIELDS = ("declared", "idle", "locked", "service", "pending_replacement", "certified")
TOTAL_FIELDS = ("declared", "idle", "locked", "service")
MAX_UNITS_PER_CALL = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS sminer_miners (
    account TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    scheme TEXT NOT NULL,
    state TEXT NOT NULL,
    declared INTEGER NOT NULL,
    idle INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    service INTEGER NOT NULL DEFAULT 0,
    pending_replacement INTEGER NOT NULL DEFAULT 0,
    certified INTEGER NOT NULL DEFAULT 0,
    registered_at INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    state_since INTEGER NOT NULL,
    exit_at INTEGER,
    missed INTEGER NOT NULL DEFAULT 0,
    failed_proofs INTEGER NOT NULL DEFAULT 0,
    rewarded TEXT NOT NULL DEFAULT '0',
    next_unit INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sminer_miners_state ON sminer_miners (state);
CREATE TABLE IF NOT EXISTS sminer_idle_units (
    miner TEXT NOT NULL,
    unit_index INTEGER NOT NULL,
    state TEXT NOT NULL,
    root TEXT NOT NULL,
    layer_roots TEXT NOT NULL,
    anchor_height INTEGER NOT NULL,
    committed_at INTEGER NOT NULL,
    certified_at INTEGER,
    PRIMARY KEY (miner, unit_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sminer_idle_units_committed ON sminer_idle_units (state, committed_at);
CREATE TABLE IF NOT EXISTS sminer_totals (key TEXT PRIMARY KEY, value INTEGER NOT NULL)
    WITHOUT ROWID;
"""

POSITIVE, FROZEN, OFFLINE, EXITING, EXITED = "positive", "frozen", "offline", "exiting", "exited"
COMMITTED, CERTIFIED = "committed", "certified"  # idle unit states
_COLUMNS = (
    "account, endpoint, scheme, state, declared, idle, locked, service, pending_replacement, "
    "certified, registered_at, last_heartbeat, state_since, exit_at, missed, failed_proofs, "
    "rewarded, next_unit"
)


def collateral_limit(params: NetworkParams, space: int) -> int:
    """Collateral required for ``space`` bytes: per started TiB, at least one TiB's worth."""
    tib = max(1, -(-space // TIB))
    return tib * params.collateral_per_tib


def power(params: NetworkParams, idle: int, service: int) -> int:
    return (idle * params.idle_power_percent + service * params.service_power_percent) // 100


def miner_row(db: sqlite3.Connection, account: str) -> dict[str, Any] | None:
    cursor = db.execute(f"SELECT {_COLUMNS} FROM sminer_miners WHERE account = ?", (account,))
    record = one_row(cursor)
    if record is None:
        return None
    record["rewarded"] = int(record["rewarded"])
    return record


def _require(db: sqlite3.Connection, account: str) -> dict[str, Any]:
    miner = miner_row(db, account)
    if miner is None:
        raise DispatchError(NAME, "NotMiner", f"{account} is not a registered miner")
    return miner


def state_of(db: sqlite3.Connection, account: str) -> str | None:
    row = db.execute("SELECT state FROM sminer_miners WHERE account = ?", (account,)).fetchone()
    return None if row is None else str(row[0])


def is_positive(db: sqlite3.Connection, account: str) -> bool:
    return state_of(db, account) == POSITIVE


def scheme_of(db: sqlite3.Connection, account: str) -> str:
    """The signature scheme of a registered miner's key."""
    return str(_require(db, account)["scheme"])


def positive_count(db: sqlite3.Connection) -> int:
    (count,) = db.execute(
        "SELECT COUNT(*) FROM sminer_miners WHERE state = ?", (POSITIVE,)
    ).fetchone()
    return int(count)


def positive_miners(db: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """(account, idle, service) of every positive miner, by account."""
    rows = db.execute(
        "SELECT account, idle, service FROM sminer_miners WHERE state = ? ORDER BY account",
        (POSITIVE,),
    ).fetchall()
    return [(str(account), int(idle), int(service)) for account, idle, service in rows]


def gone_miners(db: sqlite3.Connection, params: NetworkParams, height: int) -> list[str]:
    """Miners whose fragments need restoring elsewhere: exited, or offline for longer than
    ``offline_restoral_delay``."""
    rows = db.execute(
        "SELECT account FROM sminer_miners WHERE state = 'exited' "
        "OR (state = 'offline' AND state_since + ? <= ?)",
        (params.offline_restoral_delay, height),
    ).fetchall()
    return [str(account) for (account,) in rows]


def certified_space(db: sqlite3.Connection) -> int:
    """Network-wide bytes certified and usable: idle, service and locked."""
    (total,) = db.execute(
        "SELECT COALESCE(SUM(CASE WHEN key IN ('idle', 'service', 'locked') THEN value END), 0) "
        "FROM sminer_totals"
    ).fetchone()
    return int(total)


def certified_unit_count(db: sqlite3.Connection, account: str) -> int:
    (count,) = db.execute(
        "SELECT COUNT(*) FROM sminer_idle_units WHERE miner = ? AND state = ?",
        (account, CERTIFIED),
    ).fetchone()
    return int(count)


def certified_unit_at(db: sqlite3.Connection, account: str, offset: int) -> tuple[int, str]:
    """(unit index, root) of the ``offset``-th certified idle unit by index."""
    unit_index, root = db.execute(
        "SELECT unit_index, root FROM sminer_idle_units "
        "WHERE miner = ? AND state = ? ORDER BY unit_index LIMIT 1 OFFSET ?",
        (account, CERTIFIED, offset),
    ).fetchone()
    return int(unit_index), str(root)


def record_proof(ctx: CallContext, account: str, *, passed: bool) -> dict[str, Any]:
    """A service proof's outcome: a pass clears the miner's failure and miss counts, a
    failure adds one. The miner's record after it."""
    if passed:
        ctx.db.execute(
            "UPDATE sminer_miners SET failed_proofs = 0, missed = 0 WHERE account = ?", (account,)
        )
    else:
        ctx.db.execute(
            "UPDATE sminer_miners SET failed_proofs = failed_proofs + 1 WHERE account = ?",
            (account,),
        )
    return _require(ctx.db, account)


def record_miss(ctx: CallContext, account: str) -> dict[str, Any]:
    """A challenge missed its deadline; the miner's record after it."""
    ctx.db.execute("UPDATE sminer_miners SET missed = missed + 1 WHERE account = ?", (account,))
    return _require(ctx.db, account)


def _set_state(ctx: CallContext, account: str, state: str) -> None:
    ctx.db.execute(
        "UPDATE sminer_miners SET state = ?, state_since = ? WHERE account = ?",
        (state, ctx.height, account),
    )
    ctx.emit(NAME, "MinerStateChanged", miner=account, state=state)


def _adjust_totals(ctx: CallContext, deltas: dict[str, int]) -> None:
    for key in TOTAL_FIELDS:
        if deltas.get(key):
            ctx.db.execute(
                "INSERT INTO sminer_totals (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (key, deltas[key]),
            )


def move_space(ctx: CallContext, account: str, **deltas: int) -> dict[str, Any]:
    """Applies space deltas to one miner and the network totals, refusing any change that
    would break an invariant of the module docstring."""
    unknown = set(deltas) - set(SPACE_FIELDS)
    assert not unknown, f"unknown space fields {unknown}"
    miner = _require(ctx.db, account)
    for key, delta in deltas.items():
        value = miner[key] + delta
        if value < 0:
            short = "InsufficientIdleSpace" if key == "idle" else "SpaceUnderflow"
            raise DispatchError(
                NAME, short, f"{account} {key} {miner[key]} cannot change by {delta}"
            )
        miner[key] = value
    used = miner["idle"] + miner["locked"] + miner["service"]
    ensure(
        used <= miner["declared"],
        NAME,
        "ExceedsDeclaredSpace",
        f"{account}: idle+locked+service {used} > declared {miner['declared']}",
    )
    ensure(
        miner["certified"] == miner["idle"] + miner["locked"] + miner["pending_replacement"],
        NAME,
        "SpaceAccounting",
        f"{account}: certified idle units do not match the space classes",
    )
    ctx.db.execute(
        "UPDATE sminer_miners SET declared = ?, idle = ?, locked = ?, service = ?, "
        "pending_replacement = ?, certified = ? WHERE account = ?",
        (*(miner[key] for key in SPACE_FIELDS), account),
    )
    _adjust_totals(ctx, deltas)
    return miner


def punish(ctx: CallContext, account: str, amount: int, reason: str) -> int:
    """Slashes collateral; a miner left under its collateral limit is frozen."""
    taken = balances.slash_reserved(ctx, account, amount)
    miner = _require(ctx.db, account)
    ctx.emit(NAME, "MinerPunished", miner=account, amount=taken, reason=reason)
    _, collateral = balances.balance(ctx.db, account)
    if miner["state"] == POSITIVE and collateral < collateral_limit(ctx.params, miner["declared"]):
        _set_state(ctx, account, FROZEN)
    return taken


def reward(ctx: CallContext, account: str, amount: int) -> None:
    miner = _require(ctx.db, account)
    balances.mint(ctx, account, amount)
    total = checked_add(NAME, miner["rewarded"], amount)
    ctx.db.execute("UPDATE sminer_miners SET rewarded = ? WHERE account = ?", (str(total), account))
    ctx.emit(NAME, "MinerRewarded", miner=account, amount=amount)


def force_exit(ctx: CallContext, account: str, reason: str) -> None:
    """Out now: its fragments get restoral orders (file bank watches exited miners)."""
    _finish_exit(ctx, _require(ctx.db, account), forced=True)
    ctx.emit(NAME, "MinerForcedExit", miner=account, reason=reason)


def _finish_exit(ctx: CallContext, miner: dict[str, Any], *, forced: bool) -> None:
    account = miner["account"]
    # Idle units go with the miner: idle space leaves the network; what it held for
    # files stays recorded (service/locked) until restoral moves it elsewhere.
    ctx.db.execute("DELETE FROM sminer_idle_units WHERE miner = ?", (account,))
    move_space(
        ctx,
        account,
        idle=-miner["idle"],
        pending_replacement=-miner["pending_replacement"],
        certified=-miner["certified"] + miner["locked"],
    )
    _, collateral = balances.balance(ctx.db, account)
    balances.unreserve(ctx, account, collateral)
    _set_state(ctx, account, EXITED)
    ctx.emit(NAME, "MinerExited", miner=account, forced=forced)


class RegisterArgs(Args):
    endpoint: Endpoint
    declared_space: U64
    collateral: U128


def register(ctx: CallContext, args: RegisterArgs) -> None:
    existing = miner_row(ctx.db, ctx.caller)
    ensure(existing is None, NAME, "AlreadyRegistered", ctx.caller)
    unit = ctx.params.idle_unit_size
    ensure(
        args.declared_space >= unit,
        NAME,
        "DeclaredSpaceTooSmall",
        f"declare at least one idle unit ({unit} bytes)",
    )
    limit = collateral_limit(ctx.params, args.declared_space)
    ensure(
        args.collateral >= limit,
        NAME,
        "CollateralTooLow",
        f"{args.declared_space} bytes need {limit}, offered {args.collateral}",
    )
    balances.reserve(ctx, ctx.caller, args.collateral)
    ctx.db.execute(
        "INSERT INTO sminer_miners (account, endpoint, scheme, state, declared, registered_at, "
        "last_heartbeat, state_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.caller,
            args.endpoint,
            ctx.scheme,
            POSITIVE,
            args.declared_space,
            ctx.height,
            ctx.height,
            ctx.height,
        ),
    )
    _adjust_totals(ctx, {"declared": args.declared_space})
    ctx.emit(
        NAME,
        "Registered",
        miner=ctx.caller,
        endpoint=args.endpoint,
        declared_space=args.declared_space,
        collateral=args.collateral,
    )


class EndpointArgs(Args):
    endpoint: Endpoint


def update_endpoint(ctx: CallContext, args: EndpointArgs) -> None:
    miner = _require(ctx.db, ctx.caller)
    ensure(miner["state"] != EXITED, NAME, "Exited", ctx.caller)
    ctx.db.execute(
        "UPDATE sminer_miners SET endpoint = ? WHERE account = ?", (args.endpoint, ctx.caller)
    )
    ctx.emit(NAME, "EndpointUpdated", miner=ctx.caller, endpoint=args.endpoint)


class AmountArgs(Args):
    amount: U128


def increase_collateral(ctx: CallContext, args: AmountArgs) -> None:
    miner = _require(ctx.db, ctx.caller)
    ensure(miner["state"] not in (EXITING, EXITED), NAME, "Exiting", ctx.caller)
    balances.reserve(ctx, ctx.caller, args.amount)
    _, collateral = balances.balance(ctx.db, ctx.caller)
    ctx.emit(
        NAME, "CollateralIncreased", miner=ctx.caller, amount=args.amount, collateral=collateral
    )
    if miner["state"] == FROZEN and collateral >= collateral_limit(ctx.params, miner["declared"]):
        _set_state(ctx, ctx.caller, POSITIVE)


class SpaceArgs(Args):
    space: U64


def increase_declared_space(ctx: CallContext, args: SpaceArgs) -> None:
    miner = _require(ctx.db, ctx.caller)
    ensure(miner["state"] == POSITIVE, NAME, "NotPositive", f"{ctx.caller} is {miner['state']}")
    declared = checked_add(NAME, miner["declared"], args.space, limit=2**63 - 1)
    _, collateral = balances.balance(ctx.db, ctx.caller)
    limit = collateral_limit(ctx.params, declared)
    ensure(
        collateral >= limit,
        NAME,
        "CollateralTooLow",
        f"{declared} bytes need {limit}, collateral is {collateral}",
    )
    move_space(ctx, ctx.caller, declared=args.space)
    ctx.emit(NAME, "DeclaredSpaceIncreased", miner=ctx.caller, declared_space=declared)


def _positive_caller(ctx: CallContext) -> dict[str, Any]:
    miner = _require(ctx.db, ctx.caller)
    ensure(miner["state"] == POSITIVE, NAME, "NotPositive", f"{ctx.caller} is {miner['state']}")
    return miner


class IdleCommitment(BaseModel):
    model_config = Args.model_config
    anchor_height: U64
    layer_roots: list[Hash32] = Field(min_length=1, max_length=64)


class CommitIdleArgs(Args):
    units: list[IdleCommitment]


def cert_idle_space(ctx: CallContext, args: CommitIdleArgs) -> None:
    """Step 1 of certification: commit the layer roots of new idle units.

    The leaves to prove are drawn from the randomness of the next block, which nobody
    knows when the roots are committed; so a miner cannot grind roots until the sampled
    leaves happen to be good ones (step 2, ``prove_idle_space``). Committed units hold
    declared space but are not idle space until proven."""
    miner = _positive_caller(ctx)
    count = len(args.units)
    ensure(1 <= count <= MAX_UNITS_PER_CALL, NAME, "BadUnitCount", f"1 to {MAX_UNITS_PER_CALL}")
    params = ctx.params
    unit_size = params.idle_unit_size
    (waiting,) = ctx.db.execute(
        "SELECT COUNT(*) FROM sminer_idle_units WHERE miner = ? AND state = ?",
        (ctx.caller, COMMITTED),
    ).fetchone()
    room = miner["declared"] - miner["idle"] - miner["locked"] - miner["service"]
    room -= waiting * unit_size
    ensure(
        count * unit_size <= room,
        NAME,
        "ExceedsDeclaredSpace",
        f"{count} units need {count * unit_size} bytes; {max(room, 0)} declared bytes are free",
    )
    layers = params.idle_layers
    index = miner["next_unit"]
    committed = []
    for unit in args.units:
        ensure(unit.anchor_height < ctx.height, NAME, "BadAnchor", "anchor must be a past block")
        ensure(
            ctx.height - unit.anchor_height <= params.idle_anchor_window,
            NAME,
            "StaleAnchor",
            f"anchor {unit.anchor_height} older than {params.idle_anchor_window} blocks",
        )
        ensure(
            len(unit.layer_roots) == layers,
            NAME,
            "BadLayerCount",
            f"unit {index}: {layers} layer roots required, got {len(unit.layer_roots)}",
        )
        ctx.db.execute(
            "INSERT INTO sminer_idle_units (miner, unit_index, state, root, layer_roots, "
            "anchor_height, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                ctx.caller,
                index,
                COMMITTED,
                unit.layer_roots[-1],
                json.dumps(unit.layer_roots),
                unit.anchor_height,
                ctx.height,
            ),
        )
        committed.append(index)
        index += 1
    ctx.db.execute("UPDATE sminer_miners SET next_unit = ? WHERE account = ?", (index, ctx.caller))
    ctx.emit(
        NAME,
        "IdleSpaceCommitted",
        miner=ctx.caller,
        units=committed,
        beacon_block=ctx.height + 1,
        prove_by=ctx.height + params.idle_anchor_window,
    )


class IdleUnitProof(BaseModel):
    model_config = Args.model_config
    unit_index: U64
    proofs: list[dict[str, Any]] = Field(max_length=1024)


class ProveIdleArgs(Args):
    units: list[IdleUnitProof]


def _block_field(db: sqlite3.Connection, height: int, column: str) -> bytes:
    row = db.execute(f"SELECT {column} FROM blocks WHERE height = ?", (height,)).fetchone()
    ensure(row is not None, NAME, "NoSuchBlock", str(height))
    return bytes.fromhex(row[0][2:])


def prove_idle_space(ctx: CallContext, args: ProveIdleArgs) -> None:
    """Step 2: prove the leaves that the beacon (the randomness of the block after the
    commitment) picked, in every layer; proven units become idle space."""
    _positive_caller(ctx)
    count = len(args.units)
    ensure(1 <= count <= MAX_UNITS_PER_CALL, NAME, "BadUnitCount", f"1 to {MAX_UNITS_PER_CALL}")
    ensure(len({u.unit_index for u in args.units}) == count, NAME, "BadUnitCount", "duplicates")
    params = ctx.params
    spec = params.idle_spec()
    public_key, _ = ss58_decode(ctx.caller)
    for unit in args.units:
        index = unit.unit_index
        row = ctx.db.execute(
            "SELECT layer_roots, anchor_height, committed_at FROM sminer_idle_units "
            "WHERE miner = ? AND unit_index = ? AND state = ?",
            (ctx.caller, index, COMMITTED),
        ).fetchone()
        ensure(row is not None, NAME, "NoSuchCommitment", f"{ctx.caller} committed no unit {index}")
        layer_roots, anchor_height, committed_at = row
        ensure(
            ctx.height >= committed_at + 2,
            NAME,
            "TooEarly",
            f"unit {index}: prove after block {committed_at + 1}: its randomness picks the leaves",
        )
        roots = [bytes.fromhex(root) for root in json.loads(layer_roots)]
        beacon = _block_field(ctx.db, committed_at + 1, "randomness")
        seed = idle_seed(public_key, index, _block_field(ctx.db, anchor_height, "hash"))
        challenges = cert_challenges(
            beacon, roots, public_key, index, params.idle_cert_samples, spec.leaf_count
        )
        try:
            proofs = [LayerConsistencyProof.from_json(raw) for raw in unit.proofs]
        except (ValueError, TypeError) as exc:
            raise DispatchError(NAME, "BadIdleProof", f"unit {index}: {exc}") from None
        ensure(
            verify_certification(spec, seed, roots, proofs, challenges),
            NAME,
            "BadIdleProof",
            f"unit {index}: the proofs do not show idle data derived from its seed",
        )
        ctx.db.execute(
            "UPDATE sminer_idle_units SET state = ?, certified_at = ? "
            "WHERE miner = ? AND unit_index = ?",
            (CERTIFIED, ctx.height, ctx.caller, index),
        )
    space = count * params.idle_unit_size
    move_space(ctx, ctx.caller, idle=space, certified=space)
    ctx.emit(
        NAME,
        "IdleSpaceCertified",
        miner=ctx.caller,
        units=[u.unit_index for u in args.units],
        space=space,
    )


def _expire_commitments(ctx: CallContext) -> None:
    expired = ctx.db.execute(
        "SELECT miner, unit_index FROM sminer_idle_units WHERE state = ? AND committed_at < ? "
        "ORDER BY miner, unit_index",
        (COMMITTED, ctx.height - ctx.params.idle_anchor_window),
    ).fetchall()
    by_miner: dict[str, list[int]] = {}
    for miner, index in expired:
        by_miner.setdefault(miner, []).append(index)
        ctx.db.execute(
            "DELETE FROM sminer_idle_units WHERE miner = ? AND unit_index = ?", (miner, index)
        )
    for miner, indices in by_miner.items():
        ctx.emit(NAME, "IdleCommitmentExpired", miner=miner, units=indices)


class ReplaceArgs(Args):
    unit_indices: list[U64]


def replace_idle_space(ctx: CallContext, args: ReplaceArgs) -> None:
    """The miner deleted these idle units to make room for user data it already holds."""
    miner = _require(ctx.db, ctx.caller)
    indices = args.unit_indices
    ensure(
        0 < len(indices) <= 1024 and len(set(indices)) == len(indices),
        NAME,
        "BadUnitList",
        "1 to 1024 distinct unit indices",
    )
    space = len(indices) * ctx.params.idle_unit_size
    ensure(
        space <= miner["pending_replacement"],
        NAME,
        "NothingToReplace",
        f"{space} bytes offered, {miner['pending_replacement']} owed",
    )
    for index in indices:
        cursor = ctx.db.execute(
            "DELETE FROM sminer_idle_units WHERE miner = ? AND unit_index = ? AND state = ?",
            (ctx.caller, index, CERTIFIED),
        )
        ensure(cursor.rowcount == 1, NAME, "NoSuchUnit", f"{ctx.caller} has no idle unit {index}")
    move_space(ctx, ctx.caller, pending_replacement=-space, certified=-space)
    ctx.emit(NAME, "IdleSpaceReplaced", miner=ctx.caller, units=list(indices), space=space)


def drop_idle_units(ctx: CallContext, account: str, indices: list[int], reason: str) -> None:
    """Idle units that failed a proof no longer count: idle space first, then what they
    covered of owed replacements."""
    miner = _require(ctx.db, account)
    dropped = 0
    for index in indices:
        cursor = ctx.db.execute(
            "DELETE FROM sminer_idle_units WHERE miner = ? AND unit_index = ? AND state = ?",
            (account, index, CERTIFIED),
        )
        dropped += cursor.rowcount
    space = dropped * ctx.params.idle_unit_size
    from_idle = min(space, miner["idle"])
    from_pending = min(space - from_idle, miner["pending_replacement"])
    move_space(
        ctx,
        account,
        idle=-from_idle,
        pending_replacement=-from_pending,
        certified=-(from_idle + from_pending),
    )
    ctx.emit(NAME, "IdleUnitsDropped", miner=account, units=indices, reason=reason)


def heartbeat(ctx: CallContext, args: NoArgs) -> None:
    miner = _require(ctx.db, ctx.caller)
    ensure(miner["state"] not in (EXITED,), NAME, "Exited", ctx.caller)
    ctx.db.execute(
        "UPDATE sminer_miners SET last_heartbeat = ? WHERE account = ?", (ctx.height, ctx.caller)
    )
    if miner["state"] == OFFLINE:
        _, collateral = balances.balance(ctx.db, ctx.caller)
        enough = collateral >= collateral_limit(ctx.params, miner["declared"])
        _set_state(ctx, ctx.caller, POSITIVE if enough else FROZEN)


def exit_(ctx: CallContext, args: NoArgs) -> None:
    miner = _require(ctx.db, ctx.caller)
    ensure(
        miner["state"] in (POSITIVE, FROZEN, OFFLINE),
        NAME,
        "CannotExit",
        f"{ctx.caller} is {miner['state']}",
    )
    ensure(
        miner["locked"] == 0,
        NAME,
        "DealsInFlight",
        f"{miner['locked']} bytes are locked for deals still in flight",
    )
    ctx.db.execute(
        "UPDATE sminer_miners SET exit_at = ? WHERE account = ?",
        (ctx.height + ctx.params.exit_cooldown, ctx.caller),
    )
    _set_state(ctx, ctx.caller, EXITING)


def on_finalize(ctx: CallContext) -> None:
    _expire_commitments(ctx)
    rows = ctx.db.execute(
        f"SELECT {_COLUMNS} FROM sminer_miners WHERE state = ? AND exit_at <= ?",
        (EXITING, ctx.height),
    ).fetchall()
    for account in [row[0] for row in rows]:
        miner = miner_row(ctx.db, account)
        assert miner is not None
        _finish_exit(ctx, miner, forced=False)
    silent = ctx.db.execute(
        "SELECT account FROM sminer_miners WHERE state IN (?, ?) AND last_heartbeat < ?",
        (POSITIVE, FROZEN, ctx.height - ctx.params.offline_after),
    ).fetchall()
    for (account,) in silent:
        _set_state(ctx, account, OFFLINE)


def _unit_json(row: tuple[Any, ...]) -> dict[str, Any]:
    index, state, root, anchor_height, committed_at, certified_at = row
    return {
        "unit_index": index,
        "state": state,
        "root": root,
        "anchor_height": anchor_height,
        "committed_at": committed_at,
        "certified_at": certified_at,
    }


class AccountArgs(Args):
    account: Address


def query_miner(ctx: QueryContext, args: AccountArgs) -> dict[str, Any] | None:
    miner = miner_row(ctx.db, args.account)
    if miner is None:
        return None
    _, collateral = balances.balance(ctx.db, args.account)
    miner["collateral"] = collateral
    miner["collateral_limit"] = collateral_limit(ctx.params, miner["declared"])
    miner["power"] = power(ctx.params, miner["idle"], miner["service"])
    return miner


class MinersArgs(Args):
    state: str | None = None


def query_miners(ctx: QueryContext, args: MinersArgs) -> list[dict[str, Any]]:
    if args.state is None:
        rows = ctx.db.execute("SELECT account FROM sminer_miners ORDER BY account")
    else:
        rows = ctx.db.execute(
            "SELECT account FROM sminer_miners WHERE state = ? ORDER BY account", (args.state,)
        )
    result = []
    for (account,) in rows.fetchall():
        miner = query_miner(ctx, AccountArgs(account=account))
        assert miner is not None
        result.append(miner)
    return result


class UnitsArgs(Args):
    account: Address
    start: U64 = 0
    limit: U32 = 1000


def query_idle_units(ctx: QueryContext, args: UnitsArgs) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        "SELECT unit_index, state, root, anchor_height, committed_at, certified_at "
        "FROM sminer_idle_units "
        "WHERE miner = ? AND unit_index >= ? ORDER BY unit_index LIMIT ?",
        (args.account, args.start, min(args.limit, 10_000)),
    )
    return [_unit_json(row) for row in rows]


def query_totals(ctx: QueryContext, args: NoArgs) -> dict[str, int]:
    totals = dict.fromkeys(TOTAL_FIELDS, 0)
    for key, value in ctx.db.execute("SELECT key, value FROM sminer_totals"):
        totals[key] = value
    return totals


class LimitArgs(Args):
    space: U64


def query_collateral_limit(ctx: QueryContext, args: LimitArgs) -> int:
    return collateral_limit(ctx.params, args.space)


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("register", RegisterArgs, register),
        CallSpec("update_endpoint", EndpointArgs, update_endpoint),
        CallSpec("increase_collateral", AmountArgs, increase_collateral),
        CallSpec("increase_declared_space", SpaceArgs, increase_declared_space),
        CallSpec("cert_idle_space", CommitIdleArgs, cert_idle_space, weight=10),
        CallSpec("prove_idle_space", ProveIdleArgs, prove_idle_space, weight=10),
        CallSpec("replace_idle_space", ReplaceArgs, replace_idle_space, weight=10),
        CallSpec("heartbeat", NoArgs, heartbeat),
        CallSpec("exit", NoArgs, exit_),
    ),
    queries=(
        QuerySpec("miner", AccountArgs, query_miner),
        QuerySpec("miners", MinersArgs, query_miners),
        QuerySpec("idle_units", UnitsArgs, query_idle_units),
        QuerySpec("totals", NoArgs, query_totals),
        QuerySpec("collateral_limit", LimitArgs, query_collateral_limit),
    ),
    on_finalize=on_finalize,
)
