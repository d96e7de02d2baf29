"""The miner's HTTP API against a real in-process chain: auth, PUT (single and batch),
GET with ranges, and every kind of bad input."""

import asyncio
import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from chain_client.account import ChainAccount
from chain_client.keys import Keypair, dev_keypair
from chain_client.local import LocalChain
from chain_client.merkle import merkle_root
from chain_client.params import Genesis, dev_params
from chain_client.receipt import verify_receipt
from chain_client.request_auth import sign_request
from chain_client.serving import serve
from miner_agent.config import MinerConfig
from miner_agent.node import MinerNode
from miner_agent.service import make_app, parse_range
from miner_agent.store import MinerStore
from tests.polling import eventually

LEAF = 8 * 1024


@dataclass
class Setup:
    client: TestClient  # type: ignore[type-arg]
    node: MinerNode
    gateway: Keypair
    chain: LocalChain

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        signer: Keypair | None = None,
        receiver: str | None = None,
        headers: dict[str, str] | None = None,
        now: float | None = None,
    ) -> Any:
        signer = signer or self.gateway
        # A fragment PUT signs the fragment id as its content hash (docs/miner-protocol.md).
        fragment_put = method == "PUT" and path.startswith("/fragment/")
        signed = sign_request(
            signer,
            method,
            path,
            receiver or self.node.address,
            content_sha256=path.split("/")[2].split("?")[0]
            if fragment_put
            else hashlib.sha256(body).hexdigest(),
            now=now,
        )
        return await self.client.request(
            method, path, data=body, headers={**signed, **(headers or {})}
        )


async def included(chain: LocalChain, tx_hash: str) -> None:
    await chain.produce_block()
    receipt = await chain.receipt(tx_hash)
    assert receipt is not None and receipt.success, receipt


@pytest.fixture
async def setup(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Setup]:
    params = dev_params(block_time=0.0)
    chain = await LocalChain.open(
        tmp_path / "chain.db", Genesis(params=params, dev=True), block_time=0.0
    )
    gateway = Keypair.generate()
    alice = ChainAccount(chain, dev_keypair("Alice"))
    await included(chain, await alice.submit("balances.faucet", dest=gateway.address))
    await included(
        chain,
        await ChainAccount(chain, gateway).submit("oss.register", endpoint="http://127.0.0.1:1"),
    )
    config = MinerConfig(
        data_dir=tmp_path / "miner",
        declared_space=params.idle_unit_size * 4,
        chain_rpc="http://127.0.0.1:1",
    )
    store = MinerStore(config.data_dir, leaf_size=params.leaf_size)
    node = MinerNode(
        config=config, keypair=Keypair.generate(), chain=chain, params=params, store=store
    )
    client = await aiohttp_client(make_app(node))
    yield Setup(client, node, gateway, chain)
    store.close()
    await chain.close()


def fragment(size: int = 3 * LEAF + 100) -> tuple[str, bytes]:
    data = os.urandom(size)
    return merkle_root(data, LEAF).hex(), data


def damaged(data: bytes) -> bytes:
    """``data`` with its last byte changed (a fixed replacement byte would, one time in
    256, be the byte already there)."""
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def leftovers(node: MinerNode) -> list[str]:
    return sorted(p.name for p in node.store.tmp_dir.iterdir())


async def test_put_returns_a_signed_receipt_and_is_idempotent(setup: Setup) -> None:
    fragment_id, data = fragment()
    response = await setup.request("PUT", f"/fragment/{fragment_id}", data)
    assert response.status == 201, await response.text()
    receipt = await response.json()
    assert receipt["fragment_id"] == fragment_id and receipt["size"] == len(data)
    assert verify_receipt(
        "sr25519", setup.node.address, fragment_id, bytes.fromhex(receipt["signature"][2:])
    )
    again = await setup.request("PUT", f"/fragment/{fragment_id}", data)
    assert again.status == 200
    assert setup.node.store.fragment_path(fragment_id).read_bytes() == data
    assert setup.node.store.fragment(fragment_id).state == "orphan"  # type: ignore[union-attr]


async def test_get_whole_ranges_and_head(setup: Setup) -> None:
    fragment_id, data = fragment()
    assert (await setup.request("PUT", f"/fragment/{fragment_id}", data)).status == 201
    path = f"/fragment/{fragment_id}"
    whole = await setup.request("GET", path)
    assert whole.status == 200 and await whole.read() == data
    for header, expected in [
        ("bytes=0-0", data[:1]),
        ("bytes=100-9000", data[100:9001]),
        (f"bytes={LEAF}-", data[LEAF:]),
        ("bytes=-50", data[-50:]),
        ("bytes=5-999999", data[5:]),
    ]:
        response = await setup.request("GET", path, headers={"Range": header})
        assert response.status == 206, header
        assert await response.read() == expected, header
    unsatisfiable = await setup.request("GET", path, headers={"Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{len(data)}"
    head = await setup.request("HEAD", path)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    missing = await setup.request("GET", "/fragment/" + "ab" * 32)
    assert missing.status == 404


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 5)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=8-", 10, (8, 10)),
        ("bytes=0-1,3-4", 10, None),
        ("items=0-1", 10, None),
        # Not a byte range (int() refused "²": a 416 it never meant): the whole fragment.
        ("bytes=²-3", 10, None),
        ("bytes=0-٣", 10, None),
        ("bytes=+1-3", 10, None),
        # More digits than int() reads: past any end, so as for any such position.
        ("bytes=2-" + "9" * 5000, 10, (2, 10)),
        ("bytes=-" + "9" * 5000, 10, (0, 10)),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


def test_parse_range_past_the_end_with_many_digits() -> None:
    with pytest.raises(ValueError, match="outside"):
        parse_range("bytes=" + "9" * 5000 + "-", 10)


async def test_requests_must_be_signed_by_a_registered_gateway(setup: Setup) -> None:
    fragment_id, data = fragment()
    path = f"/fragment/{fragment_id}"
    unsigned = await setup.client.put(path, data=data)
    assert unsigned.status == 401 and (await unsigned.json())["error"]["code"] == "Unsigned"
    stranger = await setup.request("PUT", path, data, signer=Keypair.generate())
    assert stranger.status == 403
    other_miner = await setup.request("PUT", path, data, receiver=Keypair.generate().address)
    assert other_miner.status == 401
    stale = await setup.request("PUT", path, data, now=1_000_000_000)
    assert stale.status == 401 and (await stale.json())["error"]["code"] == "RequestTimeSkewed"
    signed = sign_request(
        setup.gateway, "PUT", path, setup.node.address, content_sha256=path.split("/")[2]
    )
    tampered = await setup.client.put(path + "?x=1", data=data, headers=signed)
    assert tampered.status == 401
    for when in ("²", "1_700000000", "+1700000000", "9" * 5000):  # "²" was int()'s 500
        signed = sign_request(
            setup.gateway, "PUT", path, setup.node.address, content_sha256=fragment_id
        )
        late = await setup.client.put(path, data=data, headers={**signed, "X-Deoss-Time": when})
        assert late.status == 401 and (await late.json())["error"]["code"] == "BadTime", when
    assert setup.node.store.fragments() == [] and leftovers(setup.node) == []


async def test_a_registered_gateway_without_its_bond_is_refused(setup: Setup) -> None:
    """Security review #3: an unfunded key registered for free, then wrote junk fragments
    to every miner and read any fragment."""
    unbonded = Keypair.generate()
    alice = ChainAccount(setup.chain, dev_keypair("Alice"))
    await included(setup.chain, await alice.submit("balances.faucet", dest=unbonded.address))
    register = ChainAccount(setup.chain, unbonded).submit(
        "oss.register", endpoint="http://127.0.0.1:9", bond=0
    )
    await included(setup.chain, await register)
    fragment_id, data = fragment()
    for method, path, body in (
        ("PUT", f"/fragment/{fragment_id}", data),
        ("GET", f"/fragment/{fragment_id}", b""),
    ):
        refused = await setup.request(method, path, body, signer=unbonded)
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "NotBonded"
    assert setup.node.store.fragments() == [] and leftovers(setup.node) == []
    # The bonded gateway of the fixture is served.
    stored = await setup.request("PUT", f"/fragment/{fragment_id}", data)
    assert stored.status in (200, 201)


async def test_bad_bodies_leave_nothing_behind(setup: Setup) -> None:
    fragment_id, data = fragment()
    wrong = await setup.request("PUT", f"/fragment/{fragment_id}", damaged(data))
    assert wrong.status == 400 and (await wrong.json())["error"]["code"] == "HashMismatch"
    # A valid signature replayed with another body: the id in the signed path refuses it.
    _, other = fragment()
    signed = sign_request(
        setup.gateway,
        "PUT",
        f"/fragment/{fragment_id}",
        setup.node.address,
        content_sha256=fragment_id,
    )
    replayed = await setup.client.put(f"/fragment/{fragment_id}", data=other, headers=signed)
    assert (await replayed.json())["error"]["code"] == "HashMismatch"
    body_hash = sign_request(
        setup.gateway,
        "PUT",
        f"/fragment/{fragment_id}",
        setup.node.address,
        content_sha256=hashlib.sha256(data).hexdigest(),
    )
    hashed = await setup.client.put(f"/fragment/{fragment_id}", data=data, headers=body_hash)
    assert (await hashed.json())["error"]["code"] == "BadContentHash"
    too_big = os.urandom(setup.node.params.fragment_size + 1)
    large = await setup.request("PUT", f"/fragment/{merkle_root(too_big, LEAF).hex()}", too_big)
    assert large.status == 413
    for bad in ("..%2F..%2Fetc%2Fpasswd", "AB" * 32, "ab" * 31, "zz" * 32):
        response = await setup.request("PUT", f"/fragment/{bad}", data)
        assert response.status in (400, 404), bad
    assert setup.node.store.fragments() == [] and leftovers(setup.node) == []
    assert not any(setup.node.store.fragment_dir.rglob("*[0-9a-f]"))


async def test_disk_full_mid_write_is_a_clear_507(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from miner_agent import store as store_module

    original = store_module._Receiver.absorb

    def full(self: Any, data: bytes) -> None:
        original(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module._Receiver, "absorb", full)
    fragment_id, data = fragment()
    response = await setup.request("PUT", f"/fragment/{fragment_id}", data)
    assert response.status == 507
    assert (await response.json())["error"]["code"] == "InsufficientStorage"
    assert leftovers(setup.node) == [] and setup.node.store.fragments() == []


@pytest.mark.parametrize("route", ["fragment", "batch"])
async def test_a_body_that_breaks_off_is_no_error(
    setup: Setup, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by tests/fuzz: the ConnectionResetError of a sender gone mid-body went
    # unhandled, so aiohttp logged every such PUT as an error and answered 500.
    fragment_id, data = fragment()
    method, path = (
        ("PUT", f"/fragment/{fragment_id}") if route == "fragment" else ("POST", "/fragments")
    )
    digest = fragment_id if route == "fragment" else hashlib.sha256(data).hexdigest()
    signed = sign_request(setup.gateway, method, path, setup.node.address, content_sha256=digest)
    head = f"{method} {path} HTTP/1.1\r\nHost: miner\r\nContent-Length: {len(data)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in signed.items()) + "\r\n"
    # Served as a miner serves (aiohttp's test server cancels the handler instead).
    async with serve(make_app(setup.node), "127.0.0.1", 0) as site:
        _, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(head.encode() + data[: len(data) // 2])
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body: then the sender goes
        writer.close()
        registry = setup.node.metrics.registry

        async def broken_off() -> float | None:
            labels = {"outcome": "IncompleteBody"}
            return registry.get_sample_value("deoss_miner_requests_total", labels)

        await eventually(broken_off, lambda count: count == 1, timeout=10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert setup.node.store.fragments() == [] and leftovers(setup.node) == []


async def test_a_content_encoding_is_not_inflated(setup: Setup) -> None:
    # Found by tests/fuzz: aiohttp inflated a gzip body before the miner read it, so
    # fragment bytes that were not gzip were a 500 (and gzip ones a HashMismatch).
    fragment_id, data = fragment()
    path = f"/fragment/{fragment_id}"
    signed = sign_request(
        setup.gateway, "PUT", path, setup.node.address, content_sha256=fragment_id
    )
    headers = {**signed, "Content-Encoding": "gzip"}
    async with (
        serve(make_app(setup.node), "127.0.0.1", 0) as site,
        aiohttp.ClientSession() as session,
        session.put(f"{site.url}{path}", data=data, headers=headers) as put,
    ):
        assert put.status == 201, await put.text()
    assert setup.node.store.fragment_path(fragment_id).read_bytes() == data


async def test_nearly_full_disk_refuses_before_writing(setup: Setup) -> None:
    setup.node.store.probe = lambda _root: 10
    fragment_id, data = fragment()
    response = await setup.request("PUT", f"/fragment/{fragment_id}", data)
    assert response.status == 507


async def test_bitrot_is_caught_on_read(setup: Setup) -> None:
    fragment_id, data = fragment()
    await setup.request("PUT", f"/fragment/{fragment_id}", data)
    path = setup.node.store.fragment_path(fragment_id)
    rotten = bytearray(data)
    rotten[10] ^= 1
    path.write_bytes(bytes(rotten))
    response = await setup.request(
        "GET", f"/fragment/{fragment_id}", headers={"Range": "bytes=0-99"}
    )
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "FragmentCorrupt"
    assert fragment_id in setup.node.corrupt
    fine = await setup.request(
        "GET", f"/fragment/{fragment_id}", headers={"Range": f"bytes={LEAF}-{LEAF + 9}"}
    )
    assert await fine.read() == data[LEAF : LEAF + 10]


def batch_body(items: list[tuple[str, bytes]]) -> bytes:
    manifest = json.dumps({"fragments": [{"id": i, "size": len(d)} for i, d in items]}).encode()
    return len(manifest).to_bytes(4, "big") + manifest + b"".join(d for _, d in items)


async def test_batch_put_answers_each_fragment(setup: Setup) -> None:
    good = [fragment(1000), fragment(5000), fragment(LEAF)]
    bad_id, bad_data = fragment(700)
    items = [good[0], (bad_id, damaged(bad_data)), good[1], good[2]]
    response = await setup.request("POST", "/fragments", batch_body(items))
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == [201, 400, 201, 201]
    assert results[1]["error"]["code"] == "HashMismatch"
    for fragment_id, data in good:
        assert setup.node.store.fragment_path(fragment_id).read_bytes() == data
    assert setup.node.store.fragment(bad_id) is None
    for body in (b"\x00\x00\x00\x05{}", b"\x00\x00\x00\x02{}", b"garbage"):
        refused = await setup.request("POST", "/fragments", body)
        assert refused.status == 400, body


@pytest.mark.parametrize(
    "manifest",
    [
        b'{"fragments": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",  # was RecursionError
        b'{"fragments": [{"id": "' + b"a" * 64 + b'", "size": NaN}]}',
        b'{"fragments": [{"id": "' + b"a" * 64 + b'", "size": 1e999}]}',
        b'{"fragments": [{"id": "' + b"a" * 64 + b'", "size": ' + b"9" * 5000 + b"}]}",
        b'{"fragments": [{"id": "' + b"a" * 64 + b'", "size": 1.5}]}',
        b'{"fragments": [{"id": "' + b"a" * 64 + b'", "size": true}]}',
        b'{"fragments": [{"id": 7, "size": 1}]}',
        b'{"fragments": {"id": "x"}}',
    ],
)
async def test_batch_manifests_the_strict_parser_refuses(setup: Setup, manifest: bytes) -> None:
    body = len(manifest).to_bytes(4, "big") + manifest + b"x"
    response = await setup.request("POST", "/fragments", body)
    assert response.status == 400 and (await response.json())["error"]["code"] == "BadBatch"
    assert setup.node.store.fragments() == [] and leftovers(setup.node) == []


def test_the_miner_directory_and_database_are_private(setup: Setup) -> None:
    root = setup.node.store.root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "miner.db").stat().st_mode) == 0o600


async def test_batch_with_a_body_that_was_not_signed_keeps_nothing(setup: Setup) -> None:
    items = [fragment(1000)]
    body = batch_body(items)
    signed = sign_request(
        setup.gateway,
        "POST",
        "/fragments",
        setup.node.address,
        content_sha256=hashlib.sha256(body + b"x").hexdigest(),
    )
    response = await setup.client.post("/fragments", data=body, headers=signed)
    assert response.status == 400
    assert setup.node.store.fragments() == []


async def test_health_and_metrics_need_no_signature(setup: Setup) -> None:
    health = await setup.client.get("/health")
    assert (await health.json())["account"] == setup.node.address
    metrics = await setup.client.get("/metrics")
    assert "deoss_miner_fragments" in await metrics.text()
