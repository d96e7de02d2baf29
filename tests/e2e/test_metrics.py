"""A real gateway's metrics after real work: one S3 upload, one download and one repair
(a fragment deleted behind its miner's back, the miner challenged), then ``GET /metrics``
holds every family of ``REQUIRED_METRICS`` and the counters moved; the chain's and a
miner's ``/metrics`` answer too (docs/native-api.md §8).

The repair costs the challenged miner its standing, so the test runs on a small network
of its own (k = 2, n = 4 on 6 miners), as tests/e2e/faults does, not the session's."""

import asyncio
import functools
import json
import os
from collections.abc import Iterator

import aiohttp
import boto3
import pytest
from botocore.config import Config

from chain_client.account import ChainAccount
from chain_client.params import KIB, PenaltySchedule, dev_params
from chain_client.rpc_client import HttpChain
from gateway.metrics import REQUIRED_METRICS
from tests.e2e.gateway_network import (
    S3_TERRITORY,
    USER,
    Network,
    active,
    native_session,
    running_network,
    signed,
)
from tests.gateway.test_metrics import families, sample
from tests.polling import eventually

pytestmark = pytest.mark.e2e
PARAMS = dev_params(
    data_shards=2,
    total_shards=4,
    fragment_size=64 * KIB,
    segment_size=128 * KIB,
    stripe_block_size=16 * KIB,
    block_time=0.25,
    blocks_per_day=10_000,
    challenge_interval=10**6,  # only the challenge the test asks for
    challenge_deadline=20,
    offline_after=10**5,
    penalties=PenaltySchedule(force_exit_misses=50, failed_proof_threshold=1),
)
MINERS = PARAMS.total_shards + 2  # one frozen by its failed proof: n + 1 stay positive
TERRITORY_UNITS = 8


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("metrics"), PARAMS, MINERS, 32) as network:
        yield network


async def prepare(network: Network, chain: HttpChain) -> tuple[str, str]:
    """The dev user authorized the gateway and owns its territory: an S3 access key."""
    await eventually(
        functools.partial(chain.query, "sminer.miners", state="positive"),
        lambda miners: len(miners) == MINERS,
    )
    await eventually(
        functools.partial(chain.query, "sminer.totals"),
        lambda totals: totals["idle"] >= 2 * TERRITORY_UNITS * PARAMS.territory_unit,
    )
    user = ChainAccount(chain, USER)
    await user.call("oss.authorize", gateway=network.gateway_account)
    await user.call(
        "storage_handler.mint_territory", name=S3_TERRITORY, gib=TERRITORY_UNITS, days=5
    )
    async with (
        native_session(network) as session,
        session.post(f"{network.url}/keys", data=b"{}", headers=signed()) as response,
    ):
        data = (await response.json())["data"]
    return str(data["access_key"]), str(data["secret_key"])


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200, url
        return await response.text()


@pytest.mark.timeout(300)
async def test_a_gateway_exposes_every_metric_after_an_upload_a_download_and_a_repair(
    network: Network,
) -> None:
    chain = HttpChain(network.chain.url)
    try:
        access_key, secret = await prepare(network, chain)
        s3 = boto3.client(
            "s3",
            endpoint_url=network.s3_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        body = os.urandom(100 * KIB)
        await asyncio.to_thread(s3.create_bucket, Bucket="metrics")
        await asyncio.to_thread(
            functools.partial(s3.put_object, Bucket="metrics", Key="o", Body=body)
        )
        got = await asyncio.to_thread(
            lambda: bytes(s3.get_object(Bucket="metrics", Key="o")["Body"].read())
        )
        assert got == body
        async with (
            native_session(network) as session,
            session.get(f"{network.url}/file/list", headers=signed()) as listing,
        ):
            fid = {o["name"]: o["file"] for o in (await listing.json())["data"]}["metrics/o"]
        file = await active(chain, fid)
        fragment = file["segments"][0]["fragments"][1]
        directories = {
            json.loads((d / "key.json").read_text())["address"]: d for d, _, _ in network.miners
        }
        fragment_id = fragment["id"]
        path = directories[fragment["miner"]] / "fragments" / fragment_id[:2] / fragment_id[2:4]
        (path / fragment_id).unlink()
        await ChainAccount(chain, USER).call(
            "audit.challenge_now", miner=fragment["miner"], fid=fid, segment=0, index=1
        )
        # The miner fails its proof, the chain orders the fragment restored, the gateway
        # rebuilds it onto another miner and completes the order.
        text = await eventually(
            functools.partial(scrape, network.url),
            lambda text: sample(text, "deoss_repair_orders_completed_total") >= 1,
            timeout=120,
        )
    finally:
        await chain.close()
    assert [m for m in REQUIRED_METRICS if m not in families(text)] == []
    assert sample(text, "deoss_s3_requests_total", operation="PutObject", status="200") == 1
    assert sample(text, "deoss_s3_requests_total", operation="GetObject", status="200") == 1
    assert sample(text, "deoss_s3_request_seconds_count", operation="GetObject") == 1
    assert sample(text, "deoss_repair_orders_claimed_total") >= 1
    assert sample(text, "deoss_repair_bytes_rebuilt_total") >= fragment["size"]
    assert sample(text, "deoss_tracker_pending_declarations") == 0
    assert "deoss_chain_best_block" in await scrape(network.chain.url)
    assert "deoss_miner_" in await scrape(network.miners[0][2])
