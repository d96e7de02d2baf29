"""The gateway's counters move as its work does, on the in-process grid (tests/grid.py):
an S3 PutObject and a failing GetObject, a lost fragment repaired, a corrupted one found
by a scrub, each read back from ``GET /metrics`` (docs/native-api.md §8)."""

import asyncio
import functools
import os
from collections.abc import AsyncIterator

import boto3
import pytest
import pytest_asyncio
from botocore.client import BaseClient, Config
from botocore.exceptions import ClientError

from chain_client.account import ChainAccount
from gateway.durability.repair import SEGMENT_HEALTH
from gateway.metrics import REQUIRED_METRICS
from tests.gateway.test_metrics import families, sample
from tests.grid import USER, Grid, open_grid
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("metricsgrid")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def s3(grid: Grid) -> BaseClient:
    access_key, secret = await grid.s3_keys()
    return boto3.client(
        "s3",
        endpoint_url=grid.s3_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


async def scrape(grid: Grid) -> str:
    response = await grid.native.get("/metrics")
    assert response.status == 200
    return str(await response.text())


async def stored(grid: Grid, s3: BaseClient, key: str) -> str:
    """An object put through S3, its deal complete on chain: its fid."""
    body = os.urandom(100 * 1024)  # one segment of the grid's: four fragments
    await asyncio.to_thread(functools.partial(s3.put_object, Bucket="metered", Key=key, Body=body))
    found = grid.gateway.service.index.find(USER.address, f"metered/{key}")
    assert found is not None
    await eventually(
        functools.partial(grid.chain.query, "file_bank.file", fid=found.fid),
        lambda file: file is not None and file["state"] == "active",
    )
    return found.fid


async def test_s3_requests_are_counted_by_operation_and_status(grid: Grid, s3: BaseClient) -> None:
    before = await scrape(grid)
    await asyncio.to_thread(functools.partial(s3.create_bucket, Bucket="metered"))
    await stored(grid, s3, "obj-first")
    with pytest.raises(ClientError):
        await asyncio.to_thread(
            functools.partial(s3.get_object, Bucket="metered", Key="obj-absent")
        )
    # Unsigned: refused before routing matters, counted under the operation asked for;
    # a sub-resource the router refuses is Unknown.
    assert (await grid.s3.put("/metered/obj-anonymous", data=b"x")).status == 403
    assert (await grid.s3.get("/metered?lifecycle")).status == 403
    text = await scrape(grid)

    def moved(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert moved("deoss_s3_requests_total", operation="CreateBucket", status="200") == 1
    assert moved("deoss_s3_requests_total", operation="PutObject", status="200") == 1
    assert moved("deoss_s3_requests_total", operation="GetObject", status="404") == 1
    assert moved("deoss_s3_requests_total", operation="GetObject", status="200") == 0
    assert moved("deoss_s3_requests_total", operation="PutObject", status="403") == 1
    assert moved("deoss_s3_requests_total", operation="Unknown", status="403") == 1
    assert moved("deoss_s3_request_seconds_count", operation="PutObject") == 2
    assert set(REQUIRED_METRICS) <= families(text)
    # Labels name operations and statuses only, never the bucket or the key.
    assert "metered" not in text and "obj-" not in text


async def test_a_lost_fragment_is_claimed_restored_and_counted(grid: Grid, s3: BaseClient) -> None:
    fid = await stored(grid, s3, "lost")
    before = await scrape(grid)
    fragment = (await grid.chain.query("file_bank.file", fid=fid))["segments"][0]["fragments"][1]
    holder = next(m for m in grid.miners if m.address == fragment["miner"])
    holder.store.fragment_path(fragment["id"]).unlink()
    await ChainAccount(grid.chain, USER).call(
        "audit.challenge_now", miner=holder.address, fid=fid, segment=0, index=1
    )
    # The miner fails its proof, the chain orders the fragment restored, repair moves it.
    await eventually(
        functools.partial(grid.chain.query, "file_bank.file", fid=fid),
        lambda file: file["segments"][0]["fragments"][1]["miner"] != holder.address,
        timeout=60,
    )
    text = await eventually(
        functools.partial(scrape, grid),
        lambda text: (
            sample(text, "deoss_repair_orders_completed_total")
            > sample(before, "deoss_repair_orders_completed_total")
        ),
    )
    for name in ("deoss_repair_orders_claimed_total", "deoss_repair_orders_completed_total"):
        assert sample(text, name) - sample(before, name) == 1, name
    rebuilt = sample(text, "deoss_repair_bytes_rebuilt_total")
    assert rebuilt - sample(before, "deoss_repair_bytes_rebuilt_total") == fragment["size"]
    assert sample(text, "deoss_repair_orders_failed_total") == 0
    # With the order done, the next pass finds no segment short of fragments.
    text = await eventually(
        functools.partial(scrape, grid),
        lambda text: all(sample(text, "deoss_segments", health=h) == 0 for h in SEGMENT_HEALTH),
    )
    assert all(f'deoss_segments{{health="{h}"}}' in text for h in SEGMENT_HEALTH)


async def test_a_scrub_counts_what_it_checked_and_the_corrupt_fragment(
    grid: Grid, s3: BaseClient
) -> None:
    fid = await stored(grid, s3, "corrupt")
    fragment = (await grid.chain.query("file_bank.file", fid=fid))["segments"][0]["fragments"][2]
    holder = next(m for m in grid.miners if m.address == fragment["miner"])
    path = holder.store.fragment_path(fragment["id"])
    content = bytearray(path.read_bytes())
    content[5] ^= 0xFF
    path.write_bytes(bytes(content))
    before = await scrape(grid)
    report = await grid.gateway.scrubber.scrub(1.0)  # the background scrubber's own
    assert (fid, 0, 2) in report.bad
    text = await scrape(grid)
    checked = sample(text, "deoss_scrub_fragments_checked_total")
    assert checked - sample(before, "deoss_scrub_fragments_checked_total") == report.checked
    bad = sample(text, "deoss_scrub_fragments_bad_total")
    assert bad - sample(before, "deoss_scrub_fragments_bad_total") == len(report.bad) >= 1
