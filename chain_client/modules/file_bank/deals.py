"""File bank deals: declaring a file, the miners' transfer reports that activate it,
reassigning a fragment, and the deal timeout."""

import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field

from chain_client.merkle import file_id, segment_id
from chain_client.modules import oss, sminer, storage_handler
from chain_client.modules.file_bank.references import (
    lock_on_miner,
    remove_reference,
    unlock_on_miner,
)
from chain_client.modules.file_bank.schema import (
    ACTIVE,
    DEAL,
    NAME,
    FidArgs,
    FragmentArgs,
    file_row,
    fragment_row,
    fragment_rows,
)
from chain_client.runtime import (
    CallContext,
    DispatchError,
    ensure,
)
from chain_client.types import U32, U64, Address, Args, Base64Bytes, Hash32, Name, ObjectKey

__all__ = [
    "DeclarationArgs",
    "FidsArgs",
    "FileDecl",
    "FragmentDecl",
    "ReassignArgs",
    "SegmentDecl",
    "check_apart",
    "reassign_fragment",
    "time_out_deals",
    "transfer_report",
    "transfer_reports",
    "upload_declaration",
]


class FragmentDecl(BaseModel):
    model_config = Args.model_config
    id: Hash32
    miner: Address
    size: U64


class SegmentDecl(BaseModel):
    model_config = Args.model_config
    fragments: list[FragmentDecl] = Field(max_length=255)


class FileDecl(BaseModel):
    model_config = Args.model_config
    owner: Address
    territory: Name
    key: ObjectKey
    fid: Hash32
    size: U64
    data_shards: U32
    total_shards: U32
    # May be empty when the fid exists, or an earlier file of the batch carries them.
    segments: list[SegmentDecl] = Field(default_factory=list, max_length=100_000)
    sealed_meta: Base64Bytes
    # A packed object (docs/packing.md §4): its place in the file and what it charges.
    share: U64 | None = None
    slot: U32 | None = None
    # Declared only while the key still names this fid (a repacked object's move).
    replaces: Hash32 | None = None


class DeclarationArgs(Args):
    files: list[FileDecl]


def _check_layout(ctx: CallContext, decl: FileDecl) -> int:
    """Validates the shape of a new file and that its fid is the hash of its fragments;
    returns the stored bytes (sum of fragment sizes)."""
    params = ctx.params
    ensure(
        decl.data_shards == params.data_shards,
        NAME,
        "BadRedundancy",
        f"k must be the network's {params.data_shards}",
    )
    ensure(
        params.total_shards <= decl.total_shards <= 255
        and decl.total_shards % decl.data_shards == 0,
        NAME,
        "BadRedundancy",
        f"n must be a multiple of k from {params.total_shards} to 255, got {decl.total_shards}",
    )
    ensure(
        1 <= len(decl.segments) <= params.max_segments_per_file,
        NAME,
        "BadSegmentCount",
        f"1 to {params.max_segments_per_file} segments",
    )
    ensure(
        decl.size <= len(decl.segments) * params.segment_size,
        NAME,
        "BadSize",
        f"{decl.size} bytes do not fit {len(decl.segments)} segments",
    )
    distinct_needed = sminer.positive_count(ctx.db) >= decl.total_shards
    seen: set[str] = set()
    segment_ids = []
    stored = 0
    for number, segment in enumerate(decl.segments):
        ensure(
            len(segment.fragments) == decl.total_shards,
            NAME,
            "BadFragmentCount",
            f"segment {number} has {len(segment.fragments)} fragments, needs {decl.total_shards}",
        )
        sizes = {fragment.size for fragment in segment.fragments}
        ensure(
            len(sizes) == 1,
            NAME,
            "BadFragmentSize",
            f"segment {number}: fragments of one segment have one size",
        )
        size = sizes.pop()
        ensure(
            1 <= size <= params.fragment_size,
            NAME,
            "BadFragmentSize",
            f"segment {number}: 1 to {params.fragment_size} bytes",
        )
        miners = [fragment.miner for fragment in segment.fragments]
        ensure(
            not distinct_needed or len(set(miners)) == len(miners),
            NAME,
            "MinersNotDistinct",
            f"segment {number}: enough miners exist to place every fragment apart",
        )
        for fragment in segment.fragments:
            ensure(fragment.id not in seen, NAME, "DuplicateFragment", fragment.id)
            seen.add(fragment.id)
        segment_ids.append(segment_id([bytes.fromhex(f.id) for f in segment.fragments]))
        stored += size * len(segment.fragments)
    ensure(
        file_id(segment_ids) == decl.fid,
        NAME,
        "FidMismatch",
        f"{decl.fid} is not the root of its segments' fragment ids",
    )
    return stored


def _declare_new(ctx: CallContext, decl: FileDecl, stored: int) -> None:
    clash = ctx.db.execute(
        "SELECT fragment_id FROM fb_fragments WHERE fragment_id IN "
        f"({','.join('?' * sum(len(s.fragments) for s in decl.segments))}) LIMIT 1",
        [f.id for s in decl.segments for f in s.fragments],
    ).fetchone()
    ensure(clash is None, NAME, "DuplicateFragment", f"fragment {clash[0] if clash else ''} exists")
    per_miner: dict[str, int] = defaultdict(int)
    rows = []
    for number, segment in enumerate(decl.segments):
        for index, fragment in enumerate(segment.fragments):
            per_miner[fragment.miner] += fragment.size
            rows.append((decl.fid, number, index, fragment.id, fragment.size, fragment.miner))
    for miner, size in per_miner.items():
        lock_on_miner(ctx, miner, size)
    ctx.db.execute(
        "INSERT INTO fb_files (fid, state, size, stored, data_shards, total_shards, declarer, "
        "declared_at, deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            decl.fid,
            DEAL,
            decl.size,
            stored,
            decl.data_shards,
            decl.total_shards,
            ctx.caller,
            ctx.height,
            ctx.height + ctx.params.deal_report_timeout,
        ),
    )
    ctx.db.executemany(
        "INSERT INTO fb_fragments (fid, segment, idx, fragment_id, size, miner) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def _charge(ctx: CallContext, decl: FileDecl, file: dict[str, Any]) -> int:
    """What the new reference charges its territory: the file's stored bytes, or a
    packed object's share, checked against the file's other slots."""
    stored: int = file["stored"]
    if decl.share is None and decl.slot is None:
        return stored
    ensure(
        decl.share is not None and decl.slot is not None,
        NAME,
        "BadShare",
        "share and slot go together",
    )
    share, slot = decl.share, decl.slot
    assert share is not None
    assert slot is not None
    ensure(
        1 <= share <= stored,
        NAME,
        "BadShare",
        f"share {share} is not 1 to the file's {stored} stored bytes",
    )
    slots = dict(
        ctx.db.execute(
            "SELECT slot, MIN(charged) FROM fb_refs WHERE fid = ? AND slot IS NOT NULL "
            "GROUP BY slot",
            (decl.fid,),
        ).fetchall()
    )
    ensure(
        slots.get(slot, share) == share,
        NAME,
        "BadShare",
        f"slot {slot} of {decl.fid} is charged {slots.get(slot)}",
    )
    slots[slot] = share
    # Each slot rounds its share up by at most one byte per fragment.
    limit = stored + file["total_shards"] * (len(slots) - 1)
    ensure(
        sum(slots.values()) <= limit,
        NAME,
        "BadShare",
        f"the slots of {decl.fid} would charge {sum(slots.values())}, beyond {limit}",
    )
    return share


def _add_ref(ctx: CallContext, decl: FileDecl, file: dict[str, Any]) -> None:
    charged = _charge(ctx, decl, file)
    if file["state"] == ACTIVE:
        storage_handler.move_territory_space(ctx, decl.owner, decl.territory, used=charged)
    else:
        storage_handler.move_territory_space(ctx, decl.owner, decl.territory, locked=charged)
    ctx.db.execute(
        "INSERT INTO fb_refs (owner, key, fid, territory, charged, sealed_meta, created_at, "
        "slot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            decl.owner,
            decl.key,
            decl.fid,
            decl.territory,
            charged,
            decl.sealed_meta,
            ctx.height,
            decl.slot,
        ),
    )


def _declare_one(ctx: CallContext, decl: FileDecl, layout: FileDecl | None) -> None:
    """``layout``: the batch's first file of this fid that carries its segments."""
    limit = ctx.params.max_sealed_meta_bytes
    ensure(len(decl.sealed_meta) <= limit, NAME, "SealedMetaTooLarge", f"at most {limit} bytes")
    ensure(
        oss.may_act_for(ctx.db, ctx.caller, decl.owner),
        NAME,
        "NotAuthorized",
        f"{ctx.caller} may not act for {decl.owner}",
    )
    found = storage_handler.territory(ctx.db, decl.owner, decl.territory)
    ensure(found is not None, NAME, "NoSuchTerritory", f"{decl.owner} has no {decl.territory!r}")
    assert found is not None
    ensure(
        found["state"] == storage_handler.ACTIVE,
        storage_handler.NAME,
        "TerritoryNotActive",
        f"territory {decl.territory!r} of {decl.owner} is {found['state']}",
    )
    current = ctx.db.execute(
        "SELECT fid, slot FROM fb_refs WHERE owner = ? AND key = ?", (decl.owner, decl.key)
    ).fetchone()
    if decl.replaces is not None:
        ensure(
            current is not None and current[0] in (decl.replaces, decl.fid),
            NAME,
            "ReferenceChanged",
            f"{decl.key!r} no longer names {decl.replaces}",
        )
    # Another member of the same pack is another reference, not this one again.
    if current is not None and tuple(current) == (decl.fid, decl.slot):
        # The same reference again: a retried batch, or the key's metadata changed (a
        # copy onto itself, new tags), which its sealed copy follows.
        ctx.db.execute(
            "UPDATE fb_refs SET sealed_meta = ? WHERE owner = ? AND key = ?",
            (decl.sealed_meta, decl.owner, decl.key),
        )
        ctx.emit(
            NAME,
            "AlreadyDeclared",
            fid=decl.fid,
            owner=decl.owner,
            key=decl.key,
            miners=_miners_to_report(ctx.db, decl.fid),
        )
        return
    if current is not None:
        remove_reference(ctx, decl.owner, decl.key, reason="replaced")
    file = file_row(ctx.db, decl.fid)
    if file is None:
        ensure(layout is not None, NAME, "NoSuchFile", f"{decl.fid} is not on chain")
        assert layout is not None
        stored = _check_layout(ctx, layout)
        _declare_new(ctx, layout, stored)
        file = file_row(ctx.db, decl.fid)
        assert file is not None
    _add_ref(ctx, decl, file)
    ctx.emit(
        NAME,
        "UploadDeclaration",
        fid=decl.fid,
        owner=decl.owner,
        key=decl.key,
        territory=decl.territory,
        operator=ctx.caller,
        stored=file["stored"],
        miners=_miners_to_report(ctx.db, decl.fid),
    )


def _miners_to_report(db: sqlite3.Connection, fid: str) -> dict[str, list[str]]:
    """The miners that still owe a transfer report for ``fid``, each with the fragments it
    must hold: only they look at the deal when its declaration is announced, and they
    need not ask the chain which fragments are theirs."""
    owed: dict[str, list[str]] = {}
    for miner, fragment_id in db.execute(
        "SELECT f.miner, f.fragment_id FROM fb_fragments f JOIN fb_files d ON d.fid = f.fid "
        "WHERE f.fid = ? AND f.reported = 0 AND f.miner IS NOT NULL AND d.state = ? "
        "ORDER BY f.miner, f.segment, f.idx",
        (fid, DEAL),
    ):
        owed.setdefault(miner, []).append(fragment_id)
    return owed


def upload_declaration(ctx: CallContext, args: DeclarationArgs) -> None:
    """Declares a batch of files. Each file stands alone: a refused file is reported with
    its reason and changes nothing, and the others still apply."""
    _check_batch(ctx, len(args.files))
    layouts: dict[str, FileDecl] = {}
    for decl in args.files:
        if decl.segments:
            layouts.setdefault(decl.fid, decl)
    for decl in args.files:
        with _alone(ctx) as refused:
            _declare_one(ctx, decl, layouts.get(decl.fid))
        if refused:
            ctx.emit(
                NAME,
                "DeclarationRefused",
                fid=decl.fid,
                owner=decl.owner,
                key=decl.key,
                reason=refused[0],
            )


def _check_batch(ctx: CallContext, size: int) -> None:
    limit = ctx.params.max_files_per_declaration
    ensure(1 <= size <= limit, NAME, "BadBatch", f"1 to {limit} files per call")


@contextmanager
def _alone(ctx: CallContext) -> Iterator[list[str]]:
    """One item of a batch: if it fails, what it changed is undone and its reason is
    put in the yielded list, and the batch goes on."""
    reasons: list[str] = []
    ctx.db.execute("SAVEPOINT item")
    try:
        yield reasons
    except DispatchError as exc:
        ctx.db.execute("ROLLBACK TO item")
        reasons.append(exc.reason)
    finally:
        ctx.db.execute("RELEASE item")


def transfer_report(ctx: CallContext, args: FidArgs) -> None:
    file = file_row(ctx.db, args.fid)
    ensure(file is not None and file["state"] == DEAL, NAME, "NoSuchDeal", args.fid)
    cursor = ctx.db.execute(
        "UPDATE fb_fragments SET reported = 1 WHERE fid = ? AND miner = ? AND reported = 0",
        (args.fid, ctx.caller),
    )
    ensure(
        cursor.rowcount > 0,
        NAME,
        "NothingToReport",
        f"{ctx.caller} holds no unreported fragment of {args.fid}",
    )
    ctx.emit(NAME, "TransferReport", fid=args.fid, miner=ctx.caller, fragments=cursor.rowcount)
    (missing,) = ctx.db.execute(
        "SELECT COUNT(*) FROM fb_fragments WHERE fid = ? AND (reported = 0 OR miner IS NULL)",
        (args.fid,),
    ).fetchone()
    if missing == 0:
        _activate(ctx, args.fid)


class FidsArgs(Args):
    fids: list[Hash32]


def transfer_reports(ctx: CallContext, args: FidsArgs) -> None:
    """A miner's reports of several deals in one extrinsic. Each fid stands alone: a
    refused one is announced with its reason and changes nothing; the others apply."""
    _check_batch(ctx, len(args.fids))
    for fid in dict.fromkeys(args.fids):
        with _alone(ctx) as refused:
            transfer_report(ctx, FidArgs(fid=fid))
        if refused:
            ctx.emit(NAME, "TransferReportRefused", fid=fid, miner=ctx.caller, reason=refused[0])


def _activate(ctx: CallContext, fid: str) -> None:
    per_miner: dict[str, int] = defaultdict(int)
    for fragment in fragment_rows(ctx.db, fid):
        per_miner[fragment["miner"]] += fragment["size"]
    for miner, size in per_miner.items():
        sminer.move_space(ctx, miner, locked=-size, service=size, pending_replacement=size)
        ctx.emit(NAME, "ReplacementOwed", miner=miner, space=size)
    for owner, territory, charged in ctx.db.execute(
        "SELECT owner, territory, charged FROM fb_refs WHERE fid = ?", (fid,)
    ).fetchall():
        storage_handler.move_territory_space(ctx, owner, territory, locked=-charged, used=charged)
    ctx.db.execute(
        "UPDATE fb_files SET state = ?, deadline = NULL, completed_at = ? WHERE fid = ?",
        (ACTIVE, ctx.height, fid),
    )
    ctx.emit(NAME, "StorageCompleted", fid=fid)


class ReassignArgs(FragmentArgs):
    miner: Address


def _may_manage(ctx: CallContext, fid: str, declarer: str) -> bool:
    if ctx.caller == declarer:
        return True
    owners = ctx.db.execute("SELECT owner FROM fb_refs WHERE fid = ?", (fid,)).fetchall()
    return any(oss.may_act_for(ctx.db, ctx.caller, owner) for (owner,) in owners)


def check_apart(ctx: CallContext, fid: str, segment: int, index: int, miner: str, n: int) -> None:
    if sminer.positive_count(ctx.db) < n:
        return  # too few miners: sharing one is reduced independence, not a refusal
    clash = ctx.db.execute(
        "SELECT 1 FROM fb_fragments WHERE fid = ? AND segment = ? AND idx != ? AND miner = ?",
        (fid, segment, index, miner),
    ).fetchone()
    ensure(
        clash is None,
        NAME,
        "MinersNotDistinct",
        f"{miner} already holds a fragment of segment {segment}",
    )


def reassign_fragment(ctx: CallContext, args: ReassignArgs) -> None:
    file = file_row(ctx.db, args.fid)
    ensure(file is not None and file["state"] == DEAL, NAME, "NoSuchDeal", args.fid)
    assert file is not None
    ensure(
        _may_manage(ctx, args.fid, file["declarer"]),
        NAME,
        "NotAuthorized",
        f"{ctx.caller} may not manage {args.fid}",
    )
    fragment = fragment_row(ctx.db, args.fid, args.segment, args.index)
    ensure(not fragment["reported"], NAME, "AlreadyReported", "that miner already has it")
    ensure(fragment["miner"] != args.miner, NAME, "SameMiner", args.miner)
    check_apart(ctx, args.fid, args.segment, args.index, args.miner, file["total_shards"])
    if fragment["miner"] is not None:
        unlock_on_miner(ctx, fragment["miner"], fragment["size"])
    lock_on_miner(ctx, args.miner, fragment["size"])
    ctx.db.execute(
        "UPDATE fb_fragments SET miner = ? WHERE fid = ? AND segment = ? AND idx = ?",
        (args.miner, args.fid, args.segment, args.index),
    )
    deadline = max(file["deadline"] or 0, ctx.height + ctx.params.deal_report_timeout)
    ctx.db.execute("UPDATE fb_files SET deadline = ? WHERE fid = ?", (deadline, args.fid))
    ctx.emit(
        NAME,
        "FragmentReassigned",
        fid=args.fid,
        segment=args.segment,
        index=args.index,
        miner=args.miner,
        previous=fragment["miner"],
    )


def time_out_deals(ctx: CallContext) -> None:
    due = ctx.db.execute(
        "SELECT fid FROM fb_files WHERE state = ? AND deadline <= ?", (DEAL, ctx.height)
    ).fetchall()
    for (fid,) in due:
        file = file_row(ctx.db, fid)
        assert file is not None
        fragments = fragment_rows(ctx.db, fid)
        if any(f["miner"] is None for f in fragments):
            # A whole window passed without reassignment: the declarer gave up or is gone.
            for owner, key in ctx.db.execute(
                "SELECT owner, key FROM fb_refs WHERE fid = ?", (fid,)
            ).fetchall():
                remove_reference(ctx, owner, key, reason="deal_cancelled")
            ctx.emit(NAME, "DealCancelled", fid=fid)
            continue
        late = [f for f in fragments if not f["reported"]]
        for fragment in late:
            unlock_on_miner(ctx, fragment["miner"], fragment["size"])
        ctx.db.execute(
            "UPDATE fb_fragments SET miner = NULL WHERE fid = ? AND reported = 0", (fid,)
        )
        ctx.db.execute(
            "UPDATE fb_files SET deadline = ?, timeouts = timeouts + 1 WHERE fid = ?",
            (ctx.height + ctx.params.deal_report_timeout, fid),
        )
        ctx.emit(
            NAME,
            "DealTimedOut",
            fid=fid,
            fragments=[[f["segment"], f["idx"], f["miner"]] for f in late],
        )
