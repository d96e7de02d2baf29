"""The network as separate hosts (deploy/multihost): a chain host, n + 2 miner hosts and
a gateway host, each a network namespace with its own address on one bridge. Objects
uploaded through the gateway's address read back byte-identical while one miner host
has lost its link, and every namespace, link and process is gone afterwards."""

import asyncio
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from deploy.multihost import netns
from deploy.multihost.roles import Network, Role, prepare_user, running
from tests.e2e.gateway_network import GATEWAY_LOGS, PARAMS

pytestmark = pytest.mark.e2e

KIB = 1024
SIZES = (1, 1000, 64 * KIB + 7, 300 * KIB, 1024 * KIB)
BUCKET = "multihost"


def _s3(network: Network, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=network.s3_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def _fragments(miner: Role) -> int:
    store = miner.directory / "fragments"
    return sum(1 for path in store.rglob("*") if path.is_file()) if store.exists() else 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as answer:
            return int(answer.status) == 200
    except OSError:  # URLError and timeouts too
        return False


def _names() -> str:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return namespaces + links


def test_objects_read_back_while_a_miner_host_is_cut_off(tmp_path: Path) -> None:
    reason = netns.unsupported_reason()
    if reason is not None:
        pytest.skip(f"cannot make network namespaces here: {reason}")
    started = time.monotonic()
    GATEWAY_LOGS.append(tmp_path / "gateway.log")  # a 500 there fails the test (conftest)
    objects = {f"object-{size}": os.urandom(size) for size in SIZES}

    def say(line: str) -> None:  # shown when the test fails
        print(f"{time.monotonic() - started:5.1f} s  {line}")

    with running(tmp_path, params=PARAMS, declared_units=96, say=say) as network:
        tag, bridge = network.hosts.tag, network.hosts.bridge
        roles = [network.chain, *network.miners, network.gateway]
        # Each role listens on its own host's address, not on loopback.
        assert len({role.url.split("//")[1].split(":")[0] for role in roles}) == len(roles)
        assert not any("127.0.0.1" in role.url for role in roles)
        s3 = _s3(network, *asyncio.run(prepare_user(network)))
        say("the dev user has a territory and an S3 key")
        s3.create_bucket(Bucket=BUCKET)
        for key, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        # Cut the miner that holds the most fragments, so reads must do without it.
        victim = max(network.miners, key=_fragments)
        assert _fragments(victim) > 0
        network.hosts.cut(victim.name)
        say(f"uploaded {len(objects)} objects; cut {victim.name} ({_fragments(victim)} fragments)")
        assert not _answers(victim.url), f"{victim.name} still answers with its link down"
        for key, body in objects.items():
            read = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert read == body, f"{key}: {len(read)} bytes read back, {len(body)} written"
        ranged = s3.get_object(Bucket=BUCKET, Key="object-307200", Range="bytes=70000-139999")
        assert ranged["Body"].read() == objects["object-307200"][70000:140000]
        say("read everything back without it")
        network.hosts.restore(victim.name)
        deadline = time.monotonic() + 15
        while not _answers(victim.url):
            assert time.monotonic() < deadline, f"{victim.name} is unreachable after restore"
            time.sleep(0.2)
        assert victim.process.poll() is None  # a cut link is not a dead miner
    assert all(role.process.poll() is not None for role in roles)
    assert netns.leftovers(tag) == []
    assert tag not in _names() and bridge not in _names()
