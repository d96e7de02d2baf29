"""Audit: storage challenges, proof verification, rewards and penalties.

Every ``challenge_interval`` blocks the block's randomness picks ``challenge_miners``
positive miners with power and no open challenge. Each challenge samples up to
``challenge_fragments`` of the miner's active fragments with ``challenge_leaves`` 8 KiB
leaf indices each, and up to ``challenge_idle_samples`` idle units with one leaf each.
The miner answers with the leaves and their Merkle paths before ``deadline``; the chain
checks them against the fragment ids (Merkle roots) and the idle units' roots.

Outcomes: both proofs valid earns era points (the miner's power); a missed deadline
costs collateral by the penalty schedule (the n-th consecutive miss), and enough misses
force the miner out; an invalid service proof opens restoral orders for the fragments
it could not prove, and repeated failures cost collateral; an invalid idle proof drops
the failed idle units.
"""

import json
import sqlite3
from typing import Any

from pydantic import Field

from chain_client.idle_proofs import LeafOpening
from chain_client.merkle import leaf_hash, verify_path
from chain_client.modules import file_bank, oss, sminer
from chain_client.runtime import (
    CallContext,
    CallSpec,
    DispatchError,
    ModuleSpec,
    QueryContext,
    QuerySpec,
    ensure,
    one_row,
)
from chain_client.types import U32, U64, Address, Args, Hash32

__all__ = ["MODULE", "open_challenge"]

NAME = "audit"
OPEN, PASSED, FAILED, MISSED, NONE = "open", "passed", "failed", "missed", "none"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_challenges (
    id INTEGER PRIMARY KEY,
    miner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    power INTEGER NOT NULL,
    targeted INTEGER NOT NULL,
    service_items TEXT NOT NULL,
    idle_items TEXT NOT NULL,
    service_status TEXT NOT NULL,
    idle_status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_challenges_miner ON audit_challenges (miner, deadline);
CREATE INDEX IF NOT EXISTS audit_challenges_deadline ON audit_challenges (deadline);
CREATE TABLE IF NOT EXISTS audit_reports (
    challenge INTEGER PRIMARY KEY,
    reporter TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_era_points (miner TEXT PRIMARY KEY, points INTEGER NOT NULL)
    WITHOUT ROWID;
"""

_COLUMNS = (
    "id, miner, created_at, deadline, power, targeted, service_items, idle_items, "
    "service_status, idle_status"
)


def _leaf_count(size: int, leaf_size: int) -> int:
    return -(-size // leaf_size)


def _sample_service(ctx: CallContext, miner: str, rng_label: str) -> list[dict[str, Any]]:
    rng = ctx.rng(rng_label)
    count = file_bank.active_fragment_count(ctx.db, miner)
    offsets = sorted(rng.sample(range(count), min(count, ctx.params.challenge_fragments)))
    items = []
    for offset in offsets:
        fid, segment, index, fragment_id, size = file_bank.active_fragment_at(ctx.db, miner, offset)
        items.append(_service_item(ctx, rng_label, fid, segment, index, fragment_id, size))
    return items


def _service_item(
    ctx: CallContext,
    label: str,
    fid: str,
    segment: int,
    index: int,
    fragment_id: str,
    size: int,
    block: int | None = None,
) -> dict[str, Any]:
    """One fragment to prove: sampled leaves, or every leaf of one stripe block when a
    reader named the block it found bad (a sample would likely miss one bad leaf)."""
    leaves = _leaf_count(size, ctx.params.leaf_size)
    if block is not None:
        per_block = ctx.params.stripe_block_size // ctx.params.leaf_size
        first = min(block * per_block, leaves - 1)
        picked = list(range(first, min(first + per_block, leaves)))
    else:
        rng = ctx.rng(f"{label}/{fragment_id}")
        picked = sorted(rng.sample(range(leaves), min(leaves, ctx.params.challenge_leaves)))
    return {
        "fid": fid,
        "segment": segment,
        "index": index,
        "fragment_id": fragment_id,
        "size": size,
        "leaves": picked,
    }


def _sample_idle(ctx: CallContext, miner: str, rng_label: str) -> list[dict[str, Any]]:
    rng = ctx.rng(rng_label + "/idle")
    count = sminer.certified_unit_count(ctx.db, miner)
    offsets = sorted(rng.sample(range(count), min(count, ctx.params.challenge_idle_samples)))
    leaf_count = ctx.params.idle_unit_size // ctx.params.leaf_size
    items = []
    for offset in offsets:
        unit_index, root = sminer.certified_unit_at(ctx.db, miner, offset)
        items.append({"unit_index": unit_index, "root": root, "leaf": rng.randrange(leaf_count)})
    return items


def open_challenge(
    ctx: CallContext, miner: str, *, targeted: list[dict[str, Any]] | None = None
) -> int:
    """Opens a challenge now. ``targeted`` fragments (file bank rows) are challenged
    alone, with no idle part; otherwise both parts are sampled at random."""
    record = sminer.miner_row(ctx.db, miner)
    ensure(record is not None, NAME, "NotMiner", miner)
    assert record is not None
    (next_id,) = ctx.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM audit_challenges").fetchone()
    label = f"challenge/{next_id}"
    if targeted is None:
        service = _sample_service(ctx, miner, label)
        idle = _sample_idle(ctx, miner, label)
    else:
        service = [
            _service_item(
                ctx,
                label,
                f["fid"],
                f["segment"],
                f["idx"],
                f["fragment_id"],
                f["size"],
                f.get("block"),
            )
            for f in targeted
        ]
        idle = []
    deadline = ctx.height + ctx.params.challenge_deadline
    ctx.db.execute(
        f"INSERT INTO audit_challenges ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            next_id,
            miner,
            ctx.height,
            deadline,
            sminer.power(ctx.params, record["idle"], record["service"]),
            int(targeted is not None),
            json.dumps(service),
            json.dumps(idle),
            OPEN if service else NONE,
            OPEN if idle else NONE,
        ),
    )
    ctx.emit(
        NAME,
        "ChallengeStarted",
        id=next_id,
        miner=miner,
        deadline=deadline,
        service_items=len(service),
        idle_items=len(idle),
    )
    return int(next_id)


def _challenge(db: sqlite3.Connection, challenge_id: int) -> dict[str, Any]:
    cursor = db.execute(f"SELECT {_COLUMNS} FROM audit_challenges WHERE id = ?", (challenge_id,))
    challenge = one_row(cursor)
    if challenge is None:
        raise DispatchError(NAME, "NoSuchChallenge", str(challenge_id))
    challenge["service_items"] = json.loads(challenge["service_items"])
    challenge["idle_items"] = json.loads(challenge["idle_items"])
    challenge["targeted"] = bool(challenge["targeted"])
    return challenge


def _opening_valid(raw: object, root_hex: str, size: int, leaf_size: int, index: int) -> bool:
    try:
        opening = LeafOpening.from_json(raw)
    except (ValueError, TypeError):
        return False
    leaves = _leaf_count(size, leaf_size)
    expected = leaf_size if index < leaves - 1 else size - leaf_size * (leaves - 1)
    if opening.index != index or len(opening.leaf) != expected:
        return False
    return verify_path(
        leaf_hash(opening.leaf), index, leaves, opening.path, bytes.fromhex(root_hex)
    )


class ProofArgs(Args):
    challenge_id: U64
    proofs: list[list[dict[str, Any]]] = Field(max_length=1024)


def _open_part(
    ctx: CallContext, args: ProofArgs, part: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The challenge and its items of one part, once the answer may be taken at all."""
    challenge = _challenge(ctx.db, args.challenge_id)
    ensure(challenge["miner"] == ctx.caller, NAME, "NotChallenged", "not your challenge")
    ensure(
        challenge["deadline"] >= ctx.height,
        NAME,
        "TooLate",
        f"deadline was block {challenge['deadline']}",
    )
    status = challenge[f"{part}_status"]
    ensure(status == OPEN, NAME, "AlreadyAnswered", f"{part} proof is {status}")
    items: list[dict[str, Any]] = challenge[f"{part}_items"]
    ensure(
        len(args.proofs) == len(items),
        NAME,
        "BadProofShape",
        f"{len(items)} items challenged, {len(args.proofs)} answered",
    )
    return challenge, items


def submit_service_proof(ctx: CallContext, args: ProofArgs) -> None:
    """``proofs[i]`` holds the leaf openings for service item i, in the challenged order."""
    challenge, items = _open_part(ctx, args, "service")
    failed = []
    for item, openings in zip(items, args.proofs, strict=True):
        valid = len(openings) == len(item["leaves"]) and all(
            _opening_valid(raw, item["fragment_id"], item["size"], ctx.params.leaf_size, leaf)
            for raw, leaf in zip(openings, item["leaves"], strict=True)
        )
        if not valid:
            failed.append(item)
    _finish_service(ctx, challenge, failed)


def _finish_service(
    ctx: CallContext, challenge: dict[str, Any], failed: list[dict[str, Any]]
) -> None:
    miner = challenge["miner"]
    status = FAILED if failed else PASSED
    ctx.db.execute(
        "UPDATE audit_challenges SET service_status = ? WHERE id = ?", (status, challenge["id"])
    )
    ctx.emit(
        NAME,
        "ServiceProofVerified",
        id=challenge["id"],
        miner=miner,
        result=status,
        failed=[[f["fid"], f["segment"], f["index"]] for f in failed],
    )
    if failed:
        for item in failed:
            fragment = {
                "fid": item["fid"],
                "segment": item["segment"],
                "idx": item["index"],
                "miner": miner,
            }
            file_bank.open_restoral_order(ctx, fragment, "proof_failed")
        record = sminer.record_proof(ctx, miner, passed=False)
        schedule = ctx.params.penalties
        if record["failed_proofs"] >= schedule.failed_proof_threshold:
            _fine(ctx, record, schedule.failed_proof_percent, "service_proof_failed")
    else:
        sminer.record_proof(ctx, miner, passed=True)
        reporter = ctx.db.execute(
            "SELECT reporter FROM audit_reports WHERE challenge = ?", (challenge["id"],)
        ).fetchone()
        if reporter is not None:  # the miner held what the gateway said it lost
            oss.slash_bond(ctx, reporter[0], ctx.params.false_report_slash, "false_report")
    ctx.db.execute("DELETE FROM audit_reports WHERE challenge = ?", (challenge["id"],))
    _maybe_earn(ctx, challenge["id"])


def submit_idle_proof(ctx: CallContext, args: ProofArgs) -> None:
    """``proofs[i]`` holds one leaf opening for idle item i."""
    challenge, items = _open_part(ctx, args, "idle")
    unit = ctx.params.idle_unit_size
    failed = [
        item["unit_index"]
        for item, openings in zip(items, args.proofs, strict=True)
        if len(openings) != 1
        or not _opening_valid(openings[0], item["root"], unit, ctx.params.leaf_size, item["leaf"])
    ]
    status = FAILED if failed else PASSED
    ctx.db.execute(
        "UPDATE audit_challenges SET idle_status = ? WHERE id = ?", (status, challenge["id"])
    )
    ctx.emit(
        NAME,
        "IdleProofVerified",
        id=challenge["id"],
        miner=ctx.caller,
        result=status,
        failed_units=failed,
    )
    if failed:
        sminer.drop_idle_units(ctx, ctx.caller, failed, "idle_proof_failed")
        record = sminer.miner_row(ctx.db, ctx.caller)
        assert record is not None
        _fine(ctx, record, ctx.params.penalties.failed_idle_percent, "idle_proof_failed")
    _maybe_earn(ctx, challenge["id"])


def _maybe_earn(ctx: CallContext, challenge_id: int) -> None:
    challenge = _challenge(ctx.db, challenge_id)
    statuses = {challenge["service_status"], challenge["idle_status"]}
    if challenge["targeted"] or not statuses <= {PASSED, NONE} or statuses == {NONE}:
        return
    ctx.db.execute(
        "INSERT INTO audit_era_points (miner, points) VALUES (?, ?) "
        "ON CONFLICT(miner) DO UPDATE SET points = points + excluded.points",
        (challenge["miner"], challenge["power"]),
    )


def _fine(ctx: CallContext, record: dict[str, Any], percent: int, reason: str) -> None:
    if record["rewarded"] == 0:
        amount = ctx.params.penalties.never_rewarded_fine
    else:
        space = sminer.power(ctx.params, record["idle"], record["service"])
        amount = sminer.collateral_limit(ctx.params, space) * percent // 100
    if amount:
        sminer.punish(ctx, record["account"], amount, reason)


def _close_missed(ctx: CallContext) -> None:
    due = ctx.db.execute(
        "SELECT id FROM audit_challenges WHERE deadline < ? "
        "AND (service_status = ? OR idle_status = ?)",
        (ctx.height, OPEN, OPEN),
    ).fetchall()
    for (challenge_id,) in due:
        challenge = _challenge(ctx.db, challenge_id)
        miner = challenge["miner"]
        if challenge["service_status"] == OPEN:
            for item in challenge["service_items"]:
                fragment = {
                    "fid": item["fid"],
                    "segment": item["segment"],
                    "idx": item["index"],
                    "miner": miner,
                }
                if file_bank.holds(ctx.db, item["fid"], item["segment"], item["index"], miner):
                    file_bank.open_restoral_order(ctx, fragment, "proof_missed")
        ctx.db.execute(
            "UPDATE audit_challenges SET "
            "service_status = CASE service_status WHEN 'open' THEN 'missed' "
            "ELSE service_status END, "
            "idle_status = CASE idle_status WHEN 'open' THEN 'missed' ELSE idle_status END "
            "WHERE id = ?",
            (challenge_id,),
        )
        record = sminer.record_miss(ctx, miner)
        ctx.emit(NAME, "ChallengeMissed", id=challenge_id, miner=miner, missed=record["missed"])
        if record["state"] == "exited":
            continue
        schedule = ctx.params.penalties
        _fine(ctx, record, schedule.miss_fine_percent_for(record["missed"]), "proof_missed")
        if record["missed"] >= schedule.force_exit_misses:
            sminer.force_exit(ctx, miner, f"{record['missed']} consecutive missed proofs")


def _pick_miners(ctx: CallContext) -> None:
    challenged = {
        miner
        for (miner,) in ctx.db.execute(
            "SELECT DISTINCT miner FROM audit_challenges "
            "WHERE service_status = 'open' OR idle_status = 'open'"
        )
    }
    candidates = [
        account
        for account, idle, service in sminer.positive_miners(ctx.db)
        if account not in challenged and sminer.power(ctx.params, idle, service) > 0
    ]
    rng = ctx.rng("audit/pick")
    for miner in rng.sample(candidates, min(len(candidates), ctx.params.challenge_miners)):
        open_challenge(ctx, miner)


def _pay_era(ctx: CallContext) -> None:
    rows = ctx.db.execute("SELECT miner, points FROM audit_era_points ORDER BY miner").fetchall()
    total = sum(points for _, points in rows)
    ctx.db.execute("DELETE FROM audit_era_points")
    if total == 0:
        return
    for miner, points in rows:
        share = ctx.params.era_reward * points // total
        if share and sminer.miner_row(ctx.db, miner) is not None:
            sminer.reward(ctx, miner, share)
    ctx.emit(NAME, "EraRewarded", height=ctx.height, miners=len(rows), reward=ctx.params.era_reward)


def on_finalize(ctx: CallContext) -> None:
    _close_missed(ctx)
    if ctx.height % ctx.params.challenge_interval == 0:
        _pick_miners(ctx)
    if ctx.height % ctx.params.era_length == 0:
        _pay_era(ctx)


class ChallengeNowArgs(Args):
    miner: Address
    fid: Hash32 | None = None
    segment: U32 = 0
    index: U32 = 0


def challenge_now(ctx: CallContext, args: ChallengeNowArgs) -> None:
    """Dev only: challenge a miner (or one of its fragments) without waiting for the draw."""
    if args.fid is None:
        open_challenge(ctx, args.miner)
        return
    ensure(
        file_bank.holds(ctx.db, args.fid, args.segment, args.index, args.miner),
        NAME,
        "NoSuchFragment",
        f"{args.miner} holds no fragment {args.fid}/{args.segment}/{args.index}",
    )
    fragment = file_bank.fragment_row(ctx.db, args.fid, args.segment, args.index)
    open_challenge(ctx, args.miner, targeted=[fragment])


class ReportArgs(file_bank.FragmentArgs):
    reason: str = Field(max_length=200)
    block: U32 | None = None  # the stripe block that failed, when the reader knows it


def report_fragment(ctx: CallContext, args: ReportArgs) -> None:
    """A gateway read bad or no data: challenge that fragment's miner now."""
    # SECURITY: only the bonded gateway that declared the file reports on it, and a report
    # the miner disproves costs it false_report_slash: targeted challenges were free for
    # any key that registered (security review #4).
    ensure(oss.is_bonded(ctx.db, ctx.params, ctx.caller), NAME, "NotGateway", ctx.caller)
    fragment = file_bank.active_fragment(ctx.db, args.fid, args.segment, args.index)
    ensure(
        (file_bank.file_row(ctx.db, args.fid) or {}).get("declarer") == ctx.caller,
        NAME,
        "NotDeclarer",
        "only the gateway that declared the file reports its fragments",
    )
    challenge = open_challenge(ctx, fragment["miner"], targeted=[{**fragment, "block": args.block}])
    ctx.db.execute(
        "INSERT INTO audit_reports (challenge, reporter) VALUES (?, ?)", (challenge, ctx.caller)
    )
    ctx.emit(
        NAME,
        "FragmentReported",
        fid=args.fid,
        segment=args.segment,
        index=args.index,
        miner=fragment["miner"],
        reporter=ctx.caller,
        reason=args.reason,
        challenge=challenge,
    )


class ChallengesArgs(Args):
    miner: Address | None = None
    open_only: bool = True
    limit: U32 = 100


def query_challenges(ctx: QueryContext, args: ChallengesArgs) -> list[dict[str, Any]]:
    clauses, values = [], []
    if args.miner is not None:
        clauses.append("miner = ?")
        values.append(args.miner)
    if args.open_only:
        clauses.append("(service_status = 'open' OR idle_status = 'open')")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = ctx.db.execute(
        f"SELECT id FROM audit_challenges {where} ORDER BY id DESC LIMIT ?",
        (*values, min(args.limit, 1000)),
    ).fetchall()
    return [_challenge(ctx.db, challenge_id) for (challenge_id,) in rows]


class ChallengeArgs(Args):
    id: U64


def query_challenge(ctx: QueryContext, args: ChallengeArgs) -> dict[str, Any] | None:
    try:
        return _challenge(ctx.db, args.id)
    except DispatchError:
        return None


class PointsArgs(Args):
    pass


def query_era_points(ctx: QueryContext, args: PointsArgs) -> dict[str, int]:
    return dict(ctx.db.execute("SELECT miner, points FROM audit_era_points").fetchall())


MODULE = ModuleSpec(
    name=NAME,
    schema=SCHEMA,
    calls=(
        CallSpec("submit_service_proof", ProofArgs, submit_service_proof, weight=10),
        CallSpec("submit_idle_proof", ProofArgs, submit_idle_proof, weight=10),
        CallSpec("report_fragment", ReportArgs, report_fragment),
        CallSpec("challenge_now", ChallengeNowArgs, challenge_now, dev_only=True),
    ),
    queries=(
        QuerySpec("challenges", ChallengesArgs, query_challenges),
        QuerySpec("challenge", ChallengeArgs, query_challenge),
        QuerySpec("era_points", PointsArgs, query_era_points),
    ),
    on_finalize=on_finalize,
)
