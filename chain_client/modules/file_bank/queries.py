"""File bank queries (docs/chain.md §5, file_bank)."""

import base64
import sqlite3
from typing import Any

from pydantic import Field

from chain_client.merkle import segment_id
from chain_client.modules.file_bank.schema import (
    FRAGMENT_COLUMNS,
    DeleteArgs,
    FidArgs,
    file_row,
    fragment_rows,
    fragments_of_miner,
)
from chain_client.runtime import (
    QueryContext,
    all_rows,
    one_row,
)
from chain_client.types import U32, Address, Args, Hash32, Name

__all__ = [
    "DeclaredArgs",
    "FragmentIdArgs",
    "MinerFragmentsArgs",
    "ObjectsArgs",
    "OrdersArgs",
    "query_file",
    "query_files_declared_by",
    "query_fragment",
    "query_miner_fragments",
    "query_object",
    "query_objects",
    "query_restoral_orders",
]


def _file_json(db: sqlite3.Connection, file: dict[str, Any]) -> dict[str, Any]:
    segments: list[dict[str, Any]] = []
    for fragment in fragment_rows(db, file["fid"]):
        if fragment["segment"] == len(segments):
            segments.append({"fragments": []})
        segments[-1]["fragments"].append(
            {
                "index": fragment["idx"],
                "id": fragment["fragment_id"],
                "miner": fragment["miner"],
                "size": fragment["size"],
                "reported": bool(fragment["reported"]),
                "avail": bool(fragment["avail"]),
            }
        )
    for segment in segments:
        ids = [bytes.fromhex(f["id"]) for f in segment["fragments"]]
        segment["id"] = segment_id(ids).hex()
    refs = db.execute(
        "SELECT owner, key, territory FROM fb_refs WHERE fid = ? ORDER BY owner, key",
        (file["fid"],),
    )
    return {
        **file,
        "segments": segments,
        "refs": [{"owner": o, "key": k, "territory": t} for o, k, t in refs],
    }


def query_file(ctx: QueryContext, args: FidArgs) -> dict[str, Any] | None:
    file = file_row(ctx.db, args.fid)
    return _file_json(ctx.db, file) if file else None


def _ref_json(row: tuple[Any, ...]) -> dict[str, Any]:
    owner, key, fid, territory, charged, sealed_meta, created_at, slot = row
    return {
        "owner": owner,
        "key": key,
        "fid": fid,
        "territory": territory,
        "charged": charged,
        "sealed_meta": base64.b64encode(sealed_meta).decode(),
        "created_at": created_at,
        "slot": slot,
    }


_REF_COLUMNS = "owner, key, fid, territory, charged, sealed_meta, created_at, slot"


def query_object(ctx: QueryContext, args: DeleteArgs) -> dict[str, Any] | None:
    row = ctx.db.execute(
        f"SELECT {_REF_COLUMNS} FROM fb_refs WHERE owner = ? AND key = ?", (args.owner, args.key)
    ).fetchone()
    return _ref_json(row) if row else None


class ObjectsArgs(Args):
    owner: Address
    territory: Name | None = None
    start_after: str = Field(default="", max_length=1100)  # an ObjectKey, or ""
    limit: U32 = 1000


def query_objects(ctx: QueryContext, args: ObjectsArgs) -> list[dict[str, Any]]:
    limit = min(args.limit, 10_000)
    if args.territory is None:
        rows = ctx.db.execute(
            f"SELECT {_REF_COLUMNS} FROM fb_refs WHERE owner = ? AND key > ? ORDER BY key LIMIT ?",
            (args.owner, args.start_after, limit),
        )
    else:
        rows = ctx.db.execute(
            f"SELECT {_REF_COLUMNS} FROM fb_refs WHERE owner = ? AND territory = ? AND key > ? "
            "ORDER BY key LIMIT ?",
            (args.owner, args.territory, args.start_after, limit),
        )
    return [_ref_json(row) for row in rows]


class FragmentIdArgs(Args):
    fragment_id: Hash32


def query_fragment(ctx: QueryContext, args: FragmentIdArgs) -> dict[str, Any] | None:
    cursor = ctx.db.execute(
        f"SELECT {FRAGMENT_COLUMNS} FROM fb_fragments WHERE fragment_id = ?", (args.fragment_id,)
    )
    fragment = one_row(cursor)
    if fragment is None:
        return None
    file = file_row(ctx.db, fragment["fid"])
    assert file is not None
    fragment["file_state"] = file["state"]
    return fragment


class MinerFragmentsArgs(Args):
    miner: Address


def query_miner_fragments(ctx: QueryContext, args: MinerFragmentsArgs) -> list[dict[str, Any]]:
    return fragments_of_miner(ctx.db, args.miner)


class DeclaredArgs(Args):
    declarer: Address
    after: str = Field(default="", max_length=64)
    limit: U32 = 100


def query_files_declared_by(ctx: QueryContext, args: DeclaredArgs) -> list[dict[str, Any]]:
    """The files a gateway declared, in fid order after ``after``, with their references
    and each reference's sealed_meta: what a gateway that lost its index recovers from."""
    rows = ctx.db.execute(
        "SELECT fid FROM fb_files WHERE declarer = ? AND fid > ? ORDER BY fid LIMIT ?",
        (args.declarer, args.after, min(args.limit, 1000)),
    ).fetchall()
    found = []
    for (fid,) in rows:
        file = file_row(ctx.db, fid)
        assert file is not None
        refs = ctx.db.execute(
            f"SELECT {_REF_COLUMNS} FROM fb_refs WHERE fid = ? ORDER BY owner, key", (fid,)
        ).fetchall()
        found.append({**_file_json(ctx.db, file), "refs": [_ref_json(r) for r in refs]})
    return found


class OrdersArgs(Args):
    limit: U32 = 1000


def query_restoral_orders(ctx: QueryContext, args: OrdersArgs) -> list[dict[str, Any]]:
    cursor = ctx.db.execute(
        "SELECT fid, segment, idx, origin, reason, created_at, claimer, deadline "
        "FROM fb_restoral_orders ORDER BY created_at, fid, segment, idx LIMIT ?",
        (min(args.limit, 10_000),),
    )
    return all_rows(cursor)
