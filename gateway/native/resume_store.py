"""Resumable uploads (docs/native-api.md §6): ``Content-Range`` chunks into a spool on
the gateway's disk, then, on the chunk that completes the object, the normal upload.

The spool is an append-only file of records ``offset u64 ‖ length u32 ‖ nonce (24) ‖
sealed bytes``: each chunk's new bytes sealed (XChaCha20-Poly1305) under the session's
own random key with a random nonce, so no plaintext rests on disk and no key ever seals
two messages under one nonce. The session key is stored wrapped by the master key.
Sessions live in their own SQLite file and survive a gateway restart; a chunk is
acknowledged (308) only once its bytes are fsynced.
"""

import asyncio
import hashlib
import os
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nacl import bindings

from chain_client.files import (
    PRIVATE_FILE,
    fsync_directory,
    private_database,
    private_directory,
)
from chain_client.strict import ascii_int

__all__ = ["ResumeError", "ResumeSession", "ResumeStore", "parse_content_range"]

_HEADER = struct.Struct(">QI")
SWEEP_INTERVAL = 60.0  # seconds between looks for sessions past their ttl
_NONCE = 24
_TAG = 16
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    total INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    territory TEXT NOT NULL,
    copies INTEGER,
    create_only INTEGER NOT NULL,
    sealed_key BLOB NOT NULL,
    spool TEXT NOT NULL,
    fid TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
"""


def _continues(offset: int, length: int, expected: int, stored: int) -> bool:
    """Whether a record header read from the spool is the next acknowledged record:
    records are written back to back, never empty, and count only below the stored
    prefix. Anything else (a torn or zero-filled tail after a crash) ends the spool."""
    return length > 0 and offset == expected and offset + length <= stored


def _append_record(handle: BinaryIO, key: bytes, offset: int, data: bytes) -> None:
    nonce = os.urandom(_NONCE)
    header = _HEADER.pack(offset, len(data))
    sealed = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(data, header, nonce, key)
    handle.write(header + nonce + sealed)


def _close_durably(handle: BinaryIO, directory: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    fsync_directory(directory)


class _StoredReader:
    """The stored prefix of a spool read forward: records before the asked position are
    skipped by their headers, undecrypted, and the record last decrypted is kept."""

    def __init__(self, path: Path, key: bytes, session: "ResumeSession") -> None:
        self._handle: BinaryIO | None = None
        self._path, self._key, self._stored = path, key, session.stored
        self._expected = 0  # where the next record's bytes start
        self._offset, self._plain = 0, b""  # the record decrypted last

    def read(self, start: int, count: int) -> bytes:
        pieces, end = [], start + count
        while start < end:
            if not self._offset <= start < self._offset + len(self._plain) and not self._seek(
                start
            ):
                break  # past the stored prefix: the caller compares and refuses
            cut = min(end, self._offset + len(self._plain))
            pieces.append(self._plain[start - self._offset : cut - self._offset])
            start = cut
        return b"".join(pieces)

    def _seek(self, position: int) -> bool:
        if self._handle is None or position < self._offset:
            self.close()
            self._handle = open(self._path, "rb")  # noqa: SIM115 - closed by close()
            self._expected, self._offset, self._plain = 0, 0, b""
        handle = self._handle
        while len(header := handle.read(_HEADER.size)) == _HEADER.size:
            offset, length = _HEADER.unpack(header)
            if not _continues(offset, length, self._expected, self._stored):
                return False
            self._expected = offset + length
            if offset + length <= position:
                handle.seek(_NONCE + length + _TAG, os.SEEK_CUR)
                continue
            nonce = handle.read(_NONCE)
            sealed = handle.read(length + _TAG)
            self._offset = offset
            self._plain = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, header, nonce, self._key
            )
            return True
        return False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "_StoredReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ResumeError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _number(text: str) -> int | None:
    """A size or an offset: ASCII digits, few enough for any size."""
    return ascii_int(text, max_digits=20)


def parse_content_range(header: str | None) -> tuple[int | None, int | None, int]:
    """``bytes a-b/total`` → (a, b inclusive, total); ``bytes */total`` → (None, None, total)."""
    if header is None or not header.startswith("bytes "):
        raise ResumeError(400, "InvalidContentRange", "Content-Range: bytes <start>-<end>/<total>")
    span, _, total_text = header[6:].strip().partition("/")
    total = _number(total_text)
    if total is None or total < 1:
        raise ResumeError(400, "InvalidContentRange", "the total must be a positive integer")
    if span == "*":
        return None, None, total
    first, sep, last = span.partition("-")
    start, end = _number(first), _number(last)
    if not sep or start is None or end is None:
        raise ResumeError(400, "InvalidContentRange", f"bad range {span!r}")
    if not start <= end < total:
        raise ResumeError(400, "InvalidContentRange", f"need 0 <= start <= end < total, got {span}")
    return start, end, total


@dataclass(frozen=True, slots=True)
class ResumeSession:
    owner: str
    name: str
    total: int
    stored: int
    territory: str
    copies: int | None
    create_only: bool
    sealed_key: bytes
    spool: str
    fid: str | None
    updated_at: float

    @property
    def complete(self) -> bool:
        return self.fid is not None


class ResumeStore:
    def __init__(
        self,
        directory: Path,
        master_key: bytes,
        *,
        ttl: float = 86_400.0,
        max_per_account: int = 16,
        spool_floor: int = 256 * 1024 * 1024,
        free_space: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self.ttl = ttl
        self.max_per_account = max_per_account
        self.spool_floor = spool_floor
        self.free_space = free_space
        self._swept = 0.0
        self.directory = directory
        self.spool_dir = directory / "spool"
        # SECURITY: who uploads what, and sealed spools, are the gateway's own (review #16).
        private_directory(directory)
        private_directory(self.spool_dir)
        self.master_key = master_key
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            private_database(directory / "resume.db"),
            isolation_level=None,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(SCHEMA)
        self._busy: set[tuple[str, str]] = set()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def open_sessions(self) -> int:
        """Sessions not complete yet (the health and metrics figure)."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM sessions WHERE fid IS NULL"
            ).fetchone()
        return int(count)

    def sweep(self, now: float | None = None) -> int:
        """Ends sessions idle for ``ttl``: open ones are aborted (spool removed), complete
        ones forgotten. Returns how many ended."""
        cutoff = (time.time() if now is None else now) - self.ttl
        with self._lock:
            rows = self._db.execute(
                "SELECT owner, name, spool FROM sessions WHERE updated_at < ?", (cutoff,)
            ).fetchall()
            self._db.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,))
        for _, _, spool in rows:
            (self.spool_dir / spool).unlink(missing_ok=True)
        return len(rows)

    def session(self, owner: str, name: str) -> ResumeSession | None:
        if time.monotonic() - self._swept > SWEEP_INTERVAL:
            self._swept = time.monotonic()
            self.sweep()
        with self._lock:
            row = self._db.execute(
                "SELECT owner, name, total, stored, territory, copies, create_only, sealed_key, "
                "spool, fid, updated_at FROM sessions WHERE owner = ? AND name = ?",
                (owner, name),
            ).fetchone()
        if row is None:
            return None
        owner_, name_, total, stored, territory, copies, create_only, sealed, spool, fid, at = row
        return ResumeSession(
            owner_,
            name_,
            total,
            stored,
            territory,
            copies,
            bool(create_only),
            sealed,
            spool,
            fid,
            at,
        )

    def _key(self, session: ResumeSession) -> bytes:
        nonce, sealed = session.sealed_key[:_NONCE], session.sealed_key[_NONCE:]
        key: bytes = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed, b"deoss/resume-key", nonce, self.master_key
        )
        return key

    def open(
        self,
        owner: str,
        name: str,
        total: int,
        territory: str,
        copies: int | None,
        create_only: bool,
    ) -> ResumeSession:
        old = self.session(owner, name)
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM sessions WHERE owner = ? AND fid IS NULL AND name != ?",
                (owner, name),
            ).fetchone()
        if count >= self.max_per_account:
            raise ResumeError(
                429, "TooManyRequests", f"{count} resumable uploads open; finish or delete one"
            )
        free = self.free_space(self.spool_dir)
        if free - total < self.spool_floor:
            raise ResumeError(
                507, "InsufficientGatewaySpace", "the gateway's spool has no room for this upload"
            )
        if old is not None:
            self.abort(old)
        key = os.urandom(32)
        nonce = os.urandom(_NONCE)
        sealed = nonce + bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            key, b"deoss/resume-key", nonce, self.master_key
        )
        spool = f"{os.urandom(16).hex()}.spool"
        (self.spool_dir / spool).touch(mode=PRIVATE_FILE)
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    owner,
                    name,
                    total,
                    territory,
                    copies,
                    int(create_only),
                    sealed,
                    spool,
                    time.time(),
                ),
            )
        found = self.session(owner, name)
        assert found is not None
        return found

    def abort(self, session: ResumeSession) -> None:
        (self.spool_dir / session.spool).unlink(missing_ok=True)
        with self._lock:
            self._db.execute(
                "DELETE FROM sessions WHERE owner = ? AND name = ?", (session.owner, session.name)
            )

    def complete(self, session: ResumeSession, fid: str) -> None:
        (self.spool_dir / session.spool).unlink(missing_ok=True)
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET fid = ?, stored = total, updated_at = ? "
                "WHERE owner = ? AND name = ?",
                (fid, time.time(), session.owner, session.name),
            )

    # -- one chunk at a time per session --------------------------------------------------

    def acquire(self, owner: str, name: str) -> None:
        if (owner, name) in self._busy:
            raise ResumeError(409, "SessionBusy", "another chunk of this upload is in progress")
        self._busy.add((owner, name))

    def release(self, owner: str, name: str) -> None:
        self._busy.discard((owner, name))

    # -- the spool ------------------------------------------------------------------------

    def _records(self, session: ResumeSession) -> Iterator[tuple[int, bytes]]:
        key = self._key(session)
        expected = 0
        with open(self.spool_dir / session.spool, "rb") as handle:
            while len(header := handle.read(_HEADER.size)) == _HEADER.size:
                offset, length = _HEADER.unpack(header)
                if not _continues(offset, length, expected, session.stored):
                    return  # bytes of an unacknowledged chunk: trimmed at the next append
                expected = offset + length
                nonce = handle.read(_NONCE)
                sealed = handle.read(length + _TAG)
                plain: bytes = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                    sealed, _HEADER.pack(offset, length), nonce, key
                )
                yield offset, plain

    def read_back(self, session: ResumeSession, start: int, end: int) -> bytes:
        """Stored bytes ``start..end`` (exclusive), to compare an overlapping chunk."""
        with _StoredReader(self.spool_dir / session.spool, self._key(session), session) as reader:
            return reader.read(start, end - start)

    async def append(
        self,
        session: ResumeSession,
        start: int,
        body: AsyncIterable[bytes],
        length: int,
        *,
        sha256: str | None = None,
    ) -> ResumeSession:
        """Adds one chunk as it streams in (memory: one piece): its part below the stored
        prefix must match what is stored (else nothing is kept), the rest is appended.
        Whatever was appended is fsynced and counted before this returns, also when the
        body breaks off, so a 308 means durable and a failure leaves a durable prefix;
        but a chunk whose signer signed its ``sha256`` counts only whole and matching."""
        stored = session.stored
        if start > stored:
            raise ResumeError(
                409, "ChunkGap", f"stored bytes end at {stored}; chunk starts at {start}"
            )
        key = self._key(session)
        position, end = start, start + length
        digest = hashlib.sha256() if sha256 is not None else None
        await asyncio.to_thread(self._trim, session)
        handle = await asyncio.to_thread(open, self.spool_dir / session.spool, "ab")
        # One forward reader per chunk: each stored record is decrypted at most once, so a
        # retried overlap sent a byte at a time costs its length, not its length times the
        # spool (security review #6).
        stored_bytes = _StoredReader(self.spool_dir / session.spool, key, session)
        try:
            async for piece in body:
                if position + len(piece) > end:
                    raise ResumeError(400, "IncompleteBody", "body longer than its Content-Range")
                if digest is not None:
                    await asyncio.to_thread(digest.update, piece)
                if position < stored:  # a retried overlap: it must be what we have
                    cut = min(len(piece), stored - position)
                    kept = await asyncio.to_thread(stored_bytes.read, position, cut)
                    if kept != piece[:cut]:
                        raise ResumeError(
                            409, "ChunkMismatch", "the overlap differs from what is stored"
                        )
                    piece, position = piece[cut:], position + cut
                if piece:
                    await asyncio.to_thread(_append_record, handle, key, position, piece)
                    position += len(piece)
        finally:
            stored_bytes.close()
            await asyncio.to_thread(_close_durably, handle, self.spool_dir)
            whole = position == end and (digest is None or digest.hexdigest() == sha256)
            # SECURITY: bytes under a signed digest count only once all of them matched;
            # what was written beyond the stored prefix is trimmed at the next append.
            if position > stored and (digest is None or whole):
                with self._lock:
                    self._db.execute(
                        "UPDATE sessions SET stored = ?, updated_at = ? "
                        "WHERE owner = ? AND name = ?",
                        (position, time.time(), session.owner, session.name),
                    )
        if position != end:
            raise ResumeError(400, "IncompleteBody", f"got {position - start} of {length} bytes")
        if not whole:
            raise ResumeError(400, "BadDigest", "the chunk's sha256 is not the one signed")
        found = self.session(session.owner, session.name)
        assert found is not None
        return found

    def _trim(self, session: ResumeSession) -> None:
        """Cuts the spool after its last record within the stored prefix: a crash or a
        failed write may have left part of a record there, which appending after would
        make unreadable."""
        path = self.spool_dir / session.spool
        size, keep, expected = path.stat().st_size, 0, 0
        with open(path, "r+b") as handle:
            while len(header := handle.read(_HEADER.size)) == _HEADER.size:
                offset, length = _HEADER.unpack(header)
                record_end = keep + _HEADER.size + _NONCE + length + _TAG
                if record_end > size or not _continues(offset, length, expected, session.stored):
                    break
                keep, expected = record_end, offset + length
                handle.seek(keep)
            if keep < size:
                handle.truncate(keep)
                os.fsync(handle.fileno())

    async def plaintext(self, session: ResumeSession) -> AsyncIterator[bytes]:
        """The whole object, in order, for the upload pipeline."""
        records = self._records(session)
        sentinel = (-1, b"")
        while True:
            offset, plain = await asyncio.to_thread(next, records, sentinel)
            if offset < 0:
                return
            yield plain
