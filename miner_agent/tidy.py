"""Tidy: bring the miner's disk, its index and the chain's view back into agreement.

One pass, in this order::

    tmp/          temp files older than ``temp_age``                    expired_temp
    fragments/    anything but fragments/<id[0:2]>/<id[2:4]>/<id>        malformed
    index         file gone, wrong size, a leaf fails its check          missing, wrong_size,
                  (the loss of an active file held here is reported)     corrupt
                  orphan past orphan_ttl (chain time) not placed here    orphan
                  deal or active fragment the chain places elsewhere     not_ours
    fragments/    files not in the index: adopted when they hash to
                  their id and the chain places them here, else          unknown
    idle/         bad names, unknown or wrong-size units, units the
                  chain no longer lists                                  idle_unknown
                  indexed units whose file is gone                       missing

Files not in the index and written less than ``temp_age`` ago are left alone: the store
renames a file into place before it indexes it, so they may be writes in progress.
Invariant: a fragment the chain says this miner holds and that verifies is never removed.
Chain errors propagate (the caller skips this round); every chain question is asked
before the local change it justifies, so an interrupted run leaves work for the next.
"""

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chain_client.merkle import leaf_hashes, root_of_hashes
from miner_agent.store import ACTIVE, DEAL, ORPHAN, FragmentRecord, MinerStore, StoreError

__all__ = ["CATEGORIES", "ChainView", "TidyReport", "tidy"]

log = logging.getLogger("deoss-miner")

CATEGORIES = (
    "expired_temp",
    "malformed",
    "unknown",
    "missing",
    "wrong_size",
    "corrupt",
    "orphan",
    "not_ours",
    "idle_unknown",
)
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_ID = re.compile(r"^[0-9a-f]{64}$")
_UNIT = re.compile(r"^(0|[1-9][0-9]*)$")  # exactly what MinerStore.idle_path writes
_CHAINED_IDLE = ("committed", "certified")
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TidyReport:
    removed: dict[str, list[str]]
    adopted: list[str]
    reported_lost: list[str]

    def total(self) -> int:
        """Everything this pass changed; ``reported_lost`` ids are also in ``removed``."""
        return sum(len(names) for names in self.removed.values()) + len(self.adopted)

    def to_json(self) -> dict[str, Any]:
        return {
            "removed": {category: list(names) for category, names in self.removed.items()},
            "adopted": list(self.adopted),
            "reported_lost": list(self.reported_lost),
            "total": self.total(),
        }


class ChainView(Protocol):
    """What tidy asks the chain; the miner passes an adapter over its Chain client."""

    async def fragment(self, fragment_id: str) -> dict[str, Any] | None: ...

    async def idle_unit_states(self) -> dict[int, str]: ...

    async def report_lost(self, fragment: dict[str, Any]) -> None: ...


# -- blocking file work, run in threads -------------------------------------------------------


def _remove_path(path: Path) -> None:
    # SECURITY: never follow a symlink; a link is removed, not what it points at.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _entries(directory: str | Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []


def _mtime(entry: os.DirEntry[str]) -> float | None:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return None


def _remove_expired_temp(tmp_dir: Path, cutoff: float) -> list[str]:
    removed = []
    for entry in _entries(tmp_dir):
        mtime = _mtime(entry)
        if mtime is not None and mtime < cutoff:
            _remove_path(Path(entry.path))
            removed.append(entry.name)
    return removed


def _scan_fragment_tree(fragment_dir: Path) -> tuple[list[str], dict[str, float]]:
    """Removes whatever the store could not have written there; returns the removed paths
    (relative) and the well-placed fragment files with their mtimes."""
    malformed: list[str] = []
    found: dict[str, float] = {}

    def drop(entry: os.DirEntry[str], relative: str) -> None:
        _remove_path(Path(entry.path))
        malformed.append(relative)

    # Empty shard directories stay: removing one could race a PUT that has just made it
    # and is about to rename its fragment into it.
    for top in _entries(fragment_dir):
        if not (top.is_dir(follow_symlinks=False) and _SHARD.match(top.name)):
            drop(top, top.name)
            continue
        for middle in _entries(top.path):
            if not (middle.is_dir(follow_symlinks=False) and _SHARD.match(middle.name)):
                drop(middle, f"{top.name}/{middle.name}")
                continue
            for leaf in _entries(middle.path):
                name = leaf.name
                placed = (
                    leaf.is_file(follow_symlinks=False)
                    and _ID.match(name) is not None
                    and name[:2] == top.name
                    and name[2:4] == middle.name
                )
                mtime = _mtime(leaf) if placed else None
                if mtime is not None:
                    found[name] = mtime
                elif not placed:
                    drop(leaf, f"{top.name}/{middle.name}/{name}")
    return malformed, found


def _file_root(path: Path, leaf_size: int) -> tuple[int, str | None] | None:
    """(size, Merkle root) of a file read a chunk at a time; None if it is gone."""
    chunk = max(1, _CHUNK // leaf_size) * leaf_size  # whole leaves, so chunks hash alike
    hashes: list[bytes] = []
    size = 0
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return None
    with handle:
        while data := handle.read(chunk):
            hashes.extend(leaf_hashes(data, leaf_size))
            size += len(data)
    return size, root_of_hashes(hashes).hex() if hashes else None


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


async def _file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while data := await asyncio.to_thread(handle.read, _CHUNK):
            yield data
    finally:
        await asyncio.to_thread(handle.close)


# -- the pass ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tidy:
    store: MinerStore
    chain: ChainView
    me: str
    best_block: int
    orphan_ttl: int
    unit_size: int
    cutoff: float  # files last written before this are no longer being written
    removed: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})
    adopted: list[str] = field(default_factory=list)
    reported_lost: list[str] = field(default_factory=list)

    def note(self, category: str, name: str) -> None:
        log.info("tidy: removed %s (%s)", name, category)
        self.removed[category].append(name)

    def ours(self, on_chain: dict[str, Any] | None) -> bool:
        return on_chain is not None and on_chain.get("miner") == self.me

    async def run(self) -> TidyReport:
        store = self.store
        for name in await asyncio.to_thread(_remove_expired_temp, store.tmp_dir, self.cutoff):
            self.note("expired_temp", name)
        # The index is read before the disk: a PUT finishing in between then shows up as
        # an unindexed file, which the fresh-file rule and a re-check below leave alone.
        records = await asyncio.to_thread(store.fragments)
        malformed, found = await asyncio.to_thread(_scan_fragment_tree, store.fragment_dir)
        for relative in malformed:
            self.note("malformed", relative)
        for record in records:
            await self.check_indexed(record)
        indexed = {record.id for record in records}
        for fragment_id, mtime in found.items():
            if fragment_id not in indexed and mtime < self.cutoff:
                await self.check_unindexed(fragment_id)
        await self.check_idle()
        return TidyReport(
            removed={category: sorted(names) for category, names in self.removed.items()},
            adopted=sorted(self.adopted),
            reported_lost=sorted(self.reported_lost),
        )

    # -- indexed fragments ---------------------------------------------------------------------

    async def check_indexed(self, record: FragmentRecord) -> None:
        size = await asyncio.to_thread(_file_size, self.store.fragment_path(record.id))
        if size is None:
            if self.store.fragment(record.id) is None:
                return  # deleted meanwhile, file and entry, by the deal follower
            await self.lost(record, "missing", None)
            return
        if size != record.size:
            await self.lost(record, "wrong_size", None)
            return
        expired = record.received_height + self.orphan_ttl < self.best_block
        on_chain = None
        if record.state != ORPHAN or expired:
            on_chain = await self.chain.fragment(record.id)
            if not self.ours(on_chain):
                await self.delete(record.id, ORPHAN if record.state == ORPHAN else "not_ours")
                return
        # Reading every leaf is the costly part, so it is spent only on what stays.
        if not await self.verifies(record):
            await self.lost(record, "corrupt", on_chain)
            return
        if on_chain is not None:
            state = ACTIVE if on_chain.get("file_state") == ACTIVE else DEAL
            if (record.state, record.fid) != (state, on_chain["fid"]):
                await asyncio.to_thread(
                    self.store.set_fragment_state, record.id, state, on_chain["fid"]
                )

    async def verifies(self, record: FragmentRecord) -> bool:
        try:
            async for _ in self.store.read_range(record.id, 0, record.size):
                pass
        except StoreError as exc:
            if exc.code == "FragmentCorrupt":
                return False
            if exc.code == "NoSuchFragment":  # deleted meanwhile by the deal follower
                return True
            raise
        return True

    async def lost(
        self, record: FragmentRecord, category: str, on_chain: dict[str, Any] | None
    ) -> None:
        if on_chain is None:
            on_chain = await self.chain.fragment(record.id)
        # The chain refuses a second order for one fragment (OrderExists) and any for a
        # file not active (NotActive); unavailable means an order is already open.
        if (
            self.ours(on_chain)
            and on_chain is not None
            and on_chain.get("file_state") == ACTIVE
            and on_chain.get("avail", True)
        ):
            # Reported before the index entry goes, so a failed report is retried next run.
            await self.chain.report_lost(on_chain)
            self.reported_lost.append(record.id)
        await self.delete(record.id, category)

    async def delete(self, fragment_id: str, category: str) -> None:
        await asyncio.to_thread(self.store.delete_fragment, fragment_id)
        self.note(category, fragment_id)

    # -- fragments on disk but not in the index --------------------------------------------------

    async def check_unindexed(self, fragment_id: str) -> None:
        if self.store.fragment(fragment_id) is not None:
            return  # indexed since the scan
        path = self.store.fragment_path(fragment_id)
        measured = await asyncio.to_thread(_file_root, path, self.store.leaf_size)
        if measured is None:
            return
        size, root = measured
        on_chain = await self.chain.fragment(fragment_id) if root == fragment_id else None
        # A root does not commit to the leaf count (self-pairing), so the size must be
        # the one the chain recorded too.
        if on_chain is not None and self.ours(on_chain) and on_chain.get("size") == size:
            await self.adopt(fragment_id, path, size, on_chain)
            return
        if self.store.fragment(fragment_id) is None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            self.note("unknown", fragment_id)

    async def adopt(
        self, fragment_id: str, path: Path, size: int, on_chain: dict[str, Any]
    ) -> None:
        # receive() re-hashes while copying through tmp/ and renames over this very file,
        # so the fragment is never absent from disk; the index gets its leaf hashes and
        # checks exactly as for a PUT.
        try:
            async with contextlib.aclosing(_file_chunks(path)) as chunks:
                await self.store.receive(fragment_id, chunks, size=size, height=self.best_block)
        except StoreError as exc:
            if exc.code != "InsufficientStorage":
                raise
            log.warning("tidy: no room to adopt %s yet; kept unindexed", fragment_id)
            return
        state = ACTIVE if on_chain.get("file_state") == ACTIVE else DEAL
        await asyncio.to_thread(self.store.set_fragment_state, fragment_id, state, on_chain["fid"])
        log.info("tidy: adopted %s (%s)", fragment_id, state)
        self.adopted.append(fragment_id)

    # -- idle units ------------------------------------------------------------------------------

    async def check_idle(self) -> None:
        store = self.store
        records = {unit.unit_index: unit for unit in await asyncio.to_thread(store.idle_units)}
        entries = await asyncio.to_thread(_entries, store.idle_dir)
        gone: set[int] = set()
        on_disk: set[int] = set()
        for entry in entries:
            path = Path(entry.path)
            if not (entry.is_file(follow_symlinks=False) and _UNIT.match(entry.name)):
                await asyncio.to_thread(_remove_path, path)
                self.note("idle_unknown", entry.name)
                continue
            unit_index = int(entry.name)
            if unit_index not in records:
                mtime = _mtime(entry)
                # A unit is renamed into place before it is indexed (after hashing it).
                if mtime is not None and mtime < self.cutoff:
                    await asyncio.to_thread(path.unlink, missing_ok=True)
                    self.note("idle_unknown", entry.name)
                continue
            on_disk.add(unit_index)
            stat = await asyncio.to_thread(entry.stat, follow_symlinks=False)
            if stat.st_size != self.unit_size:
                await asyncio.to_thread(store.delete_idle_unit, unit_index)
                self.note("idle_unknown", entry.name)
                gone.add(unit_index)
        for unit_index in records.keys() - on_disk:
            # Indexed but without its file: it can never be proven.
            await asyncio.to_thread(store.delete_idle_unit, unit_index)
            self.note("missing", str(unit_index))
            gone.add(unit_index)
        chained = [
            unit
            for unit in records.values()
            if unit.state in _CHAINED_IDLE and unit.unit_index not in gone
        ]
        if not chained:
            return
        listed = await self.chain.idle_unit_states()
        for unit in chained:
            if unit.unit_index not in listed:
                await asyncio.to_thread(store.delete_idle_unit, unit.unit_index)
                self.note("idle_unknown", str(unit.unit_index))


async def tidy(
    store: MinerStore,
    chain: ChainView,
    *,
    me: str,
    best_block: int,
    orphan_ttl: int,
    unit_size: int,
    temp_age: float = 3600.0,
    now: float | None = None,
) -> TidyReport:
    """One tidy pass. Files written less than ``temp_age`` seconds before ``now`` and not
    yet indexed are left alone: a write may be in progress."""
    current = time.time() if now is None else now
    return await _Tidy(
        store=store,
        chain=chain,
        me=me,
        best_block=best_block,
        orphan_ttl=orphan_ttl,
        unit_size=unit_size,
        cutoff=current - temp_age,
    ).run()
