"""The miner's disk: fragments, idle units and their index.

Layout under the data directory::

    fragments/<id[0:2]>/<id[2:4]>/<id>   fragment bytes, exactly as received
    idle/<unit index>                    the last layer of an idle unit
    tmp/                                 writes in progress (temp file, fsync, rename)
    miner.db                             SQLite index, version 1

For every fragment and idle unit the index keeps the SHA-256 leaf hashes (proofs need
Merkle paths without re-reading the file) and an xxh3-64 per leaf (cheap bitrot checks
on every read). Ids are checked before any path is built from them.
"""

import asyncio
import errno
import functools
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from chain_client.files import (
    fsync_directory,
    private_database,
    private_directory,
    private_opener,
)
from chain_client.merkle import MerkleTree, leaf_hash, root_of_hashes
from chain_client.sqlite import transaction

__all__ = [
    "FragmentRecord",
    "IdleRecord",
    "MinerStore",
    "StoreError",
    "check_fragment_id",
    "statvfs_free",
]

SCHEMA_VERSION = 1
_ID = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024  # hashing and writing happen off the event loop, a MiB at a time
ORPHAN, DEAL, ACTIVE = "orphan", "deal", "active"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fragments (
    id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    fid TEXT,
    received_height INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    leaf_hashes BLOB NOT NULL,
    leaf_checks BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fragments_fid ON fragments (fid);
CREATE TABLE IF NOT EXISTS idle_units (
    unit_index INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    anchor_height INTEGER NOT NULL,
    layer_roots TEXT NOT NULL,
    committed_at INTEGER,
    leaf_hashes BLOB NOT NULL,
    leaf_checks BLOB NOT NULL
);
"""


class StoreError(Exception):
    """A refused or failed store operation; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def check_fragment_id(fragment_id: str) -> str:
    # SECURITY: ids become file names; only 64 lowercase hex characters ever do.
    if not _ID.match(fragment_id):
        raise StoreError(400, "BadFragmentId", "a fragment id is 64 lowercase hex characters")
    return fragment_id


@dataclass(frozen=True, slots=True)
class FragmentRecord:
    id: str
    size: int
    state: str
    fid: str | None
    received_height: int
    stored_at: float


@dataclass(frozen=True, slots=True)
class IdleRecord:
    unit_index: int
    state: str
    anchor_height: int
    layer_roots: str
    committed_at: int | None


def _checks(leaves: Sequence[bytes | bytearray | memoryview]) -> bytes:
    return b"".join(xxhash.xxh3_64_digest(leaf) for leaf in leaves)


class _Receiver:
    """Writes one incoming fragment to a temp file while hashing it, off the loop."""

    def __init__(self, path: Path, leaf_size: int, *, hash_content: bool) -> None:
        self.path = path
        self.leaf_size = leaf_size
        # Closed in finish or abort.
        self.file = open(path, "wb", opener=private_opener)  # noqa: SIM115
        self.content = hashlib.sha256() if hash_content else None
        self.leaf_hashes: list[bytes] = []
        self.checks: list[bytes] = []
        self.pending = bytearray()
        self.size = 0

    def absorb(self, data: bytes) -> None:
        self.file.write(data)
        if self.content is not None:
            self.content.update(data)
        self.size += len(data)
        view = memoryview(data)
        if self.pending:
            take = self.leaf_size - len(self.pending)
            self.pending += view[:take]
            view = view[take:]
            if len(self.pending) < self.leaf_size:
                return
            self._leaf(self.pending)
            self.pending.clear()
        whole = len(view) - len(view) % self.leaf_size
        for offset in range(0, whole, self.leaf_size):
            self._leaf(view[offset : offset + self.leaf_size])
        self.pending += view[whole:]

    def _leaf(self, leaf: bytes | bytearray | memoryview) -> None:
        self.leaf_hashes.append(leaf_hash(leaf))
        self.checks.append(xxhash.xxh3_64_digest(leaf))

    def finish(self) -> None:
        if self.pending:
            self._leaf(self.pending)
            self.pending.clear()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def abort(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def statvfs_free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class MinerStore:
    def __init__(
        self, root: Path, *, leaf_size: int, probe: Callable[[Path], int] = statvfs_free
    ) -> None:
        self.root = root
        self.leaf_size = leaf_size
        self.probe = probe
        self.fragment_dir = root / "fragments"
        self.idle_dir = root / "idle"
        self.tmp_dir = root / "tmp"
        # SECURITY: the miner's files are its own (review #16): its key and which
        # fragments it holds, for whom.
        for directory in (root, self.fragment_dir, self.idle_dir, self.tmp_dir):
            private_directory(directory)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            private_database(root / "miner.db"), isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise StoreError(500, "SchemaVersion", f"{root / 'miner.db'} is version {version}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """One statement over many rows, in one transaction."""
        with self._lock, transaction(self._db):
            self._db.executemany(sql, rows)

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._sql("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._sql("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- fragments ------------------------------------------------------------------------

    def fragment_path(self, fragment_id: str) -> Path:
        check_fragment_id(fragment_id)
        return self.fragment_dir / fragment_id[:2] / fragment_id[2:4] / fragment_id

    def fragment(self, fragment_id: str) -> FragmentRecord | None:
        rows = self._sql(
            "SELECT id, size, state, fid, received_height, stored_at FROM fragments WHERE id = ?",
            (check_fragment_id(fragment_id),),
        )
        return FragmentRecord(*rows[0]) if rows else None

    def fragments(self, state: str | None = None) -> list[FragmentRecord]:
        if state is None:
            rows = self._sql(
                "SELECT id, size, state, fid, received_height, stored_at FROM fragments"
            )
        else:
            rows = self._sql(
                "SELECT id, size, state, fid, received_height, stored_at FROM fragments "
                "WHERE state = ?",
                (state,),
            )
        return [FragmentRecord(*row) for row in rows]

    def fragments_of(self, fid: str) -> list[FragmentRecord]:
        rows = self._sql(
            "SELECT id, size, state, fid, received_height, stored_at FROM fragments WHERE fid = ?",
            (fid,),
        )
        return [FragmentRecord(*row) for row in rows]

    def set_fragment_state(self, fragment_id: str, state: str, fid: str | None = None) -> None:
        self.set_fragment_states([fragment_id], state, fid)

    def set_fragment_states(
        self, fragment_ids: Sequence[str], state: str, fid: str | None = None
    ) -> None:
        """Several fragments' state in one transaction (one WAL sync)."""
        self._many(
            "UPDATE fragments SET state = ?, fid = COALESCE(?, fid) WHERE id = ?",
            [(state, fid, fragment_id) for fragment_id in fragment_ids],
        )

    def take_deals(self, deals: Sequence[tuple[str, Sequence[str]]]) -> list[int]:
        """Each deal's fragments (fid, fragment ids) that are held here pass to state
        ``deal`` under their fid, all in one transaction; returns how many each had."""
        counts, rows = [], []
        for fid, fragment_ids in deals:
            held = [f for f in fragment_ids if self.fragment(f) is not None]
            counts.append(len(held))
            rows += [(DEAL, fid, fragment_id) for fragment_id in held]
        if rows:
            self._many("UPDATE fragments SET state = ?, fid = ? WHERE id = ?", rows)
        return counts

    def activate_files(self, fids: Sequence[str]) -> None:
        """The fragments held of these files are in Active deals; one transaction."""
        self._many(
            "UPDATE fragments SET state = ? WHERE fid = ? AND state != ?",
            [(ACTIVE, fid, ACTIVE) for fid in fids],
        )

    def make_orphan(self, fragment_id: str, height: int) -> None:
        """No deal holds it now; the orphan clock starts again from ``height``."""
        self._sql(
            "UPDATE fragments SET state = ?, received_height = ? WHERE id = ?",
            (ORPHAN, height, fragment_id),
        )

    def fragment_leaf_hashes(self, fragment_id: str) -> list[bytes]:
        rows = self._sql("SELECT leaf_hashes FROM fragments WHERE id = ?", (fragment_id,))
        if not rows:
            raise StoreError(404, "NoSuchFragment", fragment_id)
        blob: bytes = rows[0][0]
        return [blob[i : i + 32] for i in range(0, len(blob), 32)]

    async def receive(
        self,
        fragment_id: str,
        body: AsyncIterable[bytes],
        *,
        size: int,
        height: int,
        content_sha256: str | None = None,
    ) -> bool:
        """Stores a fragment streamed from ``body``; True if new, False if already held.
        Nothing is kept unless the bytes hash to the id."""
        check_fragment_id(fragment_id)
        free = self.free_bytes()
        if free < size:
            raise StoreError(507, "InsufficientStorage", f"{free} bytes free, {size} needed")
        temp = self.tmp_dir / f"{fragment_id}.{os.getpid()}.{time.monotonic_ns()}.part"
        receiver = await asyncio.to_thread(
            functools.partial(
                _Receiver, temp, self.leaf_size, hash_content=content_sha256 is not None
            )
        )
        try:
            buffered = bytearray()
            async for chunk in body:
                buffered += chunk
                if receiver.size + len(buffered) > size:
                    raise StoreError(400, "SizeMismatch", f"body longer than {size} bytes")
                if len(buffered) >= _CHUNK:
                    await asyncio.to_thread(receiver.absorb, bytes(buffered))
                    buffered.clear()
            if buffered:
                await asyncio.to_thread(receiver.absorb, bytes(buffered))
            if receiver.size != size:
                raise StoreError(400, "SizeMismatch", f"got {receiver.size} of {size} bytes")
            await asyncio.to_thread(receiver.finish)
            if receiver.content is not None and receiver.content.hexdigest() != content_sha256:
                raise StoreError(400, "ContentHashMismatch", "body does not match its sha256")
            if root_of_hashes(receiver.leaf_hashes).hex() != fragment_id:
                raise StoreError(400, "HashMismatch", "body does not hash to the fragment id")
            if self.fragment(fragment_id) is not None and self.fragment_path(fragment_id).exists():
                temp.unlink(missing_ok=True)
                return False
            await asyncio.to_thread(self._install, temp, fragment_id)
        except OSError as exc:
            await asyncio.to_thread(receiver.abort)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(507, "InsufficientStorage", "the disk filled up") from None
            raise
        except BaseException:
            await asyncio.to_thread(receiver.abort)
            raise
        self._sql(
            "INSERT OR REPLACE INTO fragments (id, size, state, fid, received_height, stored_at, "
            "leaf_hashes, leaf_checks) VALUES (?, ?, ?, NULL, ?, ?, ?, ?)",
            (
                fragment_id,
                size,
                ORPHAN,
                height,
                time.time(),
                b"".join(receiver.leaf_hashes),
                b"".join(receiver.checks),
            ),
        )
        return True

    def receive_many(
        self, items: Sequence[tuple[str, bytes]], *, height: int, max_size: int
    ) -> list[bool | StoreError]:
        """Stores a batch of small fragments already in memory, in one pass off the loop:
        each file written and fsynced, the directories fsynced once, every row in one
        transaction (one WAL sync for the batch, not one per fragment). Per item: True if
        new, False if already held, or the StoreError that refused it (the others stay)."""
        results: list[bool | StoreError] = []
        installed: list[tuple[Any, ...]] = []
        directories: set[Path] = set()
        free = self.free_bytes()
        now = time.time()
        for fragment_id, data in items:
            try:
                check_fragment_id(fragment_id)
                if not 1 <= len(data) <= max_size:
                    raise StoreError(413, "FragmentTooLarge", f"1 to {max_size} bytes")
                if free < len(data):
                    raise StoreError(
                        507, "InsufficientStorage", f"{free} bytes free, {len(data)} needed"
                    )
                leaves = [
                    memoryview(data)[i : i + self.leaf_size]
                    for i in range(0, len(data), self.leaf_size)
                ]
                hashes = [leaf_hash(leaf) for leaf in leaves]
                if root_of_hashes(hashes).hex() != fragment_id:
                    raise StoreError(400, "HashMismatch", "body does not hash to the fragment id")
                final = self.fragment_path(fragment_id)
                if self.fragment(fragment_id) is not None and final.exists():
                    results.append(False)
                    continue
                temp = self.tmp_dir / f"{fragment_id}.{os.getpid()}.{time.monotonic_ns()}.part"
                try:
                    with open(temp, "wb", opener=private_opener) as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(temp, final)
                except OSError as exc:
                    temp.unlink(missing_ok=True)
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise StoreError(507, "InsufficientStorage", "the disk filled up") from None
                    raise
            except StoreError as exc:
                results.append(exc)
                continue
            free -= len(data)
            directories.add(final.parent)
            installed.append(
                (fragment_id, len(data), ORPHAN, height, now, b"".join(hashes), _checks(leaves))
            )
            results.append(True)
        for directory in directories:
            fsync_directory(directory)
        self._many(
            "INSERT OR REPLACE INTO fragments (id, size, state, fid, received_height, "
            "stored_at, leaf_hashes, leaf_checks) VALUES (?, ?, ?, NULL, ?, ?, ?, ?)",
            installed,
        )
        return results

    def _install(self, temp: Path, fragment_id: str) -> None:
        final = self.fragment_path(fragment_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        fsync_directory(final.parent)

    def delete_fragment(self, fragment_id: str) -> None:
        self.fragment_path(fragment_id).unlink(missing_ok=True)
        self._sql("DELETE FROM fragments WHERE id = ?", (fragment_id,))

    def _checks_of(self, table: str, key_column: str, key: object) -> bytes:
        rows = self._sql(f"SELECT leaf_checks FROM {table} WHERE {key_column} = ?", (key,))
        if not rows:
            raise StoreError(404, "NoSuchFragment", str(key))
        blob: bytes = rows[0][0]
        return blob

    def _read_verified(self, path: Path, checks: bytes, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start..end`` (exclusive) of a file, every covering leaf checked."""
        leaf = self.leaf_size
        first, last = start // leaf, (end - 1) // leaf
        with open(path, "rb") as handle:
            index = first
            while index <= last:
                count = min(last - index + 1, _CHUNK // leaf)
                handle.seek(index * leaf)
                data = handle.read(count * leaf)
                for n in range(count):
                    piece = data[n * leaf : (n + 1) * leaf]
                    expected = checks[(index + n) * 8 : (index + n + 1) * 8]
                    if not piece or xxhash.xxh3_64_digest(piece) != expected:
                        raise StoreError(500, "FragmentCorrupt", f"{path.name} leaf {index + n}")
                lo = max(start - index * leaf, 0)
                hi = min(end - index * leaf, len(data))
                yield data[lo:hi]
                index += count

    async def read_range(self, fragment_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        record = self.fragment(fragment_id)
        if record is None:
            raise StoreError(404, "NoSuchFragment", fragment_id)
        checks = self._checks_of("fragments", "id", fragment_id)
        pieces = self._read_verified(self.fragment_path(fragment_id), checks, start, end)
        if end - start <= _CHUNK:  # one read: one trip to a worker thread, not two
            try:
                small = await asyncio.to_thread(list, pieces)
            except FileNotFoundError:
                raise StoreError(500, "FragmentCorrupt", f"{fragment_id} is missing") from None
            for data in small:
                yield data
            return
        sentinel: list[bytes] = []
        while True:
            try:
                piece = await asyncio.to_thread(next, pieces, sentinel)
            except FileNotFoundError:
                raise StoreError(500, "FragmentCorrupt", f"{fragment_id} is missing") from None
            if piece is sentinel:
                return
            yield piece  # type: ignore[misc]

    def read_fragment_leaf(self, fragment_id: str, index: int) -> bytes:
        record = self.fragment(fragment_id)
        if record is None:
            raise StoreError(404, "NoSuchFragment", fragment_id)
        start = index * self.leaf_size
        end = min(start + self.leaf_size, record.size)
        checks = self._checks_of("fragments", "id", fragment_id)
        return b"".join(self._read_verified(self.fragment_path(fragment_id), checks, start, end))

    # -- idle units ---------------------------------------------------------------------------

    def idle_path(self, unit_index: int) -> Path:
        return self.idle_dir / str(int(unit_index))

    def write_idle_unit(
        self, unit_index: int, data: bytes, anchor_height: int, layer_roots: list[str]
    ) -> MerkleTree:
        """Atomically writes an idle unit's last layer and indexes it (state generated)."""
        temp = self.tmp_dir / f"idle-{unit_index}.{time.monotonic_ns()}.part"
        try:
            with open(temp, "wb", opener=private_opener) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.idle_path(unit_index))
            fsync_directory(self.idle_dir)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        tree = MerkleTree.from_data(data, self.leaf_size)
        leaves = [data[i : i + self.leaf_size] for i in range(0, len(data), self.leaf_size)]
        self._sql(
            "INSERT OR REPLACE INTO idle_units (unit_index, state, anchor_height, layer_roots, "
            "committed_at, leaf_hashes, leaf_checks) VALUES (?, 'generated', ?, ?, NULL, ?, ?)",
            (
                unit_index,
                anchor_height,
                ",".join(layer_roots),
                b"".join(tree.leaf_hash(i) for i in range(tree.leaf_count)),
                _checks(leaves),
            ),
        )
        return tree

    def idle_units(self, state: str | None = None) -> list[IdleRecord]:
        columns = "unit_index, state, anchor_height, layer_roots, committed_at"
        if state is None:
            rows = self._sql(f"SELECT {columns} FROM idle_units ORDER BY unit_index")
        else:
            rows = self._sql(
                f"SELECT {columns} FROM idle_units WHERE state = ? ORDER BY unit_index", (state,)
            )
        return [IdleRecord(*row) for row in rows]

    def set_idle_state(self, unit_index: int, state: str, committed_at: int | None = None) -> None:
        self._sql(
            "UPDATE idle_units SET state = ?, committed_at = COALESCE(?, committed_at) "
            "WHERE unit_index = ?",
            (state, committed_at, unit_index),
        )

    def delete_idle_unit(self, unit_index: int) -> None:
        self.idle_path(unit_index).unlink(missing_ok=True)
        self._sql("DELETE FROM idle_units WHERE unit_index = ?", (unit_index,))

    def idle_leaf_hashes(self, unit_index: int) -> list[bytes]:
        rows = self._sql("SELECT leaf_hashes FROM idle_units WHERE unit_index = ?", (unit_index,))
        if not rows:
            raise StoreError(404, "NoSuchIdleUnit", str(unit_index))
        blob: bytes = rows[0][0]
        return [blob[i : i + 32] for i in range(0, len(blob), 32)]

    def read_idle_leaf(self, unit_index: int, index: int) -> bytes:
        checks = self._checks_of("idle_units", "unit_index", unit_index)
        start = index * self.leaf_size
        path = self.idle_path(unit_index)
        return b"".join(self._read_verified(path, checks, start, start + self.leaf_size))

    # -- space ------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Free space as the probe sees it (tests inject a nearly full disk)."""
        return self.probe(self.root)

    def fragment_bytes(self) -> int:
        (total,) = self._sql("SELECT COALESCE(SUM(size), 0) FROM fragments")[0]
        return int(total)

    def idle_bytes(self, unit_size: int) -> int:
        (count,) = self._sql("SELECT COUNT(*) FROM idle_units")[0]
        return int(count) * unit_size
