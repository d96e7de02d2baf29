"""The invariant of docs/s3.md §7, checked by a Hypothesis state machine over the index:
random puts, copies (onto other keys and onto themselves), multipart completions (retried
too), deletes of objects and of versions, versioning changes and the chain catching up,
across a few keys of one bucket, compared with a model after every step.

After every step: each key's versions are the model's, newest first, and its current
object the model's; every version with data has its file (units, segments) and one
declaration under its chain reference; no file lingers that nothing names; ListObjects and
ListObjectVersions show exactly the model; the territory reservation is exactly the
versions not on chain; DeleteBucket refuses while the model holds anything.
"""

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.index import MetadataIndex
from gateway.records import (
    DECLARE,
    DECLARED,
    ENABLED,
    NULL_VERSION,
    PENDING,
    SUSPENDED,
    NameWrite,
    NoSuchObject,
    ObjectRecord,
    PreconditionFailed,
    UploadCompleted,
    UploadRecord,
    WriteCondition,
    reference_key,
)
from gateway.s3.listing import Cursor, all_versions, current_objects, scan
from tests.gateway.test_index import OWNER, record, upload_args

BUCKET = "b"
KEYS = ["b/a", "b/a\U0010ffff", "b/z"]
STORED = 40  # record()'s stored bytes


@dataclass
class Version:
    version_id: str
    fid: str  # "" for a delete marker
    on_chain: bool = False


@dataclass
class Model:
    versioning: str = ""
    keys: dict[str, list[Version]] = field(default_factory=dict)  # oldest first

    def current(self, key: str) -> Version | None:
        versions = self.keys.get(key) or []
        return versions[-1] if versions and versions[-1].fid else None

    def write(self, key: str, version: Version) -> None:
        versions = self.keys.setdefault(key, [])
        if version.version_id == NULL_VERSION:
            versions[:] = [v for v in versions if v.version_id != NULL_VERSION]
        versions.append(version)


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.index = MetadataIndex(Path(self.directory.name) / "index.db")
        self.index.create_bucket(BUCKET, OWNER, "home")
        self.model = Model()
        self.fids = (f"f{n}" for n in itertools.count())
        self.completed: list[tuple[str, str, ObjectRecord]] = []  # (upload id, key, answer)

    def teardown(self) -> None:
        self.index.close()
        self.directory.cleanup()

    def _version_id(self, written: ObjectRecord) -> str:
        expected_null = self.model.versioning != ENABLED
        assert (written.version_id == NULL_VERSION) == expected_null
        return written.version_id

    @rule(key=st.sampled_from(KEYS))
    def put(self, key: str) -> None:
        fid = next(self.fids)
        written = self.index.commit_upload(upload_args(fid, key, write=NameWrite(bucket=BUCKET)))
        self.model.write(key, Version(self._version_id(written), fid))

    @rule(key=st.sampled_from(KEYS), create_only=st.booleans())
    def conditional_put(self, key: str, create_only: bool) -> None:
        current = self.model.current(key)
        condition = (
            WriteCondition(if_none_match=True)
            if create_only
            else WriteCondition(if_match='"' + "e" * 32 + '"')
        )
        fid = next(self.fids)
        commit = upload_args(fid, key, write=NameWrite(bucket=BUCKET, condition=condition))
        try:
            written = self.index.commit_upload(commit)
        except PreconditionFailed:
            assert create_only and current is not None
            return
        except NoSuchObject:
            assert not create_only and current is None
            return
        assert (current is None) == create_only
        self.model.write(key, Version(self._version_id(written), fid))

    @rule(source=st.sampled_from(KEYS), onto=st.sampled_from(KEYS))
    def copy(self, source: str, onto: str) -> None:
        found = self.index.find(OWNER, source)
        current = self.model.current(source)
        assert (found is None) == (current is None)
        if found is None or current is None:
            return
        assert found.fid == current.fid
        declaration = self.index.declaration_of(found.fid)
        assert declaration is not None
        copy = ObjectRecord(
            fid=found.fid,
            owner=OWNER,
            name=onto,
            territory="home",
            size=10,
            content_type="text/plain",
            etag="e" * 32,
            data_shards=2,
            total_shards=4,
            stored=STORED,
            state=PENDING,
            created_at=2.0,
        )
        replaced = next(
            (v for v in self.model.keys.get(onto, []) if v.version_id == NULL_VERSION), None
        )
        written = self.index.add_name(copy, declaration, NameWrite(bucket=BUCKET))
        version = Version(self._version_id(written), found.fid)
        if version.version_id == NULL_VERSION and replaced is not None:
            # The same reference (key and file: a copy onto itself, or from another name
            # of the file) is still on chain.
            version.on_chain = replaced.fid == found.fid and replaced.on_chain
        self.model.write(onto, version)

    @rule(key=st.sampled_from(KEYS), retry=st.booleans())
    def complete_upload(self, key: str, retry: bool) -> None:
        if retry and self.completed:
            upload_id, name, answer = self.completed[-1]
            again = upload_args(next(self.fids), name, write=NameWrite(BUCKET, completes=upload_id))
            with pytest.raises(UploadCompleted) as done:
                self.index.commit_upload(again)
            assert done.value.result == {"etag": answer.etag, "version_id": answer.version_id}
            return
        upload_id = f"u{len(self.completed)}"
        self.index.create_upload(UploadRecord(upload_id, OWNER, key, "home", "x", {}, 1.0))
        fid = next(self.fids)
        written = self.index.commit_upload(
            upload_args(fid, key, write=NameWrite(BUCKET, completes=upload_id))
        )
        self.model.write(key, Version(self._version_id(written), fid))
        self.completed.append((upload_id, key, written))
        assert self.index.upload(upload_id) is not None  # kept for retries

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        outcome = self.index.delete_object(OWNER, key, BUCKET)
        versioning = self.model.versioning
        if not versioning:
            self.model.keys.pop(key, None)
            assert not outcome.marker
            return
        assert outcome.marker and outcome.version_id is not None
        self.model.write(key, Version(outcome.version_id, ""))

    @precondition(lambda self: any(self.model.keys.values()))
    @rule(data=st.data())
    def delete_version(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(k for k, v in self.model.keys.items() if v)))
        versions = self.model.keys[key]
        victim = data.draw(st.sampled_from(versions))
        outcome = self.index.delete_version(OWNER, key, victim.version_id)
        assert outcome is not None and outcome.marker == (victim.fid == "")
        versions.remove(victim)

    @rule(state=st.sampled_from([ENABLED, SUSPENDED]))
    def set_versioning(self, state: str) -> None:
        self.index.set_versioning(BUCKET, state)
        self.model.versioning = state

    @rule()
    def chain_catches_up(self) -> None:
        pending = self.index.outbox(DECLARE, PENDING, limit=10_000)
        self.index.set_entry_states([e.id for e in pending], DECLARED)
        for versions in self.model.keys.values():
            for version in versions:
                version.on_chain = True

    @rule()
    def delete_bucket(self) -> None:
        empty = not any(self.model.keys.values())
        assert self.index.delete_bucket(BUCKET, OWNER) == empty
        if empty:  # its uploads went with it, completed ones too
            self.index.create_bucket(BUCKET, OWNER, "home")
            self.model.versioning = ""
            self.completed.clear()

    @invariant()
    def versions_are_the_models(self) -> None:
        for key in KEYS:
            wanted = [(v.version_id, v.fid) for v in reversed(self.model.keys.get(key, []))]
            got = self.index.versions_by_name(OWNER, key, 100, inclusive=True, prefix=key)
            assert [(r.version_id, r.fid) for r in got if r.name == key] == wanted
            assert [r.latest for r in got if r.name == key] == [i == 0 for i in range(len(wanted))]
            current, found = self.model.current(key), self.index.find(OWNER, key)
            assert (found.fid if found else None) == (current.fid if current else None)

    @invariant()
    def every_version_has_its_file_and_declaration(self) -> None:
        named: set[str] = set()
        for key, versions in self.model.keys.items():
            for version in versions:
                if not version.fid:
                    continue
                named.add(version.fid)
                assert self.index.units(version.fid) and self.index.segments(version.fid)
                refs = {
                    (e.ref, e.fid)
                    for state in (PENDING, DECLARED)
                    for e in self.index.outbox(DECLARE, state, limit=10_000)
                    if e.declaration["key"] == e.ref
                }
                assert (reference_key(key, version.version_id), version.fid) in refs
        assert set(self.index.file_ids("", 10_000)) == named  # nothing lingers unnamed

    @invariant()
    def listings_show_exactly_the_model(self) -> None:
        objects = scan(current_objects(self.index, OWNER, "b/"), "b/", "", "", Cursor(), 1000)
        wanted = sorted((k for k in self.model.keys if self.model.current(k)), key=str.encode)
        assert [r.name for r in objects.entries] == wanted
        versions = scan(
            all_versions(self.index, OWNER, "b/"), "b/", "", "", Cursor(), 1000, versions=True
        )
        assert len(versions.entries) == sum(len(v) for v in self.model.keys.values())

    @invariant()
    def the_reservation_is_what_the_chain_lacks(self) -> None:
        unpaid = sum(
            STORED
            for versions in self.model.keys.values()
            for version in versions
            if version.fid and not version.on_chain
        )
        assert self.index.pending_bytes(OWNER, "home") == unpaid


IndexMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_the_index_keeps_old_or_new_never_neither = IndexMachine.TestCase


def test_a_copy_onto_itself_keeps_its_object(tmp_path: Path) -> None:
    """Issue 10 item 1 at the index: the name's only file survives a copy onto itself."""
    index = MetadataIndex(tmp_path / "index.db")
    index.create_bucket(BUCKET, OWNER, "home")
    first = index.commit_upload(upload_args("f1", "b/k", write=NameWrite(bucket=BUCKET)))
    declaration = index.declaration_of("f1")
    assert declaration is not None
    again = record("f1", "b/k")
    index.add_name(again, declaration, NameWrite(bucket=BUCKET))
    found = index.find(OWNER, "b/k")
    assert found is not None and found.fid == first.fid and index.units("f1")
    assert not index.delete_bucket(BUCKET, OWNER)
