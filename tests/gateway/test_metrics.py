"""The gateway's metrics without a network: every S3 handler has an operation name, the
segment health a repair pass takes from the open orders, a failed repair attempt, and
the outbox's gauges as a scrape reads them (docs/native-api.md §8). The grid's
``test_metrics_grid`` shows the counters move under real requests."""

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chain_client.account import ChainAccount
from chain_client.views import RestoralOrderView
from gateway.app import watch_loops
from gateway.durability.repair import SEGMENT_HEALTH, FragmentMover, RepairWorker, segment_health
from gateway.durability.scrub import Scrubber
from gateway.errors import FragmentsUnavailable
from gateway.index import MetadataIndex
from gateway.metrics import REQUIRED_METRICS, GatewayMetrics
from gateway.records import DECLARE, DECLARED, PENDING
from gateway.s3 import acl_api, api, buckets_api, listing, multipart_api, objects_api
from gateway.s3.operations import OPERATIONS, UNKNOWN, operation
from gateway.tracker import DealTracker, Relocator
from tests.gateway.test_index import upload

__all__ = ["families", "sample"]


def families(text: str) -> set[str]:
    """The family names a scrape's ``# TYPE`` lines declare (a counter's with _total)."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape; 0 when it is not there (a label set unused)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_every_metric_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "native-api.md").read_text()
    assert [m for m in REQUIRED_METRICS if f"| `{m}` |" not in docs] == []


def test_every_handler_the_router_has_an_operation_name() -> None:
    tables = [api.BUCKET, api.OBJECT, *api.BUCKET_SUBRESOURCES.values()]
    tables += api.OBJECT_SUBRESOURCES.values()
    handlers = {h for table in tables for h in table.values()}
    handlers |= {listing.list_v2, buckets_api.list_buckets}
    assert handlers == set(OPERATIONS)
    assert UNKNOWN not in OPERATIONS.values()


def test_one_handler_serving_two_operations_is_named_by_its_request() -> None:
    def request(key: str, headers: dict[str, str]) -> Any:
        return SimpleNamespace(key=key, web=SimpleNamespace(headers=headers))

    copy = {"x-amz-copy-source": "/b/k"}
    put, part = objects_api.put_object, multipart_api.upload_part
    assert operation(put, request("k", {})) == "PutObject"
    assert operation(put, request("k", copy)) == "CopyObject"
    assert operation(part, request("k", copy)) == "UploadPartCopy"
    assert operation(acl_api.get_acl, request("", {})) == "GetBucketAcl"
    assert operation(acl_api.put_acl, request("k", {})) == "PutObjectAcl"


def order(fid: str, segment: int, idx: int) -> RestoralOrderView:
    return RestoralOrderView(
        fid=fid,
        segment=segment,
        idx=idx,
        origin="cXminer",
        reason="proof_failed",
        created_at=1,
        claimer=None,
        deadline=None,
    )


def test_segment_health_counts_what_the_open_orders_leave() -> None:
    orders = [
        order("f1", 0, 0),  # 3 of 4 left: degraded
        *(order("f1", 1, i) for i in (0, 1)),  # 2 left, k = 2: at risk
        *(order("f2", 0, i) for i in (0, 1, 2)),  # 1 left: lost
        order("theirs", 0, 0),  # not this gateway's file: not counted
    ]
    shards = {"f1": (2, 4), "f2": (2, 4)}
    assert segment_health(orders, shards.get) == {"degraded": 1, "at_risk": 1, "lost": 1}
    assert segment_health([], shards.get) == dict.fromkeys(SEGMENT_HEALTH, 0)


class Chain:
    async def query(self, name: str, **args: Any) -> Any:
        return {"bonded": True}


class Account:
    chain = Chain()
    address = "cXgateway"

    async def call(self, call: str, **args: Any) -> SimpleNamespace:
        return SimpleNamespace(height=1, events=[])


class NoSiblings:
    async def rebuild(self, fid: str, seg_no: int, idx: int) -> bytes:
        raise FragmentsUnavailable(fid, seg_no, 1, 2)


async def test_a_repair_that_cannot_rebuild_is_a_failure_and_claims_nothing(
    tmp_path: Path,
) -> None:
    index = MetadataIndex(tmp_path / "index.db")
    worker = RepairWorker(
        index=index, mover=cast(FragmentMover, NoSiblings()), account=cast(ChainAccount, Account())
    )
    assert not await worker.repair(order("f1", 0, 1))
    assert (worker.stats.claimed, worker.stats.failed, worker.stats.repaired) == (0, 1, 0)
    index.close()


def scrape(metrics: GatewayMetrics) -> str:
    return bytes(generate_latest(metrics.registry)).decode()


async def test_the_outbox_gauges_follow_a_pending_declaration(tmp_path: Path) -> None:
    index = MetadataIndex(tmp_path / "index.db")
    account = cast(ChainAccount, Account())
    tracker = DealTracker(index, account, cast(Relocator, None))
    mover = cast(FragmentMover, None)
    metrics = GatewayMetrics()
    watch_loops(
        metrics,
        tracker,
        RepairWorker(index=index, mover=mover, account=account),
        Scrubber(index=index, mover=mover, account=account),
    )
    text = scrape(metrics)
    assert sample(text, "deoss_tracker_pending_declarations") == 0
    assert sample(text, "deoss_tracker_oldest_pending_seconds") == 0
    upload(index, "f1", "a")  # created at 1.0: waiting since the epoch's first second
    text = scrape(metrics)
    assert sample(text, "deoss_tracker_pending_declarations") == 1
    assert sample(text, "deoss_tracker_unpaid_objects") == 0
    assert abs(sample(text, "deoss_tracker_oldest_pending_seconds") - (time.time() - 1)) < 60
    for health in SEGMENT_HEALTH:
        assert f'deoss_segments{{health="{health}"}} 0.0' in text
    (entry,) = [e.id for e in index.outbox(DECLARE, PENDING)]
    index.set_entry_states([entry], DECLARED)
    text = scrape(metrics)
    assert sample(text, "deoss_tracker_pending_declarations") == 0
    assert sample(text, "deoss_tracker_oldest_pending_seconds") == 0
    # All but the three the native context adds (the grid checks a whole gateway).
    native = {
        "deoss_replay_cache_entries",
        "deoss_resume_sessions",
        "deoss_fragments_reported_total",
    }
    assert set(REQUIRED_METRICS) - native <= families(text)
    index.close()
