"""What a gateway records on chain beside each reference, so that ``deoss recover`` can
name the version again after the gateway's disk is lost (docs/durability.md §5), and the
declaration that carries it.

``sealed_meta`` is base64 of::

    nonce (24 bytes) || XChaCha20-Poly1305(master key, AD "deoss/sealed-meta", JSON)

and the JSON is a ``SealedMeta``::

    {"v": 1, "name", "content_type", "etag", "size", "meta", "created",
     "units": [{"unit_id", "algorithm", "plain_size", "wrapped_key": {…}}]}

``v`` names the format. References sealed before it had a number hold the same fields
without ``v`` (and perhaps without ``created``): they read as version 1. Version 2 is a
packed object's (docs/packing.md §5): version 1 and ``"pack": {"slot", "offset",
"cipher_size", "block_size"}``, where its one unit sits in the pack. A ``v`` this code
does not know is ``UnknownSealedVersion``, never a guess.
"""

import base64
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from nacl import bindings
from nacl.exceptions import CryptoError

from gateway.keywrap import WrappedKey
from gateway.records import FragmentPlacement, ObjectRecord, SegmentRecord, UnitRecord

__all__ = ["SealedMeta", "SealedPack", "SealedUnit", "UnknownSealedVersion", "declaration"]

_AD = b"deoss/sealed-meta"
_NONCE_SIZE = 24


class UnknownSealedVersion(ValueError):
    def __init__(self, version: object) -> None:
        super().__init__(f"sealed_meta version {version!r} is not one this gateway reads")
        self.version = version


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedUnit:
    unit_id: str
    algorithm: str
    plain_size: int
    wrapped_key: WrappedKey


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedPack:
    slot: int
    offset: int
    cipher_size: int
    block_size: int


_PACK_KEYS = ("slot", "offset", "cipher_size", "block_size")


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedMeta:
    VERSION: ClassVar[int] = 1
    PACKED_VERSION: ClassVar[int] = 2

    name: str
    content_type: str
    etag: str
    size: int
    meta: dict[str, Any] = field(default_factory=dict)  # S3 headers, user metadata, tags
    # Orders a name's versions: the chain's clock counts whole seconds, so two versions
    # made in one would tie. None only in references sealed before it was recorded.
    created: float | None = None
    units: tuple[SealedUnit, ...] = ()
    pack: "SealedPack | None" = None

    @classmethod
    def of(cls, record: ObjectRecord, units: Sequence[UnitRecord]) -> Self:
        pack = None
        if record.slot is not None and units and units[0].cipher_offset is not None:
            pack = SealedPack(
                slot=record.slot,
                offset=units[0].cipher_offset,
                cipher_size=units[0].cipher_size,
                block_size=record.block_size or 0,
            )
        return cls(
            pack=pack,
            name=record.name,
            content_type=record.content_type,
            etag=record.etag,
            size=record.size,
            meta=record.meta,
            created=record.created_at,
            units=tuple(
                SealedUnit(
                    unit_id=u.unit_id,
                    algorithm=u.algorithm,
                    plain_size=u.plain_size,
                    wrapped_key=u.wrapped_key,
                )
                for u in units
            ),
        )

    def to_json(self) -> dict[str, Any]:
        packed = {} if self.pack is None else {"pack": dataclasses.asdict(self.pack)}
        return {
            **packed,
            "v": self.VERSION if self.pack is None else self.PACKED_VERSION,
            "name": self.name,
            "content_type": self.content_type,
            "etag": self.etag,
            "size": self.size,
            "meta": self.meta,
            "created": self.created,
            "units": [
                {
                    "unit_id": u.unit_id,
                    "algorithm": u.algorithm,
                    "plain_size": u.plain_size,
                    "wrapped_key": u.wrapped_key.to_json(),
                }
                for u in self.units
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        version = data.get("v", 1)
        if version not in (cls.VERSION, cls.PACKED_VERSION):
            raise UnknownSealedVersion(version)
        created = data.get("created")
        pack = data.get("pack") if version == cls.PACKED_VERSION else None
        return cls(
            pack=None if pack is None else SealedPack(**{k: int(pack[k]) for k in _PACK_KEYS}),
            name=data["name"],
            content_type=data["content_type"],
            etag=data["etag"],
            size=int(data["size"]),
            meta=data.get("meta") or {},
            created=None if created is None else float(created),
            units=tuple(
                SealedUnit(
                    unit_id=u["unit_id"],
                    algorithm=u["algorithm"],
                    plain_size=int(u["plain_size"]),
                    wrapped_key=WrappedKey.from_json(u["wrapped_key"]),
                )
                for u in data["units"]
            ),
        )

    def seal(self, master_key: bytes) -> str:
        """As only ``master_key`` opens it."""
        nonce = os.urandom(_NONCE_SIZE)
        plain = json.dumps(self.to_json(), separators=(",", ":")).encode()
        box: bytes = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plain, _AD, nonce, master_key
        )
        return base64.b64encode(nonce + box).decode()

    @classmethod
    def open(cls, master_key: bytes, sealed: str) -> Self | None:
        """The sealed meta, or None when ``master_key`` does not open it (another
        gateway's reference). A format this code does not read raises."""
        raw = base64.b64decode(sealed)
        nonce, box = raw[:_NONCE_SIZE], raw[_NONCE_SIZE:]
        try:
            plain: bytes = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                box, _AD, nonce, master_key
            )
        except CryptoError:
            return None
        return cls.from_json(json.loads(plain))


def declaration(
    *,
    owner: str,
    territory: str,
    key: str,
    fid: str,
    size: int,
    data_shards: int,
    total_shards: int,
    segments: Sequence[SegmentRecord],
    placements: Sequence[FragmentPlacement],
    sealed_meta: str,
    share: int | None = None,
    slot: int | None = None,
    replaces: str | None = None,
) -> dict[str, Any]:
    """A reference's ``file_bank.upload_declaration`` entry (docs/chain.md §5): what a
    fresh upload declares, and what recovery rebuilds from the chain's own record.
    ``placements`` come in fragment order within each segment. A packed object adds
    its ``share`` and ``slot``, a repacked one the pack it ``replaces`` (docs/packing.md
    §4)."""
    by_segment: dict[int, list[dict[str, Any]]] = {s.seg_no: [] for s in segments}
    for p in placements:
        by_segment[p.seg_no].append({"id": p.fragment_id, "miner": p.miner, "size": p.size})
    return {
        "owner": owner,
        "territory": territory,
        "key": key,
        "fid": fid,
        "size": size,
        "data_shards": data_shards,
        "total_shards": total_shards,
        "segments": [{"fragments": by_segment[s.seg_no]} for s in segments],
        "sealed_meta": sealed_meta,
        **({} if slot is None else {"share": share, "slot": slot}),
        **({} if replaces is None else {"replaces": replaces}),
    }
