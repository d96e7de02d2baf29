"""File bank references: the per-(owner, key) references to a file, what deleting one
releases, and the miners' space a deal locks and gives back."""

from collections import defaultdict
from typing import Any

from chain_client.modules import oss, sminer, storage_handler
from chain_client.modules.file_bank.schema import ACTIVE, NAME, DeleteArgs, file_row, fragment_rows
from chain_client.runtime import (
    CallContext,
    ensure,
)

__all__ = [
    "delete_file",
    "lock_on_miner",
    "release_expired_territories",
    "remove_file",
    "remove_reference",
    "unlock_on_miner",
]


def lock_on_miner(ctx: CallContext, miner: str, size: int) -> None:
    ensure(
        sminer.is_positive(ctx.db, miner),
        NAME,
        "MinerNotPositive",
        f"{miner} is not a positive miner",
    )
    sminer.move_space(ctx, miner, idle=-size, locked=size)


def unlock_on_miner(ctx: CallContext, miner: str, size: int) -> None:
    if sminer.state_of(ctx.db, miner) == "exited":
        # An exited miner has no idle units left to return the space to.
        sminer.move_space(ctx, miner, locked=-size, certified=-size)
    else:
        sminer.move_space(ctx, miner, locked=-size, idle=size)


def remove_file(ctx: CallContext, file: dict[str, Any]) -> None:
    per_miner: dict[str, int] = defaultdict(int)
    for fragment in fragment_rows(ctx.db, file["fid"]):
        if fragment["miner"] is not None:
            per_miner[fragment["miner"]] += fragment["size"]
    for miner, size in per_miner.items():
        if file["state"] == ACTIVE:
            sminer.move_space(ctx, miner, service=-size)
        else:
            unlock_on_miner(ctx, miner, size)
    ctx.db.execute("DELETE FROM fb_restoral_orders WHERE fid = ?", (file["fid"],))
    ctx.db.execute("DELETE FROM fb_fragments WHERE fid = ?", (file["fid"],))
    ctx.db.execute("DELETE FROM fb_files WHERE fid = ?", (file["fid"],))
    ctx.emit(NAME, "FileRemoved", fid=file["fid"], miners=sorted(per_miner))


def remove_reference(ctx: CallContext, owner: str, key: str, *, reason: str) -> None:
    row = ctx.db.execute(
        "SELECT fid, territory, charged FROM fb_refs WHERE owner = ? AND key = ?", (owner, key)
    ).fetchone()
    ensure(row is not None, NAME, "NoSuchObject", f"{owner} has no key {key!r}")
    fid, territory, charged = row
    file = file_row(ctx.db, fid)
    assert file is not None, "a reference always points at a file"
    if file["state"] == ACTIVE:
        storage_handler.move_territory_space(ctx, owner, territory, used=-charged)
    else:
        storage_handler.move_territory_space(ctx, owner, territory, locked=-charged)
    ctx.db.execute("DELETE FROM fb_refs WHERE owner = ? AND key = ?", (owner, key))
    ctx.emit(NAME, "FileDeleted", fid=fid, owner=owner, key=key, reason=reason)
    (left,) = ctx.db.execute("SELECT COUNT(*) FROM fb_refs WHERE fid = ?", (fid,)).fetchone()
    if left == 0:
        remove_file(ctx, file)


def delete_file(ctx: CallContext, args: DeleteArgs) -> None:
    ensure(
        oss.may_act_for(ctx.db, ctx.caller, args.owner),
        NAME,
        "NotAuthorized",
        f"{ctx.caller} may not act for {args.owner}",
    )
    if args.fid is not None:
        # A late deletion must not take the key's newer upload with it.
        row = ctx.db.execute(
            "SELECT fid FROM fb_refs WHERE owner = ? AND key = ?", (args.owner, args.key)
        ).fetchone()
        ensure(
            row is None or row[0] == args.fid,
            NAME,
            "ReferenceChanged",
            f"{args.key!r} names another file now",
        )
    remove_reference(ctx, args.owner, args.key, reason="deleted")


def release_expired_territories(ctx: CallContext) -> None:
    for owner, territory in storage_handler.expired_territories(ctx.db):
        refs = ctx.db.execute(
            "SELECT key FROM fb_refs WHERE owner = ? AND territory = ? ORDER BY key",
            (owner, territory),
        ).fetchall()
        for (key,) in refs:
            remove_reference(ctx, owner, key, reason="territory_expired")
