import hashlib
import logging
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.native.replay_cache import (
    DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT,
    AccountReplayCacheFull,
    ReplayCache,
    ReplayCacheFull,
)

NOW = 1_750_000_000.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "replay.log"


def signature_number(number: int) -> bytes:
    return number.to_bytes(64, "big")


def reopened(
    path: Path, *, now: float = NOW, max_per_account: int = DEFAULT_MAX_REPLAY_ENTRIES_PER_ACCOUNT
) -> closing[ReplayCache]:
    return closing(ReplayCache(path=path, clock=FakeClock(now), max_per_account=max_per_account))


def log_lines(path: Path) -> int:
    """The records in a replay log, its header aside."""
    return len(path.read_bytes().splitlines()) - 1


def test_replay_cache_claim_and_evict() -> None:
    cache = ReplayCache(max_entries=3)
    key, signature = bytes(32), bytes(64)
    assert cache.claim(key, signature, 10.0, 0.0)
    assert not cache.claim(key, signature, 10.0, 9.9)
    assert cache.claim(key, bytes([1]) * 64, 5.0, 0.0)
    assert cache.claim(bytes([1]) * 32, signature, 20.0, 0.0)
    with pytest.raises(ReplayCacheFull) as caught:
        cache.claim(bytes([2]) * 32, signature, 20.0, 1.0)
    assert caught.value.max_entries == 3
    cache.evict_expired(5.0)
    assert len(cache) == 2
    assert cache.claim(key, signature, 30.0, 10.0)  # expired entry gone, claimable again
    assert len(cache) == 2
    with pytest.raises(ValueError, match="max_entries"):
        ReplayCache(max_entries=0)


def test_account_replay_cache_full() -> None:
    cache = ReplayCache(max_per_account=2)
    alice_key, bob_key = bytes(32), bytes([1]) * 32
    assert cache.claim(alice_key, signature_number(1), 10.0, 0.0)
    assert cache.claim(alice_key, signature_number(2), 20.0, 0.0)
    assert not cache.claim(alice_key, signature_number(2), 20.0, 1.0)  # a replay stays a replay
    with pytest.raises(AccountReplayCacheFull) as caught:
        cache.claim(alice_key, signature_number(3), 20.0, 1.0)
    assert caught.value.max_per_account == 2
    assert str(caught.value) == "replay cache full for this account: 2 unexpired signatures"
    assert cache.claim(bob_key, signature_number(3), 20.0, 1.0)
    assert cache.claim(alice_key, signature_number(3), 20.0, 10.0)  # one of Alice's expired
    with pytest.raises(ValueError, match="max_per_account"):
        ReplayCache(max_per_account=0)


def test_replay_log_survives_a_restart(log_path: Path) -> None:
    with reopened(log_path) as cache:
        assert cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
        assert cache.claim(bytes(32), signature_number(2), NOW + 30, NOW)
    lines = log_path.read_bytes().splitlines(keepends=True)
    assert lines[0] == b"deoss-replay-log 1\n"
    key = hashlib.blake2b(bytes(32) + signature_number(1), digest_size=16).hexdigest()
    assert lines[1] == f"{key} {'00' * 32} 1750000060.000000\n".encode()
    assert len(lines) == 3

    with reopened(log_path, now=NOW + 30) as cache:
        assert len(cache) == 1  # the entry expired by now is not reloaded
        assert not cache.claim(bytes(32), signature_number(1), NOW + 60, NOW + 30)
        assert cache.claim(bytes(32), signature_number(3), NOW + 60, NOW + 30)
    with reopened(log_path, now=NOW + 60) as cache:
        assert len(cache) == 0


def test_replay_log_restores_account_counts(log_path: Path) -> None:
    with reopened(log_path, max_per_account=2) as cache:
        assert cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
        assert cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)
    with reopened(log_path, max_per_account=2) as cache:
        with pytest.raises(AccountReplayCacheFull):
            cache.claim(bytes(32), signature_number(3), NOW + 60, NOW)
        assert cache.claim(bytes([1]) * 32, signature_number(3), NOW + 60, NOW)


def test_torn_last_line_is_dropped(log_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with reopened(log_path) as cache:
        assert cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
    whole = log_path.read_bytes()
    with log_path.open("ab") as handle:
        handle.write(whole.splitlines(keepends=True)[1][:40])  # a crash mid-write
    with caplog.at_level(logging.WARNING), reopened(log_path) as cache:
        assert len(cache) == 1
        assert log_path.read_bytes() == whole  # cut off, so the next append starts a line
        assert cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)
    with caplog.at_level(logging.WARNING), reopened(log_path) as cache:
        assert not cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
        assert not cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)
    assert caplog.records == []


def test_garbage_lines_are_skipped_with_a_warning(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with reopened(log_path) as cache:
        assert cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
    with log_path.open("ab") as handle:
        handle.write(b"not a record\n\xff\xfe\n")
    with reopened(log_path) as cache:
        assert cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)
    caplog.clear()
    with caplog.at_level(logging.WARNING), reopened(log_path) as cache:
        assert len(cache) == 2
        assert not cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)
    assert [record.getMessage() for record in caplog.records] == [
        f"replay log {log_path} line 3: not a record; skipped",
        f"replay log {log_path} line 4: not a record; skipped",
    ]


def test_unknown_log_header_is_fatal(log_path: Path) -> None:
    log_path.write_bytes(b"deoss-replay-log 2\n")
    with pytest.raises(ValueError, match="not a version 1 log"):
        ReplayCache(path=log_path)


def test_compaction_keeps_live_entries(log_path: Path) -> None:
    short_lived, long_lived = bytes(32), bytes([1]) * 32
    with reopened(log_path) as cache:
        for number in range(1500):
            assert cache.claim(short_lived, signature_number(number), NOW + 10, NOW)
        for number in range(100):
            assert cache.claim(long_lived, signature_number(number), NOW + 100, NOW)
        # Every line is live: nothing to compact.
        assert log_lines(log_path) == 1600
        size_before = log_path.stat().st_size
        # The 1500 short-lived entries expire: 101 of 1601 lines are live.
        assert cache.claim(long_lived, signature_number(100), NOW + 100, NOW + 50)
        assert log_lines(log_path) == 101
        assert log_path.stat().st_size < size_before / 10
        # Appends go to the compacted file.
        assert cache.claim(long_lived, signature_number(101), NOW + 100, NOW + 50)
        assert log_lines(log_path) == 102
    assert list(log_path.parent.iterdir()) == [log_path]  # no temporary file left
    with reopened(log_path, now=NOW + 50) as cache:
        assert len(cache) == 102
        for number in (0, 100, 101):
            assert not cache.claim(long_lived, signature_number(number), NOW + 100, NOW + 50)


def test_compaction_on_load(log_path: Path) -> None:
    with reopened(log_path) as cache:
        for number in range(1100):
            assert cache.claim(bytes(32), signature_number(number), NOW + 10, NOW)
        assert cache.claim(bytes(32), signature_number(1100), NOW + 100, NOW)
    with reopened(log_path, now=NOW + 20) as cache:
        assert len(cache) == 1
        assert log_lines(log_path) == 1
        assert not cache.claim(bytes(32), signature_number(1100), NOW + 100, NOW + 20)


@given(tail=st.binary(max_size=300))
def test_replay_log_tolerates_any_tail(tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "replay.log"
        with reopened(path) as cache:
            assert cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
        with path.open("ab") as handle:
            handle.write(tail)
        with reopened(path) as cache:
            assert not cache.claim(bytes(32), signature_number(1), NOW + 60, NOW)
            assert cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)
        with reopened(path) as cache:
            assert not cache.claim(bytes(32), signature_number(2), NOW + 60, NOW)


def test_accounts_that_filled_the_cache_slow_down_only_themselves() -> None:
    """Security review #5: ten throwaway accounts filled the gateway-wide cache and every
    user got 503 ReplayCacheFull."""
    cache = ReplayCache(max_entries=1000, max_per_account=10, fair_share_above=100)
    throwaway = [bytes([1, n]) + bytes(30) for n in range(10)]
    for account in throwaway:
        for n in range(10):
            assert cache.claim(account, signature_number(n), 300.0, 0.0)
    assert len(cache) == 100
    honest = bytes([2]) * 32
    for n in range(9):  # an even share of what is there, 100 // 11
        assert cache.claim(honest, signature_number(n), 60.0, 1.0)
    with pytest.raises(AccountReplayCacheFull) as caught:
        cache.claim(honest, signature_number(9), 60.0, 1.0)
    assert caught.value.max_per_account == 9
    # A heavy account is held to its share while the cache is past the threshold.
    with pytest.raises(AccountReplayCacheFull):
        cache.claim(throwaway[0], signature_number(99), 300.0, 1.0)
    # Another newcomer still gets in: no account can lock the others out.
    assert cache.claim(bytes([3]) * 32, signature_number(0), 60.0, 1.0)
