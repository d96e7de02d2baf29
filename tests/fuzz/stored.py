"""What the grid stores, as sets a refused request must leave alone, read through the
services' own APIs (the gateway's index, access keys and resume sessions, each miner's
store). Only what requests change is taken: the states the background loops move
(pending, declared, active) and times are left out.
"""

import json
from collections.abc import Iterable

from gateway.native.context import NATIVE
from tests.fuzz.harness import State
from tests.grid import USER, Grid

__all__ = ["gateway_state", "miner_state"]

EVERYTHING = 10**6


def gateway_state(grid: Grid, resume_names: Iterable[str] = ()) -> State:
    """The dev user's versions, buckets, multipart uploads and parts, access keys and
    resume sessions (those of ``resume_names``, and how many are open), and every
    fragment on every miner."""
    index = grid.gateway.service.index
    owner = USER.address
    native = grid.gateway.native[NATIVE]
    uploads = index.uploads(owner, "", "", "", EVERYTHING)
    assert native.keys is not None
    sessions = [native.resume.session(owner, name) for name in resume_names]
    return {
        "versions": frozenset(
            (v.name, v.version_id, v.fid, v.etag, v.size, v.content_type, _text(v.meta), v.latest)
            for v in index.versions_by_name(owner, "", EVERYTHING)
        ),
        "buckets": frozenset(
            (b.bucket, b.territory, b.versioning, _text(b.tags)) for b in index.buckets(owner)
        ),
        "uploads": frozenset((u.upload_id, u.name, u.content_type, _text(u.meta)) for u in uploads),
        "parts": frozenset(
            (p.upload_id, p.part_no, p.etag, p.size)
            for u in uploads
            for p in index.parts(u.upload_id)
        ),
        "keys": frozenset((k.access_key, k.label, k.revoked) for k in native.keys.list(owner)),
        "resume": frozenset(
            [("open", native.resume.open_sessions())]
            + [(s.name, s.total, s.stored, s.fid) for s in sessions if s is not None]
        ),
        **miner_state(grid),
    }


def miner_state(grid: Grid) -> State:
    """Every fragment id the miners hold. Ids only, not which miner holds them: the
    gateway moves and copies fragments on its own (a miner that missed its deal time,
    a restoral order), and a copy has its original's id, its content's Merkle root."""
    return {"fragments": frozenset(f.id for miner in grid.miners for f in miner.store.fragments())}


def _text(value: object) -> str:
    return json.dumps(value, sort_keys=True)
