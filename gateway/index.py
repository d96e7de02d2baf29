"""The gateway's metadata index (SQLite, WAL): files, the names that refer to them, their
encoding units, segments and fragment placements, and the outbox of chain calls.

- A *file* is stored content: its fid, layout, units, segments and fragments.
- A *name* is an owner's reference to a file (the chain's reference per (owner, key)),
  with the per-name facts: territory, content type, user metadata, time, state. Several
  names may share a file (an S3 copy); a file goes when its last name goes.
- The *outbox* holds what the chain has not applied yet: a declaration per new name, a
  deletion per dropped one. The deal tracker drains it.

An upload is acknowledged only after its file, its name and its declaration are
committed here in one transaction (DESIGN.md §4 step 4). Schema version 2.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

__all__ = [
    "ACTIVE",
    "DECLARE",
    "DECLARED",
    "DELETE",
    "PENDING",
    "REFUSED",
    "UNPAID",
    "BucketRecord",
    "FragmentPlacement",
    "MetadataIndex",
    "ObjectRecord",
    "OutboxEntry",
    "PartRecord",
    "SegmentRecord",
    "UnitRecord",
    "UploadCommit",
    "UploadRecord",
]

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    fid TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    data_shards INTEGER NOT NULL,
    total_shards INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    fid TEXT NOT NULL,
    territory TEXT NOT NULL,
    content_type TEXT NOT NULL,
    meta TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_fid ON names (fid);
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    fid TEXT NOT NULL,
    declaration TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    bucket TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    territory TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buckets_owner ON buckets (owner, bucket);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    territory TEXT NOT NULL,
    content_type TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_owner ON uploads (owner, name, upload_id);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_no INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    unit TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (upload_id, part_no)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (kind, state, updated_at);
CREATE INDEX IF NOT EXISTS outbox_fid ON outbox (fid);
"""

# Name (and declaration) states: pending (not yet on chain), declared (in a deal), active
# (the chain has it), unpaid (refused for quota: kept, readable, retried), refused (a
# permanent refusal). Outbox kinds: a declaration, or a deletion (state pending until the
# chain drops the reference, then the row goes).
PENDING, DECLARED, ACTIVE, UNPAID, REFUSED = "pending", "declared", "active", "unpaid", "refused"
DECLARE, DELETE = "declare", "delete"

_NAME_COLUMNS = (
    "n.fid, n.owner, n.name, n.territory, f.size, n.content_type, f.etag, f.data_shards, "
    "f.total_shards, f.stored, n.state, n.created_at, n.meta"
)
_NAMES = f"SELECT {_NAME_COLUMNS} FROM names n JOIN files f ON f.fid = n.fid"


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """A name and the file it refers to, as the APIs see them."""

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
    meta: dict[str, Any] = field(default_factory=dict)  # user metadata, content headers


def _record(row: tuple[Any, ...]) -> ObjectRecord:
    fid, owner, name, territory, size, content_type, etag, k, n, stored, state, at, meta = row
    return ObjectRecord(
        fid,
        owner,
        name,
        territory,
        size,
        content_type,
        etag,
        k,
        n,
        stored,
        state,
        at,
        json.loads(meta),
    )


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
class BucketRecord:
    bucket: str
    owner: str
    territory: str
    created_at: float


@dataclass(frozen=True, slots=True)
class UploadRecord:
    upload_id: str
    owner: str
    name: str
    territory: str
    content_type: str
    meta: dict[str, Any]
    created_at: float


def _upload(row: tuple[Any, ...]) -> UploadRecord:
    upload_id, owner, name, territory, content_type, meta, created_at = row
    return UploadRecord(
        upload_id, owner, name, territory, content_type, json.loads(meta), created_at
    )


@dataclass(frozen=True, slots=True)
class PartRecord:
    upload_id: str
    part_no: int
    etag: str  # the part's MD5, hex
    size: int
    unit: dict[str, Any]  # objects.PlacedUnit.to_json()
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    kind: str
    owner: str
    name: str
    fid: str
    declaration: dict[str, Any]
    state: str
    attempts: int
    last_error: str | None


# commit_upload's arguments: the file's record, units, segments, fragments, declaration.
UploadCommit: TypeAlias = tuple[
    ObjectRecord,
    Sequence[UnitRecord],
    Sequence[SegmentRecord],
    Sequence[FragmentPlacement],
    dict[str, Any],
]


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
                f"{path}: index schema {row[0]}, this gateway knows {SCHEMA_VERSION} "
                "(a development index: start the gateway with a fresh data directory)"
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
        """A new file, its name and its declaration, in one transaction: the outbox
        survives a restart, and nothing is half-recorded."""
        with self._transaction() as db:
            self._commit_upload(db, record, units, segments, fragments, declaration)

    def commit_uploads(self, uploads: Sequence[UploadCommit]) -> list[Exception | None]:
        """Several uploads (``commit_upload``'s arguments each) in one transaction: one
        sync of the database for all. Each stands alone: one that fails is rolled back
        and its error returned in its place; the others are committed."""
        outcomes: list[Exception | None] = []
        with self._transaction() as db:
            for upload in uploads:
                db.execute("SAVEPOINT upload")
                try:
                    self._commit_upload(db, *upload)
                except (sqlite3.IntegrityError, ValueError) as exc:
                    db.execute("ROLLBACK TO upload")
                    outcomes.append(exc)
                else:
                    outcomes.append(None)
                finally:
                    db.execute("RELEASE upload")
        return outcomes

    def _commit_upload(
        self,
        db: sqlite3.Connection,
        record: ObjectRecord,
        units: Sequence[UnitRecord],
        segments: Sequence[SegmentRecord],
        fragments: Sequence[FragmentPlacement],
        declaration: dict[str, Any],
    ) -> None:
        db.execute(
            "INSERT INTO files (fid, size, etag, data_shards, total_shards, stored, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.fid,
                record.size,
                record.etag,
                record.data_shards,
                record.total_shards,
                record.stored,
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
        self._name(db, record, declaration)

    def add_name(self, record: ObjectRecord, declaration: dict[str, Any]) -> None:
        """Another name for a file the index holds (a copy: no data moves), declared to
        the chain as a new reference."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM files WHERE fid = ?", (record.fid,)).fetchone() is None:
                raise KeyError(record.fid)
            self._name(db, record, declaration)

    def _name(
        self, db: sqlite3.Connection, record: ObjectRecord, declaration: dict[str, Any]
    ) -> None:
        # A name has one file: the new one replaces the old (the chain's declaration
        # replaces the reference, so the old one needs no deletion of its own).
        self._drop_name(db, record.owner, record.name, chain_delete=False)
        db.execute(
            "INSERT INTO names VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.owner,
                record.name,
                record.fid,
                record.territory,
                record.content_type,
                json.dumps(record.meta),
                PENDING,
                record.created_at,
            ),
        )
        db.execute(
            "INSERT INTO outbox (kind, owner, name, fid, declaration, state, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                DECLARE,
                record.owner,
                record.name,
                record.fid,
                json.dumps(declaration),
                PENDING,
                time.time(),
            ),
        )

    def _drop_name(
        self, db: sqlite3.Connection, owner: str, name: str, *, chain_delete: bool
    ) -> str | None:
        row = db.execute(
            "SELECT fid FROM names WHERE owner = ? AND name = ?", (owner, name)
        ).fetchone()
        if row is None:
            return None
        fid: str = row[0]
        db.execute("DELETE FROM names WHERE owner = ? AND name = ?", (owner, name))
        # Its declaration is no longer wanted (if one is in flight, the deletion below,
        # applied after it, undoes it on chain).
        db.execute(
            "DELETE FROM outbox WHERE kind = ? AND owner = ? AND name = ? AND fid = ?",
            (DECLARE, owner, name, fid),
        )
        if chain_delete:
            db.execute(
                "INSERT INTO outbox (kind, owner, name, fid, declaration, state, updated_at) "
                "VALUES (?, ?, ?, ?, '{}', ?, ?)",
                (DELETE, owner, name, fid, PENDING, time.time()),
            )
        if db.execute("SELECT 1 FROM names WHERE fid = ? LIMIT 1", (fid,)).fetchone() is None:
            for table in ("files", "units", "segments", "fragments"):
                db.execute(f"DELETE FROM {table} WHERE fid = ?", (fid,))
            db.execute("DELETE FROM outbox WHERE kind = ? AND fid = ?", (DECLARE, fid))
        return fid

    def delete_name(self, owner: str, name: str) -> str | None:
        """Gone from the index at once (the file too, with its last name); the outbox
        keeps a deletion for the chain, so a crash loses none. Returns the fid."""
        with self._transaction() as db:
            return self._drop_name(db, owner, name, chain_delete=True)

    def set_entry_states(
        self, entry_ids: Sequence[int], state: str, error: str | None = None
    ) -> None:
        """Declarations' state, and their names', in one transaction."""
        now = time.time()
        with self._transaction() as db:
            for entry_id in entry_ids:
                row = db.execute(
                    "SELECT owner, name, fid FROM outbox WHERE id = ? AND kind = ?",
                    (entry_id, DECLARE),
                ).fetchone()
                if row is None:
                    continue  # deleted meanwhile
                db.execute(
                    "UPDATE outbox SET state = ?, last_error = ?, updated_at = ?, "
                    "attempts = attempts + (CASE WHEN ? IS NULL THEN 0 ELSE 1 END) WHERE id = ?",
                    (state, error, now, error, entry_id),
                )
                db.execute(
                    "UPDATE names SET state = ? WHERE owner = ? AND name = ? AND fid = ?",
                    (state, *row),
                )

    def files_active(self, fids: Sequence[str]) -> None:
        """The chain completed these deals: every declared name of them is active."""
        with self._transaction() as db:
            for fid in fids:
                db.execute("UPDATE files SET active = 1 WHERE fid = ?", (fid,))
                db.execute(
                    "UPDATE outbox SET state = ?, updated_at = ? "
                    "WHERE kind = ? AND fid = ? AND state = ?",
                    (ACTIVE, time.time(), DECLARE, fid, DECLARED),
                )
                db.execute(
                    "UPDATE names SET state = ? WHERE fid = ? AND state = ?",
                    (ACTIVE, fid, DECLARED),
                )

    def redeclare(self, fid: str) -> None:
        """The chain cancelled the deal: declare the file's names again."""
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET state = ?, updated_at = ? WHERE kind = ? AND fid = ?",
                (PENDING, time.time(), DECLARE, fid),
            )
            db.execute("UPDATE names SET state = ? WHERE fid = ?", (PENDING, fid))

    def set_block_roots(self, fid: str, seg_no: int, idx: int, roots: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE fragments SET block_roots = ? WHERE fid = ? AND seg_no = ? AND idx = ?",
                (roots, fid, seg_no, idx),
            )

    def forget_entry(self, entry_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def move_fragment(self, fid: str, seg_no: int, idx: int, miner: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE fragments SET miner = ? WHERE fid = ? AND seg_no = ? AND idx = ?",
                (miner, fid, seg_no, idx),
            )
            for entry_id, text in db.execute(
                "SELECT id, declaration FROM outbox WHERE kind = ? AND fid = ?", (DECLARE, fid)
            ).fetchall():
                declaration = json.loads(text)
                declaration["segments"][seg_no]["fragments"][idx]["miner"] = miner
                db.execute(
                    "UPDATE outbox SET declaration = ? WHERE id = ?",
                    (json.dumps(declaration), entry_id),
                )

    # -- S3 buckets: one namespace per gateway; a bucket's objects are its owner's names
    # "<bucket>/<key>" ------------------------------------------------------------------

    def create_bucket(self, bucket: str, owner: str, territory: str) -> BucketRecord | None:
        """The new bucket, or None when the name is taken (by anyone: see ``bucket``)."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM buckets WHERE bucket = ?", (bucket,)).fetchone():
                return None
            now = time.time()
            db.execute("INSERT INTO buckets VALUES (?, ?, ?, ?)", (bucket, owner, territory, now))
        return BucketRecord(bucket, owner, territory, now)

    def bucket(self, bucket: str) -> BucketRecord | None:
        rows = self._rows("SELECT * FROM buckets WHERE bucket = ?", (bucket,))
        return BucketRecord(*rows[0]) if rows else None

    def buckets(self, owner: str) -> list[BucketRecord]:
        rows = self._rows("SELECT * FROM buckets WHERE owner = ? ORDER BY bucket", (owner,))
        return [BucketRecord(*row) for row in rows]

    def delete_bucket(self, bucket: str, owner: str) -> bool:
        """Drops an empty bucket; False when objects remain (the check and the delete in
        one transaction, so no upload slips in between)."""
        prefix = bucket + "/"
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM names WHERE owner = ? AND name >= ? AND name < ? LIMIT 1",
                (owner, prefix, prefix + "\U0010ffff"),
            ).fetchone():
                return False
            db.execute("DELETE FROM buckets WHERE bucket = ? AND owner = ?", (bucket, owner))
        return True

    # -- multipart uploads: parts are placed units no object names yet ------------------

    def create_upload(self, upload: UploadRecord) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    upload.upload_id,
                    upload.owner,
                    upload.name,
                    upload.territory,
                    upload.content_type,
                    json.dumps(upload.meta),
                    upload.created_at,
                ),
            )

    def upload(self, upload_id: str) -> UploadRecord | None:
        rows = self._rows("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,))
        return _upload(rows[0]) if rows else None

    def uploads(
        self, owner: str, prefix: str, after_name: str, after_id: str, limit: int
    ) -> list[UploadRecord]:
        """The owner's uploads of names with ``prefix``, in (name, upload id) order after
        (``after_name``, ``after_id``)."""
        rows = self._rows(
            "SELECT * FROM uploads WHERE owner = ? AND name >= ? AND name < ? "
            "AND (name > ? OR (name = ? AND upload_id > ?)) ORDER BY name, upload_id LIMIT ?",
            (owner, prefix, prefix + "\U0010ffff", after_name, after_name, after_id, limit),
        )
        return [_upload(row) for row in rows]

    def put_part(self, part: PartRecord) -> None:
        """Records a part (a retry of its number replaces it; the old fragments are left
        to their miners' orphan clean-up)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    part.upload_id,
                    part.part_no,
                    part.etag,
                    part.size,
                    json.dumps(part.unit),
                    part.created_at,
                ),
            )

    def parts(self, upload_id: str, after: int = 0, limit: int = 10_000) -> list[PartRecord]:
        rows = self._rows(
            "SELECT * FROM parts WHERE upload_id = ? AND part_no > ? ORDER BY part_no LIMIT ?",
            (upload_id, after, limit),
        )
        return [
            PartRecord(upload, number, etag, size, json.loads(unit), at)
            for upload, number, etag, size, unit, at in rows
        ]

    def delete_upload(self, upload_id: str) -> bool:
        with self._transaction() as db:
            found = db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,)).rowcount
            db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        return bool(found)

    def expire_uploads(self, before: float) -> int:
        """Drops uploads begun before ``before``; their fragments stay orphans."""
        with self._transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT upload_id FROM uploads WHERE created_at < ?", (before,)
                ).fetchall()
            ]
            for upload_id in ids:
                db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
                db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        return len(ids)

    # -- reads ----------------------------------------------------------------------------

    def object(self, fid: str, owner: str | None = None) -> ObjectRecord | None:
        """A name of ``fid`` (the owner's first in name order, when an owner is given)."""
        if owner is None:
            rows = self._rows(f"{_NAMES} WHERE n.fid = ? ORDER BY n.name LIMIT 1", (fid,))
        else:
            rows = self._rows(
                f"{_NAMES} WHERE n.fid = ? AND n.owner = ? ORDER BY n.name LIMIT 1", (fid, owner)
            )
        return _record(rows[0]) if rows else None

    def names_of(self, fid: str, owner: str) -> list[ObjectRecord]:
        rows = self._rows(f"{_NAMES} WHERE n.fid = ? AND n.owner = ? ORDER BY n.name", (fid, owner))
        return [_record(row) for row in rows]

    def find(self, owner: str, name: str) -> ObjectRecord | None:
        rows = self._rows(f"{_NAMES} WHERE n.owner = ? AND n.name = ?", (owner, name))
        return _record(rows[0]) if rows else None

    def objects_by_name(
        self, owner: str, start_after: str, limit: int, *, prefix: str = ""
    ) -> list[ObjectRecord]:
        """The owner's names after ``start_after`` beginning with ``prefix``, in UTF-8
        byte order (SQLite compares TEXT bytewise: S3's order)."""
        if prefix:
            # A range the index can walk: every name with the prefix sorts below prefix +
            # U+10FFFF (but those continuing with that noncharacter, which no key uses).
            rows = self._rows(
                f"{_NAMES} WHERE n.owner = ? AND n.name > ? AND n.name >= ? AND n.name < ? "
                "ORDER BY n.name LIMIT ?",
                (owner, start_after, prefix, prefix + "\U0010ffff", limit),
            )
        else:
            rows = self._rows(
                f"{_NAMES} WHERE n.owner = ? AND n.name > ? ORDER BY n.name LIMIT ?",
                (owner, start_after, limit),
            )
        return [_record(row) for row in rows]

    def file_ids(self, after: str, limit: int) -> list[str]:
        rows = self._rows(
            "SELECT fid FROM files WHERE fid > ? ORDER BY fid LIMIT ?", (after, limit)
        )
        return [str(row[0]) for row in rows]

    def file_active(self, fid: str) -> bool:
        rows = self._rows("SELECT active FROM files WHERE fid = ?", (fid,))
        return bool(rows and rows[0][0])

    def declaration_of(self, fid: str) -> dict[str, Any] | None:
        """A declaration of the file (any name's), the template of a copy's."""
        rows = self._rows(
            "SELECT declaration FROM outbox WHERE kind = ? AND fid = ? ORDER BY id LIMIT 1",
            (DECLARE, fid),
        )
        return json.loads(rows[0][0]) if rows else None

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

    def outbox(self, kind: str, state: str, limit: int = 256) -> list[OutboxEntry]:
        rows = self._rows(
            "SELECT id, kind, owner, name, fid, declaration, state, attempts, last_error "
            "FROM outbox WHERE kind = ? AND state = ? ORDER BY updated_at, id LIMIT ?",
            (kind, state, limit),
        )
        return [
            OutboxEntry(i, k, o, n, f, json.loads(decl), st, attempts, error)
            for i, k, o, n, f, decl, st, attempts, error in rows
        ]

    def deletions_pending(self, fid: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM outbox WHERE kind = ? AND fid = ?", (DELETE, fid))
        return int(rows[0][0])

    def count_names(self, state: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM names WHERE state = ?", (state,))
        return int(rows[0][0])

    def pending_bytes(self, owner: str, territory: str) -> int:
        """Bytes this gateway promised in a territory but the chain does not count yet:
        the reservation that keeps it from acknowledging beyond the quota it saw."""
        rows = self._rows(
            "SELECT COALESCE(SUM(f.stored), 0) FROM names n JOIN files f ON f.fid = n.fid "
            "WHERE n.owner = ? AND n.territory = ? AND n.state IN (?, ?)",
            (owner, territory, PENDING, UNPAID),
        )
        return int(rows[0][0])
