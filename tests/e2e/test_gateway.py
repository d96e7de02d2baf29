"""The gateway on a network of real processes: a chain node, n + 2 miners and the
gateway. Uploads through curl and aiohttp download byte-identical, ranges too; a
corrupted fragment is caught, read around and reported; any n - k miners may die."""

import asyncio
import functools
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from chain_client.account import ChainAccount
from chain_client.keys import dev_keypair
from chain_client.params import KIB
from chain_client.rpc_client import HttpChain
from gateway.codec import Layout, plan_range
from gateway.devnet import stop_process
from tests.e2e.gateway_network import (
    MINERS,
    PARAMS,
    USER,
    Network,
    active,
    native_session,
    settled,
    signed,
    signed_for,
    start_gateway,
)
from tests.e2e.processes import start_miner, wait_for_url
from tests.polling import eventually

# One event loop for the module: its objects are module fixtures, made once.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def network(gateway_network: Network) -> Network:
    return gateway_network


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chain(network: Network) -> AsyncIterator[HttpChain]:
    client = HttpChain(network.chain.url)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def home(network: Network, chain: HttpChain) -> str:
    """The dev user authorized the gateway and owns the territory "home"."""
    gateway = json.loads((network.gateway_dir / "key.json").read_text())["address"]
    alice = ChainAccount(chain, USER)
    await eventually(
        functools.partial(chain.query, "sminer.miners", state="positive"),
        lambda m: len(m) == MINERS and all(x["idle"] >= 16 * PARAMS.idle_unit_size for x in m),
    )
    if not await chain.query("oss.is_authorized", owner=USER.address, gateway=gateway):
        await alice.call("oss.authorize", gateway=gateway)
    if await chain.query("storage_handler.territory", owner=USER.address, name="home") is None:
        await alice.call("storage_handler.mint_territory", name="home", gib=80, days=5)
    return "home"


async def upload(network: Network, territory: str, name: str, data: bytes) -> str:
    async with (
        native_session(network) as session,
        session.put(
            f"{network.url}/object/{name}",
            data=io.BytesIO(data),
            headers=signed({"Territory": territory}),
        ) as response,
    ):
        answer = await response.json()
        assert response.status == 200, answer
    return str(answer["data"]["fid"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cat(network: Network, home: str) -> tuple[str, bytes]:
    """An object of three segments, ``photos/cat.bin``: (fid, bytes)."""
    data = os.urandom(700 * KIB + 123)
    return await upload(network, home, "photos/cat.bin", data), data


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big(network: Network, home: str) -> tuple[str, bytes]:
    """An object of six segments, ``big.bin``: (fid, bytes)."""
    data = os.urandom(1300 * KIB)
    return await upload(network, home, "big.bin", data), data


async def bytes_served(network: Network) -> int:
    """Fragment bytes all live miners say they served (their Prometheus counters)."""
    total = 0
    async with native_session(network) as session:
        for _, process, url in network.miners:
            if process.poll() is not None:
                continue
            async with session.get(url + "/metrics") as response:
                for line in (await response.text()).splitlines():
                    if line.startswith("deoss_miner_fragment_bytes_out_total "):
                        total += int(float(line.split()[1]))
    return total


async def test_user_authorizes_the_gateway_and_buys_a_territory(
    network: Network, chain: HttpChain, home: str
) -> None:
    gateway = json.loads((network.gateway_dir / "key.json").read_text())["address"]
    assert await chain.query("oss.is_authorized", owner=USER.address, gateway=gateway)
    territory = await chain.query("storage_handler.territory", owner=USER.address, name=home)
    assert territory["state"] == "active" and territory["total"] > 0


async def test_curl_upload_downloads_byte_identical(
    network: Network, chain: HttpChain, home: str, tmp_path: Path
) -> None:
    data = os.urandom(700 * KIB + 123)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    await settled(network, chain)  # nothing else turns idle space into service meanwhile
    service_before = sum(m["service"] for m in await chain.query("sminer.miners"))
    put = signed_for(network, "PUT", "/object/photos/curl.bin", None, {"Territory": home})
    headers = [f"-H{k}:{v}" for k, v in put.items()]
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "PUT",
            *headers,
            "--data-binary",
            f"@{source}",
            f"{network.url}/object/photos/curl.bin",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert answer["code"] == 200, answer
    fid = answer["data"]["fid"]
    target = tmp_path / "download.bin"
    subprocess.run(
        [
            "curl",
            "-sS",
            "-f",
            *[f"-H{k}:{v}" for k, v in signed_for(network, "GET", f"/file/download/{fid}").items()],
            "-o",
            str(target),
            f"{network.url}/file/download/{fid}",
        ],
        check=True,
        timeout=60,
    )
    assert target.read_bytes() == data
    file = await active(chain, fid, 60)
    assert {f["miner"] for s in file["segments"] for f in s["fragments"]}
    # The miners turned exactly the stored bytes from idle into service space.
    service = sum(m["service"] for m in await chain.query("sminer.miners"))
    assert service - service_before == answer["data"]["stored_bytes"]
    assert (
        sum(f["size"] for s in file["segments"] for f in s["fragments"])
        == answer["data"]["stored_bytes"]
    )


async def test_aiohttp_upload_and_fifty_ranges(network: Network, big: tuple[str, bytes]) -> None:
    fid, data = big
    async with native_session(network) as session:
        async with session.get(f"{network.url}/file/open/{fid}", headers=signed()) as response:
            assert response.status == 200 and await response.read() == data
        served_before = await bytes_served(network)
        rng = random.Random(7)
        needed = 0
        layout = Layout.from_params(PARAMS)
        for _ in range(50):
            start = rng.randrange(len(data))
            end = rng.randrange(start, min(len(data), start + 200 * KIB))
            async with session.get(
                f"{network.url}/file/open/{fid}", headers=signed({"Range": f"bytes={start}-{end}"})
            ) as response:
                assert response.status == 206
                assert await response.read() == data[start : end + 1]
            plan = plan_range(layout, len(data), start, end + 1)
            needed += sum(piece.block_len for piece in plan) * PARAMS.data_shards
        # The miners' own counters: only the blocks those ranges need, k of them each.
        assert await bytes_served(network) - served_before == needed


async def test_bad_requests_are_refused_clearly(network: Network, cat: tuple[str, bytes]) -> None:
    fid, _ = cat
    async with native_session(network) as session:
        replay = signed_for(network, "GET", f"/file/download/{fid}")
        async with session.get(f"{network.url}/file/download/{fid}", headers=replay) as first:
            assert first.status == 200
        async with session.get(f"{network.url}/file/download/{fid}", headers=replay) as again:
            assert again.status == 401 and (await again.json())["data"]["error"] == "SignatureUsed"
        async with session.get(f"{network.url}/file/download/{fid}") as unsigned:
            assert unsigned.status == 401
        stranger = signed_for(network, "GET", f"/file/download/{fid}", keypair=dev_keypair("Bob"))
        async with session.get(f"{network.url}/file/download/{fid}", headers=stranger) as other:
            assert other.status == 403  # Bob never authorized this gateway
        async with session.put(
            f"{network.url}/object/x", data=b"1", headers=signed({"Territory": "nope"})
        ) as missing:
            assert missing.status == 404
            assert (await missing.json())["data"]["error"] == "NoSuchTerritory"
        async with session.get(
            f"{network.url}/file/download/{'0' * 64}", headers=signed()
        ) as unknown:
            assert unknown.status == 404


async def test_http_semantics(
    network: Network, chain: HttpChain, cat: tuple[str, bytes], tmp_path: Path
) -> None:
    """Conditional reads, Format, 100-continue only after the checks, metrics, and a
    DELETE that waits for the chain."""
    fid, _ = cat
    url = f"{network.url}/file/open/{fid}"
    async with native_session(network) as session:
        async with session.head(url, headers=signed()) as head:
            etag, modified = head.headers["ETag"], head.headers["Last-Modified"]
            assert head.headers["Content-Type"] == "application/octet-stream"  # cat.bin
        for extra, status in [
            ({"If-None-Match": etag}, 304),
            ({"If-Modified-Since": modified}, 304),
            ({"If-Match": '"other"'}, 412),
            ({"If-Match": etag, "Range": "bytes=0-9"}, 206),
            ({"If-Range": '"other"', "Range": "bytes=0-9"}, 200),
        ]:
            async with session.get(url, headers=signed(extra)) as response:
                assert response.status == status, extra
        async with session.get(url + ".png", headers=signed()) as by_path:
            assert by_path.headers["Content-Type"] == "image/png"
        async with session.head(url, headers=signed({"Format": "pdf"})) as by_format:
            assert by_format.headers["Content-Type"] == "application/pdf"
        async with session.get(f"{network.url}/metrics") as metrics:
            text = await metrics.text()
            assert (
                'deoss_native_requests_total{method="GET",route="/file/open/{fid}",status="304"}'
                in text
            )
            assert "deoss_native_auth_refusals_total" in text and fid not in text
    # curl sends Expect: 100-continue for a body this large: refused, it sends none of it;
    # accepted, it sees 100 Continue first.
    body = tmp_path / "two.bin"
    data = os.urandom(2 * 1024 * KIB)
    body.write_bytes(data)

    def curl_put(headers: dict[str, str]) -> str:
        return subprocess.run(
            [
                "curl",
                "-sS",
                "-v",
                "-T",
                str(body),
                *[f"-H{k}:{v}" for k, v in headers.items()],
                f"{network.url}/object/two.bin",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stderr

    refused = curl_put(signed_for(network, "PUT", "/object/two.bin", None, {"Territory": "nope"}))
    assert "HTTP/1.1 100 Continue" not in refused and "HTTP/1.1 404" in refused, refused
    accepted = curl_put(signed_for(network, "PUT", "/object/two.bin", None, {"Territory": "home"}))
    assert "HTTP/1.1 100 Continue" in accepted and "HTTP/1.1 200" in accepted
    async with native_session(network) as session:
        async with session.get(f"{network.url}/file/list", headers=signed()) as listing:
            two = next(o for o in (await listing.json())["data"] if o["name"] == "two.bin")
        await eventually(
            functools.partial(chain.query, "file_bank.file", fid=two["fid"]),
            lambda f: f is not None,
            timeout=60,
        )
        gone = f"{network.url}/file/{two['fid']}"
        async with session.delete(gone + "?name=other", headers=signed()) as wrong:
            assert wrong.status == 404
        async with session.delete(gone + "?wait=1", headers=signed()) as deleted:
            answer = (await deleted.json())["data"]
            assert answer["state"] == "deleted" and answer["block hash"], answer
        assert await chain.query("file_bank.file", fid=two["fid"]) is None
        async with session.get(
            f"{network.url}/file/download/{two['fid']}", headers=signed()
        ) as after:
            assert after.status == 404


async def test_broken_uploads_leave_nothing_and_quota_holds(
    network: Network, chain: HttpChain, home: str
) -> None:
    host, port = network.url.removeprefix("http://").split(":")
    # A client that goes away after 600 KiB of a 1 MiB body: placed segments, no object.
    cut = signed_for(network, "PUT", "/object/cut.bin", None, {"Territory": "home"})
    head = "".join(f"{k}: {v}\r\n" for k, v in cut.items())
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"PUT /object/cut.bin HTTP/1.1\r\nHost: {host}\r\n{head}"
        f"Content-Length: {1024 * KIB}\r\n\r\n".encode()
    )
    writer.write(os.urandom(600 * KIB))
    await writer.drain()
    await asyncio.sleep(1.0)  # the gateway places what it has
    writer.close()
    await writer.wait_closed()
    async with native_session(network) as session:
        await asyncio.sleep(0.5)
        async with session.get(f"{network.url}/file/list", headers=signed()) as listing:
            assert "cut.bin" not in {o["name"] for o in (await listing.json())["data"]}
        # Oversized headers: aiohttp's own 400, never a 500.
        big = signed({"Territory": "home", "X-Pad": "x" * 10_000})
        async with session.put(f"{network.url}/object/pad", data=b"1", headers=big) as padded:
            assert padded.status == 400
        async with session.put(
            f"{network.url}/resume/r.bin",
            data=b"12",
            headers=signed({"Territory": "home", "Content-Range": "bytes 5-1/2"}),
        ) as malformed:
            assert malformed.status == 400
            assert (await malformed.json())["data"]["error"] == "InvalidContentRange"
        # A territory of 2 units (512 KiB): one 100 KiB object fits (x3 stored), two do not.
        await ChainAccount(chain, USER).call(
            "storage_handler.mint_territory", name="tiny", gib=2, days=5
        )
        body = os.urandom(100 * KIB)
        tiny = {"Territory": "tiny"}
        async with session.put(
            f"{network.url}/object/t1", data=body, headers=signed(tiny)
        ) as first:
            assert first.status == 200
        async with session.put(
            f"{network.url}/object/t2", data=body, headers=signed(tiny)
        ) as second:
            answer = await second.json()
            assert second.status == 403, answer
            assert answer["data"]["error"] == "InsufficientTerritorySpace"


async def test_client_commands_round_trip(network: Network, tmp_path: Path) -> None:
    key = tmp_path / "user.json"
    from chain_client.keys import Keypair, save_key_file

    user = Keypair.from_seed(os.urandom(32), "sr25519")
    save_key_file(key, user)
    subprocess.run(
        [
            sys.executable,
            "-c",
            AUTHORIZE,
            network.chain.url,
            str(key),
            json.loads((network.gateway_dir / "key.json").read_text())["address"],
        ],
        check=True,
        timeout=120,
    )
    data = os.urandom(600 * KIB + 7)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    base = [sys.executable, "-m", "gateway.cli"]
    target = ["--gateway", network.url, "--key", str(key)]
    put = subprocess.run(
        [*base, "put", str(source), "--territory", "mine", "--cipher", "pw", *target],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    fid = put.stdout.strip().splitlines()[-1]
    assert len(fid) == 64
    out = tmp_path / "out.bin"
    subprocess.run(
        [*base, "get", fid, "-o", str(out), "--cipher", "pw", *target],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert out.read_bytes() == data
    subprocess.run(
        [*base, "get", fid, "-o", str(out), "--cipher", "pw", "--range", "100-199", *target],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert out.read_bytes() == data[100:200]
    wrong = subprocess.run(
        [*base, "get", fid, "-o", str(tmp_path / "no.bin"), "--cipher", "bad", *target],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 1 and "403" in wrong.stderr
    assert not (tmp_path / "no.bin").exists()  # a refusal, never garbage bytes
    listing = subprocess.run(
        [*base, "ls", *target], capture_output=True, text=True, timeout=60, check=True
    )
    assert fid in listing.stdout and "in.bin" in listing.stdout
    subprocess.run([*base, "rm", fid, *target], check=True, timeout=120, capture_output=True)
    gone = subprocess.run(
        [*base, "get", fid, "-o", str(out), *target], capture_output=True, text=True, timeout=60
    )
    assert gone.returncode == 1 and "404" in gone.stderr
    created = subprocess.run(
        [*base, "keys", "create", "--label", "ci", *target],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    access_key = json.loads(created.stdout)["access_key"]
    assert len(json.loads(created.stdout)["secret_key"]) == 40
    keys = [*base, "keys", "list", *target]
    listed = subprocess.run(keys, capture_output=True, text=True, timeout=60, check=True)
    assert f"{access_key}  live" in listed.stdout
    subprocess.run(
        [*base, "keys", "revoke", access_key, *target], capture_output=True, timeout=60, check=True
    )
    listed = subprocess.run(keys, capture_output=True, text=True, timeout=60, check=True)
    assert f"{access_key}  revoked" in listed.stdout


AUTHORIZE = """
import asyncio, sys
from chain_client.account import ChainAccount
from chain_client.keys import load_key_file, dev_keypair
from chain_client.rpc_client import HttpChain

async def main():
    chain = HttpChain(sys.argv[1])
    user = ChainAccount(chain, load_key_file(sys.argv[2]))
    await ChainAccount(chain, dev_keypair("Alice")).call("balances.faucet", dest=user.address)
    await user.call("oss.authorize", gateway=sys.argv[3])
    await user.call("storage_handler.mint_territory", name="mine", gib=8, days=5)
    await chain.close()

asyncio.run(main())
"""


async def test_an_interrupted_resume_upload_finishes_across_a_gateway_restart(
    network: Network, home: str
) -> None:
    data = os.urandom(900 * KIB + 11)
    total = len(data)
    name = "/resume/movie.bin"

    async def chunk(
        session: aiohttp.ClientSession, start: int, end: int, body: bytes | None = None
    ) -> tuple[int, dict[str, Any], Any]:
        payload = data[start : end + 1] if body is None else body
        headers = signed({"Territory": "home", "Content-Range": f"bytes {start}-{end}/{total}"})
        async with session.put(network.url + name, data=payload, headers=headers) as response:
            return response.status, dict(response.headers), await response.json()

    async with native_session(network) as session:
        status, headers, answer = await chunk(session, 0, 300 * KIB - 1)
        assert status == 308 and headers["Range"] == f"bytes=0-{300 * KIB - 1}", answer
        status, _, answer = await chunk(session, 400 * KIB, 500 * KIB - 1)
        assert status == 409 and answer["data"]["error"] == "ChunkGap"
        wrong = bytes(100 * KIB)
        status, _, answer = await chunk(session, 200 * KIB, 300 * KIB - 1, wrong)
        assert status == 409 and answer["data"]["error"] == "ChunkMismatch"
        status, headers, _ = await chunk(session, 200 * KIB, 500 * KIB - 1)  # overlaps: fine
        assert status == 308 and headers["Range"] == f"bytes=0-{500 * KIB - 1}"
    # The gateway goes away mid-upload and comes back on another port.
    stop_process(network.gateway)
    network.gateway, network.url, network.s3_url = start_gateway(network.gateway_dir)
    async with native_session(network) as session:
        async with session.get(network.url + name, headers=signed()) as response:
            progress = await response.json()
            assert progress["data"]["stored"] == 500 * KIB
        status, _, answer = await chunk(session, 500 * KIB, total - 1)
        assert status == 200, answer
        fid = answer["data"]["fid"]
        async with session.get(f"{network.url}/file/download/{fid}", headers=signed()) as got:
            assert await got.read() == data


async def test_a_corrupt_fragment_is_read_around_and_reported(
    network: Network, chain: HttpChain, big: tuple[str, bytes]
) -> None:
    fid, data = big
    file = await active(chain, fid, 60)
    victim = file["segments"][0]["fragments"][0]  # a systematic one: read first
    for directory, _, _ in network.miners:
        path = directory / "fragments" / victim["id"][:2] / victim["id"][2:4] / victim["id"]
        if path.exists():
            # Flip a byte and fix the miner's own bitrot check: a miner that lies.
            content = bytearray(path.read_bytes())
            content[100] ^= 0xFF
            path.write_bytes(bytes(content))
            import sqlite3

            import xxhash

            db = sqlite3.connect(directory / "miner.db")
            leaves = [
                bytes(content[i : i + PARAMS.leaf_size])
                for i in range(0, len(content), PARAMS.leaf_size)
            ]
            db.execute(
                "UPDATE fragments SET leaf_checks = ? WHERE id = ?",
                (b"".join(xxhash.xxh3_64_digest(leaf) for leaf in leaves), victim["id"]),
            )
            db.commit()
            db.close()
            break
    async with (
        native_session(network) as session,
        session.get(f"{network.url}/file/download/{fid}", headers=signed()) as response,
    ):
        assert response.status == 200 and await response.read() == data
    # The report becomes a targeted challenge the lying miner fails, a restoral order,
    # and the gateway's repair worker rebuilds the fragment onto another miner.
    repaired = await eventually(
        functools.partial(chain.query, "file_bank.file", fid=fid),
        lambda f: (
            f["segments"][0]["fragments"][0]["miner"] != victim["miner"]
            and f["segments"][0]["fragments"][0]["avail"]
        ),
        timeout=90,
    )
    segment_miners = [f["miner"] for f in repaired["segments"][0]["fragments"]]
    assert len(set(segment_miners)) == len(segment_miners)  # still all apart
    assert not [o for o in await chain.query("file_bank.restoral_orders") if o["fid"] == fid]
    async with (
        native_session(network) as session,
        session.get(f"{network.url}/file/download/{fid}", headers=signed()) as response,
    ):
        assert response.status == 200 and await response.read() == data


async def test_any_n_minus_k_miners_may_die(
    network: Network, chain: HttpChain, cat: tuple[str, bytes]
) -> None:
    fid, data = cat
    file = await chain.query("file_bank.file", fid=fid)
    holders = [f["miner"] for f in file["segments"][0]["fragments"]]
    by_account = {
        json.loads((d / "key.json").read_text())["address"]: p for d, p, _ in network.miners
    }
    killed = holders[: PARAMS.total_shards - PARAMS.data_shards]
    for account in killed:
        by_account[account].send_signal(signal.SIGKILL)
    await asyncio.sleep(0.5)
    try:
        async with (
            native_session(network) as session,
            session.get(f"{network.url}/file/download/{fid}", headers=signed()) as response,
        ):
            assert response.status == 200 and await response.read() == data
    finally:
        # The network is shared with later modules: the dead come back.
        for position, (directory, process, _) in enumerate(network.miners):
            if process.poll() is not None:
                (directory / "miner.url").unlink(missing_ok=True)  # a SIGKILL leaves it
                revived = start_miner(directory)
                network.miners[position] = (directory, revived, "")
        network.miners[:] = [
            (d, p, u or await asyncio.to_thread(wait_for_url, d, p)) for d, p, u in network.miners
        ]
