"""The embedded ledger node: mempool, block production and SQLite persistence.

One SQLite database (WAL) holds the blocks, their extrinsics and events, the nonces and
every module's state. A block is applied in one transaction: each extrinsic in its own
savepoint (a ``DispatchError`` rolls it back and records ``ExtrinsicFailed``), then each
module's hook, then the header, then COMMIT. A restart therefore resumes from the last
committed block; the mempool is not persisted (a client resubmits, and nonces make that
safe).

The node is synchronous and thread-safe: block production takes the write lock and its
own connection; queries read the last committed state through a second connection.
"""

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain_client.errors import GenesisMismatch, Rejected
from chain_client.extrinsic import Extrinsic, canonical_json
from chain_client.files import private_database, private_directory
from chain_client.keys import is_dev_address
from chain_client.merkle import root_of_hashes
from chain_client.modules import MODULES
from chain_client.modules.balances import balance, extrinsic_fee, pay_fee
from chain_client.params import Genesis, NetworkParams
from chain_client.pool import Pending, Pool
from chain_client.protocol import ExtrinsicResult
from chain_client.runtime import (
    CallContext,
    DispatchError,
    Event,
    InvalidArguments,
    QueryContext,
    Runtime,
    UnknownCall,
)
from chain_client.sqlite import transaction
from chain_client.ss58 import canonical_address

__all__ = ["BlockResult", "LedgerNode", "NodeStats"]

log = logging.getLogger(__name__)
ZERO_HASH = "0x" + "00" * 32

EVENT_PAGES_KEPT = 64
SCHEMA_VERSION = 3  # of every table below and the modules': raised when they change
# What brings a ledger of each older schema up to the next one, in place.
MIGRATIONS = {
    2: "ALTER TABLE fb_refs ADD COLUMN slot INTEGER;",  # packed references (docs/packing.md)
}
NODE_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    parent_hash TEXT NOT NULL,
    timestamp REAL NOT NULL,
    extrinsics_root TEXT NOT NULL,
    events_root TEXT NOT NULL,
    randomness TEXT NOT NULL,
    extrinsic_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS extrinsics (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    signer TEXT NOT NULL,
    call TEXT NOT NULL,
    body TEXT NOT NULL,
    success INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (height, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    extrinsic INTEGER,
    module TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (height, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (account TEXT PRIMARY KEY, nonce INTEGER NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class BlockResult:
    height: int
    hash: str
    results: tuple[ExtrinsicResult, ...]
    dropped: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class NodeStats:
    submitted: int = 0
    rejected: int = 0
    applied: int = 0
    failed: int = 0
    hook_failures: int = 0
    block_seconds: float = 0.0


def _as_stored(spec: dict[str, Any]) -> Any:
    """A genesis as its JSON reads back: tuples become lists."""
    return json.loads(json.dumps(spec))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = OFF")
    return db


class LedgerNode:
    def __init__(self, path: Path, genesis: Genesis | None = None) -> None:
        self.path = path
        self.runtime = Runtime(MODULES)
        self.stats = NodeStats()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._pool: Pool | None = None  # sized by the genesis params, below
        self._listeners: list[Callable[[BlockResult], None]] = []
        # Every miner follows the head, so most event pages are asked for once per
        # follower: a page of committed blocks never changes, and is read once.
        self._event_pages: OrderedDict[tuple[int, int], list[dict[str, Any]]] = OrderedDict()
        self._pages_lock = threading.Lock()
        # SECURITY: the node's directory and database are its own (review #16).
        private_directory(path.parent)
        self._db = _connect(private_database(path))
        self._check_schema_version()
        self._db.executescript(NODE_SCHEMA + "".join(self.runtime.schema()))
        stored = self._db.execute("SELECT value FROM chain_meta WHERE key = 'genesis'").fetchone()
        if stored is None:
            if genesis is None:
                raise GenesisMismatch(f"{path} holds no chain and no genesis was given")
            self._write_genesis(genesis)
        elif genesis is not None and _as_stored(
            Genesis.from_json(json.loads(stored[0])).to_json()
        ) != _as_stored(genesis.to_json()):
            # Both read back through Genesis: a parameter added since the chain began
            # holds its default in the stored one too.
            raise GenesisMismatch(f"{path} holds another chain than the given genesis")
        self.genesis = Genesis.from_json(json.loads(self._meta("genesis")), source=str(path))
        self.genesis_hash_hex = self._meta("genesis_hash")
        self.genesis_hash = bytes.fromhex(self.genesis_hash_hex[2:])
        self._reader = _connect(path)
        self._pool = Pool(
            max_extrinsics=self.params.max_pool_extrinsics,
            max_bytes=self.params.max_pool_bytes,
            max_per_signer=self.params.max_pool_per_signer,
        )

    # -- set-up -----------------------------------------------------------------

    def _check_schema_version(self) -> None:
        """A database holding a chain must hold this version of the ledger's tables: an
        older one is migrated where ``MIGRATIONS`` knows how, else refused (it would
        fail later, on some missing column)."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if "chain_meta" not in tables:
            return  # a new database
        row = self._db.execute(
            "SELECT value FROM chain_meta WHERE key = 'schema_version'"
        ).fetchone()
        has_chain = self._db.execute("SELECT 1 FROM chain_meta WHERE key = 'genesis'").fetchone()
        found = None if row is None else int(row[0])
        while has_chain and found is not None and found in MIGRATIONS:
            with transaction(self._db):
                for statement in MIGRATIONS[found].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                found += 1
                self._db.execute(
                    "UPDATE chain_meta SET value = ? WHERE key = 'schema_version'", (str(found),)
                )
        if has_chain and found != SCHEMA_VERSION:
            raise GenesisMismatch(
                f"{self.path} holds a chain of ledger schema {found or 'before 1'}; this node "
                f"knows schema {SCHEMA_VERSION} only. Start a new chain in another directory "
                "(for the devnet: remove .devnet)."
            )

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM chain_meta WHERE key = ?", (key,)).fetchone()
        assert row is not None, f"chain_meta lacks {key}"
        return str(row[0])

    def _write_genesis(self, genesis: Genesis) -> None:
        spec = genesis.to_json()
        block_hash = "0x" + hashlib.sha256(b"deoss/genesis\x00" + canonical_json(spec)).hexdigest()
        with transaction(self._db):
            ctx = CallContext(self._db, genesis.params, 0, b"\0" * 32, genesis.dev, None)
            for module in self.runtime.modules:
                if module.genesis is not None:
                    module.genesis(ctx, genesis)
            self._store_events(0, [(None, event) for event in ctx.events])
            self._db.execute(
                "INSERT INTO blocks VALUES (0, ?, ?, ?, ?, ?, ?, 0)",
                (block_hash, ZERO_HASH, float(genesis.timestamp), ZERO_HASH, ZERO_HASH, ZERO_HASH),
            )
            self._db.executemany(
                "INSERT INTO chain_meta (key, value) VALUES (?, ?)",
                [
                    ("genesis", json.dumps(spec)),
                    ("genesis_hash", block_hash),
                    ("schema_version", str(SCHEMA_VERSION)),
                ],
            )

    @property
    def params(self) -> NetworkParams:
        return self.genesis.params

    @property
    def dev(self) -> bool:
        return self.genesis.dev

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._db.close()

    def add_listener(self, listener: Callable[[BlockResult], None]) -> None:
        self._listeners.append(listener)

    # -- reads --------------------------------------------------------------------

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def best(self) -> tuple[int, str]:
        ((height, block_hash),) = self._read(
            "SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1"
        )
        return int(height), str(block_hash)

    def query(self, name: str, args: dict[str, Any], *, strict: bool = True) -> Any:
        height, _ = self.best()
        with self._read_lock:
            ctx = QueryContext(self._reader, self.params, height)
            self._reader.execute("BEGIN")
            try:
                return self.runtime.run_query(ctx, name, args, strict=strict)
            finally:
                self._reader.execute("COMMIT")

    def state_nonce(self, account: str) -> int:
        rows = self._read("SELECT nonce FROM nonces WHERE account = ?", (account,))
        return int(rows[0][0]) if rows else 0

    def next_nonce(self, account: str) -> int:
        account = canonical_address(account)
        with self._pool_lock:
            return self.state_nonce(account) + self.pool.queued(account)[0]

    @property
    def pool(self) -> Pool:
        assert self._pool is not None
        return self._pool

    def block(self, height: int, *, header_only: bool = False) -> dict[str, Any] | None:
        """The block at ``height``: its header, and unless ``header_only`` its extrinsics
        (with their results) and events."""
        rows = self._read(
            "SELECT height, hash, parent_hash, timestamp, extrinsics_root, events_root, "
            "randomness, extrinsic_count FROM blocks WHERE height = ?",
            (height,),
        )
        if not rows:
            return None
        keys = (
            "height",
            "hash",
            "parent_hash",
            "timestamp",
            "extrinsics_root",
            "events_root",
            "randomness",
            "extrinsic_count",
        )
        block = dict(zip(keys, rows[0], strict=True))
        if header_only:
            return block
        block["extrinsics"] = [
            {"index": idx, "hash": tx_hash, "success": bool(ok), "error": error, **json.loads(body)}
            for idx, tx_hash, body, ok, error in self._read(
                "SELECT idx, hash, body, success, error FROM extrinsics WHERE height = ? "
                "ORDER BY idx",
                (height,),
            )
        ]
        block["events"] = self._events(height, height)
        return block

    def _events(self, first: int, last: int) -> list[dict[str, Any]]:
        return [
            {
                "block": height,
                "index": idx,
                "extrinsic": extrinsic,
                "module": module,
                "name": name,
                "data": json.loads(data),
            }
            for height, idx, extrinsic, module, name, data in self._read(
                "SELECT height, idx, extrinsic, module, name, data FROM events "
                "WHERE height BETWEEN ? AND ? ORDER BY height, idx",
                (first, last),
            )
        ]

    def events_since(self, height: int, max_blocks: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Events of blocks ``height``.. (whole blocks only) and the next height to ask for."""
        best, _ = self.best()
        if height > best:
            return [], height
        last = min(best, height + max_blocks - 1)
        # Under the lock while read: followers woken by one block all ask at once.
        with self._pages_lock:
            page = self._event_pages.get((height, last))
            if page is None:
                page = self._event_pages[height, last] = self._events(height, last)
                while len(self._event_pages) > EVENT_PAGES_KEPT:
                    self._event_pages.popitem(last=False)
        return page, last + 1

    def receipt(self, tx_hash: str) -> ExtrinsicResult | None:
        rows = self._read(
            "SELECT height, idx, success, error FROM extrinsics WHERE hash = ?", (tx_hash,)
        )
        if not rows:
            return None
        height, idx, ok, error = rows[0]
        events = tuple(e for e in self._events(height, height) if e["extrinsic"] == idx)
        return ExtrinsicResult(tx_hash, height, idx, bool(ok), error, events)

    def pool_size(self) -> int:
        with self._pool_lock:
            return len(self.pool)

    # -- submission ---------------------------------------------------------------

    def submit(self, extrinsic: Extrinsic) -> str:
        """Validates an extrinsic and queues it for the next block; returns its hash."""
        try:
            return self._admit(extrinsic)
        except Rejected:
            self.stats.rejected += 1
            raise

    def _admit(self, extrinsic: Extrinsic) -> str:
        try:
            size = len(canonical_json(extrinsic.to_json()))
        except ValueError:  # NaN or an infinity in the args: no canonical form to sign
            raise Rejected("Malformed", "the args hold a number JSON cannot write") from None
        if size > self.params.max_extrinsic_bytes:
            raise Rejected("TooLarge", f"{size} bytes, at most {self.params.max_extrinsic_bytes}")
        signer = canonical_address(extrinsic.signer)
        # SECURITY: dev accounts' secrets are public; only a dev network accepts them.
        if not self.dev and is_dev_address(signer):
            raise Rejected("DevAccountRefused", f"{signer} is a well-known dev account")
        try:
            spec = self.runtime.call(extrinsic.call, dev=self.dev)
            self.runtime.parse_call_args(spec, extrinsic.args)
        except UnknownCall as exc:
            raise Rejected("UnknownCall", str(exc)) from None
        except InvalidArguments as exc:
            raise Rejected("InvalidArguments", str(exc)) from None
        if not extrinsic.signature_valid(self.genesis_hash):
            raise Rejected("BadSignature", f"signature does not verify for {signer}")
        tx_hash = extrinsic.hash(self.genesis_hash)
        fee = 0 if spec.dev_only else extrinsic_fee(self.params, spec.weight, size)
        with self._read_lock:
            free, _ = balance(self._reader, signer)
        with self._pool_lock:
            if tx_hash in self.pool:
                raise Rejected("AlreadyInPool", tx_hash)
            queued, queued_fees = self.pool.queued(signer)
            # SECURITY: an extrinsic costs its signer a fee, so strangers cannot fill the
            # ledger for free (security review #2); an account below the existential
            # deposit does not transact at all.
            available = free - queued_fees  # what the signer holds once its queue paid
            if fee and available < self.params.existential_deposit:
                raise Rejected(
                    "BelowExistentialDeposit",
                    f"{signer} holds {available} beyond the fees of its {queued} queued "
                    f"extrinsics; an account needs {self.params.existential_deposit} to transact",
                )
            if fee > available:
                raise Rejected(
                    "InsufficientFee", f"the fee is {fee}; {signer} has {available} free"
                )
            expected = self.state_nonce(signer) + queued
            if extrinsic.nonce < expected:
                raise Rejected(
                    "StaleNonce", f"nonce {extrinsic.nonce} already used; next is {expected}"
                )
            if extrinsic.nonce > expected:
                raise Rejected("FutureNonce", f"nonce {extrinsic.nonce}; next is {expected}")
            evicted = self.pool.admit(Pending(extrinsic, tx_hash, signer, size, fee))
        for pending in evicted:
            log.info("pool full: evicted %s of %s for %s", pending.hash, pending.signer, signer)
        self.stats.submitted += 1
        return tx_hash

    def _take(self, limit: int) -> list[Pending]:
        with self._pool_lock:
            return self.pool.take(limit)

    def _release(self, pending: list[Pending]) -> None:
        with self._pool_lock:
            self.pool.release(pending)

    # -- block production -----------------------------------------------------------

    def produce_block(self, timestamp: float | None = None) -> BlockResult:
        with self._write_lock:
            started = time.perf_counter()
            result = self._produce(time.time() if timestamp is None else timestamp)
            self.stats.block_seconds = time.perf_counter() - started
        for listener in self._listeners:
            listener(result)
        return result

    def _produce(self, timestamp: float) -> BlockResult:
        db = self._db
        parent_height, parent_hash = db.execute(
            "SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1"
        ).fetchone()
        height = parent_height + 1
        randomness = hashlib.sha256(
            b"deoss/randomness\x00" + bytes.fromhex(parent_hash[2:])
        ).digest()
        batch = self._take(self.params.max_block_extrinsics)
        events: list[tuple[int | None, Event]] = []
        results: list[ExtrinsicResult] = []
        dropped: list[tuple[str, str]] = []
        rows: list[tuple[Any, ...]] = []
        try:
            with transaction(db):
                for pending in batch:
                    index = len(rows)
                    outcome = self._apply(db, pending, height, randomness, index)
                    if isinstance(outcome, str):
                        dropped.append((pending.hash, outcome))
                        continue
                    ok, error, call_events = outcome
                    rows.append(
                        (
                            height,
                            index,
                            pending.hash,
                            pending.signer,
                            pending.extrinsic.call,
                            json.dumps(pending.extrinsic.to_json()),
                            int(ok),
                            error,
                        )
                    )
                    events.extend((index, event) for event in call_events)
                    results.append(
                        ExtrinsicResult(
                            pending.hash,
                            height,
                            index,
                            ok,
                            error,
                            tuple(_event_json(e) for e in call_events),
                        )
                    )
                events.extend((None, event) for event in self._run_hooks(db, height, randomness))
                db.executemany("INSERT INTO extrinsics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._store_events(height, events)
                extrinsics_root = _root([bytes.fromhex(row[2][2:]) for row in rows])
                events_root = _root(
                    [
                        hashlib.sha256(canonical_json(_event_json(event))).digest()
                        for _, event in events
                    ]
                )
                header = {
                    "height": height,
                    "parent_hash": parent_hash,
                    "timestamp": timestamp,
                    "extrinsics_root": extrinsics_root,
                    "events_root": events_root,
                    "randomness": "0x" + randomness.hex(),
                }
                block_hash = "0x" + hashlib.sha256(canonical_json(header)).hexdigest()
                db.execute(
                    "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        height,
                        block_hash,
                        parent_hash,
                        timestamp,
                        extrinsics_root,
                        events_root,
                        header["randomness"],
                        len(rows),
                    ),
                )
        except BaseException:
            # Put the batch back, in order, ahead of anything that arrived meanwhile.
            with self._pool_lock:
                self.pool.put_back(batch)
            raise
        self._release(batch)
        self.stats.applied += sum(1 for r in results if r.success)
        self.stats.failed += sum(1 for r in results if not r.success)
        return BlockResult(height, block_hash, tuple(results), tuple(dropped))

    def _apply(
        self, db: sqlite3.Connection, pending: Pending, height: int, randomness: bytes, index: int
    ) -> tuple[bool, str | None, list[Event]] | str:
        """The extrinsic's outcome, or why it was dropped without being included."""
        extrinsic, signer = pending.extrinsic, pending.signer
        row = db.execute("SELECT nonce FROM nonces WHERE account = ?", (signer,)).fetchone()
        nonce = row[0] if row else 0
        if extrinsic.nonce != nonce:
            return "StaleNonce"
        # The fee is paid outside the call's savepoint: a call that fails still pays it.
        fee_ctx = CallContext(db, self.params, height, randomness, self.dev, signer)
        if pending.fee and not pay_fee(fee_ctx, signer, pending.fee):
            return "InsufficientFee"  # spent since admission: not included, nonce kept
        # The nonce is consumed even when the call fails, so a failed extrinsic cannot be
        # replayed later, when it might succeed.
        db.execute(
            "INSERT INTO nonces (account, nonce) VALUES (?, ?) "
            "ON CONFLICT(account) DO UPDATE SET nonce = excluded.nonce",
            (signer, nonce + 1),
        )
        ctx = CallContext(db, self.params, height, randomness, self.dev, signer, extrinsic.scheme)
        db.execute("SAVEPOINT extrinsic")
        try:
            spec = self.runtime.call(extrinsic.call, dev=self.dev)
            spec.run(ctx, self.runtime.parse_call_args(spec, extrinsic.args))
        except Exception as exc:
            db.execute("ROLLBACK TO extrinsic")
            db.execute("RELEASE extrinsic")
            if not isinstance(exc, DispatchError):
                # A bug in a call must not stall the chain by failing every block it is in.
                log.exception("call %s crashed at block %d", extrinsic.call, height)
                exc = DispatchError("system", "InternalError", type(exc).__name__)
            failed = Event(
                "system",
                "ExtrinsicFailed",
                {
                    "hash": pending.hash,
                    "reason": exc.reason,
                    "module": exc.module,
                    "error": exc.error,
                },
            )
            return False, exc.reason, [*fee_ctx.events, failed]
        db.execute("RELEASE extrinsic")
        success = Event("system", "ExtrinsicSuccess", {"hash": pending.hash})
        return True, None, [*fee_ctx.events, *ctx.events, success]

    def _run_hooks(self, db: sqlite3.Connection, height: int, randomness: bytes) -> list[Event]:
        events: list[Event] = []
        for module in self.runtime.modules:
            if module.on_finalize is None:
                continue
            ctx = CallContext(db, self.params, height, randomness, self.dev, None)
            db.execute("SAVEPOINT hook")
            try:
                module.on_finalize(ctx)
            except Exception as exc:
                # A hook failing is a bug; keep the chain alive without that hook's changes.
                db.execute("ROLLBACK TO hook")
                db.execute("RELEASE hook")
                self.stats.hook_failures += 1
                log.exception("hook %s failed at block %d", module.name, height)
                reason = exc.reason if isinstance(exc, DispatchError) else repr(exc)
                events.append(
                    Event("system", "HookFailed", {"module": module.name, "reason": reason})
                )
                continue
            db.execute("RELEASE hook")
            events.extend(ctx.events)
        return events

    def _store_events(self, height: int, events: list[tuple[int | None, Event]]) -> None:
        self._db.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            [
                (height, idx, extrinsic, event.module, event.name, json.dumps(event.data))
                for idx, (extrinsic, event) in enumerate(events)
            ],
        )


def _event_json(event: Event) -> dict[str, Any]:
    return event.to_json()


def _root(hashes: list[bytes]) -> str:
    return "0x" + root_of_hashes(hashes).hex() if hashes else ZERO_HASH
