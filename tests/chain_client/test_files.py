"""Private data directories and files (chain_client/files.py; security review #16): made
0700 and 0600, and ones an older version left readable are narrowed when opened."""

import os
import sqlite3
import stat
from pathlib import Path

from chain_client.files import (
    private_database,
    private_directory,
    private_file,
    private_opener,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_directory_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = private_directory(tmp_path / "a" / "data")
    finally:
        os.umask(old)
    assert mode(made) == 0o700


def test_an_existing_directory_and_file_are_narrowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    stored = data / "index.db"
    stored.write_bytes(b"x")
    stored.chmod(0o644)
    private_directory(data)
    private_file(stored)
    assert (mode(data), mode(stored), stored.read_bytes()) == (0o700, 0o600, b"x")


def test_a_shared_sticky_directory_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    private_directory(shared)
    assert mode(shared) == 0o1777


def test_sqlite_companions_take_the_database_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = sqlite3.connect(private_database(path))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (v)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    companions = [tmp_path / "x.db-wal", tmp_path / "x.db-shm"]
    assert all(p.exists() and mode(p) == 0o600 for p in [path, *companions])
    db.close()


def test_companions_left_readable_are_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    for each in (path, tmp_path / "x.db-wal", tmp_path / "x.db-shm"):
        each.write_bytes(b"")
        each.chmod(0o644)
    private_database(path)
    assert {mode(p) for p in tmp_path.iterdir()} == {0o600}


def test_private_opener(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb", opener=private_opener) as handle:
        handle.write(b"x")
    assert mode(tmp_path / "f") == 0o600
