"""The deal tracker's deletions: a caller waiting on one learns the block that dropped it;
a version's is sent with its reference key; one of a file being read waits for the read."""

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from chain_client.account import ChainAccount
from gateway.index import MetadataIndex
from gateway.records import DELETE, PENDING
from gateway.tracker import DealTracker, Relocator
from tests.gateway.test_index import OWNER, upload


class Chain:
    async def block(self, height: int, *, header_only: bool = False) -> dict[str, Any]:
        return {"height": height, "hash": f"0x{height:064x}"}


class Account:
    chain = Chain()

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, call: str, **args: Any) -> SimpleNamespace:
        self.calls.append((call, args))
        return SimpleNamespace(height=7, events=[])


class SlowToForget(MetadataIndex):
    """Commits the forgetting at once, but its thread returns late: the window in which
    a waiter sees the outbox empty before the tracker's coroutine resumes."""

    def forget_entry(self, entry_id: int) -> None:
        super().forget_entry(entry_id)
        time.sleep(0.3)


async def test_a_waiter_gets_the_block_hash_of_its_deletion(tmp_path: Path) -> None:
    index = SlowToForget(tmp_path / "index.db")
    upload(index, "f1", "a")
    index.delete_version(OWNER, "a", "null")
    account = Account()
    tracker = DealTracker(index, cast(ChainAccount, account), cast(Relocator, None))
    waiting = asyncio.create_task(tracker.wait_deleted("f1", timeout=5))
    await tracker.delete_pending()
    assert await waiting == (True, f"0x{7:064x}")
    assert account.calls == [("file_bank.delete_file", {"owner": OWNER, "key": "a", "fid": "f1"})]


async def test_a_deletion_waits_while_its_file_is_read(tmp_path: Path) -> None:
    index = MetadataIndex(tmp_path / "index.db")
    upload(index, "f1", "a")
    index.delete_version(OWNER, "a", "null")
    account, reading = Account(), {"f1"}
    tracker = DealTracker(
        index, cast(ChainAccount, account), cast(Relocator, None), busy=reading.__contains__
    )
    await tracker.delete_pending()
    assert account.calls == [] and len(index.outbox(DELETE, PENDING)) == 1
    reading.clear()  # the read ended
    await tracker.delete_pending()
    assert [name for name, _ in account.calls] == ["file_bank.delete_file"]


async def test_a_version_is_deleted_by_its_reference_key(tmp_path: Path) -> None:
    index = MetadataIndex(tmp_path / "index.db")
    index.create_bucket("b", OWNER, "home", "Enabled")
    written = upload(index, "f1", "b/k")
    index.delete_version(OWNER, "b/k", written.version_id)
    account = Account()
    tracker = DealTracker(index, cast(ChainAccount, account), cast(Relocator, None))
    await tracker.delete_pending()
    assert account.calls[0][1]["key"] == f"b/k\x00{written.version_id}"
