"""What the metadata index holds, as the rest of the gateway sees it: records, the facts a
write must respect, and the index's refusals.

A *version* is one object a name has held: its version id (``null`` for the one written
without versioning), its stored file (none for a delete marker), metadata and tags. The
chain's reference key of a version is ``reference_key(name, version_id)``.
"""

import dataclasses
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.keywrap import WrappedKey

__all__ = [
    "ACTIVE",
    "DECLARE",
    "DECLARED",
    "DELETE",
    "ENABLED",
    "NULL_VERSION",
    "PENDING",
    "PLAIN_WRITE",
    "REFUSED",
    "SUSPENDED",
    "UNPAID",
    "UNVERSIONED",
    "BucketRecord",
    "DeleteOutcome",
    "FragmentPlacement",
    "IndexRefusal",
    "NameWrite",
    "NoSuchBucket",
    "NoSuchObject",
    "NoSuchUpload",
    "ObjectRecord",
    "OutboxEntry",
    "PackedFile",
    "PartRecord",
    "PreconditionFailed",
    "SegmentRecord",
    "UnitRecord",
    "UploadCommit",
    "UploadCompleted",
    "UploadRecord",
    "WriteCondition",
    "is_version_id",
    "new_upload_id",
    "new_version_id",
    "opaque_id",
    "prefix_end",
    "reference_key",
    "split_reference",
]

# Name (and declaration) states: pending (not yet on chain), declared (in a deal), active
# (the chain has it), unpaid (refused for quota: kept, readable, retried), refused (a
# permanent refusal). Outbox kinds: a declaration, or a deletion (state pending until the
# chain drops the reference, then the row goes).
PENDING, DECLARED, ACTIVE, UNPAID, REFUSED = "pending", "declared", "active", "unpaid", "refused"
DECLARE, DELETE = "declare", "delete"
# A bucket's versioning: never set, Enabled, or Suspended (S3's words).
UNVERSIONED, ENABLED, SUSPENDED = "", "Enabled", "Suspended"
NULL_VERSION = "null"
_VERSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")
# SECURITY: names never contain U+0000 (both APIs refuse it), so a version's reference
# key cannot be any name's.
_VERSION_SEPARATOR = "\x00"


def reference_key(name: str, version_id: str) -> str:
    """The chain's key of a version: the name itself for the null version."""
    return name if version_id == NULL_VERSION else f"{name}{_VERSION_SEPARATOR}{version_id}"


def member_id(pack_fid: str, slot: int) -> str:
    """The id a packed object answers to (docs/packing.md §5)."""
    digest = hashlib.sha256(
        b"deoss/pack-member\0" + bytes.fromhex(pack_fid) + slot.to_bytes(4, "big")
    )
    return digest.hexdigest()


def split_reference(key: str) -> tuple[str, str]:
    """(name, version id) of a chain reference key."""
    name, _, version_id = key.partition(_VERSION_SEPARATOR)
    return name, version_id or NULL_VERSION


def opaque_id(nbytes: int) -> str:
    """A random id of A-Za-z0-9_- that never starts with "-": command-line clients (the
    aws cli among them) would take such an id, given as an option's value, for an
    option."""
    while True:
        text = secrets.token_urlsafe(nbytes)
        if not text.startswith("-"):
            return text


def new_version_id() -> str:
    return opaque_id(24)  # 32 characters, as AWS's


def new_upload_id() -> str:
    return opaque_id(32)


def is_version_id(text: str) -> bool:
    return text == NULL_VERSION or _VERSION_ID.fullmatch(text) is not None


def prefix_end(prefix: str) -> str | None:
    """The least text above every text that starts with ``prefix`` (None: there is none).

    Code point order is UTF-8 byte order, SQLite's for TEXT, so ``prefix <= name <
    prefix_end(prefix)`` is exactly "starts with prefix", for every key: the last code
    point goes up by one (U+10FFFF, the last, is dropped and the one before goes up
    instead; the surrogates, which UTF-8 cannot hold, are stepped over)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last == 0x10FFFF:
            continue
        chars.append(chr(0xE000 if last == 0xD7FF else last + 1))
        return "".join(chars)
    return None


Record = TypeVar("Record", "UnitRecord", "SegmentRecord", "FragmentPlacement")


def from_row(cls: type[Record], row: Sequence[Any]) -> Record:
    """A record from a table row whose columns are the record's fields, in order."""
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**dict(zip(names, row, strict=True)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRecord:
    """A version of a name and the file it refers to, as the APIs see them. A delete
    marker has no file: ``fid`` is empty."""

    fid: str
    owner: str
    name: str
    territory: str
    size: int
    content_type: str
    etag: str
    data_shards: int
    total_shards: int
    stored: int
    state: str
    created_at: float
    meta: dict[str, Any] = field(default_factory=dict)  # user metadata, content headers
    version_id: str = NULL_VERSION
    latest: bool = True
    marker: bool = False
    seq: int = 0  # the order of a name's versions: a newer one has a higher seq
    # A packed object (docs/packing.md): its unit in the file (the pack), and the pack's
    # block size; None for a file of its own, at the network's block size.
    slot: int | None = None
    block_size: int | None = None
    member: str | None = None  # a packed object's member id, kept when it is repacked

    @property
    def ref(self) -> str:
        """The chain's key of this version."""
        return reference_key(self.name, self.version_id)

    @property
    def object_id(self) -> str:
        """What the APIs call the object's fid: its file's, or a packed object's member
        id (the pack's fid names no one object)."""
        if self.slot is None:
            return self.fid
        return self.member or member_id(self.fid, self.slot)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitRecord:
    fid: str
    unit_no: int
    unit_id: str
    algorithm: str
    plain_size: int
    cipher_size: int
    wrapped_key: WrappedKey
    first_segment: int
    segment_count: int
    cipher_offset: int | None = None  # a packed object's, in the pack's one segment

    @classmethod
    def packed(
        cls,
        *,
        fid: str,
        slot: int,
        unit_id: str,
        algorithm: str,
        plain_size: int,
        cipher_size: int,
        wrapped_key: WrappedKey,
        offset: int,
    ) -> "UnitRecord":
        """A packed object's unit: slot ``slot`` of the pack ``fid``, at ``offset``."""
        return cls(
            fid=fid,
            unit_no=slot,
            unit_id=unit_id,
            algorithm=algorithm,
            plain_size=plain_size,
            cipher_size=cipher_size,
            wrapped_key=wrapped_key,
            first_segment=0,
            segment_count=1,
            cipher_offset=offset,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRecord:
    fid: str
    seg_no: int
    segment_id: str
    stripe_count: int
    cipher_size: int
    fragment_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentPlacement:
    fid: str
    seg_no: int
    idx: int
    fragment_id: str
    miner: str
    size: int
    block_roots: bytes

    def block_root(self, block: int) -> bytes:
        return self.block_roots[block * 32 : (block + 1) * 32]


@dataclass(frozen=True, slots=True)
class BucketRecord:
    bucket: str
    owner: str
    territory: str
    created_at: float
    versioning: str = UNVERSIONED
    tags: list[list[str]] | None = None  # None: no tag set


@dataclass(frozen=True, slots=True)
class UploadRecord:
    upload_id: str
    owner: str
    name: str
    territory: str
    content_type: str
    meta: dict[str, Any]
    created_at: float
    completed: dict[str, Any] | None = None  # {"etag", "version_id"} once completed

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> "UploadRecord":
        upload_id, owner, name, territory, content_type, meta, created_at, completed = row
        return cls(
            upload_id,
            owner,
            name,
            territory,
            content_type,
            json.loads(meta),
            created_at,
            json.loads(completed) if completed else None,
        )


@dataclass(frozen=True, slots=True)
class PartRecord:
    upload_id: str
    part_no: int
    etag: str  # the part's MD5, hex
    size: int
    unit: dict[str, Any]  # objects.PlacedUnit.to_json()
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    kind: str
    owner: str
    name: str
    fid: str
    declaration: dict[str, Any]
    state: str
    attempts: int
    last_error: str | None
    version_id: str = NULL_VERSION
    replaces: str | None = None  # a declaration's: the file whose reference it replaces

    @property
    def ref(self) -> str:
        return reference_key(self.name, self.version_id)


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """What must hold of a name's current object when a write commits (RFC 9110 §13 as
    S3 applies it to writes): ``if_match`` is the If-Match header, ``if_none_match`` is
    ``If-None-Match: *``."""

    if_match: str | None = None
    if_none_match: bool = False


@dataclass(frozen=True, slots=True)
class NameWrite:
    """Where a new version goes and what must hold when it is written: ``bucket``, an S3
    bucket that must exist and be the writer's (its versioning decides the version id;
    without it, the bucket the name starts with, if the writer has one);
    ``completes``, the multipart upload this write completes."""

    bucket: str | None = None
    condition: WriteCondition = WriteCondition()
    completes: str | None = None


# A write with no bucket, condition or upload to complete: a native name's.
PLAIN_WRITE = NameWrite()


@dataclass(frozen=True, slots=True)
class UploadCommit:
    """A new file (its units, segments and fragment placements) and the version that
    names it, with the declaration that brings the chain to it."""

    record: ObjectRecord
    units: Sequence[UnitRecord]
    segments: Sequence[SegmentRecord]
    fragments: Sequence[FragmentPlacement]
    declaration: dict[str, Any]
    write: NameWrite = PLAIN_WRITE
    packed: "PackedFile | None" = None  # the record is a member of this pack


@dataclass(frozen=True, slots=True)
class PackedFile:
    """The file of a pack, as the index records it: its ciphertext, its stored bytes
    and its block size (its members' sizes are their own)."""

    cipher_size: int
    stored: int
    block_size: int


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What a delete did: the version it removed or the delete marker it wrote."""

    version_id: str | None  # None: nothing versioned was involved
    marker: bool  # the version removed, or the one written, is a delete marker
    fid: str | None = None  # the file of a removed version with data


class IndexRefusal(Exception):
    """A write the index refused because of what it holds; nothing was changed."""


class NoSuchBucket(IndexRefusal):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"no bucket {bucket!r}")
        self.bucket = bucket


class NoSuchObject(IndexRefusal):
    def __init__(self, name: str) -> None:
        super().__init__(f"no object {name!r}")
        self.name = name


class PreconditionFailed(IndexRefusal):
    def __init__(self, name: str, condition: str) -> None:
        super().__init__(f"{name!r}: {condition} does not hold")
        self.name = name
        self.condition = condition


class NoSuchUpload(IndexRefusal):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload {upload_id!r}")
        self.upload_id = upload_id


class UploadCompleted(IndexRefusal):
    """A completion of an upload that was already completed: ``result`` is what the first
    completion answered (``{"etag", "version_id"}``)."""

    def __init__(self, upload_id: str, result: dict[str, Any]) -> None:
        super().__init__(f"upload {upload_id!r} is complete")
        self.upload_id = upload_id
        self.result = result
