"""Fault injection on a small network of real processes: k = 2, n = 4 on 7 miners, so
repair always has somewhere to go until miners run out. After every fault, every object
is byte-identical, the chain's space accounting adds up, and redundancy comes back: to n
distinct miners while n healthy miners remain, else to as many as remain (reduced
independence)."""

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import xxhash
from botocore.config import Config

from chain_client.account import ChainAccount
from chain_client.params import KIB, PenaltySchedule, dev_params
from chain_client.rpc_client import HttpChain
from gateway.devnet import stop_process
from gateway.records import member_id, reference_key
from tests.conftest import start_chain
from tests.e2e.gateway_network import (
    S3_TERRITORY,
    USER,
    Network,
    active,
    native_session,
    running_network,
    signed,
    start_gateway,
)
from tests.e2e.processes import start_miner, wait_for_url
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
    challenge_interval=10**6,  # only the challenges the tests ask for
    challenge_deadline=20,
    heartbeat_interval=4,
    offline_after=12,  # a killed miner is offline after 3 s ...
    offline_restoral_delay=8,  # ... and its fragments are ordered restored 2 s later
    penalties=PenaltySchedule(force_exit_misses=50, failed_proof_threshold=1),
)
MINERS = 8  # up to 3 are frozen by the proofs the tests fail: n + 1 stay positive
REPAIR_TIMEOUT = 120


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("faults"), PARAMS, MINERS, 64) as network:
        yield network


@pytest.fixture
async def chain(network: Network) -> AsyncIterator[HttpChain]:
    client = HttpChain(network.chain.url)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def stored() -> dict[str, bytes]:
    """fid (as the native API names the object) -> the bytes stored under it."""
    return {}


# A packed S3 object's fid is its member id; the chain knows its pack (docs/packing.md §5).
CHAIN_FILE: dict[str, str] = {}


def file_of(fid: str) -> str:
    """The chain's file of the object the native API calls ``fid``."""
    return CHAIN_FILE.get(fid, fid)


def object_id_of(ref: dict[str, Any]) -> str:
    """The native API's fid of a chain reference, noted with its chain file."""
    if ref["slot"] is None:
        return str(ref["fid"])
    fid = member_id(ref["fid"], ref["slot"])
    CHAIN_FILE[fid] = ref["fid"]
    return fid


def accounts(network: Network) -> dict[str, tuple[Path, Any]]:
    return {
        json.loads((d / "key.json").read_text())["address"]: (d, p) for d, p, _ in network.miners
    }


def alive(network: Network) -> set[str]:
    return {a for a, (_, p) in accounts(network).items() if p.poll() is None}


async def check_everything(
    network: Network, chain: HttpChain, stored: dict[str, bytes], *, distinct: bool
) -> None:
    """Every object identical; every fragment available on a live miner, apart from its
    segment's others when ``distinct``; miners' service space equals the fragments."""
    live = alive(network)

    async def healed() -> bool:
        for fid in stored:
            file = await chain.query("file_bank.file", fid=file_of(fid))
            for segment in file["segments"]:
                holders = [f["miner"] for f in segment["fragments"]]
                if not all(f["avail"] and f["miner"] in live for f in segment["fragments"]):
                    return False
                if distinct and len(set(holders)) != len(holders):
                    return False
        files = {file_of(fid) for fid in stored}
        return not [o for o in await chain.query("file_bank.restoral_orders") if o["fid"] in files]

    try:
        await eventually(healed, bool, timeout=REPAIR_TIMEOUT)
    except AssertionError:
        state = {
            "orders": await chain.query("file_bank.restoral_orders"),
            "miners": {
                m["account"][:8]: (m["state"], m["idle"])
                for m in await chain.query("sminer.miners")
            },
            "live": sorted(a[:8] for a in live),
            "files": {
                fid[:8]: [
                    [(f["miner"][:8], f["avail"]) for f in s["fragments"]]
                    for s in (await chain.query("file_bank.file", fid=file_of(fid)))["segments"]
                ]
                for fid in stored
            },
        }
        raise AssertionError(f"not healed: {state}") from None
    async with native_session(network) as session:
        for fid, data in stored.items():
            async with session.get(
                f"{network.url}/file/download/{fid}", headers=signed()
            ) as response:
                assert response.status == 200 and await response.read() == data, fid
    # Space accounting: what the chain says miners serve is exactly the fragments they hold.
    served: dict[str, int] = {}
    for fid in stored:
        for segment in (await chain.query("file_bank.file", fid=file_of(fid)))["segments"]:
            for fragment in segment["fragments"]:
                served[fragment["miner"]] = served.get(fragment["miner"], 0) + fragment["size"]
    for miner in await chain.query("sminer.miners"):
        assert miner["service"] == served.get(miner["account"], 0), miner["account"]


async def test_objects_are_stored(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    gateway = json.loads((network.gateway_dir / "key.json").read_text())["address"]
    user = ChainAccount(chain, USER)
    await eventually(
        functools.partial(chain.query, "sminer.miners", state="positive"),
        lambda m: len(m) == MINERS and all(x["idle"] >= 8 * PARAMS.idle_unit_size for x in m),
    )
    await user.call("oss.authorize", gateway=gateway)
    await eventually(
        functools.partial(chain.query, "sminer.totals"),
        lambda totals: totals["idle"] >= 30 * PARAMS.territory_unit,
    )
    await user.call("storage_handler.mint_territory", name=S3_TERRITORY, gib=24, days=5)
    async with native_session(network) as session:
        for number, size in enumerate((1, 5 * KIB, 100 * KIB, 300 * KIB)):
            data = os.urandom(size)
            async with session.put(
                f"{network.url}/object/obj{number}",
                data=data,
                headers=signed({"Territory": S3_TERRITORY}),
            ) as response:
                answer = await response.json()
                assert response.status == 200, answer
            stored[answer["data"]["fid"]] = data
    for fid in stored:
        await active(chain, file_of(fid), 60)
    await check_everything(network, chain, stored, distinct=True)


async def test_a_slow_miner_does_not_stall_reads(
    network: Network, stored: dict[str, bytes]
) -> None:
    """SIGSTOP: the miner is there but silent. Reads hedge to other fragments."""
    _, process = next(iter(accounts(network).values()))
    process.send_signal(signal.SIGSTOP)
    try:
        async with native_session(network) as session:
            for fid, data in stored.items():
                started = time.monotonic()
                async with session.get(
                    f"{network.url}/file/download/{fid}", headers=signed()
                ) as response:
                    assert await response.read() == data
                assert time.monotonic() - started < 10, "a stopped miner stalled a read"
    finally:
        process.send_signal(signal.SIGCONT)


async def test_a_corrupt_and_a_deleted_fragment_are_restored(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    fid = file_of(max(stored, key=lambda f: len(stored[f])))
    file = await chain.query("file_bank.file", fid=fid)
    by_account = accounts(network)
    alice = ChainAccount(chain, USER)
    for index, damage in ((0, "corrupt"), (1, "delete")):
        fragment = file["segments"][0]["fragments"][index]
        directory, _ = by_account[fragment["miner"]]
        path = directory / "fragments" / fragment["id"][:2] / fragment["id"][2:4] / fragment["id"]
        if damage == "delete":
            path.unlink()
        else:
            content = bytearray(path.read_bytes())
            content[7] ^= 0xFF
            path.write_bytes(bytes(content))
        await alice.call(
            "audit.challenge_now", miner=fragment["miner"], fid=fid, segment=0, index=index
        )
    # The challenged miners fail their proofs, restoral orders open, repair moves both.
    await eventually(
        functools.partial(chain.query, "file_bank.file", fid=fid),
        lambda moved: all(
            moved["segments"][0]["fragments"][i]["miner"]
            != file["segments"][0]["fragments"][i]["miner"]
            for i in (0, 1)
        ),
        timeout=REPAIR_TIMEOUT,
    )
    await check_everything(network, chain, stored, distinct=True)


async def test_a_lost_gateway_index_is_recovered(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    """The gateway's data directory is wiped but for its key and master key: ``deoss
    recover`` rebuilds the index from the chain and the miners; every object reads back
    under its fid and name, and an S3 object under its bucket and key."""
    keys = await prepare_s3_key(network)
    s3 = boto3.client(
        "s3",
        endpoint_url=network.s3_url,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket="kept")
    s3_data = os.urandom(30 * KIB)
    s3.put_object(Bucket="kept", Key="dir/object.bin", Body=s3_data, Metadata={"a": "b"})
    async with (
        native_session(network) as session,
        session.get(f"{network.url}/file/list", headers=signed()) as response,
    ):
        listed = (await response.json())["data"]
    names = {o["name"]: o["fid"] for o in listed}
    CHAIN_FILE.update({o["fid"]: o["file"] for o in listed})
    s3_fid = names["kept/dir/object.bin"]
    stored[s3_fid] = s3_data  # one more object every later check covers
    await active(chain, file_of(s3_fid), 60)
    # Versions, each its own reference on chain; a copy onto itself, whose new metadata
    # the chain's sealed copy follows.
    owner = USER.address
    sealed_before = (await chain.query("file_bank.object", owner=owner, key="kept/dir/object.bin"))[
        "sealed_meta"
    ]
    s3.copy_object(
        Bucket="kept",
        Key="dir/object.bin",
        CopySource={"Bucket": "kept", "Key": "dir/object.bin"},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
        Metadata={"a": "c"},
    )
    s3.create_bucket(Bucket="history")
    s3.put_bucket_versioning(Bucket="history", VersioningConfiguration={"Status": "Enabled"})
    versions = [
        s3.put_object(Bucket="history", Key="v", Body=body, Tagging=f"n={n}")["VersionId"]
        for n, body in enumerate((b"one", b"two"))
    ]
    await eventually(
        functools.partial(chain.query, "file_bank.object", owner=owner, key="kept/dir/object.bin"),
        lambda ref: ref is not None and ref["sealed_meta"] != sealed_before,
    )
    for version_id, body in zip(versions, (b"one", b"two"), strict=True):
        ref = await eventually(
            functools.partial(
                chain.query,
                "file_bank.object",
                owner=owner,
                key=reference_key("history/v", version_id),
            ),
            lambda ref: ref is not None,
        )
        stored[object_id_of(ref)] = body
        await active(chain, ref["fid"], 60)
    async with (
        native_session(network) as session,
        session.get(f"{network.url}/file/list", headers=signed()) as response,
    ):
        names = {o["name"]: o["fid"] for o in (await response.json())["data"]}
    assert "history/v" in names and names["kept/dir/object.bin"] == s3_fid
    stop_process(network.gateway)
    keep = {"key.json", "master.key", "gateway.toml"}
    for path in network.gateway_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name not in keep:
            path.unlink()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "recover",
            "--config",
            str(network.gateway_dir / "gateway.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 unreadable" in result.stdout, result.stdout
    network.gateway, network.url, network.s3_url = start_gateway(network.gateway_dir)
    async with native_session(network) as session:
        async with session.get(f"{network.url}/file/list", headers=signed()) as response:
            assert {o["name"]: o["fid"] for o in (await response.json())["data"]} == names
        for fid, data in stored.items():
            async with session.get(
                f"{network.url}/file/download/{fid}", headers=signed({"Range": "bytes=0-"})
            ) as response:
                assert await response.read() == data, fid
    fresh = await prepare_s3_key(network)  # access keys were never on chain: made anew
    s3 = boto3.client(
        "s3",
        endpoint_url=network.s3_url,
        aws_access_key_id=fresh[0],
        aws_secret_access_key=fresh[1],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    got = s3.get_object(Bucket="kept", Key="dir/object.bin")
    assert got["Body"].read() == s3_data and got["Metadata"] == {"a": "c"}
    assert got["ContentType"] == "text/plain"
    assert s3.get_bucket_versioning(Bucket="history")["Status"] == "Enabled"
    listed = s3.list_object_versions(Bucket="history")["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed] == [
        (versions[1], True),
        (versions[0], False),
    ]
    for n, (version_id, body) in enumerate(zip(versions, (b"one", b"two"), strict=True)):
        assert s3.get_object(Bucket="history", Key="v", VersionId=version_id)["Body"].read() == body
        tags = s3.get_object_tagging(Bucket="history", Key="v", VersionId=version_id)["TagSet"]
        assert tags == [{"Key": "n", "Value": str(n)}]


async def prepare_s3_key(network: Network) -> tuple[str, str]:
    async with (
        native_session(network) as session,
        session.post(f"{network.url}/keys", data=b"{}", headers=signed()) as response,
    ):
        data = (await response.json())["data"]
    return data["access_key"], data["secret_key"]


async def test_a_lying_miner_is_caught_by_scrub_and_repaired(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    """A miner serves a flipped byte as good (its own per-leaf check fixed to match): the
    scrub catches it, the chain's challenge fails it, repair moves the fragment."""
    fid = file_of(max(stored, key=lambda f: len(stored[f])))
    fragment = (await chain.query("file_bank.file", fid=fid))["segments"][0]["fragments"][2]
    directory, _ = accounts(network)[fragment["miner"]]
    path = directory / "fragments" / fragment["id"][:2] / fragment["id"][2:4] / fragment["id"]
    content = bytearray(path.read_bytes())
    content[3] ^= 0x01
    path.write_bytes(bytes(content))
    leaves = [
        bytes(content[i : i + PARAMS.leaf_size]) for i in range(0, len(content), PARAMS.leaf_size)
    ]
    with contextlib.closing(sqlite3.connect(directory / "miner.db")) as db:
        db.execute(
            "UPDATE fragments SET leaf_checks = ? WHERE id = ?",
            (b"".join(xxhash.xxh3_64_digest(leaf) for leaf in leaves), fragment["id"]),
        )
        db.commit()
    scrub = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "scrub",
            "--config",
            str(network.gateway_dir / "gateway.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scrub.returncode == 1, scrub.stdout + scrub.stderr
    assert f"bad {fid} segment 0 fragment 2" in scrub.stdout
    await eventually(
        functools.partial(chain.query, "file_bank.file", fid=fid),
        lambda f: f["segments"][0]["fragments"][2]["miner"] != fragment["miner"],
        timeout=REPAIR_TIMEOUT,
    )
    await check_everything(network, chain, stored, distinct=True)


async def test_chain_and_gateway_restarts_mid_upload(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    """The chain node restarts while an upload streams: the upload completes and the deal
    goes through once the node is back. The gateway restarts while another streams: that
    upload fails, leaves nothing visible, and succeeds when retried."""
    data = os.urandom(400 * KIB)

    async def body(on_half: Any) -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 64 * KIB):
            if offset == 192 * KIB:
                await on_half()
            yield data[offset : offset + 64 * KIB]
            await asyncio.sleep(0.02)

    async def restart_chain() -> None:
        port = network.chain.url.rsplit(":", 1)[1]
        network.chain.stop()
        await asyncio.sleep(1.0)
        network.chain = await asyncio.to_thread(
            start_chain, network.chain.directory, "--dev", "--listen", f"127.0.0.1:{port}"
        )

    headers = signed({"Territory": S3_TERRITORY, "Content-Length": str(len(data))})
    async with (
        native_session(network) as session,
        session.put(
            f"{network.url}/object/through-a-chain-restart",
            data=body(restart_chain),
            headers=headers,
        ) as response,
    ):
        answer = await response.json()
        assert response.status == 200, answer
    fid = answer["data"]["fid"]
    stored[fid] = data
    fresh = HttpChain(network.chain.url)
    try:
        await active(fresh, fid, REPAIR_TIMEOUT)
    finally:
        await fresh.close()

    async def stop_gateway() -> None:
        await asyncio.to_thread(stop_process, network.gateway)

    headers = signed({"Territory": S3_TERRITORY, "Content-Length": str(len(data))})
    with contextlib.suppress(aiohttp.ClientError):
        async with (
            native_session(network) as session,
            session.put(
                f"{network.url}/object/through-a-gateway-restart",
                data=body(stop_gateway),
                headers=headers,
            ) as response,
        ):
            assert response.status != 200, "the gateway answered after it stopped?"
    network.gateway, network.url, network.s3_url = start_gateway(network.gateway_dir)
    async with native_session(network) as session:
        async with session.get(f"{network.url}/file/list", headers=signed()) as listing:
            names = {o["name"] for o in (await listing.json())["data"]}
        assert "through-a-gateway-restart" not in names
        async with session.put(
            f"{network.url}/object/through-a-gateway-restart",
            data=data,
            headers=signed({"Territory": S3_TERRITORY}),
        ) as retried:
            answer = await retried.json()
            assert retried.status == 200, answer
    stored[answer["data"]["fid"]] = data
    await active(chain, answer["data"]["fid"], 60)


async def test_a_full_miner_is_written_around(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    """A miner whose disk is full refuses fragments (507); uploads place them on others
    and stay whole."""
    position, (directory, process, _) = next(
        (i, m) for i, m in enumerate(network.miners) if m[1].poll() is None
    )
    full = json.loads((directory / "key.json").read_text())["address"]
    positive = {m["account"] for m in await chain.query("sminer.miners", state="positive")}
    assert len(positive - {full}) >= PARAMS.total_shards, "too few miners to write around one"
    stop_process(process)
    probe = directory / "free-bytes"
    probe.write_text("0\n")  # the probe reads this file at every check: a full disk
    config = directory / "miner.toml"
    config.write_text(
        "\n".join(
            f'free_space_probe = "file:{probe}"' if line.startswith("free_space_probe") else line
            for line in config.read_text().splitlines()
        )
        + "\n"
    )
    (directory / "miner.url").unlink(missing_ok=True)
    revived = start_miner(directory)
    network.miners[position] = (
        directory,
        revived,
        await asyncio.to_thread(wait_for_url, directory, revived),
    )
    fresh: dict[str, bytes] = {}
    async with native_session(network) as session:
        for number in range(6):
            data = os.urandom(50 * KIB + number)
            async with session.put(
                f"{network.url}/object/while-full/{number}",
                data=data,
                headers=signed({"Territory": S3_TERRITORY}),
            ) as response:
                answer = await response.json()
                assert response.status == 200, answer
            fresh[answer["data"]["fid"]] = data
    for fid in fresh:
        file = await active(chain, fid, 60)
        assert full not in {f["miner"] for s in file["segments"] for f in s["fragments"]}
    stored.update(fresh)
    probe.write_text(str(1 << 40) + "\n")  # space again: the miner takes fragments anew
    await check_everything(network, chain, stored, distinct=True)


@pytest.mark.timeout(600)
async def test_miners_die_one_by_one(
    network: Network, chain: HttpChain, stored: dict[str, bytes]
) -> None:
    """Kill the miner holding the most fragments, let repair finish, kill the next, until
    some segment is down to k distinct live miners. Redundancy comes back each time: all
    apart while n healthy (alive and positive) miners remain, else spread over as many
    as remain (reduced independence). The objects stay whole throughout."""
    rounds = 0
    while True:
        live = alive(network)
        files = [await chain.query("file_bank.file", fid=file_of(fid)) for fid in stored]
        segments = [s["fragments"] for f in files for s in f["segments"]]
        spans = [
            len({f["miner"] for f in fragments if f["miner"] in live}) for fragments in segments
        ]
        if min(spans) <= PARAMS.data_shards:
            break
        held = Counter(
            f["miner"] for fragments in segments for f in fragments if f["miner"] in live
        )
        victim = held.most_common(1)[0][0]
        positive = {m["account"] for m in await chain.query("sminer.miners", state="positive")}
        accounts(network)[victim][1].send_signal(signal.SIGKILL)
        rounds += 1
        await asyncio.sleep(0.5)
        healthy = (positive & live) - {victim}
        await check_everything(network, chain, stored, distinct=len(healthy) >= PARAMS.total_shards)
        if len(healthy) < PARAMS.total_shards:  # reduced independence, still readable
            for fid in stored:
                for segment in (await chain.query("file_bank.file", fid=file_of(fid)))["segments"]:
                    span = {f["miner"] for f in segment["fragments"]}
                    assert len(span) >= PARAMS.data_shards, segment
    assert rounds >= 2, "the fault suite killed too few miners to mean anything"
