"""File bank restoral orders: opened for a fragment whose miner failed it, claimed by a
gateway, completed with the new miner's signed receipt."""

import sqlite3
from typing import Any

from pydantic import Field

from chain_client.modules import oss, sminer
from chain_client.modules.file_bank.deals import check_apart
from chain_client.modules.file_bank.schema import (
    ACTIVE,
    FRAGMENT_COLUMNS,
    NAME,
    FragmentArgs,
    file_row,
    fragment_row,
)
from chain_client.receipt import verify_receipt
from chain_client.runtime import (
    CallContext,
    DispatchError,
    ensure,
    one_row,
)
from chain_client.types import Address

__all__ = [
    "CompleteArgs",
    "claim_restoral_order",
    "generate_restoral_order",
    "lapse_restoral_claims",
    "open_restoral_order",
    "order_restoral_for_gone_miners",
    "restoral_order_complete",
]


def open_restoral_order(ctx: CallContext, fragment: dict[str, Any], reason: str) -> bool:
    exists = ctx.db.execute(
        "SELECT 1 FROM fb_restoral_orders WHERE fid = ? AND segment = ? AND idx = ?",
        (fragment["fid"], fragment["segment"], fragment["idx"]),
    ).fetchone()
    if exists:
        return False
    ctx.db.execute(
        "INSERT INTO fb_restoral_orders (fid, segment, idx, origin, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            fragment["fid"],
            fragment["segment"],
            fragment["idx"],
            fragment["miner"],
            reason,
            ctx.height,
        ),
    )
    ctx.db.execute(
        "UPDATE fb_fragments SET avail = 0 WHERE fid = ? AND segment = ? AND idx = ?",
        (fragment["fid"], fragment["segment"], fragment["idx"]),
    )
    ctx.emit(
        NAME,
        "RestoralOrderGenerated",
        fid=fragment["fid"],
        segment=fragment["segment"],
        index=fragment["idx"],
        origin=fragment["miner"],
        reason=reason,
    )
    return True


def generate_restoral_order(ctx: CallContext, args: FragmentArgs) -> None:
    """A miner reports that it lost one of its own fragments."""
    fragment = fragment_row(ctx.db, args.fid, args.segment, args.index)
    ensure(fragment["miner"] == ctx.caller, NAME, "NotHolder", "only its miner reports a loss")
    file = file_row(ctx.db, args.fid)
    ensure(file is not None and file["state"] == ACTIVE, NAME, "NotActive", args.fid)
    ensure(open_restoral_order(ctx, fragment, "reported_lost"), NAME, "OrderExists", args.fid)


def _order(db: sqlite3.Connection, fid: str, segment: int, index: int) -> dict[str, Any]:
    cursor = db.execute(
        "SELECT fid, segment, idx, origin, reason, created_at, claimer, deadline "
        "FROM fb_restoral_orders WHERE fid = ? AND segment = ? AND idx = ?",
        (fid, segment, index),
    )
    row = one_row(cursor)
    if row is None:
        raise DispatchError(NAME, "NoSuchOrder", f"{fid} segment {segment} index {index}")
    return row


def claim_restoral_order(ctx: CallContext, args: FragmentArgs) -> None:
    # SECURITY: only a bonded gateway claims, and a claim it lets lapse costs it, so no
    # stranger can hold repair off by claiming every order (security review #4).
    ensure(
        oss.is_bonded(ctx.db, ctx.params, ctx.caller),
        NAME,
        "NotGateway",
        "repairers are gateways with a bond (oss.register, oss.bond)",
    )
    order = _order(ctx.db, args.fid, args.segment, args.index)
    live = order["claimer"] is not None and order["deadline"] >= ctx.height
    ensure(
        not live, NAME, "OrderClaimed", f"claimed by {order['claimer']} until {order['deadline']}"
    )
    deadline = ctx.height + ctx.params.restoral_order_life
    ctx.db.execute(
        "UPDATE fb_restoral_orders SET claimer = ?, deadline = ? "
        "WHERE fid = ? AND segment = ? AND idx = ?",
        (ctx.caller, deadline, args.fid, args.segment, args.index),
    )
    ctx.emit(
        NAME,
        "RestoralOrderClaimed",
        fid=args.fid,
        segment=args.segment,
        index=args.index,
        claimer=ctx.caller,
        deadline=deadline,
    )


class CompleteArgs(FragmentArgs):
    miner: Address
    receipt: str = Field(pattern=r"^0x[0-9a-f]{128}$")


def restoral_order_complete(ctx: CallContext, args: CompleteArgs) -> None:
    order = _order(ctx.db, args.fid, args.segment, args.index)
    ensure(
        order["claimer"] == ctx.caller and order["deadline"] >= ctx.height,
        NAME,
        "NotClaimant",
        "claim the order first, and complete it before its deadline",
    )
    fragment = fragment_row(ctx.db, args.fid, args.segment, args.index)
    file = file_row(ctx.db, args.fid)
    assert file is not None
    ensure(args.miner != fragment["miner"], NAME, "SameMiner", "restore onto another miner")
    check_apart(ctx, args.fid, args.segment, args.index, args.miner, file["total_shards"])
    ensure(sminer.is_positive(ctx.db, args.miner), NAME, "MinerNotPositive", args.miner)
    scheme = sminer.scheme_of(ctx.db, args.miner)
    signature = bytes.fromhex(args.receipt[2:])
    ensure(
        verify_receipt(scheme, args.miner, fragment["fragment_id"], signature),
        NAME,
        "BadReceipt",
        f"{args.miner} did not sign a receipt for {fragment['fragment_id']}",
    )
    size = fragment["size"]
    sminer.move_space(ctx, fragment["miner"], service=-size)
    sminer.move_space(ctx, args.miner, idle=-size, service=size, pending_replacement=size)
    ctx.db.execute(
        "UPDATE fb_fragments SET miner = ?, avail = 1 WHERE fid = ? AND segment = ? AND idx = ?",
        (args.miner, args.fid, args.segment, args.index),
    )
    ctx.db.execute(
        "DELETE FROM fb_restoral_orders WHERE fid = ? AND segment = ? AND idx = ?",
        (args.fid, args.segment, args.index),
    )
    ctx.emit(
        NAME,
        "RestoralOrderCompleted",
        fid=args.fid,
        segment=args.segment,
        index=args.index,
        origin=fragment["miner"],
        miner=args.miner,
    )


def lapse_restoral_claims(ctx: CallContext) -> None:
    """Claims past their deadline go back to open, and each costs its claimer
    ``restoral_claim_slash`` of its bond."""
    lapsed = ctx.db.execute(
        "SELECT fid, segment, idx, claimer FROM fb_restoral_orders "
        "WHERE claimer IS NOT NULL AND deadline < ? ORDER BY fid, segment, idx",
        (ctx.height,),
    ).fetchall()
    for fid, segment, index, claimer in lapsed:
        ctx.db.execute(
            "UPDATE fb_restoral_orders SET claimer = NULL, deadline = NULL "
            "WHERE fid = ? AND segment = ? AND idx = ?",
            (fid, segment, index),
        )
        slashed = oss.slash_bond(ctx, claimer, ctx.params.restoral_claim_slash, "claim_lapsed")
        ctx.emit(
            NAME,
            "RestoralClaimLapsed",
            fid=fid,
            segment=segment,
            index=index,
            claimer=claimer,
            slashed=slashed,
        )


def order_restoral_for_gone_miners(ctx: CallContext) -> None:
    for miner in sminer.gone_miners(ctx.db, ctx.params, ctx.height):
        cursor = ctx.db.execute(
            f"SELECT {', '.join('f.' + c.strip() for c in FRAGMENT_COLUMNS.split(','))} "
            "FROM fb_fragments f JOIN fb_files file ON file.fid = f.fid "
            "WHERE f.miner = ? AND f.avail = 1 AND file.state = ?",
            (miner, ACTIVE),
        )
        names = [c.strip() for c in FRAGMENT_COLUMNS.split(",")]
        for row in cursor.fetchall():
            open_restoral_order(ctx, dict(zip(names, row, strict=True)), "miner_gone")
