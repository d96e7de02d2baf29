"""``deoss recover``: a gateway that lost its index rebuilds it from the chain and the
miners (docs/durability.md §5).

It needs the gateway's key file (its chain account) and master key. For every file the
account declared (``file_bank.files_declared_by``), each reference's ``sealed_meta``,
opened with the master key, gives the name, content type, metadata and the units' wrapped
data keys; the chain gives the layout, segment ids and fragment placements; the miners
give the fragments, from which the block roots reads verify against are re-derived (a
fragment a miner lost is rebuilt from k siblings first). A reference's key gives its
name and version id (``records.split_reference``); every name's newest version becomes
current. Buckets come back from the names ``<bucket>/<key>``, versioning Enabled where
they held versions. Access keys, unfinished uploads and delete markers do not: they were
never on chain.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chain_client.keys import load_signer
from chain_client.rpc_client import HttpChain
from gateway import codec
from gateway.app import load_master_key
from gateway.codec import Layout
from gateway.config import GatewayConfig
from gateway.durability.repair import FragmentMover
from gateway.errors import ObjectError
from gateway.index import MetadataIndex
from gateway.names import is_bucket_name
from gateway.pack import file_layout
from gateway.records import (
    ACTIVE,
    DECLARED,
    ENABLED,
    NULL_VERSION,
    UNVERSIONED,
    FragmentPlacement,
    ObjectRecord,
    PackedFile,
    SegmentRecord,
    UnitRecord,
    UploadCommit,
    split_reference,
)
from gateway.sealed_meta import SealedMeta, declaration
from gateway.transfer import MinerClient, MinerDirectory

__all__ = ["RecoverReport", "recover"]

log = logging.getLogger("deoss.recover")
PAGE = 100


@dataclass
class RecoverReport:
    files: int = 0
    names: int = 0
    buckets: int = 0
    unreadable: list[str] = field(default_factory=list)  # fids with no k fragments left
    foreign: int = 0  # references whose sealed_meta this master key does not open


async def recover(
    config: GatewayConfig, *, progress: Callable[[int], None] | None = None
) -> RecoverReport:
    """``progress(1)`` after each file the account declared (``deoss recover --progress``)."""
    keypair = load_signer(config.key_spec, dev=config.dev)
    master_key = load_master_key(config)
    chain = HttpChain(config.chain_rpc)
    index = MetadataIndex(config.data_dir / "index.db")
    client = MinerClient(keypair)
    _, genesis = await chain.genesis()
    mover = FragmentMover(
        params=genesis.params, index=index, directory=MinerDirectory(chain), client=client
    )
    report = RecoverReport()
    try:
        after = ""
        while files := await chain.query(
            "file_bank.files_declared_by", declarer=keypair.address, after=after, limit=PAGE
        ):
            for file in files:
                await _recover_file(file, genesis.params, index, mover, master_key, report)
                if progress is not None:
                    progress(1)
            after = files[-1]["fid"]
        index.settle_versions()  # every name's newest version, across files, is current
    finally:
        await client.close()
        await chain.close()
        index.close()
    return report


async def _recover_file(
    file: dict[str, Any],
    params: Any,
    index: MetadataIndex,
    mover: FragmentMover,
    master_key: bytes,
    report: RecoverReport,
) -> None:
    fid = file["fid"]
    refs = []
    for ref in file["refs"]:
        sealed = SealedMeta.open(master_key, ref["sealed_meta"])
        if sealed is None:
            report.foreign += 1
        else:
            refs.append((ref, sealed))
    if not refs or index.units(fid):
        return
    packed = [(ref, sealed) for ref, sealed in refs if sealed.pack is not None]
    if packed:
        await _recover_pack(file, packed, params, index, mover, report)
        return
    layout = Layout.from_params(params, total_shards=file["total_shards"])
    units: list[UnitRecord] = []
    segments: list[SegmentRecord] = []
    placements: list[FragmentPlacement] = []
    for unit_no, unit in enumerate(refs[0][1].units):
        first = len(segments)
        count = layout.segment_count(unit.plain_size)
        units.append(
            UnitRecord(
                fid=fid,
                unit_no=unit_no,
                unit_id=unit.unit_id,
                algorithm=unit.algorithm,
                plain_size=unit.plain_size,
                cipher_size=layout.cipher_size(unit.plain_size),
                wrapped_key=unit.wrapped_key,
                first_segment=first,
                segment_count=count,
            )
        )
        for local in range(count):
            chain_segment = file["segments"][first + local]
            stripes = layout.stripe_count(unit.plain_size, local)
            size = layout.fragment_size(unit.plain_size, local)
            segments.append(
                SegmentRecord(
                    fid=fid,
                    seg_no=first + local,
                    segment_id=chain_segment["id"],
                    stripe_count=stripes,
                    cipher_size=_segment_cipher(layout, unit.plain_size, local),
                    fragment_size=size,
                )
            )
            for fragment in chain_segment["fragments"]:
                placements.append(
                    FragmentPlacement(
                        fid=fid,
                        seg_no=first + local,
                        idx=fragment["index"],
                        fragment_id=fragment["id"],
                        miner=fragment["miner"],
                        size=fragment["size"],
                        block_roots=b"",  # filled below, from the fragment's bytes
                    )
                )
    state = ACTIVE if file["state"] == "active" else DECLARED
    versions = [
        (_version_record(file, ref, sealed, state), _declaration(file, ref, segments, placements))
        for ref, sealed in refs
    ]
    (record, declaration), *others = versions
    # The index first (placements without roots cannot serve reads yet), then the roots.
    index.restore_version(
        UploadCommit(record, units, segments, placements, declaration), extra=others
    )
    await _finish(file, [v for v, _ in versions], segments, layout, index, mover, report)


async def _recover_pack(
    file: dict[str, Any],
    refs: list[tuple[dict[str, Any], SealedMeta]],
    params: Any,
    index: MetadataIndex,
    mover: FragmentMover,
    report: RecoverReport,
) -> None:
    """A pack's file and its members, each from its reference's sealed pack record
    (docs/packing.md §5)."""
    fid = file["fid"]
    first = refs[0][1].pack
    assert first is not None
    layout = file_layout(params, total_shards=file["total_shards"], block_size=first.block_size)
    chain_segment = file["segments"][0]
    segment = SegmentRecord(
        fid=fid,
        seg_no=0,
        segment_id=chain_segment["id"],
        stripe_count=-(-file["size"] // layout.stripe_size),
        cipher_size=file["size"],
        fragment_size=chain_segment["fragments"][0]["size"],
    )
    placements = [
        FragmentPlacement(
            fid=fid,
            seg_no=0,
            idx=fragment["index"],
            fragment_id=fragment["id"],
            miner=fragment["miner"],
            size=fragment["size"],
            block_roots=b"",  # filled below, from the fragment's bytes
        )
        for fragment in chain_segment["fragments"]
    ]
    state = ACTIVE if file["state"] == "active" else DECLARED
    packed = PackedFile(
        cipher_size=file["size"], stored=file["stored"], block_size=layout.block_size
    )
    commits = []
    for ref, sealed in refs:
        pack = sealed.pack
        assert pack is not None
        (sealed_unit,) = sealed.units
        unit = UnitRecord.packed(
            fid=fid,
            slot=pack.slot,
            unit_id=sealed_unit.unit_id,
            algorithm=sealed_unit.algorithm,
            plain_size=sealed_unit.plain_size,
            cipher_size=pack.cipher_size,
            wrapped_key=sealed_unit.wrapped_key,
            offset=pack.offset,
        )
        record = dataclasses.replace(
            _version_record(file, ref, sealed, state),
            stored=ref["charged"],
            slot=pack.slot,
            block_size=layout.block_size,
        )
        declared = {
            **_declaration(file, ref, [segment], placements),
            "share": ref["charged"],
            "slot": pack.slot,
        }
        commits.append(UploadCommit(record, [unit], [segment], placements, declared, packed=packed))
    index.restore_pack(commits)
    await _finish(file, [c.record for c in commits], [segment], layout, index, mover, report)


async def _finish(
    file: dict[str, Any],
    versions: list[ObjectRecord],
    segments: list[SegmentRecord],
    layout: Layout,
    index: MetadataIndex,
    mover: FragmentMover,
    report: RecoverReport,
) -> None:
    """A restored file's block roots, state and buckets."""
    fid = file["fid"]
    await _fill_block_roots(fid, segments, layout, index, mover, report)
    if file["state"] == "active":
        index.files_active([fid])
    report.files += 1
    for version in versions:
        report.names += 1
        bucket, slash, _ = version.name.partition("/")
        if not slash:
            continue
        if not is_bucket_name(bucket):
            continue
        # A bucket that held versions had versioning on: it comes back Enabled.
        versioning = ENABLED if version.version_id != NULL_VERSION else UNVERSIONED
        if index.create_bucket(bucket, version.owner, version.territory, versioning):
            report.buckets += 1
        elif versioning == ENABLED:
            index.set_versioning(bucket, ENABLED)


def _version_record(
    file: dict[str, Any], ref: dict[str, Any], sealed: SealedMeta, state: str
) -> ObjectRecord:
    name, version_id = split_reference(ref["key"])
    return ObjectRecord(
        fid=file["fid"],
        owner=ref["owner"],
        name=name,
        territory=ref["territory"],
        size=sealed.size,
        content_type=sealed.content_type,
        etag=sealed.etag,
        data_shards=file["data_shards"],
        total_shards=file["total_shards"],
        stored=file["stored"],
        state=state,
        created_at=float(ref["created_at"] if sealed.created is None else sealed.created),
        meta=sealed.meta,
        version_id=version_id,
        latest=False,
    )


def _declaration(
    file: dict[str, Any],
    ref: dict[str, Any],
    segments: list[SegmentRecord],
    placements: list[FragmentPlacement],
) -> dict[str, Any]:
    """The declaration of a reference as the chain holds it (a copy's template, and what
    is declared again should the chain cancel the deal)."""
    return declaration(
        owner=ref["owner"],
        territory=ref["territory"],
        key=ref["key"],
        fid=file["fid"],
        size=file["size"],
        data_shards=file["data_shards"],
        total_shards=file["total_shards"],
        segments=segments,
        placements=placements,
        sealed_meta=ref["sealed_meta"],
    )


def _segment_cipher(layout: Layout, plain_size: int, segment: int) -> int:
    first = segment * layout.stripes_per_segment
    chunks = range(first, first + layout.stripe_count(plain_size, segment))
    return sum(layout.chunk_plain_len(plain_size, c) + codec.TAG_SIZE for c in chunks)


async def _fill_block_roots(
    fid: str,
    segments: list[SegmentRecord],
    layout: Layout,
    index: MetadataIndex,
    mover: FragmentMover,
    report: RecoverReport,
) -> None:
    for segment in segments:
        for placement in index.fragments(fid, segment.seg_no):
            data = await mover.whole_fragment(placement)
            if data is None:
                try:
                    data = await mover.rebuild(fid, segment.seg_no, placement.idx)
                except ObjectError:
                    report.unreadable.append(fid)
                    return
            roots = await asyncio.to_thread(codec.block_roots, data, segment.stripe_count, layout)
            index.set_block_roots(fid, segment.seg_no, placement.idx, b"".join(roots))
