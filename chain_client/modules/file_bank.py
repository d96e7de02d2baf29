"""File bank: storage deals, files, references and restoral orders.

A file (fid) is a set of segments, each of ``total_shards`` fragments placed on miners.
Its life: ``deal`` (declared; territory and miners' idle space locked) until every
fragment's miner has reported the transfer, then ``active`` (locked becomes used and
service space, each miner owes an idle replacement). References are per (owner, key):
several keys may share a fid, each charging its own territory, and the file goes away
with its last reference.

A fragment whose miner fails (a failed or missed proof, a reported loss, exit, a long
absence) gets a restoral order; a gateway claims it, rebuilds the fragment elsewhere and
completes the order with the new miner's signed receipt, which moves the record and the
space accounting.
"""

import base64
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field

from chain_client.merkle import file_id, segment_id
from chain_client.modules import oss, sminer, storage_handler
from chain_client.receipt import verify_receipt
from chain_client.runtime import (
    CallContext,
    CallSpec,
    DispatchError,
    ModuleSpec,
    QueryContext,
    QuerySpec,
    ensure,
)
from chain_client.types import U32, U64, Address, Args, Base64Bytes, Hash32, Name, ObjectKey

__all__ = ["MODULE", "fragments_of_miner", "open_restoral_order"]

NAME = "file_bank"
DEAL, ACTIVE = "deal", "active"

SCHEMA = """
CREATE TABLE IF NOT EXISTS fb_files (
    fid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    size INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    data_shards INTEGER NOT NULL,
    total_shards INTEGER NOT NULL,
    declarer TEXT NOT NULL,
    declared_at INTEGER NOT NULL,
    deadline INTEGER,
    timeouts INTEGER NOT NULL DEFAULT 0,
    completed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fb_files_deadline ON fb_files (state, deadline);
CREATE INDEX IF NOT EXISTS fb_files_declarer ON fb_files (declarer, fid);
CREATE TABLE IF NOT EXISTS fb_fragments (
    fid TEXT NOT NULL,
    segment INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    fragment_id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    miner TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    avail INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (fid, segment, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fb_fragments_miner ON fb_fragments (miner, avail);
CREATE TABLE IF NOT EXISTS fb_refs (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fid TEXT NOT NULL,
    territory TEXT NOT NULL,
    charged INTEGER NOT NULL,
    sealed_meta BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fb_refs_fid ON fb_refs (fid);
CREATE INDEX IF NOT EXISTS fb_refs_territory ON fb_refs (owner, territory);
CREATE TABLE IF NOT EXISTS fb_restoral_orders (
    fid TEXT NOT NULL,
    segment INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    claimer TEXT,
    deadline INTEGER,
    PRIMARY KEY (fid, segment, idx)
) WITHOUT ROWID;
"""

_FRAGMENT_COLUMNS = "fid, segment, idx, fragment_id, size, miner, reported, avail"


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
    segments: list[SegmentDecl] = Field(max_length=100_000)
    sealed_meta: Base64Bytes


class DeclarationArgs(Args):
    files: list[FileDecl]


def _file(db: sqlite3.Connection, fid: str) -> dict[str, Any] | None:
    cursor = db.execute(
        "SELECT fid, state, size, stored, data_shards, total_shards, declarer, declared_at, "
        "deadline, timeouts, completed_at FROM fb_files WHERE fid = ?",
        (fid,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _fragments(db: sqlite3.Connection, fid: str) -> list[dict[str, Any]]:
    cursor = db.execute(
        f"SELECT {_FRAGMENT_COLUMNS} FROM fb_fragments WHERE fid = ? ORDER BY segment, idx", (fid,)
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def fragments_of_miner(db: sqlite3.Connection, miner: str) -> list[dict[str, Any]]:
    cursor = db.execute(
        f"SELECT {_FRAGMENT_COLUMNS} FROM fb_fragments WHERE miner = ? ORDER BY fid, segment, idx",
        (miner,),
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def active_fragment_count(db: sqlite3.Connection, miner: str) -> int:
    """Fragments ``miner`` holds of active files (what a challenge samples)."""
    (count,) = db.execute(
        "SELECT COUNT(*) FROM fb_fragments f JOIN fb_files file ON file.fid = f.fid "
        "WHERE f.miner = ? AND f.avail = 1 AND file.state = 'active'",
        (miner,),
    ).fetchone()
    return int(count)


def active_fragment_at(
    db: sqlite3.Connection, miner: str, offset: int
) -> tuple[str, int, int, str, int]:
    """(fid, segment, index, fragment id, size) of the ``offset``-th of those, by id."""
    fid, segment, index, fragment_id, size = db.execute(
        "SELECT f.fid, f.segment, f.idx, f.fragment_id, f.size FROM fb_fragments f "
        "JOIN fb_files file ON file.fid = f.fid "
        "WHERE f.miner = ? AND f.avail = 1 AND file.state = 'active' "
        "ORDER BY f.fragment_id LIMIT 1 OFFSET ?",
        (miner, offset),
    ).fetchone()
    return str(fid), int(segment), int(index), str(fragment_id), int(size)


def holds(db: sqlite3.Connection, fid: str, segment: int, index: int, miner: str) -> bool:
    """Whether ``miner`` still holds that fragment."""
    row = db.execute(
        "SELECT 1 FROM fb_fragments WHERE fid = ? AND segment = ? AND idx = ? AND miner = ?",
        (fid, segment, index, miner),
    ).fetchone()
    return row is not None


def active_fragment(db: sqlite3.Connection, fid: str, segment: int, index: int) -> dict[str, Any]:
    """The fragment's row, if its file is active and a miner holds it; else NotActive."""
    fragment = fragment_row(db, fid, segment, index)
    file = _file(db, fid)
    ensure(
        file is not None and file["state"] == ACTIVE and fragment["miner"] is not None,
        NAME,
        "NotActive",
        f"{fid} has no active fragment there",
    )
    return fragment


def _lock_on_miner(ctx: CallContext, miner: str, size: int) -> None:
    ensure(
        sminer.is_positive(ctx.db, miner),
        NAME,
        "MinerNotPositive",
        f"{miner} is not a positive miner",
    )
    sminer.move_space(ctx, miner, idle=-size, locked=size)


def _unlock_on_miner(ctx: CallContext, miner: str, size: int) -> None:
    if sminer.state_of(ctx.db, miner) == "exited":
        # An exited miner has no idle units left to return the space to.
        sminer.move_space(ctx, miner, locked=-size, certified=-size)
    else:
        sminer.move_space(ctx, miner, locked=-size, idle=size)


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
    ensure(
        len(decl.sealed_meta) <= params.max_sealed_meta_bytes,
        NAME,
        "SealedMetaTooLarge",
        f"at most {params.max_sealed_meta_bytes} bytes",
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
        _lock_on_miner(ctx, miner, size)
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


def _add_ref(ctx: CallContext, decl: FileDecl, file: dict[str, Any]) -> None:
    stored = file["stored"]
    if file["state"] == ACTIVE:
        storage_handler.move_territory_space(ctx, decl.owner, decl.territory, used=stored)
    else:
        storage_handler.move_territory_space(ctx, decl.owner, decl.territory, locked=stored)
    ctx.db.execute(
        "INSERT INTO fb_refs (owner, key, fid, territory, charged, sealed_meta, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (decl.owner, decl.key, decl.fid, decl.territory, stored, decl.sealed_meta, ctx.height),
    )


def _declare_one(ctx: CallContext, decl: FileDecl) -> None:
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
        "SELECT fid FROM fb_refs WHERE owner = ? AND key = ?", (decl.owner, decl.key)
    ).fetchone()
    if current is not None and current[0] == decl.fid:
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
        _remove_ref(ctx, decl.owner, decl.key, reason="replaced")
    file = _file(ctx.db, decl.fid)
    if file is None:
        stored = _check_layout(ctx, decl)
        _declare_new(ctx, decl, stored)
        file = _file(ctx.db, decl.fid)
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
    for decl in args.files:
        with _alone(ctx) as refused:
            _declare_one(ctx, decl)
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


class FidArgs(Args):
    fid: Hash32


def transfer_report(ctx: CallContext, args: FidArgs) -> None:
    file = _file(ctx.db, args.fid)
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
    for fragment in _fragments(ctx.db, fid):
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


class FragmentArgs(Args):
    fid: Hash32
    segment: U32
    index: U32


class ReassignArgs(FragmentArgs):
    miner: Address


def fragment_row(db: sqlite3.Connection, fid: str, segment: int, index: int) -> dict[str, Any]:
    cursor = db.execute(
        f"SELECT {_FRAGMENT_COLUMNS} FROM fb_fragments WHERE fid = ? AND segment = ? AND idx = ?",
        (fid, segment, index),
    )
    row = cursor.fetchone()
    if row is None:
        raise DispatchError(NAME, "NoSuchFragment", f"{fid} segment {segment} index {index}")
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _may_manage(ctx: CallContext, fid: str, declarer: str) -> bool:
    if ctx.caller == declarer:
        return True
    owners = ctx.db.execute("SELECT owner FROM fb_refs WHERE fid = ?", (fid,)).fetchall()
    return any(oss.may_act_for(ctx.db, ctx.caller, owner) for (owner,) in owners)


def _check_apart(ctx: CallContext, fid: str, segment: int, index: int, miner: str, n: int) -> None:
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
    file = _file(ctx.db, args.fid)
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
    _check_apart(ctx, args.fid, args.segment, args.index, args.miner, file["total_shards"])
    if fragment["miner"] is not None:
        _unlock_on_miner(ctx, fragment["miner"], fragment["size"])
    _lock_on_miner(ctx, args.miner, fragment["size"])
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


def _remove_file(ctx: CallContext, file: dict[str, Any]) -> None:
    per_miner: dict[str, int] = defaultdict(int)
    for fragment in _fragments(ctx.db, file["fid"]):
        if fragment["miner"] is not None:
            per_miner[fragment["miner"]] += fragment["size"]
    for miner, size in per_miner.items():
        if file["state"] == ACTIVE:
            sminer.move_space(ctx, miner, service=-size)
        else:
            _unlock_on_miner(ctx, miner, size)
    ctx.db.execute("DELETE FROM fb_restoral_orders WHERE fid = ?", (file["fid"],))
    ctx.db.execute("DELETE FROM fb_fragments WHERE fid = ?", (file["fid"],))
    ctx.db.execute("DELETE FROM fb_files WHERE fid = ?", (file["fid"],))
    ctx.emit(NAME, "FileRemoved", fid=file["fid"], miners=sorted(per_miner))


def _remove_ref(ctx: CallContext, owner: str, key: str, *, reason: str) -> None:
    row = ctx.db.execute(
        "SELECT fid, territory, charged FROM fb_refs WHERE owner = ? AND key = ?", (owner, key)
    ).fetchone()
    ensure(row is not None, NAME, "NoSuchObject", f"{owner} has no key {key!r}")
    fid, territory, charged = row
    file = _file(ctx.db, fid)
    assert file is not None, "a reference always points at a file"
    if file["state"] == ACTIVE:
        storage_handler.move_territory_space(ctx, owner, territory, used=-charged)
    else:
        storage_handler.move_territory_space(ctx, owner, territory, locked=-charged)
    ctx.db.execute("DELETE FROM fb_refs WHERE owner = ? AND key = ?", (owner, key))
    ctx.emit(NAME, "FileDeleted", fid=fid, owner=owner, key=key, reason=reason)
    (left,) = ctx.db.execute("SELECT COUNT(*) FROM fb_refs WHERE fid = ?", (fid,)).fetchone()
    if left == 0:
        _remove_file(ctx, file)


class DeleteArgs(Args):
    owner: Address
    key: ObjectKey
    fid: Hash32 | None = None  # when given, the key must still name this file


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
    _remove_ref(ctx, args.owner, args.key, reason="deleted")


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
    file = _file(ctx.db, args.fid)
    ensure(file is not None and file["state"] == ACTIVE, NAME, "NotActive", args.fid)
    ensure(open_restoral_order(ctx, fragment, "reported_lost"), NAME, "OrderExists", args.fid)


def _order(db: sqlite3.Connection, fid: str, segment: int, index: int) -> dict[str, Any]:
    cursor = db.execute(
        "SELECT fid, segment, idx, origin, reason, created_at, claimer, deadline "
        "FROM fb_restoral_orders WHERE fid = ? AND segment = ? AND idx = ?",
        (fid, segment, index),
    )
    row = cursor.fetchone()
    if row is None:
        raise DispatchError(NAME, "NoSuchOrder", f"{fid} segment {segment} index {index}")
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def claim_restoral_order(ctx: CallContext, args: FragmentArgs) -> None:
    ensure(oss.is_gateway(ctx.db, ctx.caller), NAME, "NotGateway", "repairers are gateways")
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
    file = _file(ctx.db, args.fid)
    assert file is not None
    ensure(args.miner != fragment["miner"], NAME, "SameMiner", "restore onto another miner")
    _check_apart(ctx, args.fid, args.segment, args.index, args.miner, file["total_shards"])
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


def _time_out_deals(ctx: CallContext) -> None:
    due = ctx.db.execute(
        "SELECT fid FROM fb_files WHERE state = ? AND deadline <= ?", (DEAL, ctx.height)
    ).fetchall()
    for (fid,) in due:
        file = _file(ctx.db, fid)
        assert file is not None
        fragments = _fragments(ctx.db, fid)
        if any(f["miner"] is None for f in fragments):
            # A whole window passed without reassignment: the declarer gave up or is gone.
            for owner, key in ctx.db.execute(
                "SELECT owner, key FROM fb_refs WHERE fid = ?", (fid,)
            ).fetchall():
                _remove_ref(ctx, owner, key, reason="deal_cancelled")
            ctx.emit(NAME, "DealCancelled", fid=fid)
            continue
        late = [f for f in fragments if not f["reported"]]
        for fragment in late:
            _unlock_on_miner(ctx, fragment["miner"], fragment["size"])
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


def _release_expired_territories(ctx: CallContext) -> None:
    for owner, territory in storage_handler.expired_territories(ctx.db):
        refs = ctx.db.execute(
            "SELECT key FROM fb_refs WHERE owner = ? AND territory = ? ORDER BY key",
            (owner, territory),
        ).fetchall()
        for (key,) in refs:
            _remove_ref(ctx, owner, key, reason="territory_expired")


def _order_restoral_for_gone_miners(ctx: CallContext) -> None:
    for miner in sminer.gone_miners(ctx.db, ctx.params, ctx.height):
        cursor = ctx.db.execute(
            f"SELECT {', '.join('f.' + c.strip() for c in _FRAGMENT_COLUMNS.split(','))} "
            "FROM fb_fragments f JOIN fb_files file ON file.fid = f.fid "
            "WHERE f.miner = ? AND f.avail = 1 AND file.state = ?",
            (miner, ACTIVE),
        )
        names = [c.strip() for c in _FRAGMENT_COLUMNS.split(",")]
        for row in cursor.fetchall():
            open_restoral_order(ctx, dict(zip(names, row, strict=True)), "miner_gone")


def on_finalize(ctx: CallContext) -> None:
    _time_out_deals(ctx)
    _release_expired_territories(ctx)
    _order_restoral_for_gone_miners(ctx)


def _file_json(db: sqlite3.Connection, file: dict[str, Any]) -> dict[str, Any]:
    segments: list[dict[str, Any]] = []
    for fragment in _fragments(db, file["fid"]):
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
    file = _file(ctx.db, args.fid)
    return _file_json(ctx.db, file) if file else None


def _ref_json(row: tuple[Any, ...]) -> dict[str, Any]:
    owner, key, fid, territory, charged, sealed_meta, created_at = row
    return {
        "owner": owner,
        "key": key,
        "fid": fid,
        "territory": territory,
        "charged": charged,
        "sealed_meta": base64.b64encode(sealed_meta).decode(),
        "created_at": created_at,
    }


_REF_COLUMNS = "owner, key, fid, territory, charged, sealed_meta, created_at"


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
        f"SELECT {_FRAGMENT_COLUMNS} FROM fb_fragments WHERE fragment_id = ?", (args.fragment_id,)
    )
    row = cursor.fetchone()
    if row is None:
        return None
    fragment = dict(zip([d[0] for d in cursor.description], row, strict=True))
    file = _file(ctx.db, fragment["fid"])
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
        file = _file(ctx.db, fid)
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
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("upload_declaration", DeclarationArgs, upload_declaration),
        CallSpec("transfer_report", FidArgs, transfer_report),
        CallSpec("transfer_reports", FidsArgs, transfer_reports),
        CallSpec("reassign_fragment", ReassignArgs, reassign_fragment),
        CallSpec("delete_file", DeleteArgs, delete_file),
        CallSpec("generate_restoral_order", FragmentArgs, generate_restoral_order),
        CallSpec("claim_restoral_order", FragmentArgs, claim_restoral_order),
        CallSpec("restoral_order_complete", CompleteArgs, restoral_order_complete),
    ),
    queries=(
        QuerySpec("file", FidArgs, query_file),
        QuerySpec("object", DeleteArgs, query_object),
        QuerySpec("objects", ObjectsArgs, query_objects),
        QuerySpec("fragment", FragmentIdArgs, query_fragment),
        QuerySpec("miner_fragments", MinerFragmentsArgs, query_miner_fragments),
        QuerySpec("restoral_orders", OrdersArgs, query_restoral_orders),
        QuerySpec("files_declared_by", DeclaredArgs, query_files_declared_by),
    ),
    on_finalize=on_finalize,
)
