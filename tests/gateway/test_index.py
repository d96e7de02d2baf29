"""The metadata index: names and the files they share, the outbox of declarations and
deletions, buckets, multipart uploads, and listing order."""

import asyncio
import sqlite3
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.index import MetadataIndex
from gateway.keywrap import wrap_master
from gateway.records import (
    ACTIVE,
    DECLARE,
    DECLARED,
    DELETE,
    NULL_VERSION,
    PENDING,
    PLAIN_WRITE,
    NameWrite,
    NoSuchBucket,
    NoSuchObject,
    NoSuchUpload,
    ObjectRecord,
    PartRecord,
    PreconditionFailed,
    SegmentRecord,
    UnitRecord,
    UploadCommit,
    UploadRecord,
    WriteCondition,
)
from gateway.upload import GroupCommit

OWNER = "cXowner"
NONE_MATCH = WriteCondition(if_none_match=True)


def record(fid: str, name: str, owner: str = OWNER) -> ObjectRecord:
    return ObjectRecord(
        fid=fid,
        owner=owner,
        name=name,
        territory="home",
        size=10,
        content_type="text/plain",
        etag="e" * 32,
        data_shards=2,
        total_shards=4,
        stored=40,
        state=PENDING,
        created_at=1.0,
    )


def upload_args(
    fid: str, name: str, owner: str = OWNER, write: NameWrite = PLAIN_WRITE
) -> UploadCommit:
    return UploadCommit(
        record(fid, name, owner),
        [
            UnitRecord(
                fid=fid,
                unit_no=0,
                unit_id="u" * 32,
                algorithm="aes256gcm",
                plain_size=10,
                cipher_size=26,
                wrapped_key=wrap_master(bytes(32), bytes(16), bytes(32)),
                first_segment=0,
                segment_count=1,
            )
        ],
        [
            SegmentRecord(
                fid=fid,
                seg_no=0,
                segment_id="s" * 64,
                stripe_count=1,
                cipher_size=26,
                fragment_size=13,
            )
        ],
        [],
        {"fid": fid, "key": name},
        write,
    )


def upload(
    index: MetadataIndex, fid: str, name: str, owner: str = OWNER, write: NameWrite = PLAIN_WRITE
) -> ObjectRecord:
    return index.commit_upload(upload_args(fid, name, owner, write))


@pytest.fixture
def index(tmp_path: Path) -> MetadataIndex:
    return MetadataIndex(tmp_path / "index.db")


def test_a_file_lives_while_a_name_refers_to_it(index: MetadataIndex) -> None:
    upload(index, "f1", "a")
    copy = record("f1", "b")
    index.add_name(copy, {"fid": "f1", "key": "b"})
    assert [r.name for r in index.names_of(copy)] == ["a", "b"]
    gone = index.delete_version(OWNER, "a", NULL_VERSION)
    assert gone is not None and gone.fid == "f1"
    assert index.units("f1") and index.find(OWNER, "b") is not None
    index.delete_object(OWNER, "b")
    assert index.units("f1") == [] and index.object("f1") is None
    deletions = index.outbox(DELETE, PENDING)
    assert [(d.name, d.fid) for d in deletions] == [("a", "f1"), ("b", "f1")]
    assert index.outbox(DECLARE, PENDING) == []  # never declared, never will be
    with pytest.raises(NoSuchObject):
        index.add_name(record("gone", "c"), {})


def test_a_new_upload_replaces_the_name(index: MetadataIndex) -> None:
    upload(index, "f1", "a")
    upload(index, "f2", "a")
    assert index.find(OWNER, "a") is not None and index.find(OWNER, "a").fid == "f2"  # type: ignore[union-attr]
    assert index.units("f1") == []  # its last name went
    assert [e.fid for e in index.outbox(DECLARE, PENDING)] == ["f2"]
    assert index.outbox(DELETE, PENDING) == []  # the declaration replaces the reference


def test_states_follow_the_chain(index: MetadataIndex) -> None:
    upload(index, "f1", "a")
    entry = index.outbox(DECLARE, PENDING)[0]
    index.set_entry_states([entry.id], DECLARED)
    assert index.pending_bytes(OWNER, "home") == 0
    index.files_active(["f1"])
    assert index.find(OWNER, "a").state == ACTIVE  # type: ignore[union-attr]
    assert index.file_active("f1")


def test_buckets(index: MetadataIndex) -> None:
    assert index.create_bucket("photos", OWNER, "home") is not None
    assert index.create_bucket("photos", "someone", "t") is None
    upload(index, "f1", "photos/cat")
    assert not index.delete_bucket("photos", OWNER)
    index.delete_object(OWNER, "photos/cat")
    assert index.delete_bucket("photos", OWNER)
    assert index.bucket("photos") is None


def test_uploads_expire(index: MetadataIndex) -> None:
    now = time.time()
    for upload_id, at in (("old", now - 100), ("new", now)):
        index.create_upload(UploadRecord(upload_id, OWNER, "b/k", "home", "x", {}, at))
        index.put_part(PartRecord(upload_id, 1, "d" * 32, 5, {}, at))
    assert index.expire_uploads(now - 50) == 1
    assert index.upload("old") is None and index.parts("old") == []
    assert [p.part_no for p in index.parts("new")] == [1]


@settings(max_examples=30, deadline=None)
@given(
    st.sets(
        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=6),
        max_size=25,
    ),
    st.text(max_size=2),
)
def test_names_list_in_utf8_byte_order(
    tmp_path_factory: pytest.TempPathFactory, names: set[str], prefix: str
) -> None:
    index = MetadataIndex(tmp_path_factory.mktemp("order") / "index.db")
    for number, name in enumerate(names):
        upload(index, f"f{number}", name)
    wanted = sorted((n for n in names if n.startswith(prefix)), key=lambda n: n.encode())
    got, after = [], ""
    while page := index.objects_by_name(OWNER, after, 3, prefix=prefix):
        got += [r.name for r in page]
        after = page[-1].name
    assert got == wanted
    index.close()


def test_uploads_committed_together_stand_alone(index: MetadataIndex) -> None:
    outcomes = index.commit_uploads(
        [
            upload_args("f1", "one"),
            upload_args("f0", "b/again", write=NameWrite(bucket="b")),  # no such bucket
            upload_args("f2", "two"),
        ]
    )
    assert isinstance(outcomes[0], ObjectRecord) and isinstance(outcomes[2], ObjectRecord)
    assert isinstance(outcomes[1], NoSuchBucket)  # only it fails
    assert [index.find(OWNER, n) is not None for n in ("one", "b/again", "two")] == [
        True,
        False,
        True,
    ]
    assert index.units("f0") == []  # its file went with it


async def test_concurrent_commits_share_a_transaction(index: MetadataIndex) -> None:
    group = GroupCommit(index)
    calls: list[int] = []
    commit_uploads = index.commit_uploads

    def counted(commits: Sequence[UploadCommit]) -> list[ObjectRecord | Exception]:
        calls.append(len(commits))
        return commit_uploads(commits)

    index.commit_uploads = counted  # type: ignore[method-assign]
    upload(index, "f0", "zero")
    results = await asyncio.gather(
        *(group.commit(upload_args(f"f{n}", f"n{n}")) for n in range(1, 9)),
        group.commit(upload_args("f0", "zero", write=NameWrite(condition=NONE_MATCH))),
        return_exceptions=True,
    )
    assert all(isinstance(r, ObjectRecord) for r in results[:8])
    assert isinstance(results[8], PreconditionFailed)
    assert sum(calls) == 9 and len(calls) < 9  # grouped: fewer transactions than uploads


def test_deleting_a_bucket_aborts_its_uploads_and_refuses_late_ones(index: MetadataIndex) -> None:
    index.create_bucket("photos", OWNER, "home")
    index.create_upload(UploadRecord("u1", OWNER, "photos/k", "home", "x", {}, time.time()))
    index.create_upload(UploadRecord("u2", OWNER, "photosx/k", "home", "x", {}, time.time()))
    assert index.delete_bucket("photos", OWNER)
    assert index.upload("u1") is None and index.upload("u2") is not None  # only its own
    with pytest.raises(NoSuchBucket):  # a PUT that finishes after the bucket went
        upload(index, "f1", "photos/late", write=NameWrite(bucket="photos"))
    assert index.units("f1") == [] and index.find(OWNER, "photos/late") is None
    with pytest.raises(NoSuchUpload):  # a part that finishes after its upload went
        index.put_part(PartRecord("u1", 1, "d" * 32, 5, {}, time.time()))


def test_a_version_2_index_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE files (fid TEXT PRIMARY KEY, size INTEGER NOT NULL, etag TEXT NOT NULL,
            data_shards INTEGER NOT NULL, total_shards INTEGER NOT NULL, stored INTEGER NOT NULL,
            active INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE names (owner TEXT NOT NULL, name TEXT NOT NULL, fid TEXT NOT NULL,
            territory TEXT NOT NULL, content_type TEXT NOT NULL, meta TEXT NOT NULL,
            state TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (owner, name))
            WITHOUT ROWID;
        CREATE INDEX names_fid ON names (fid);
        CREATE TABLE units (fid TEXT, unit_no INTEGER, unit_id TEXT, algorithm TEXT,
            plain_size INTEGER, cipher_size INTEGER, wrapped_key TEXT, first_segment INTEGER,
            segment_count INTEGER, PRIMARY KEY (fid, unit_no)) WITHOUT ROWID;
        CREATE TABLE segments (fid TEXT, seg_no INTEGER, segment_id TEXT, stripe_count INTEGER,
            cipher_size INTEGER, fragment_size INTEGER, PRIMARY KEY (fid, seg_no)) WITHOUT ROWID;
        CREATE TABLE fragments (fid TEXT, seg_no INTEGER, idx INTEGER, fragment_id TEXT,
            miner TEXT, size INTEGER, block_roots BLOB, PRIMARY KEY (fid, seg_no, idx))
            WITHOUT ROWID;
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            owner TEXT NOT NULL, name TEXT NOT NULL, fid TEXT NOT NULL,
            declaration TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT, updated_at REAL NOT NULL);
        CREATE TABLE buckets (bucket TEXT PRIMARY KEY, owner TEXT NOT NULL,
            territory TEXT NOT NULL, created_at REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE uploads (upload_id TEXT PRIMARY KEY, owner TEXT NOT NULL,
            name TEXT NOT NULL, territory TEXT NOT NULL, content_type TEXT NOT NULL,
            meta TEXT NOT NULL, created_at REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE parts (upload_id TEXT, part_no INTEGER, etag TEXT, size INTEGER,
            unit TEXT, created_at REAL, PRIMARY KEY (upload_id, part_no)) WITHOUT ROWID;
        INSERT INTO files VALUES ('f1', 10, 'etag', 2, 4, 40, 1, 1.0);
        INSERT INTO units VALUES ('f1', 0, 'u', 'aes256gcm', 10, 26, '{}', 0, 1);
        INSERT INTO segments VALUES ('f1', 0, 's', 1, 26, 13);
        INSERT INTO names VALUES ('cXowner', 'photos/a', 'f1', 'home', 'text/plain', '{}',
            'active', 1.0);
        INSERT INTO buckets VALUES ('photos', 'cXowner', 'home', 1.0);
        INSERT INTO outbox (kind, owner, name, fid, declaration, state, updated_at)
            VALUES ('declare', 'cXowner', 'photos/a', 'f1', '{"key": "photos/a"}', 'active', 1.0);
        """
    )
    old.close()
    index = MetadataIndex(path)
    found = index.find(OWNER, "photos/a")
    assert found is not None and found.version_id == NULL_VERSION and found.state == ACTIVE
    bucket = index.bucket("photos")
    assert bucket is not None and bucket.versioning == ""
    index.set_versioning("photos", "Enabled")
    newer = upload(index, "f2", "photos/a", write=NameWrite(bucket="photos"))
    first = index.lookup("f1", OWNER)
    assert first is not None
    assert [v.version_id for v in index.names_of(first)] == [NULL_VERSION]
    assert index.find(OWNER, "photos/a") == newer
    index.close()
    assert MetadataIndex(path).find(OWNER, "photos/a") is not None  # opens again as version 4


def test_an_index_left_readable_by_an_older_version_is_narrowed(tmp_path: Path) -> None:
    # Security review #16: index.db and its -wal were 0644 in a 0755 directory.
    data_dir = tmp_path / "gateway"
    MetadataIndex(data_dir / "index.db").close()
    data_dir.chmod(0o755)
    for path in data_dir.iterdir():
        path.chmod(0o644)
    index = MetadataIndex(data_dir / "index.db")
    index.create_bucket("b", OWNER, "home")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()}
    assert "index.db-wal" in modes and set(modes.values()) == {0o600}
    index.close()
