import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.access_keys import (
    MAX_LABEL_LENGTH,
    AccessKeyError,
    AccessKeyInfo,
    AccessKeyStore,
    InvalidLabel,
    NoSuchAccessKey,
    SecretUnsealFailed,
    TooManyAccessKeys,
)

MASTER_KEY = bytes(range(32))
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "access_keys.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[AccessKeyStore]:
    opened = AccessKeyStore(db_path, MASTER_KEY, clock=FakeClock())
    yield opened
    opened.close()


def raw_sql(path: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(sql, args)


def test_create_list_lookup_round_trip(store: AccessKeyStore) -> None:
    first, first_secret = store.create(ALICE, "laptop")
    second, second_secret = store.create(ALICE)
    for access_key, secret in [(first, first_secret), (second, second_secret)]:
        assert re.fullmatch(r"DO[A-Z2-7]{18}", access_key)
        assert re.fullmatch(r"[A-Za-z0-9_-]{40}", secret)
    assert first != second and first_secret != second_secret
    assert store.lookup(first) == (ALICE, first_secret)
    assert store.lookup(second) == (ALICE, second_secret)
    assert store.lookup(first) == (ALICE, first_secret)  # from the cache now
    infos = store.list(ALICE)
    assert [info.access_key for info in infos] == [second, first]  # newest first
    assert infos[1].label == "laptop" and infos[0].label == ""
    assert not any(info.revoked for info in infos)
    assert infos[0].created_at > infos[1].created_at
    assert store.list(BOB) == []


def test_unknown_key_does_not_resolve(store: AccessKeyStore) -> None:
    assert store.lookup("DOAAAAAAAAAAAAAAAAAA") is None
    assert store.lookup("") is None


@pytest.mark.parametrize("access_key", ["DO\udca7AAAAAAAAAAAAAAAAA", "\udcff", "DOÉ", "DO\x00"])
def test_an_id_no_key_can_have_is_unknown(store: AccessKeyStore, access_key: str) -> None:
    # A Credential byte that is not UTF-8 reaches lookup as a lone surrogate, which
    # SQLite could not bind: UnicodeEncodeError, an S3 500 (found by tests/fuzz).
    assert store.lookup(access_key) is None
    with pytest.raises(NoSuchAccessKey):
        store.revoke(ALICE, access_key)


def test_revoked_key_stops_resolving_at_once(store: AccessKeyStore) -> None:
    access_key, secret = store.create(ALICE)
    kept, kept_secret = store.create(ALICE)
    assert store.lookup(access_key) == (ALICE, secret)  # cached
    store.revoke(ALICE, access_key)
    assert store.lookup(access_key) is None
    assert store.lookup(kept) == (ALICE, kept_secret)
    store.revoke(ALICE, access_key)  # again: not an error
    assert store.lookup(access_key) is None
    revoked = {info.access_key: info.revoked for info in store.list(ALICE)}
    assert revoked == {access_key: True, kept: False}


def test_another_owner_cannot_revoke(store: AccessKeyStore) -> None:
    access_key, secret = store.create(ALICE)
    with pytest.raises(AccessKeyError) as someone_elses:
        store.revoke(BOB, access_key)
    with pytest.raises(AccessKeyError) as unknown:
        store.revoke(BOB, "DOAAAAAAAAAAAAAAAAAA")
    assert isinstance(someone_elses.value, NoSuchAccessKey)
    assert isinstance(unknown.value, NoSuchAccessKey)
    # One answer for both: nothing tells Bob that Alice's key exists.
    assert str(someone_elses.value).replace(access_key, "?") == str(unknown.value).replace(
        "DOAAAAAAAAAAAAAAAAAA", "?"
    )
    assert store.lookup(access_key) == (ALICE, secret)


def test_live_keys_per_owner_are_capped(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY, max_live_per_owner=3)) as store:
        keys = [store.create(ALICE)[0] for _ in range(3)]
        with pytest.raises(AccessKeyError) as caught:
            store.create(ALICE)
        assert isinstance(caught.value, TooManyAccessKeys) and caught.value.limit == 3
        assert len(store.list(ALICE)) == 3
        store.create(BOB)  # the cap is per owner
        store.revoke(ALICE, keys[0])  # revoked keys do not count
        store.create(ALICE)
        with pytest.raises(AccessKeyError):
            store.create(ALICE)


def test_cap_holds_under_concurrent_creates(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY, max_live_per_owner=10)) as store:
        created: list[str] = []
        refused: list[AccessKeyError] = []

        def create_some() -> None:
            for _ in range(5):
                try:
                    created.append(store.create(ALICE)[0])
                except AccessKeyError as exc:
                    refused.append(exc)

        threads = [threading.Thread(target=create_some) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(created) == 10 and len(refused) == 10
        assert len(store.list(ALICE)) == 10


@pytest.mark.parametrize(
    "label", ["x" * (MAX_LABEL_LENGTH + 1), "tab\there", "new\nline"], ids=["long", "tab", "nl"]
)
def test_bad_labels_are_refused(store: AccessKeyStore, label: str) -> None:
    with pytest.raises(AccessKeyError) as caught:
        store.create(ALICE, label)
    assert isinstance(caught.value, InvalidLabel) and caught.value.label == label
    assert store.list(ALICE) == []


def test_label_at_the_limit_is_kept(store: AccessKeyStore) -> None:
    label = "é" * MAX_LABEL_LENGTH
    store.create(ALICE, label)
    assert store.list(ALICE)[0].label == label


def test_restart_resolves_the_same_secrets(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY)) as store:
        live, secret = store.create(ALICE, "ci")
        revoked, _ = store.create(BOB)
        store.revoke(BOB, revoked)
    with closing(AccessKeyStore(db_path, MASTER_KEY)) as store:
        assert store.lookup(live) == (ALICE, secret)
        assert store.lookup(revoked) is None
        assert [(info.access_key, info.label) for info in store.list(ALICE)] == [(live, "ci")]
        assert store.list(BOB)[0].revoked


def test_wrong_master_key_fails_naming_the_file(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY)) as store:
        access_key, secret = store.create(ALICE)
    with closing(AccessKeyStore(db_path, bytes(32))) as store:
        with pytest.raises(SecretUnsealFailed) as caught:
            store.lookup(access_key)
        assert str(db_path) in str(caught.value)
        assert access_key in str(caught.value)
        assert secret not in str(caught.value) and secret not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        with pytest.raises(SecretUnsealFailed):  # a failure is not cached as a miss
            store.lookup(access_key)


def test_master_key_must_be_32_bytes(db_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes, got 16"):
        AccessKeyStore(db_path, bytes(16))


def test_database_holds_no_plaintext_secret(db_path: Path) -> None:
    store = AccessKeyStore(db_path, MASTER_KEY)
    secrets = [store.create(ALICE)[1] for _ in range(3)]

    def files_on_disk() -> bytes:
        return b"".join(path.read_bytes() for path in db_path.parent.glob(db_path.name + "*"))

    try:
        on_disk = files_on_disk()  # the WAL is still there while the store is open
        assert on_disk
        for secret in secrets:
            assert secret.encode() not in on_disk
    finally:
        store.close()
    on_disk = files_on_disk()
    for secret in secrets:
        assert secret.encode() not in on_disk
    assert db_path.stat().st_mode & 0o077 == 0


def test_swapped_sealed_secrets_fail_to_unseal(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY)) as store:
        first, _ = store.create(ALICE)
        second, _ = store.create(ALICE)
    with closing(sqlite3.connect(db_path)) as db, db:
        query = "SELECT sealed_secret FROM access_keys WHERE access_key = ?"
        (first_sealed,) = db.execute(query, (first,)).fetchone()
        (second_sealed,) = db.execute(query, (second,)).fetchone()
        update = "UPDATE access_keys SET sealed_secret = ? WHERE access_key = ?"
        db.execute(update, (second_sealed, first))
        db.execute(update, (first_sealed, second))
    with closing(AccessKeyStore(db_path, MASTER_KEY)) as store:
        for access_key in (first, second):
            with pytest.raises(SecretUnsealFailed, match=access_key):
                store.lookup(access_key)


def test_key_moved_to_another_owner_fails_to_unseal(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY)) as store:
        access_key, _ = store.create(ALICE)
    raw_sql(db_path, "UPDATE access_keys SET owner = ? WHERE access_key = ?", (BOB, access_key))
    with (
        closing(AccessKeyStore(db_path, MASTER_KEY)) as store,
        pytest.raises(SecretUnsealFailed),
    ):
        store.lookup(access_key)


def test_small_cache_still_resolves_every_key(db_path: Path) -> None:
    with closing(AccessKeyStore(db_path, MASTER_KEY, cache_size=2)) as store:
        pairs = [store.create(ALICE) for _ in range(5)]
        for _ in range(2):
            for access_key, secret in pairs:
                assert store.lookup(access_key) == (ALICE, secret)
        store.revoke(ALICE, pairs[0][0])
        assert store.lookup(pairs[0][0]) is None


def test_secrets_stay_out_of_reprs(store: AccessKeyStore) -> None:
    access_key, secret = store.create(ALICE, "deploy")
    (info,) = store.list(ALICE)
    assert info == AccessKeyInfo(access_key, "deploy", info.created_at, revoked=False)
    assert secret not in repr(info)
    assert secret not in repr(store)
    with pytest.raises(AccessKeyError) as caught:
        store.revoke(BOB, access_key)
    assert repr(caught.value) == (f"NoSuchAccessKey('no access key {access_key} of this account')")


def test_newer_schema_is_refused(db_path: Path) -> None:
    AccessKeyStore(db_path, MASTER_KEY).close()
    raw_sql(db_path, "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match=re.escape(f"{db_path}: access key schema 2")):
        AccessKeyStore(db_path, MASTER_KEY)
