"""File bank records: the tables, their row readers, and the arguments that name a
file or a fragment (docs/chain.md §5, file_bank)."""

import sqlite3
from typing import Any

from chain_client.runtime import (
    DispatchError,
    all_rows,
    ensure,
    one_row,
)
from chain_client.types import U32, Address, Args, Hash32, ObjectKey

__all__ = [
    "ACTIVE",
    "DEAL",
    "FRAGMENT_COLUMNS",
    "NAME",
    "SCHEMA",
    "DeleteArgs",
    "FidArgs",
    "FragmentArgs",
    "active_fragment",
    "active_fragment_at",
    "active_fragment_count",
    "file_row",
    "fragment_row",
    "fragment_rows",
    "fragments_of_miner",
    "holds",
]

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
    slot INTEGER,
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


FRAGMENT_COLUMNS = "fid, segment, idx, fragment_id, size, miner, reported, avail"


def file_row(db: sqlite3.Connection, fid: str) -> dict[str, Any] | None:
    cursor = db.execute(
        "SELECT fid, state, size, stored, data_shards, total_shards, declarer, declared_at, "
        "deadline, timeouts, completed_at FROM fb_files WHERE fid = ?",
        (fid,),
    )
    row = one_row(cursor)
    if row is None:
        return None
    return row


def fragment_rows(db: sqlite3.Connection, fid: str) -> list[dict[str, Any]]:
    cursor = db.execute(
        f"SELECT {FRAGMENT_COLUMNS} FROM fb_fragments WHERE fid = ? ORDER BY segment, idx", (fid,)
    )
    return all_rows(cursor)


def fragments_of_miner(db: sqlite3.Connection, miner: str) -> list[dict[str, Any]]:
    cursor = db.execute(
        f"SELECT {FRAGMENT_COLUMNS} FROM fb_fragments WHERE miner = ? ORDER BY fid, segment, idx",
        (miner,),
    )
    return all_rows(cursor)


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
    file = file_row(db, fid)
    ensure(
        file is not None and file["state"] == ACTIVE and fragment["miner"] is not None,
        NAME,
        "NotActive",
        f"{fid} has no active fragment there",
    )
    return fragment


class FidArgs(Args):
    fid: Hash32


class FragmentArgs(Args):
    fid: Hash32
    segment: U32
    index: U32


def fragment_row(db: sqlite3.Connection, fid: str, segment: int, index: int) -> dict[str, Any]:
    cursor = db.execute(
        f"SELECT {FRAGMENT_COLUMNS} FROM fb_fragments WHERE fid = ? AND segment = ? AND idx = ?",
        (fid, segment, index),
    )
    row = one_row(cursor)
    if row is None:
        raise DispatchError(NAME, "NoSuchFragment", f"{fid} segment {segment} index {index}")
    return row


class DeleteArgs(Args):
    owner: Address
    key: ObjectKey
    fid: Hash32 | None = None  # when given, the key must still name this file
