"""S3 access keys of chain accounts: an access key id (public, ``DO`` + 18 base32
characters) and its secret (40 URL-safe base64 characters), like AWS's pairs.

Keys live in their own SQLite file (WAL). A secret rests there only sealed by the
master key: XChaCha20-Poly1305 with a random 24-byte nonce, stored as ``nonce (24) ‖
ciphertext ‖ tag (16)``, with the access key and its owner as associated data, so a
sealed secret moved to another row, or a row given to another owner, no longer opens.
Keys are never deleted, only revoked, so an id is never reused. Schema version 1.

``lookup`` runs on every S3 request: unsealed pairs are kept in a bounded LRU cache,
from which ``revoke`` removes the key before it returns.
"""

import base64
import builtins
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.exceptions
from nacl import bindings

from chain_client.sqlite import transaction

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_LIVE_PER_OWNER",
    "MAX_LABEL_LENGTH",
    "AccessKeyError",
    "AccessKeyInfo",
    "AccessKeyStore",
    "InvalidLabel",
    "NoSuchAccessKey",
    "SecretUnsealFailed",
    "TooManyAccessKeys",
]

SCHEMA_VERSION: Final = 1
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_keys (
    access_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    label TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS access_keys_owner ON access_keys (owner, revoked_at);
"""

DEFAULT_MAX_LIVE_PER_OWNER: Final = 100
DEFAULT_CACHE_SIZE: Final = 4096
MAX_LABEL_LENGTH: Final = 64
ACCESS_KEY_PREFIX: Final = "DO"
_ACCESS_KEY_RANDOM_CHARS: Final = 18
_SECRET_BYTES: Final = 30  # 40 base64 characters, no padding
_MASTER_KEY_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_NONCE_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_AD_CONTEXT: Final = b"deoss/s3-access-key\x00"
_INSERT_ATTEMPTS: Final = 4


class AccessKeyError(Exception):
    """A refused request about access keys, told as facts; each API's error table says
    it in its own terms."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidLabel(AccessKeyError):
    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"label {reason}")
        self.label, self.reason = label, reason


class TooManyAccessKeys(AccessKeyError):
    def __init__(self, live: int, limit: int) -> None:
        super().__init__(f"{live} live access keys, the limit is {limit}; revoke one first")
        self.live, self.limit = live, limit


class NoSuchAccessKey(AccessKeyError):
    """Unknown, or another account's: one answer for both."""

    def __init__(self, access_key: str) -> None:
        super().__init__(f"no access key {access_key} of this account")
        self.access_key = access_key


class SecretUnsealFailed(Exception):
    """A stored secret does not open: the master key is wrong or the row was altered."""

    def __init__(self, path: Path, access_key: str) -> None:
        super().__init__(
            f"{path}: cannot unseal the secret of access key {access_key}: "
            "wrong master key, or the row was altered"
        )
        self.path, self.access_key = path, access_key


@dataclass(frozen=True, slots=True)
class AccessKeyInfo:
    # No secret here: this is what listings, logs and reprs may show.
    access_key: str
    label: str
    created_at: float
    revoked: bool


def _new_access_key() -> str:
    # 15 random bytes are exactly 24 base32 characters; any 18 of them carry 90 bits.
    random_part = base64.b32encode(secrets.token_bytes(15)).decode("ascii")
    return ACCESS_KEY_PREFIX + random_part[:_ACCESS_KEY_RANDOM_CHARS]


def _new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def _associated_data(access_key: str, owner: str) -> bytes:
    # The access key never contains NUL, so this encoding is unambiguous.
    return _AD_CONTEXT + access_key.encode() + b"\x00" + owner.encode()


def _could_be_stored(access_key: str) -> bool:
    # Every id this store issues is ASCII. One that is not (a non-UTF-8 byte in a
    # Credential, which reaches here as a lone surrogate) cannot even be bound to a
    # query: SQLite raised UnicodeEncodeError, a 500 (issue 12 item 6, found by fuzzing).
    return access_key.isascii()


def _check_label(label: str) -> None:
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidLabel(label, f"is {len(label)} characters; at most {MAX_LABEL_LENGTH}")
    if not label.isprintable():
        raise InvalidLabel(label, "must not contain control characters")


class AccessKeyStore:
    def __init__(
        self,
        path: Path,
        master_key: bytes,
        *,
        max_live_per_owner: int = DEFAULT_MAX_LIVE_PER_OWNER,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(master_key) != _MASTER_KEY_SIZE:
            raise ValueError(f"master key must be {_MASTER_KEY_SIZE} bytes, got {len(master_key)}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.path = path
        self.max_live_per_owner = max_live_per_owner
        self._master_key = master_key
        self._cache_size = cache_size
        self._clock = clock
        # One lock for the connection and the cache: a lookup that misses reads, unseals
        # and caches under it, so a revoke cannot slip in between and leave a stale entry.
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[str, str]] = OrderedDict()
        path.parent.mkdir(parents=True, exist_ok=True)
        # SECURITY: sealed secrets are still worth hiding; SQLite gives -wal and -shm
        # the database file's permissions.
        path.touch(mode=0o600, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")  # a revoke survives a crash
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(
                f"{path}: access key schema {row[0]}, this gateway knows {SCHEMA_VERSION}"
            )

    def __repr__(self) -> str:
        return f"AccessKeyStore({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._db) as db:
            yield db

    def _seal(self, access_key: str, owner: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed: bytes = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            secret.encode("ascii"), _associated_data(access_key, owner), nonce, self._master_key
        )
        return nonce + sealed

    def _unseal(self, access_key: str, owner: str, sealed_secret: bytes) -> str:
        nonce, sealed = sealed_secret[:_NONCE_SIZE], sealed_secret[_NONCE_SIZE:]
        try:
            plain: bytes = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, _associated_data(access_key, owner), nonce, self._master_key
            )
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            # `from None`: the library's message adds nothing and no secret may ride along.
            raise SecretUnsealFailed(self.path, access_key) from None
        return plain.decode("ascii")

    def create(self, owner: str, label: str = "") -> tuple[str, str]:
        """A new live key of ``owner``: (access key, secret). The secret is shown once."""
        _check_label(label)
        secret = _new_secret()
        for _ in range(_INSERT_ATTEMPTS):
            access_key = _new_access_key()
            sealed_secret = self._seal(access_key, owner, secret)
            with self._transaction() as db:
                (live,) = db.execute(
                    "SELECT COUNT(*) FROM access_keys WHERE owner = ? AND revoked_at IS NULL",
                    (owner,),
                ).fetchone()
                if live >= self.max_live_per_owner:
                    raise TooManyAccessKeys(live, self.max_live_per_owner)
                try:
                    db.execute(
                        "INSERT INTO access_keys VALUES (?, ?, ?, ?, ?, NULL)",
                        (access_key, owner, sealed_secret, label, self._clock()),
                    )
                except sqlite3.IntegrityError:
                    continue  # a 90-bit collision: draw another id
                return access_key, secret
        raise RuntimeError(f"{self.path}: no unused access key in {_INSERT_ATTEMPTS} draws")

    def list(self, owner: str) -> builtins.list[AccessKeyInfo]:
        """The keys of ``owner``, revoked ones too, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT access_key, label, created_at, revoked_at FROM access_keys "
                "WHERE owner = ? ORDER BY created_at DESC, rowid DESC",
                (owner,),
            ).fetchall()
        return [
            AccessKeyInfo(access_key, label, created_at, revoked_at is not None)
            for access_key, label, created_at, revoked_at in rows
        ]

    def revoke(self, owner: str, access_key: str) -> None:
        """Revokes one of ``owner``'s keys; revoking a revoked key again is not an error."""
        if not _could_be_stored(access_key):
            raise NoSuchAccessKey(access_key)
        with self._transaction() as db:
            row = db.execute(
                "SELECT revoked_at FROM access_keys WHERE access_key = ? AND owner = ?",
                (access_key, owner),
            ).fetchone()
            if row is None:
                # SECURITY: one answer for unknown keys and other accounts' keys, so the
                # existence of someone else's key does not leak.
                raise NoSuchAccessKey(access_key)
            if row[0] is None:
                db.execute(
                    "UPDATE access_keys SET revoked_at = ? WHERE access_key = ?",
                    (self._clock(), access_key),
                )
            self._cache.pop(access_key, None)

    def lookup(self, access_key: str) -> tuple[str, str] | None:
        """(owner, secret) of a live key; None for an unknown or revoked one."""
        # SECURITY: the access key is a public identifier; the only comparisons with it
        # are the dict and primary-key lookups. The secret is compared by the signature
        # check, in constant time, never here.
        if not _could_be_stored(access_key):
            return None
        with self._lock:
            cached = self._cache.get(access_key)
            if cached is not None:
                self._cache.move_to_end(access_key)
                return cached
            row = self._db.execute(
                "SELECT owner, sealed_secret FROM access_keys "
                "WHERE access_key = ? AND revoked_at IS NULL",
                (access_key,),
            ).fetchone()
            if row is None:
                return None
            owner, sealed_secret = row
            found = (owner, self._unseal(access_key, owner, sealed_secret))
            self._cache[access_key] = found
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return found
