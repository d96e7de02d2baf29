"""The gateway's metadata index (SQLite, WAL): objects, their encoding units, segments
and fragment placements, and the outbox of chain declarations.

An upload is acknowledged only after its object record and its declaration are
committed here in one transaction (DESIGN.md §4 step 4); the deal tracker then drains
the outbox to the chain. Schema version 1.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FragmentPlacement",
    "MetadataIndex",
    "ObjectRecord",
    "OutboxEntry",
    "SegmentRecord",
    "UnitRecord",
]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    fid TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    territory TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    etag TEXT NOT NULL,
    data_shards INTEGER NOT NULL,
    total_shards INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_owner ON objects (owner, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS objects_name ON objects (owner, name);
CREATE TABLE IF NOT EXISTS units (
    fid TEXT NOT NULL,
    unit_no INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    plain_size INTEGER NOT NULL,
    cipher_size INTEGER NOT NULL,
    wrapped_key TEXT NOT NULL,
    first_segment INTEGER NOT NULL,
    segment_count INTEGER NOT NULL,
    PRIMARY KEY (fid, unit_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    fid TEXT NOT NULL,
    seg_no INTEGER NOT NULL,
    segment_id TEXT NOT NULL,
    stripe_count INTEGER NOT NULL,
    cipher_size INTEGER NOT NULL,
    fragment_size INTEGER NOT NULL,
    PRIMARY KEY (fid, seg_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fragments (
    fid TEXT NOT NULL,
    seg_no INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    fragment_id TEXT NOT NULL,
    miner TEXT NOT NULL,
    size INTEGER NOT NULL,
    block_roots BLOB NOT NULL,
    PRIMARY KEY (fid, seg_no, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fragments_miner ON fragments (miner);
CREATE TABLE IF NOT EXISTS outbox (
    fid TEXT PRIMARY KEY,
    declaration TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, updated_at);
"""

# Outbox states: pending (not yet on chain), declared (in a deal), active (the chain has
# it), unpaid (refused for quota: kept, readable, retried), refused (a permanent refusal).
PENDING, DECLARED, ACTIVE, UNPAID, REFUSED = "pending", "declared", "active", "unpaid", "refused"
DELETING = "deleting"  # an outbox row whose object is gone: the chain must drop its reference


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    fid: str
    owner: str
    name: str
    territory: str
    size: int
    content_type: str
    etag: str
    data_shards: int
    total_shards: int
    stored: int
    state: str
    created_at: float


@dataclass(frozen=True, slots=True)
class UnitRecord:
    fid: str
    unit_no: int
    unit_id: str
    algorithm: str
    plain_size: int
    cipher_size: int
    wrapped_key: str
    first_segment: int
    segment_count: int


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    fid: str
    seg_no: int
    segment_id: str
    stripe_count: int
    cipher_size: int
    fragment_size: int


@dataclass(frozen=True, slots=True)
class FragmentPlacement:
    fid: str
    seg_no: int
    idx: int
    fragment_id: str
    miner: str
    size: int
    block_roots: bytes

    def block_root(self, block: int) -> bytes:
        return self.block_roots[block * 32 : (block + 1) * 32]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    fid: str
    declaration: dict[str, Any]
    state: str
    attempts: int
    last_error: str | None


class MetadataIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")  # an acknowledged upload survives a crash
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: index schema {row[0]}, this gateway knows {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- writes ---------------------------------------------------------------------------

    def commit_upload(
        self,
        record: ObjectRecord,
        units: Sequence[UnitRecord],
        segments: Sequence[SegmentRecord],
        fragments: Sequence[FragmentPlacement],
        declaration: dict[str, Any],
    ) -> None:
        """The object and its declaration, in one transaction: the outbox survives a
        restart, and nothing is half-recorded."""
        with self._transaction() as db:
            # A name has one object: the new one replaces the old (the chain's declaration
            # replaces the reference; an undeclared old one is simply never declared).
            old = db.execute(
                "SELECT fid FROM objects WHERE owner = ? AND name = ?", (record.owner, record.name)
            ).fetchone()
            if old is not None:
                self._delete(db, old[0])
            db.execute(
                "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.fid,
                    record.owner,
                    record.name,
                    record.territory,
                    record.size,
                    record.content_type,
                    record.etag,
                    record.data_shards,
                    record.total_shards,
                    record.stored,
                    record.state,
                    record.created_at,
                ),
            )
            db.executemany(
                "INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        u.fid,
                        u.unit_no,
                        u.unit_id,
                        u.algorithm,
                        u.plain_size,
                        u.cipher_size,
                        u.wrapped_key,
                        u.first_segment,
                        u.segment_count,
                    )
                    for u in units
                ],
            )
            db.executemany(
                "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (s.fid, s.seg_no, s.segment_id, s.stripe_count, s.cipher_size, s.fragment_size)
                    for s in segments
                ],
            )
            db.executemany(
                "INSERT INTO fragments VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (f.fid, f.seg_no, f.idx, f.fragment_id, f.miner, f.size, f.block_roots)
                    for f in fragments
                ],
            )
            db.execute(
                "INSERT INTO outbox (fid, declaration, state, updated_at) VALUES (?, ?, ?, ?)",
                (record.fid, json.dumps(declaration), PENDING, time.time()),
            )

    def set_state(self, fid: str, state: str, error: str | None = None) -> None:
        self.set_states([fid], state, error)

    def set_states(self, fids: Sequence[str], state: str, error: str | None = None) -> None:
        """Several objects' state in one transaction: the tracker moves whole batches."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "UPDATE objects SET state = ? WHERE fid = ?", [(state, fid) for fid in fids]
            )
            db.executemany(
                "UPDATE outbox SET state = ?, last_error = ?, updated_at = ?, "
                "attempts = attempts + (CASE WHEN ? IS NULL THEN 0 ELSE 1 END) "
                "WHERE fid = ? AND state != ?",
                [(state, error, now, error, fid, DELETING) for fid in fids],
            )

    def move_fragment(self, fid: str, seg_no: int, idx: int, miner: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE fragments SET miner = ? WHERE fid = ? AND seg_no = ? AND idx = ?",
                (miner, fid, seg_no, idx),
            )
            row = db.execute("SELECT declaration FROM outbox WHERE fid = ?", (fid,)).fetchone()
            if row is not None:
                declaration = json.loads(row[0])
                declaration["segments"][seg_no]["fragments"][idx]["miner"] = miner
                db.execute(
                    "UPDATE outbox SET declaration = ? WHERE fid = ?",
                    (json.dumps(declaration), fid),
                )

    def delete_object(self, fid: str) -> None:
        """Gone from the index at once; the outbox keeps a deletion for the chain, which
        the tracker submits (and ``forget_deletion`` ends), so a crash loses none."""
        with self._transaction() as db:
            row = db.execute("SELECT owner, name FROM objects WHERE fid = ?", (fid,)).fetchone()
            if row is None:
                return
            self._delete(db, fid)
            db.execute(
                "INSERT INTO outbox (fid, declaration, state, updated_at) VALUES (?, ?, ?, ?)",
                (
                    fid,
                    json.dumps({"owner": row[0], "key": row[1], "fid": fid}),
                    DELETING,
                    time.time(),
                ),
            )

    def forget_deletion(self, fid: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE fid = ? AND state = ?", (fid, DELETING))

    @staticmethod
    def _delete(db: sqlite3.Connection, fid: str) -> None:
        for table in ("objects", "units", "segments", "fragments", "outbox"):
            db.execute(f"DELETE FROM {table} WHERE fid = ?", (fid,))

    # -- reads ----------------------------------------------------------------------------

    def object(self, fid: str) -> ObjectRecord | None:
        rows = self._rows("SELECT * FROM objects WHERE fid = ?", (fid,))
        return ObjectRecord(*rows[0]) if rows else None

    def objects(self, owner: str, *, after: float = 0.0, limit: int = 1000) -> list[ObjectRecord]:
        rows = self._rows(
            "SELECT * FROM objects WHERE owner = ? AND created_at > ? ORDER BY created_at LIMIT ?",
            (owner, after, limit),
        )
        return [ObjectRecord(*row) for row in rows]

    def find(self, owner: str, name: str) -> ObjectRecord | None:
        rows = self._rows("SELECT * FROM objects WHERE owner = ? AND name = ?", (owner, name))
        return ObjectRecord(*rows[0]) if rows else None

    def objects_by_name(self, owner: str, start_after: str, limit: int) -> list[ObjectRecord]:
        rows = self._rows(
            "SELECT * FROM objects WHERE owner = ? AND name > ? ORDER BY name LIMIT ?",
            (owner, start_after, limit),
        )
        return [ObjectRecord(*row) for row in rows]

    def outbox_state(self, fid: str) -> str | None:
        rows = self._rows("SELECT state FROM outbox WHERE fid = ?", (fid,))
        return str(rows[0][0]) if rows else None

    def units(self, fid: str) -> list[UnitRecord]:
        rows = self._rows("SELECT * FROM units WHERE fid = ? ORDER BY unit_no", (fid,))
        return [UnitRecord(*row) for row in rows]

    def segments(self, fid: str) -> list[SegmentRecord]:
        rows = self._rows("SELECT * FROM segments WHERE fid = ? ORDER BY seg_no", (fid,))
        return [SegmentRecord(*row) for row in rows]

    def fragments(self, fid: str, seg_no: int | None = None) -> list[FragmentPlacement]:
        if seg_no is None:
            rows = self._rows("SELECT * FROM fragments WHERE fid = ? ORDER BY seg_no, idx", (fid,))
        else:
            rows = self._rows(
                "SELECT * FROM fragments WHERE fid = ? AND seg_no = ? ORDER BY idx", (fid, seg_no)
            )
        return [FragmentPlacement(*row) for row in rows]

    def outbox(self, state: str, limit: int = 256) -> list[OutboxEntry]:
        rows = self._rows(
            "SELECT fid, declaration, state, attempts, last_error FROM outbox WHERE state = ? "
            "ORDER BY updated_at LIMIT ?",
            (state, limit),
        )
        return [
            OutboxEntry(fid, json.loads(decl), st, attempts, error)
            for fid, decl, st, attempts, error in rows
        ]

    def pending_bytes(self, owner: str, territory: str) -> int:
        """Bytes this gateway promised in a territory but the chain does not count yet:
        the reservation that keeps it from acknowledging beyond the quota it saw."""
        rows = self._rows(
            "SELECT COALESCE(SUM(o.stored), 0) FROM objects o JOIN outbox x ON x.fid = o.fid "
            "WHERE o.owner = ? AND o.territory = ? AND x.state IN (?, ?)",
            (owner, territory, PENDING, UNPAID),
        )
        return int(rows[0][0])
