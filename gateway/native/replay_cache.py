"""Which signatures were accepted recently, so that none is accepted twice.

``NativeAuth`` claims every verified (public key, signature) here; a second claim of the
same pair before its message expires is a replay. With a path, claims are appended to a
log that a restarted gateway reloads.
"""

import contextlib
import hashlib
import heapq
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from chain_client.files import fsync_directory, write_atomically

__all__ = [
    "DEFAULT_FAIR_SHARE_ABOVE",
    "DEFAULT_MAX_REPLAY_ENTRIES",
    "DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT",
    "AccountReplayCacheFull",
    "ReplayCache",
    "ReplayCacheFull",
]

DEFAULT_MAX_REPLAY_ENTRIES: Final = 1_000_000
DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT: Final = 10_000
DEFAULT_FAIR_SHARE_ABOVE: Final = 100_000

log = logging.getLogger("deoss.replay_cache")

# The replay log, version 1: ASCII lines, appended one per claim.
#
#     deoss-replay-log 1\n                        header, written atomically with the file
#     <key: 32 hex> <public key: 64 hex> <expiry: unix seconds, 6 decimals>\n   per claim
#
# key = blake2b-128(public key || signature), as the cache keys it; the public key lets a
# reload restore the per-account counts. Lines are flushed but not fsynced: a process
# crash loses none (they are in the page cache), an OS crash perhaps the last few, whose
# replay window is at most the auth window. A last line without its "\n" is a write cut
# short by a crash and is dropped; any other line that does not parse is skipped with a
# warning. Once most lines are expired, the live ones are rewritten to a new file that
# atomically replaces the log.
_REPLAY_LOG_HEADER: Final = b"deoss-replay-log 1\n"
_REPLAY_RECORD: Final = re.compile(rb"([0-9a-f]{32}) ([0-9a-f]{64}) ([0-9]{1,16}\.[0-9]{6})\n")
# Below this many lines the log is never compacted: a small file is cheap to reload.
_COMPACTION_MIN_LINES: Final = 1024


class ReplayCacheFull(Exception):
    """Every slot of the replay cache holds a signature that has not expired yet."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.max_entries = max_entries

    def __str__(self) -> str:
        return f"replay cache full: {self.max_entries} unexpired signatures"


class AccountReplayCacheFull(Exception):
    """One account holds its whole share of the replay cache with unexpired signatures."""

    def __init__(self, max_per_account: int) -> None:
        super().__init__(max_per_account)
        self.max_per_account = max_per_account

    def __str__(self) -> str:
        return f"replay cache full for this account: {self.max_per_account} unexpired signatures"


class ReplayCache:
    """The signatures accepted recently, each kept until its message expires.

    Bounded two ways. Time: an entry is dropped once its expiry passes, because from then
    on the expiry check refuses the message anyway; since an accepted expiry is at most
    ``NativeAuth.window`` ahead, no entry lives longer than that window. Count, per
    account first: at most ``max_per_account`` unexpired entries per public key (beyond
    that ``claim`` raises ``AccountReplayCacheFull``, answered with 429). Once the cache
    holds ``fair_share_above`` entries, an account holding an even share of them or more
    is refused the same way, so accounts that filled it slow down themselves and no one
    else (security review #5: ten throwaway accounts used to lock every user out).
    ``max_entries`` bounds the memory (``ReplayCacheFull``, 503); reaching it takes
    ``max_entries / max_per_account`` accounts that each authorized this gateway, which
    costs each a fee and a funded account on chain. A live entry is never forgotten to
    make room, which would reopen replay. 100k entries take about 30 MB.

    With a ``path``, every claim is also appended to that log (format above) and the log
    is reloaded here, skipping entries expired by ``clock()``; ``close()`` it when done.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_REPLAY_ENTRIES,
        max_per_account: int = DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT,
        fair_share_above: int = DEFAULT_FAIR_SHARE_ABOVE,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_per_account < 1:
            raise ValueError(f"max_per_account must be at least 1, got {max_per_account}")
        self.max_entries = max_entries
        self.max_per_account = max_per_account
        self.fair_share_above = fair_share_above
        self.path = path
        self._keys: set[bytes] = set()
        # Invariant: exactly one heap item per key in _keys, and _live_by_account counts
        # them per public key, because a key is only inserted when absent and only removed
        # by eviction; so eviction needs no lazy-deletion checks.
        self._by_expiry: list[tuple[float, bytes, bytes]] = []  # (expires_at, key, public key)
        self._live_by_account: dict[bytes, int] = {}
        self._log: BinaryIO | None = None
        self._log_lines = 0
        self._compaction_floor = _COMPACTION_MIN_LINES
        if path is not None:
            self._load(path, clock())
            self._log = path.open("ab")
            self._compact_if_mostly_expired()

    def __len__(self) -> int:
        return len(self._keys)

    def claim(self, public_key: bytes, signature: bytes, expires_at: float, now: float) -> bool:
        """Records the signature; False if it is already recorded. Synchronous on purpose:
        no await between the lookup and the insert, so two concurrent requests with the
        same signature cannot both pass."""
        self.evict_expired(now)
        # Keyed by the public key, not the address text: "cX..." and "5..." spellings of
        # one account must not give one signature two lives. A 128-bit digest keeps entries
        # small; a collision would need a 2^64 birthday search over valid signatures.
        key = hashlib.blake2b(public_key + signature, digest_size=16).digest()
        if key in self._keys:
            return False
        held = self._live_by_account.get(public_key, 0)
        if held >= self.max_per_account:
            raise AccountReplayCacheFull(self.max_per_account)
        if len(self._keys) >= self.fair_share_above:
            # An account not yet in the cache counts too: it has the same right to a share.
            share = max(1, len(self._keys) // (len(self._live_by_account) + (held == 0)))
            if held >= share:
                raise AccountReplayCacheFull(share)
        if len(self._keys) >= self.max_entries:
            raise ReplayCacheFull(self.max_entries)
        self._insert(key, public_key, expires_at)
        # An entry already expired needs no record: its message is refused as expired.
        if self._log is not None and expires_at > now:
            self._log.write(_replay_record(key, public_key, expires_at))
            # Flushed to the kernel so that a process crash loses nothing; not fsynced,
            # which would cost a disk round trip per request on the event loop.
            self._log.flush()
            self._log_lines += 1
            self._compact_if_mostly_expired()
        return True

    def evict_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] <= now:
            _, key, public_key = heapq.heappop(self._by_expiry)
            self._keys.remove(key)
            remaining = self._live_by_account[public_key] - 1
            if remaining:
                self._live_by_account[public_key] = remaining
            else:
                del self._live_by_account[public_key]

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def _insert(self, key: bytes, public_key: bytes, expires_at: float) -> None:
        self._keys.add(key)
        heapq.heappush(self._by_expiry, (expires_at, key, public_key))
        self._live_by_account[public_key] = self._live_by_account.get(public_key, 0) + 1

    def _load(self, path: Path, now: float) -> None:
        if not path.exists() or path.stat().st_size == 0:
            write_atomically(path, _REPLAY_LOG_HEADER)
            return
        with path.open("rb") as handle:
            header = handle.readline()
            if header != _REPLAY_LOG_HEADER:
                raise ValueError(f"replay log {path}: not a version 1 log (header {header[:40]!r})")
            intact = len(header)
            for line_number, line in enumerate(handle, start=2):
                if not line.endswith(b"\n"):
                    break  # the last line, cut short by a crash
                intact += len(line)
                self._log_lines += 1
                match = _REPLAY_RECORD.fullmatch(line)
                if match is None:
                    log.warning("replay log %s line %d: not a record; skipped", path, line_number)
                    continue
                key = bytes.fromhex(match[1].decode())
                expires_at = float(match[3])
                if expires_at > now and key not in self._keys:
                    self._insert(key, bytes.fromhex(match[2].decode()), expires_at)
        if path.stat().st_size > intact:
            log.info("replay log %s: dropping a partial last line", path)
            # Cut it off, or the next record appended would extend it into one bad line.
            os.truncate(path, intact)

    def _compact_if_mostly_expired(self) -> None:
        # Amortized O(1) per claim: a compaction writes fewer lines than it removes.
        if self._log is None or self.path is None:
            return
        if self._log_lines < self._compaction_floor or 2 * len(self._keys) >= self._log_lines:
            return
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        compacted = os.fdopen(fd, "wb")
        try:
            compacted.write(_REPLAY_LOG_HEADER)
            for expires_at, key, public_key in self._by_expiry:
                compacted.write(_replay_record(key, public_key, expires_at))
            compacted.flush()
            os.fsync(compacted.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            compacted.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            # The old log is still whole: keep appending to it, and retry once it doubles.
            log.warning("replay log %s: compaction failed: %s", self.path, exc)
            self._compaction_floor = 2 * self._log_lines
            return
        # From the rename on, the compacted file is the log: append to it.
        self._log.close()
        self._log = compacted
        self._log_lines = len(self._keys)
        self._compaction_floor = _COMPACTION_MIN_LINES
        try:
            fsync_directory(self.path.parent)
        except OSError as exc:
            # The rename may not survive an OS crash; the old log then returns, lacking
            # only appends that were not fsynced anyway.
            log.warning("replay log %s: directory fsync failed: %s", self.path, exc)


def _replay_record(key: bytes, public_key: bytes, expires_at: float) -> bytes:
    return f"{key.hex()} {public_key.hex()} {expires_at:.6f}\n".encode()
