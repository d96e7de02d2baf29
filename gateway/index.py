"""The gateway's metadata index (SQLite, WAL): files, the versions of names that refer to
them, their encoding units, segments and fragment placements, S3 buckets and multipart
uploads, and the outbox of chain calls.

- A *file* is stored content: its fid, layout, units, segments and fragments.
- A *version* (a row of ``names``) is one object an owner's name holds: a version id
  (``null`` unless the name's bucket has versioning), the file (none for a delete
  marker), territory, content type, metadata, time, state. The newest version of a name
  is its current one (``latest``). Each version with data is one chain reference, keyed
  ``records.reference_key(name, version_id)``; several may share a file (a copy), and a
  file goes when the last version naming it goes.
- The *outbox* holds what the chain has not applied yet: a declaration per new version,
  a deletion per dropped one. The deal tracker drains it.

Every change of what a name holds is one transaction that leaves the old version or the
new one, never neither (docs/s3.md §7). An upload is acknowledged only after its file,
its version and its declaration are committed here together (DESIGN.md §4 step 4).
Schema version 4 (version 2 and 3 databases are migrated when opened). Packed objects
(docs/packing.md §5) are versions naming a unit (``slot``) of a pack's file; ``members``
holds each one's size, ETag, share and member id.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from chain_client.files import private_database, private_directory
from chain_client.sqlite import transaction
from gateway.conditional import etag_matches
from gateway.keywrap import WrappedKey
from gateway.records import (
    ACTIVE,
    DECLARE,
    DECLARED,
    DELETE,
    ENABLED,
    NULL_VERSION,
    PENDING,
    PLAIN_WRITE,
    UNPAID,
    UNVERSIONED,
    BucketRecord,
    DeleteOutcome,
    FragmentPlacement,
    IndexRefusal,
    NameWrite,
    NoSuchBucket,
    NoSuchObject,
    NoSuchUpload,
    ObjectRecord,
    OutboxEntry,
    PartRecord,
    PreconditionFailed,
    SegmentRecord,
    UnitRecord,
    UploadCommit,
    UploadCompleted,
    UploadRecord,
    WriteCondition,
    from_row,
    member_id,
    new_version_id,
    prefix_end,
)

__all__ = ["MetadataIndex"]

SCHEMA_VERSION = 4
_NAMES_TABLE = """
CREATE TABLE names (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    version_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    latest INTEGER NOT NULL,
    fid TEXT NOT NULL,
    territory TEXT NOT NULL,
    content_type TEXT NOT NULL,
    meta TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, name, version_id)
) WITHOUT ROWID;
CREATE INDEX names_fid ON names (fid);
CREATE UNIQUE INDEX names_versions ON names (owner, name, seq DESC);
CREATE UNIQUE INDEX names_current ON names (owner, name) WHERE latest = 1;
"""
SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE files (
    fid TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    data_shards INTEGER NOT NULL,
    total_shards INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE units (
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
CREATE TABLE segments (
    fid TEXT NOT NULL,
    seg_no INTEGER NOT NULL,
    segment_id TEXT NOT NULL,
    stripe_count INTEGER NOT NULL,
    cipher_size INTEGER NOT NULL,
    fragment_size INTEGER NOT NULL,
    PRIMARY KEY (fid, seg_no)
) WITHOUT ROWID;
CREATE TABLE fragments (
    fid TEXT NOT NULL,
    seg_no INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    fragment_id TEXT NOT NULL,
    miner TEXT NOT NULL,
    size INTEGER NOT NULL,
    block_roots BLOB NOT NULL,
    PRIMARY KEY (fid, seg_no, idx)
) WITHOUT ROWID;
CREATE INDEX fragments_miner ON fragments (miner);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    fid TEXT NOT NULL,
    declaration TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL,
    version_id TEXT NOT NULL DEFAULT 'null',
    replaces TEXT
);
CREATE INDEX outbox_state ON outbox (kind, state, updated_at);
CREATE INDEX outbox_fid ON outbox (fid);
CREATE TABLE buckets (
    bucket TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    territory TEXT NOT NULL,
    created_at REAL NOT NULL,
    versioning TEXT NOT NULL DEFAULT '',
    tags TEXT
) WITHOUT ROWID;
CREATE INDEX buckets_owner ON buckets (owner, bucket);
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    territory TEXT NOT NULL,
    content_type TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_at REAL NOT NULL,
    completed TEXT
) WITHOUT ROWID;
CREATE INDEX uploads_owner ON uploads (owner, name, upload_id);
CREATE TABLE parts (
    upload_id TEXT NOT NULL,
    part_no INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    unit TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (upload_id, part_no)
) WITHOUT ROWID;
"""
    + _NAMES_TABLE
)
# Version 2 had one version per name, no bucket versioning, tags or completed uploads.
_MIGRATE_2_TO_3 = (
    "ALTER TABLE names RENAME TO names_v2;\n"
    "DROP INDEX names_fid;\n"
    + _NAMES_TABLE
    + """
INSERT INTO names SELECT owner, name, 'null',
    ROW_NUMBER() OVER (ORDER BY created_at, owner, name), 1, fid, territory, content_type,
    meta, state, created_at FROM names_v2;
DROP TABLE names_v2;
ALTER TABLE outbox ADD COLUMN version_id TEXT NOT NULL DEFAULT 'null';
ALTER TABLE outbox ADD COLUMN replaces TEXT;
ALTER TABLE buckets ADD COLUMN versioning TEXT NOT NULL DEFAULT '';
ALTER TABLE buckets ADD COLUMN tags TEXT;
ALTER TABLE uploads ADD COLUMN completed TEXT;
UPDATE meta SET value = '3' WHERE key = 'schema_version';
"""
)
# Version 3 had no packed objects. A new index is made as version 3, then this.
_MIGRATE_3_TO_4 = """
ALTER TABLE names ADD COLUMN slot INTEGER;
ALTER TABLE files ADD COLUMN block_size INTEGER;
ALTER TABLE units ADD COLUMN cipher_offset INTEGER;
CREATE TABLE members (
    fid TEXT NOT NULL,
    slot INTEGER NOT NULL,
    member_id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    stored INTEGER NOT NULL,
    PRIMARY KEY (fid, slot)
) WITHOUT ROWID;
UPDATE meta SET value = '4' WHERE key = 'schema_version';
"""

_VERSION_COLUMNS = (
    "n.fid, n.owner, n.name, n.territory, COALESCE(m.size, f.size, 0), n.content_type, "
    "COALESCE(m.etag, f.etag, ''), COALESCE(f.data_shards, 0), COALESCE(f.total_shards, 0), "
    "COALESCE(m.stored, f.stored, 0), n.state, n.created_at, n.meta, n.version_id, n.latest, "
    "n.seq, n.slot, f.block_size, m.member_id"
)
_MEMBER_JOIN = "LEFT JOIN members m ON m.fid = n.fid AND m.slot = n.slot"
# Every version, delete markers included; current objects (latest, with a file) only.
_VERSIONS = (
    f"SELECT {_VERSION_COLUMNS} FROM names n LEFT JOIN files f ON f.fid = n.fid {_MEMBER_JOIN}"
)
_CURRENT = f"SELECT {_VERSION_COLUMNS} FROM names n JOIN files f ON f.fid = n.fid {_MEMBER_JOIN}"
_UPLOAD_COLUMNS = "upload_id, owner, name, territory, content_type, meta, created_at, completed"
_BUCKET_COLUMNS = "bucket, owner, territory, created_at, versioning, tags"


def _record(row: tuple[Any, ...]) -> ObjectRecord:
    fid, owner, name, territory, size, content_type, etag, k, n, stored, state, at, *rest = row
    meta, version_id, latest, seq, slot, block_size, member = rest
    return ObjectRecord(
        fid=fid,
        owner=owner,
        name=name,
        territory=territory,
        size=size,
        content_type=content_type,
        etag=etag,
        data_shards=k,
        total_shards=n,
        stored=stored,
        state=state,
        created_at=at,
        meta=json.loads(meta),
        version_id=version_id,
        latest=bool(latest),
        marker=fid == "",
        seq=seq,
        slot=slot,
        block_size=block_size,
        member=member,
    )


def _bucket(row: tuple[Any, ...]) -> BucketRecord:
    bucket, owner, territory, created_at, versioning, tags = row
    return BucketRecord(
        bucket, owner, territory, created_at, versioning, json.loads(tags) if tags else None
    )


def _within(prefix: str, column: str = "n.name") -> tuple[str, list[Any]]:
    """SQL (and its arguments) for "``column`` starts with ``prefix``", as a range the
    index can walk."""
    if not prefix:
        return "1", []
    end = prefix_end(prefix)
    if end is None:
        return f"{column} >= ?", [prefix]
    return f"{column} >= ? AND {column} < ?", [prefix, end]


def _run_script(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


class MetadataIndex:
    def __init__(self, path: Path) -> None:
        # SECURITY: every user's names, sizes, content headers and metadata (review #16).
        private_directory(path.parent)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            private_database(path), isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")  # an acknowledged upload survives a crash
        self._open_schema(path)
        # Reads on a connection of their own: in WAL mode they see the last commit and
        # never wait for one in progress (a group commit's sync), so a HEAD or a listing
        # is not held up behind uploads, nor the event loop behind the write lock.
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._reader.execute("PRAGMA query_only = ON")
        (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM names").fetchone()
        self._seq = int(last)
        # Counts the times versions left the pending state (the chain counts them from
        # then on): a cached view of the chain from before must be asked again.
        self.declared_generation = 0

    def _open_schema(self, path: Path) -> None:
        known = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if known is None:
            with self._transaction() as db:
                _run_script(db, SCHEMA)
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '3')")
                _run_script(db, _MIGRATE_3_TO_4)
            return
        (version,) = self._db.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()
        for older, script in (("2", _MIGRATE_2_TO_3), ("3", _MIGRATE_3_TO_4)):
            if version == older:
                with self._transaction() as db:
                    _run_script(db, script)
                version = str(int(older) + 1)
        if int(version) != SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: index schema {version}, this gateway knows {SCHEMA_VERSION} "
                "(start the gateway with a fresh data directory, or a newer gateway)"
            )

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._db) as db:
            yield db

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._reader.execute(sql, tuple(args)).fetchall()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- writes of what a name holds ------------------------------------------------------

    def commit_upload(self, commit: UploadCommit) -> ObjectRecord:
        """A new file, the version naming it and its declaration, in one transaction: the
        outbox survives a restart, and nothing is half-recorded."""
        with self._transaction() as db:
            return self._commit_upload(db, commit)

    def commit_uploads(self, commits: Sequence[UploadCommit]) -> list[ObjectRecord | Exception]:
        """Several uploads in one transaction: one sync of the database for all. Each
        stands alone: one that fails is rolled back and its error returned in its place;
        the others are committed."""
        outcomes: list[ObjectRecord | Exception] = []
        with self._transaction() as db:
            for commit in commits:
                db.execute("SAVEPOINT upload")
                try:
                    outcomes.append(self._commit_upload(db, commit))
                except (sqlite3.IntegrityError, ValueError, IndexRefusal) as exc:
                    db.execute("ROLLBACK TO upload")
                    outcomes.append(exc)
                finally:
                    db.execute("RELEASE upload")
        return outcomes

    def _commit_upload(self, db: sqlite3.Connection, commit: UploadCommit) -> ObjectRecord:
        record = commit.record
        # The same fid is the same content (it hashes every fragment): a completion
        # retried while the first is committing finds its file already here.
        if db.execute("SELECT 1 FROM files WHERE fid = ?", (record.fid,)).fetchone() is None:
            self._insert_file(db, commit)
        if commit.packed is not None:
            self._insert_member(db, commit)
        return self._write_version(db, record, commit.declaration, commit.write)

    def _insert_file(self, db: sqlite3.Connection, commit: UploadCommit) -> None:
        """The file, its segments and fragments, and its units unless it is a pack (whose
        units are its members', each inserted with its own)."""
        record, packed = commit.record, commit.packed
        db.execute(
            "INSERT INTO files (fid, size, etag, data_shards, total_shards, stored, "
            "created_at, block_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.fid,
                record.size if packed is None else packed.cipher_size,
                record.etag if packed is None else "",
                record.data_shards,
                record.total_shards,
                record.stored if packed is None else packed.stored,
                record.created_at,
                None if packed is None else packed.block_size,
            ),
        )
        if packed is None:
            self._insert_units(db, commit.units)
        db.executemany(
            "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)",
            [
                (s.fid, s.seg_no, s.segment_id, s.stripe_count, s.cipher_size, s.fragment_size)
                for s in commit.segments
            ],
        )
        db.executemany(
            "INSERT INTO fragments VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (f.fid, f.seg_no, f.idx, f.fragment_id, f.miner, f.size, f.block_roots)
                for f in commit.fragments
            ],
        )

    def _insert_units(self, db: sqlite3.Connection, units: Sequence[UnitRecord]) -> None:
        db.executemany(
            "INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    u.fid,
                    u.unit_no,
                    u.unit_id,
                    u.algorithm,
                    u.plain_size,
                    u.cipher_size,
                    u.wrapped_key.dumps(),
                    u.first_segment,
                    u.segment_count,
                    u.cipher_offset,
                )
                for u in units
            ],
        )

    def _insert_member(self, db: sqlite3.Connection, commit: UploadCommit) -> None:
        record = commit.record
        assert record.slot is not None, "a packed object names its slot"
        self._insert_units(db, commit.units)
        db.execute(
            "INSERT INTO members (fid, slot, member_id, size, etag, stored) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.fid,
                record.slot,
                record.member or member_id(record.fid, record.slot),
                record.size,
                record.etag,
                record.stored,
            ),
        )

    def add_name(
        self, record: ObjectRecord, declaration: dict[str, Any], write: NameWrite = PLAIN_WRITE
    ) -> ObjectRecord:
        """Another version naming a file the index holds (a copy: no data moves),
        declared to the chain as a new reference."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM files WHERE fid = ?", (record.fid,)).fetchone() is None:
                raise NoSuchObject(record.name)
            return self._write_version(db, record, declaration, write)

    def _write_version(
        self,
        db: sqlite3.Connection,
        record: ObjectRecord,
        declaration: dict[str, Any],
        write: NameWrite,
    ) -> ObjectRecord:
        owner, name = record.owner, record.name
        bucket = self._bucket_of(db, owner, name, write.bucket)
        self._check(db, owner, name, write.condition)
        if write.completes is not None:
            self._open_upload(db, write.completes, owner, name)
        versioning = bucket.versioning if bucket is not None else UNVERSIONED
        version_id = new_version_id() if versioning == ENABLED else NULL_VERSION
        state, replaced = PENDING, None
        if version_id == NULL_VERSION:
            # The new version replaces the null one; the chain's declaration replaces its
            # reference, so it needs no deletion of its own.
            replaced = self._remove_version(db, owner, name, NULL_VERSION, chain_delete=False)
            if (
                replaced is not None
                and (replaced.fid, replaced.slot) == (record.fid, record.slot)
                and replaced.state in (DECLARED, ACTIVE)
            ):
                state = replaced.state  # the same reference (a copy onto itself): on chain
        written = replace(
            record, version_id=version_id, state=state, latest=True, marker=False, seq=0
        )
        written = self._insert_version(db, written, latest=True)
        replaces = None
        if (
            replaced is not None
            and not replaced.marker
            and (replaced.fid, replaced.slot) != (record.fid, record.slot)
        ):
            replaces = replaced.fid
        self._declare(db, written, declaration, replaces)
        if write.completes is not None:
            db.execute(
                "UPDATE uploads SET completed = ? WHERE upload_id = ?",
                (json.dumps({"etag": record.etag, "version_id": version_id}), write.completes),
            )
            db.execute("DELETE FROM parts WHERE upload_id = ?", (write.completes,))
        if replaced is not None:
            # After the new version: a copy onto itself.
            self._collect(db, replaced.fid, replaced.slot)
        return written

    def _insert_version(
        self, db: sqlite3.Connection, record: ObjectRecord, *, latest: bool
    ) -> ObjectRecord:
        """Inserts a version; a current one takes ``latest`` from the name's others."""
        if latest:
            db.execute(
                "UPDATE names SET latest = 0 WHERE owner = ? AND name = ? AND latest = 1",
                (record.owner, record.name),
            )
        seq = record.seq or self._next_seq()
        db.execute(
            "INSERT INTO names VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.owner,
                record.name,
                record.version_id,
                seq,
                int(latest),
                record.fid,
                record.territory,
                record.content_type,
                json.dumps(record.meta),
                record.state,
                record.created_at,
                record.slot,
            ),
        )
        return replace(record, latest=latest, seq=seq)

    def _declare(
        self,
        db: sqlite3.Connection,
        record: ObjectRecord,
        declaration: dict[str, Any],
        replaces: str | None = None,
    ) -> None:
        """A declaration for the chain; ``replaces`` is the file whose reference it
        replaces on chain (the tracker holds it back while that file is being read)."""
        db.execute(
            "INSERT INTO outbox (kind, owner, name, version_id, fid, declaration, state, "
            "updated_at, replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                DECLARE,
                record.owner,
                record.name,
                record.version_id,
                record.fid,
                json.dumps({**declaration, "key": record.ref}),
                PENDING,
                time.time(),
                replaces,
            ),
        )

    def _bucket_of(
        self, db: sqlite3.Connection, owner: str, name: str, bucket: str | None
    ) -> BucketRecord | None:
        if bucket is None:  # a native name: the writer's bucket it starts with, if any
            candidate, slash, _ = name.partition("/")
            if not slash:
                return None
            row = db.execute(
                f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE bucket = ? AND owner = ?",
                (candidate, owner),
            ).fetchone()
            return _bucket(row) if row else None
        row = db.execute(
            f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE bucket = ?", (bucket,)
        ).fetchone()
        if row is None or row[1] != owner:
            raise NoSuchBucket(bucket)
        return _bucket(row)

    def _check(
        self, db: sqlite3.Connection, owner: str, name: str, condition: WriteCondition
    ) -> None:
        if condition.if_match is None and not condition.if_none_match:
            return
        current = self._current(db, owner, name)
        live = current if current is not None and not current.marker else None
        if condition.if_none_match and live is not None:
            raise PreconditionFailed(name, "If-None-Match: *")
        if condition.if_match is not None:
            if live is None:
                raise NoSuchObject(name)
            if not etag_matches(condition.if_match, f'"{live.etag}"'):
                raise PreconditionFailed(name, "If-Match")

    def check_condition(self, owner: str, name: str, condition: WriteCondition) -> None:
        """Raises as a write under ``condition`` would, now (a write checks again as it
        commits: this only spares a doomed upload its body)."""
        with self._read_lock:
            self._check(self._reader, owner, name, condition)

    def _open_upload(self, db: sqlite3.Connection, upload_id: str, owner: str, name: str) -> None:
        row = db.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        if row is None or row[1] != owner or row[2] != name:
            raise NoSuchUpload(upload_id)
        found = UploadRecord.from_row(row)
        if found.completed is not None:
            raise UploadCompleted(upload_id, found.completed)

    def _current(self, db: sqlite3.Connection, owner: str, name: str) -> ObjectRecord | None:
        row = db.execute(
            f"{_VERSIONS} WHERE n.owner = ? AND n.name = ? AND n.latest = 1", (owner, name)
        ).fetchone()
        return _record(row) if row else None

    def _version(
        self, db: sqlite3.Connection, owner: str, name: str, version_id: str
    ) -> ObjectRecord | None:
        row = db.execute(
            f"{_VERSIONS} WHERE n.owner = ? AND n.name = ? AND n.version_id = ?",
            (owner, name, version_id),
        ).fetchone()
        return _record(row) if row else None

    def _remove_version(
        self, db: sqlite3.Connection, owner: str, name: str, version_id: str, *, chain_delete: bool
    ) -> ObjectRecord | None:
        """Removes one version (no promotion, no file collection: the caller's); its
        declaration is no longer wanted, and with ``chain_delete`` the chain drops its
        reference (a declaration in flight is undone by the deletion, applied after it)."""
        found = self._version(db, owner, name, version_id)
        if found is None:
            return None
        db.execute(
            "DELETE FROM names WHERE owner = ? AND name = ? AND version_id = ?",
            (owner, name, version_id),
        )
        if found.marker:
            return found
        db.execute(
            "DELETE FROM outbox WHERE kind = ? AND owner = ? AND name = ? AND version_id = ? "
            "AND fid = ?",
            (DECLARE, owner, name, version_id, found.fid),
        )
        if chain_delete:
            db.execute(
                "INSERT INTO outbox (kind, owner, name, version_id, fid, declaration, state, "
                "updated_at) VALUES (?, ?, ?, ?, ?, '{}', ?, ?)",
                (DELETE, owner, name, version_id, found.fid, PENDING, time.time()),
            )
        return found

    def _promote(self, db: sqlite3.Connection, owner: str, name: str) -> None:
        """The newest remaining version becomes current, when none is."""
        if db.execute(
            "SELECT 1 FROM names WHERE owner = ? AND name = ? AND latest = 1", (owner, name)
        ).fetchone():
            return
        db.execute(
            "UPDATE names SET latest = 1 WHERE owner = ? AND name = ? AND seq = "
            "(SELECT MAX(seq) FROM names WHERE owner = ? AND name = ?)",
            (owner, name, owner, name),
        )

    def _collect(self, db: sqlite3.Connection, fid: str, slot: int | None = None) -> None:
        """Drops a packed object no version names any more (its bytes are dead space in
        the pack until a repack), and a file no version names any more."""
        if (
            slot is not None
            and not db.execute(
                "SELECT 1 FROM names WHERE fid = ? AND slot = ? LIMIT 1", (fid, slot)
            ).fetchone()
        ):
            db.execute("DELETE FROM members WHERE fid = ? AND slot = ?", (fid, slot))
            db.execute("DELETE FROM units WHERE fid = ? AND unit_no = ?", (fid, slot))
        if not fid or db.execute("SELECT 1 FROM names WHERE fid = ? LIMIT 1", (fid,)).fetchone():
            return
        for table in ("files", "units", "segments", "fragments", "members"):
            db.execute(f"DELETE FROM {table} WHERE fid = ?", (fid,))
        db.execute("DELETE FROM outbox WHERE kind = ? AND fid = ?", (DECLARE, fid))

    def delete_object(self, owner: str, name: str, bucket: str | None = None) -> DeleteOutcome:
        """S3's DeleteObject without a version id: the object goes (unversioned), or a
        delete marker becomes current (docs/s3.md §5)."""
        with self._transaction() as db:
            found = self._bucket_of(db, owner, name, bucket)
            versioning = found.versioning if found is not None else UNVERSIONED
            if versioning == UNVERSIONED:
                gone = self._remove_version(db, owner, name, NULL_VERSION, chain_delete=True)
                self._promote(db, owner, name)
                if gone is not None:
                    self._collect(db, gone.fid, gone.slot)
                return DeleteOutcome(None, False, gone.fid if gone else None)
            version_id = new_version_id() if versioning == ENABLED else NULL_VERSION
            gone = None
            if version_id == NULL_VERSION:
                gone = self._remove_version(db, owner, name, NULL_VERSION, chain_delete=True)
            current = self._current(db, owner, name)
            marker = ObjectRecord(
                fid="",
                owner=owner,
                name=name,
                territory=current.territory if current else (found.territory if found else ""),
                size=0,
                content_type="",
                etag="",
                data_shards=0,
                total_shards=0,
                stored=0,
                state=ACTIVE,
                created_at=time.time(),
                meta={},
                version_id=version_id,
            )
            self._insert_version(db, marker, latest=True)
            if gone is not None:
                self._collect(db, gone.fid, gone.slot)
            return DeleteOutcome(version_id, True, gone.fid if gone and not gone.marker else None)

    def delete_version(self, owner: str, name: str, version_id: str) -> DeleteOutcome | None:
        """One version (or delete marker) gone for good; None when the name has no such
        version. When it was current, the next newest becomes current."""
        with self._transaction() as db:
            gone = self._remove_version(db, owner, name, version_id, chain_delete=True)
            if gone is None:
                return None
            self._promote(db, owner, name)
            self._collect(db, gone.fid, gone.slot)
            return DeleteOutcome(version_id, gone.marker, None if gone.marker else gone.fid)

    def update_meta(
        self, record: ObjectRecord, meta: dict[str, Any], declaration: dict[str, Any] | None
    ) -> None:
        """A version's metadata (tags) changed in place; ``declaration``, when given,
        brings the chain's copy (``sealed_meta``) along: it replaces a declaration still
        pending, or goes after the one the chain has."""
        with self._transaction() as db:
            key = (record.owner, record.name, record.version_id)
            if not db.execute(
                "UPDATE names SET meta = ? WHERE owner = ? AND name = ? AND version_id = ?",
                (json.dumps(meta), *key),
            ).rowcount:
                raise NoSuchObject(record.name)
            if declaration is None or record.marker:
                return
            db.execute(
                "DELETE FROM outbox WHERE kind = ? AND owner = ? AND name = ? AND "
                "version_id = ? AND fid = ? AND state = ?",
                (DECLARE, *key, record.fid, PENDING),
            )
            self._declare(db, record, declaration)

    # -- the chain's progress --------------------------------------------------------------

    def set_entry_states(
        self, entry_ids: Sequence[int], state: str, error: str | None = None
    ) -> None:
        """Declarations' state, and their versions', in one transaction. A declaration
        of a file the chain already completed (metadata brought along) is active."""
        self.declared_generation += 1
        now = time.time()
        with self._transaction() as db:
            for entry_id in entry_ids:
                row = db.execute(
                    "SELECT o.owner, o.name, o.version_id, o.fid, COALESCE(f.active, 0) "
                    "FROM outbox o LEFT JOIN files f ON f.fid = o.fid "
                    "WHERE o.id = ? AND o.kind = ?",
                    (entry_id, DECLARE),
                ).fetchone()
                if row is None:
                    continue  # deleted meanwhile
                *version, active = row
                entry_state = ACTIVE if state == DECLARED and active else state
                db.execute(
                    "UPDATE outbox SET state = ?, last_error = ?, updated_at = ?, "
                    "attempts = attempts + (CASE WHEN ? IS NULL THEN 0 ELSE 1 END) WHERE id = ?",
                    (entry_state, error, now, error, entry_id),
                )
                db.execute(
                    "UPDATE names SET state = ? WHERE owner = ? AND name = ? AND version_id = ? "
                    "AND fid = ?",
                    (entry_state, *version),
                )

    def files_active(self, fids: Sequence[str]) -> None:
        """The chain completed these deals: every declared version of them is active."""
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
        """The chain cancelled the deal: declare the file's versions again."""
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

    # -- packs: repacking (docs/packing.md §6) ---------------------------------------------

    def repack_candidates(self, below: float, limit: int = 16) -> list[str]:
        """Active packs whose live share (what their named members are charged) is
        below ``below`` of their stored bytes, every version naming them on chain."""
        rows = self._rows(
            "SELECT f.fid FROM files f JOIN members m ON m.fid = f.fid "
            "WHERE f.block_size IS NOT NULL AND f.active = 1 AND NOT EXISTS "
            "(SELECT 1 FROM names n WHERE n.fid = f.fid AND n.state != ?) "
            "GROUP BY f.fid HAVING SUM(m.stored) < ? * f.stored ORDER BY f.fid LIMIT ?",
            (ACTIVE, below, limit),
        )
        return [str(row[0]) for row in rows]

    def pack_members(self, fid: str) -> list[tuple[UnitRecord, list[ObjectRecord]]]:
        """A pack's live members: each one's unit and the versions naming it."""
        members = []
        for unit in self.units(fid):
            rows = self._rows(
                f"{_VERSIONS} WHERE n.fid = ? AND n.slot = ? ORDER BY n.owner, n.name, n.seq",
                (fid, unit.unit_no),
            )
            if rows:
                members.append((unit, [_record(row) for row in rows]))
        return members

    def move_members(
        self,
        old_fid: str,
        pack: UploadCommit,
        moves: Sequence[
            tuple[UnitRecord, UnitRecord, Sequence[tuple[ObjectRecord, dict[str, Any]]]]
        ],
    ) -> int:
        """Points members of ``old_fid`` at the pack ``pack`` describes (its file,
        segments and fragments), in one transaction: each (old unit, new unit, its
        versions as newly declared) moves only if exactly those versions still name it,
        else it stays (the moved copy is dead space). Returns how many moved."""
        moved = 0
        with self._transaction() as db:
            self._insert_file(db, pack)
            for old, new, versions in moves:
                now = db.execute(
                    "SELECT owner, name, version_id FROM names WHERE fid = ? AND slot = ? "
                    "ORDER BY owner, name, version_id",
                    (old_fid, old.unit_no),
                ).fetchall()
                wanted = sorted((r.owner, r.name, r.version_id) for r, _ in versions)
                if [tuple(row) for row in now] != wanted:
                    continue
                member = db.execute(
                    "SELECT member_id, size, etag, stored FROM members WHERE fid = ? AND slot = ?",
                    (old_fid, old.unit_no),
                ).fetchone()
                db.execute("DELETE FROM members WHERE fid = ? AND slot = ?", (old_fid, old.unit_no))
                db.execute(
                    "DELETE FROM units WHERE fid = ? AND unit_no = ?", (old_fid, old.unit_no)
                )
                self._insert_units(db, [new])
                db.execute(
                    "INSERT INTO members (fid, slot, member_id, size, etag, stored) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (new.fid, new.unit_no, *member),
                )
                for record, declaration in versions:
                    db.execute(
                        "UPDATE names SET fid = ?, slot = ?, state = ? "
                        "WHERE owner = ? AND name = ? AND version_id = ?",
                        (
                            new.fid,
                            new.unit_no,
                            PENDING,
                            record.owner,
                            record.name,
                            record.version_id,
                        ),
                    )
                    self._declare(db, replace(record, fid=new.fid), declaration, old_fid)
                moved += 1
            self._collect(db, old_fid)
            self._collect(db, pack.record.fid)  # nothing moved: the new pack goes again
        return moved

    # -- recovery: versions as the chain holds them ----------------------------------------

    def restore_version(
        self, commit: UploadCommit, extra: Sequence[tuple[ObjectRecord, dict[str, Any]]] = ()
    ) -> None:
        """A file and the versions naming it, exactly as given (version ids and states
        included), none current yet: ``settle_versions`` decides that once all are in."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM files WHERE fid = ?", (commit.record.fid,)).fetchone():
                return
            self._insert_file(db, commit)
            for record, declaration in ((commit.record, commit.declaration), *extra):
                self._restore_one(db, record, declaration)

    def restore_pack(self, members: Sequence[UploadCommit]) -> None:
        """A pack's file and the versions naming its members (each commit one version,
        its member's unit with it), as ``restore_version`` does for a file."""
        with self._transaction() as db:
            fid = members[0].record.fid
            if db.execute("SELECT 1 FROM files WHERE fid = ?", (fid,)).fetchone():
                return
            self._insert_file(db, members[0])
            slots: set[int | None] = set()
            for commit in members:
                if commit.record.slot not in slots:
                    slots.add(commit.record.slot)
                    self._insert_member(db, commit)
                self._restore_one(db, commit.record, commit.declaration)

    def _restore_one(
        self, db: sqlite3.Connection, record: ObjectRecord, declaration: dict[str, Any]
    ) -> None:
        self._insert_version(db, replace(record, seq=0), latest=False)
        self._declare(db, record, declaration)
        entry_state = record.state if record.state in (DECLARED, ACTIVE) else PENDING
        db.execute("UPDATE outbox SET state = ? WHERE id = last_insert_rowid()", (entry_state,))

    def settle_versions(self) -> None:
        """Orders every name's versions by their time and makes the newest current."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT owner, name, version_id FROM names ORDER BY owner, name, created_at, seq"
            ).fetchall()
            db.execute("UPDATE names SET latest = 0, seq = -seq")
            for position, (owner, name, version_id) in enumerate(rows):
                last = position + 1 == len(rows) or rows[position + 1][:2] != (owner, name)
                db.execute(
                    "UPDATE names SET seq = ?, latest = ? WHERE owner = ? AND name = ? "
                    "AND version_id = ?",
                    (self._next_seq(), int(last), owner, name, version_id),
                )

    # -- S3 buckets: one namespace per gateway; a bucket's objects are its owner's names
    # "<bucket>/<key>" ------------------------------------------------------------------

    def create_bucket(
        self, bucket: str, owner: str, territory: str, versioning: str = UNVERSIONED
    ) -> BucketRecord | None:
        """The new bucket, or None when the name is taken (by anyone: see ``bucket``)."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM buckets WHERE bucket = ?", (bucket,)).fetchone():
                return None
            now = time.time()
            db.execute(
                f"INSERT INTO buckets ({_BUCKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
                (bucket, owner, territory, now, versioning),
            )
        return BucketRecord(bucket, owner, territory, now, versioning)

    def bucket(self, bucket: str) -> BucketRecord | None:
        rows = self._rows(f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE bucket = ?", (bucket,))
        return _bucket(rows[0]) if rows else None

    def buckets(self, owner: str) -> list[BucketRecord]:
        rows = self._rows(
            f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE owner = ? ORDER BY bucket", (owner,)
        )
        return [_bucket(row) for row in rows]

    def set_versioning(self, bucket: str, versioning: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE buckets SET versioning = ? WHERE bucket = ?", (versioning, bucket))

    def set_bucket_tags(self, bucket: str, tags: list[list[str]] | None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE buckets SET tags = ? WHERE bucket = ?",
                (None if tags is None else json.dumps(tags), bucket),
            )

    def delete_bucket(self, bucket: str, owner: str) -> bool:
        """Drops a bucket holding no version (delete markers included) and aborts its
        unfinished uploads; False when versions remain (the check and the delete in one
        transaction, so no upload slips in between)."""
        where, args = _within(bucket + "/", "name")
        with self._transaction() as db:
            if db.execute(
                f"SELECT 1 FROM names WHERE owner = ? AND {where} LIMIT 1", (owner, *args)
            ).fetchone():
                return False
            uploads = [
                row[0]
                for row in db.execute(
                    f"SELECT upload_id FROM uploads WHERE owner = ? AND {where}", (owner, *args)
                ).fetchall()
            ]
            for upload_id in uploads:
                db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
                db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            db.execute("DELETE FROM buckets WHERE bucket = ? AND owner = ?", (bucket, owner))
        return True

    # -- multipart uploads: parts are placed units no object names yet ------------------

    def create_upload(self, upload: UploadRecord) -> None:
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
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
        rows = self._rows(
            f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?", (upload_id,)
        )
        return UploadRecord.from_row(rows[0]) if rows else None

    def uploads(
        self, owner: str, prefix: str, after_name: str, after_id: str, limit: int
    ) -> list[UploadRecord]:
        """The owner's unfinished uploads of names with ``prefix``, in (name, upload id)
        order after (``after_name``, ``after_id``)."""
        where, args = _within(prefix, "name")
        rows = self._rows(
            f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE owner = ? AND {where} "
            "AND completed IS NULL AND (name > ? OR (name = ? AND upload_id > ?)) "
            "ORDER BY name, upload_id LIMIT ?",
            (owner, *args, after_name, after_name, after_id, limit),
        )
        return [UploadRecord.from_row(row) for row in rows]

    def put_part(self, part: PartRecord) -> None:
        """Records a part (a retry of its number replaces it: the last to finish wins;
        the old fragments are left to their miners' orphan clean-up). Raises
        ``NoSuchUpload`` when the upload was completed or aborted meanwhile."""
        with self._transaction() as db:
            found = db.execute(
                "SELECT completed FROM uploads WHERE upload_id = ?", (part.upload_id,)
            ).fetchone()
            if found is None or found[0] is not None:
                raise NoSuchUpload(part.upload_id)
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
        """Aborts an unfinished upload; False when there is none (or it was completed)."""
        with self._transaction() as db:
            found = db.execute(
                "DELETE FROM uploads WHERE upload_id = ? AND completed IS NULL", (upload_id,)
            ).rowcount
            if found:
                db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        return bool(found)

    def expire_uploads(self, before: float) -> int:
        """Drops uploads begun before ``before`` (unfinished ones' fragments stay orphans;
        completed ones' answers are no longer kept for retries)."""
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
        """A version naming ``fid`` (current ones first, then in name order; the owner's,
        when an owner is given)."""
        if owner is None:
            rows = self._rows(
                f"{_VERSIONS} WHERE n.fid = ? ORDER BY n.latest DESC, n.name LIMIT 1", (fid,)
            )
        else:
            rows = self._rows(
                f"{_VERSIONS} WHERE n.fid = ? AND n.owner = ? "
                "ORDER BY n.latest DESC, n.name LIMIT 1",
                (fid, owner),
            )
        return _record(rows[0]) if rows else None

    def lookup(self, object_id: str, owner: str) -> ObjectRecord | None:
        """The owner's version (current ones first, then in name order) of the object the
        APIs call ``object_id``: a file's fid, or a packed object's member id."""
        member = self._rows("SELECT fid, slot FROM members WHERE member_id = ?", (object_id,))
        fid, slot = member[0] if member else (object_id, None)
        rows = self._rows(
            f"{_VERSIONS} WHERE n.fid = ? AND n.slot IS ? AND n.owner = ? "
            "ORDER BY n.latest DESC, n.name LIMIT 1",
            (fid, slot, owner),
        )
        return _record(rows[0]) if rows else None

    def names_of(self, record: ObjectRecord) -> list[ObjectRecord]:
        """Every version of ``record``'s owner naming the same object."""
        rows = self._rows(
            f"{_VERSIONS} WHERE n.fid = ? AND n.slot IS ? AND n.owner = ? "
            "ORDER BY n.name, n.seq DESC",
            (record.fid, record.slot, record.owner),
        )
        return [_record(row) for row in rows]

    def find(self, owner: str, name: str) -> ObjectRecord | None:
        """The name's current object; None when it has none (or a delete marker)."""
        rows = self._rows(
            f"{_CURRENT} WHERE n.owner = ? AND n.name = ? AND n.latest = 1", (owner, name)
        )
        return _record(rows[0]) if rows else None

    def current(self, owner: str, name: str) -> ObjectRecord | None:
        """The name's newest version, a delete marker included."""
        with self._read_lock:
            return self._current(self._reader, owner, name)

    def version(self, owner: str, name: str, version_id: str) -> ObjectRecord | None:
        with self._read_lock:
            return self._version(self._reader, owner, name, version_id)

    def objects_by_name(
        self, owner: str, after: str, limit: int, *, prefix: str = "", inclusive: bool = False
    ) -> list[ObjectRecord]:
        """The owner's current objects beginning with ``prefix``, after ``after`` (at or
        after, with ``inclusive``), in UTF-8 byte order (SQLite compares TEXT bytewise:
        S3's order)."""
        where, args = _within(prefix)
        rows = self._rows(
            f"{_CURRENT} WHERE n.owner = ? AND n.latest = 1 AND {where} "
            f"AND n.name {'>=' if inclusive else '>'} ? ORDER BY n.name LIMIT ?",
            (owner, *args, after, limit),
        )
        return [_record(row) for row in rows]

    def versions_by_name(
        self,
        owner: str,
        after: str,
        limit: int,
        *,
        prefix: str = "",
        inclusive: bool = False,
        older_than: int | None = None,
    ) -> list[ObjectRecord]:
        """Every version (delete markers included) of the owner's names beginning with
        ``prefix``, in name order and newest first, starting after name ``after`` (at it,
        with ``inclusive``), or with ``older_than``, after the version of ``after`` with
        that seq."""
        where, args = _within(prefix)
        if older_than is not None:
            position, position_args = (
                "(n.name > ? OR (n.name = ? AND n.seq < ?))",
                [
                    after,
                    after,
                    older_than,
                ],
            )
        else:
            position, position_args = f"n.name {'>=' if inclusive else '>'} ?", [after]
        rows = self._rows(
            f"{_VERSIONS} WHERE n.owner = ? AND {where} AND {position} "
            "ORDER BY n.name, n.seq DESC LIMIT ?",
            (owner, *args, *position_args, limit),
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
        """A declaration of the file (any version's), the template of a copy's."""
        rows = self._rows(
            "SELECT declaration FROM outbox WHERE kind = ? AND fid = ? ORDER BY id LIMIT 1",
            (DECLARE, fid),
        )
        return json.loads(rows[0][0]) if rows else None

    def units(self, fid: str, slot: int | None = None) -> list[UnitRecord]:
        """A file's units; a packed object's one (``slot``) of its pack."""
        if slot is None:
            rows = self._rows("SELECT * FROM units WHERE fid = ? ORDER BY unit_no", (fid,))
        else:
            rows = self._rows("SELECT * FROM units WHERE fid = ? AND unit_no = ?", (fid, slot))
        return [
            from_row(UnitRecord, (*row[:6], WrappedKey.from_json(row[6]), *row[7:])) for row in rows
        ]

    def segments(self, fid: str) -> list[SegmentRecord]:
        rows = self._rows("SELECT * FROM segments WHERE fid = ? ORDER BY seg_no", (fid,))
        return [from_row(SegmentRecord, row) for row in rows]

    def fragments(
        self, fid: str, seg_no: int | None = None, last_segment: int | None = None
    ) -> list[FragmentPlacement]:
        """A file's placements: all, one segment's, or segments ``seg_no..last_segment``."""
        if seg_no is None:
            rows = self._rows("SELECT * FROM fragments WHERE fid = ? ORDER BY seg_no, idx", (fid,))
        else:
            rows = self._rows(
                "SELECT * FROM fragments WHERE fid = ? AND seg_no BETWEEN ? AND ? "
                "ORDER BY seg_no, idx",
                (fid, seg_no, seg_no if last_segment is None else last_segment),
            )
        return [from_row(FragmentPlacement, row) for row in rows]

    def outbox(self, kind: str, state: str, limit: int = 256) -> list[OutboxEntry]:
        rows = self._rows(
            "SELECT id, kind, owner, name, fid, declaration, state, attempts, last_error, "
            "version_id, replaces FROM outbox WHERE kind = ? AND state = ? "
            "ORDER BY updated_at, id LIMIT ?",
            (kind, state, limit),
        )
        return [
            OutboxEntry(i, k, o, n, f, json.loads(decl), st, attempts, error, version, replaces)
            for i, k, o, n, f, decl, st, attempts, error, version, replaces in rows
        ]

    def deletions_pending(self, fid: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM outbox WHERE kind = ? AND fid = ?", (DELETE, fid))
        return int(rows[0][0])

    def count_names(self, state: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM names WHERE state = ? AND fid != ''", (state,))
        return int(rows[0][0])

    def pending_bytes(self, owner: str, territory: str) -> int:
        """Bytes this gateway holds for a territory but the chain does not count yet
        (versions not declared, or unpaid, and parts of unfinished uploads): the
        reservation that keeps it from acknowledging beyond the quota it saw."""
        rows = self._rows(
            "SELECT COALESCE(SUM(COALESCE(m.stored, f.stored)), 0) FROM names n "
            f"JOIN files f ON f.fid = n.fid {_MEMBER_JOIN} "
            "WHERE n.owner = ? AND n.territory = ? AND n.state IN (?, ?)",
            (owner, territory, PENDING, UNPAID),
        )
        # The parts of unfinished multipart uploads: stored already, and counted by the
        # chain only once the object they complete is declared. Without them each part
        # passed the check alone, and the completed object overdrew the territory.
        parts = self._rows(
            "SELECT COALESCE(SUM(json_extract(placed.value, '$[4]')), 0) "
            "FROM uploads u JOIN parts p ON p.upload_id = u.upload_id, "
            "json_each(p.unit, '$.placements') placed "
            "WHERE u.owner = ? AND u.territory = ? AND u.completed IS NULL",
            (owner, territory),
        )
        return int(rows[0][0]) + int(parts[0][0])
