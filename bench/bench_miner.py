"""How close a miner's fragment PUT and GET come to bare aiohttp on loopback.

Starts real processes on loopback: a minimal aiohttp server (this script with
``--raw-server``), a dev chain node with 8 MiB fragments, and one miner. Registers a
gateway key and waits until the miner has proven its (small) idle space, then PUTs N
random fragments to each server and GETs them back, one request at a time, every body
streamed in 1 MiB chunks. Prints MB/s (10**6 bytes) per direction and the miner's rate
over the bare one.

    python bench/bench_miner.py [--fragments N] [--size BYTES]
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from chain_client.account import ChainAccount
from chain_client.files import write_atomically
from chain_client.keys import Keypair, dev_keypair
from chain_client.merkle import merkle_root
from chain_client.params import KIB, MIB, Genesis, NetworkParams, dev_params
from chain_client.request_auth import sign_request
from chain_client.rpc_client import HttpChain
from gateway.devnet import chain_command

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CHUNK = MIB
MB = 10**6
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 120.0
# A miner this small fills its idle space in a few cheap units and then keeps quiet, so
# the chain traffic it makes while the benchmark runs is negligible.
DECLARED_SPACE = 256 * KIB
# Any signed request for an id the miner does not hold: warms the connection and the
# miner's gateway cache without storing anything.
ABSENT_FRAGMENT = "00" * 32


def bench_params() -> NetworkParams:
    return dev_params(
        fragment_size=8 * MIB,
        segment_size=8 * MIB * dev_params().data_shards,
        stripe_block_size=256 * KIB,
        idle_unit_size=64 * KIB,
        idle_scrypt_n=2,
        idle_scrypt_r=1,
        idle_layers=2,
    )


@dataclass(frozen=True, slots=True)
class Fragment:
    fragment_id: str
    data: bytes
    sha256: str


@dataclass(frozen=True, slots=True)
class MinerProcess:
    directory: Path
    process: subprocess.Popen[bytes]
    address: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Seconds spent inside requests, each direction, for ``total_bytes`` each way."""

    put_seconds: float
    get_seconds: float
    total_bytes: int

    @property
    def put_rate(self) -> float:
        return self.total_bytes / self.put_seconds / MB

    @property
    def get_rate(self) -> float:
        return self.total_bytes / self.get_seconds / MB


# -- the bare aiohttp server (``--raw-server``) ----------------------------------------------


async def _raw_put(request: web.Request) -> web.Response:
    async for _ in request.content.iter_chunked(CHUNK):
        pass
    return web.Response(status=204)


async def _raw_get(request: web.Request) -> web.StreamResponse:
    left = int(request.match_info["size"])
    block = bytes(CHUNK)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = left
    await response.prepare(request)
    while left:
        piece = block if left >= CHUNK else block[:left]
        await response.write(piece)
        left -= len(piece)
    await response.write_eof()
    return response


async def _serve_raw(url_file: Path) -> None:
    app = web.Application()
    app.router.add_put("/blob", _raw_put)
    app.router.add_get(r"/blob/{size:\d+}", _raw_get)
    runner = web.AppRunner(app, access_log=None)  # as the miner runs it
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
        port = int(runner.addresses[0][1])
        write_atomically(url_file, f"http://{LOOPBACK}:{port}\n")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


# -- processes ----------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spawn(command: list[str], log: Path, stack: contextlib.ExitStack) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    stack.callback(_stop, process)
    return process


def _wait_for_url(name: str, url_file: Path, process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SystemExit(f"bench_miner: {name} did not start:\n{tail}")
        time.sleep(0.05)
    return url_file.read_text().strip()


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _start_chain(
    root: Path, params: NetworkParams, stack: contextlib.ExitStack
) -> tuple[Path, subprocess.Popen[bytes]]:
    genesis = root / "genesis.json"
    genesis.write_text(json.dumps(Genesis(params=params, dev=True).to_json()))
    directory = root / "chain"
    directory.mkdir()
    command = chain_command(directory, "--dev", "--block-time", "0.5", "--genesis", str(genesis))
    return directory, _spawn(command, directory / "node.log", stack)


def _start_miner(root: Path, chain_url: str, stack: contextlib.ExitStack) -> MinerProcess:
    directory = root / "miner"
    init = _python(
        "-m",
        "miner_agent.cli",
        "init",
        "--dir",
        str(directory),
        "--declared-space",
        str(DECLARED_SPACE),
        "--chain-rpc",
        chain_url,
        "--faucet",
        "--free-disk-floor",
        "0",
    )
    done = subprocess.run(init, capture_output=True, text=True, cwd=ROOT, timeout=START_TIMEOUT)
    if done.returncode:
        raise SystemExit(f"bench_miner: miner init failed:\n{done.stdout}{done.stderr}")
    command = _python("-m", "miner_agent.cli", "run", "--config", str(directory / "miner.toml"))
    process = _spawn(command, directory / "miner.log", stack)
    address = str(json.loads((directory / "key.json").read_text())["address"])
    return MinerProcess(directory, process, address)


def _make_fragments(count: int, size: int, leaf_size: int) -> list[Fragment]:
    fragments = []
    for _ in range(count):
        data = os.urandom(size)
        fragment_id = merkle_root(data, leaf_size).hex()
        fragments.append(Fragment(fragment_id, data, hashlib.sha256(data).hexdigest()))
    return fragments


# -- the measurement ----------------------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    # 1 MiB pieces, not one big bytes: aiohttp sends 8 MiB bodies nearly twice as fast so
    # (measured on loopback against the raw server).
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]


def _fail(what: str, status: int, text: str) -> SystemExit:
    return SystemExit(f"bench_miner: {what} answered {status}: {text[:500]}")


async def _raw_round(
    session: aiohttp.ClientSession, url: str, fragments: Sequence[Fragment]
) -> Transfer:
    size = len(fragments[0].data)
    async with session.get(f"{url}/blob/1") as response:  # warm the connection
        await response.read()
    put_seconds = get_seconds = 0.0
    for fragment in fragments:
        started = time.perf_counter()
        headers = {"Content-Length": str(size)}
        async with session.put(f"{url}/blob", data=_chunks(fragment.data), headers=headers) as r:
            if r.status != 204:
                raise _fail("raw PUT", r.status, await r.text())
        put_seconds += time.perf_counter() - started
    for _ in fragments:
        started = time.perf_counter()
        received = 0
        async with session.get(f"{url}/blob/{size}") as response:
            async for chunk in response.content.iter_chunked(CHUNK):
                received += len(chunk)
        get_seconds += time.perf_counter() - started
        if received != size:
            raise SystemExit(f"bench_miner: raw GET returned {received} of {size} bytes")
    return Transfer(put_seconds, get_seconds, size * len(fragments))


async def _miner_round(
    session: aiohttp.ClientSession,
    url: str,
    miner: str,
    gateway: Keypair,
    fragments: Sequence[Fragment],
) -> Transfer:
    path = f"/fragment/{ABSENT_FRAGMENT}"
    async with session.get(url + path, headers=sign_request(gateway, "GET", path, miner)) as r:
        if r.status != 404:
            raise _fail("miner warm-up GET", r.status, await r.text())
    put_seconds = get_seconds = 0.0
    for fragment in fragments:
        path = f"/fragment/{fragment.fragment_id}"
        started = time.perf_counter()
        headers = sign_request(gateway, "PUT", path, miner, content_sha256=fragment.fragment_id)
        headers["Content-Length"] = str(len(fragment.data))
        async with session.put(url + path, data=_chunks(fragment.data), headers=headers) as r:
            if r.status != 201:
                raise _fail(f"miner PUT {path}", r.status, await r.text())
            receipt = await r.json()
        put_seconds += time.perf_counter() - started
        if receipt["fragment_id"] != fragment.fragment_id:
            raise SystemExit(f"bench_miner: receipt for the wrong fragment: {receipt}")
    for fragment in fragments:
        path = f"/fragment/{fragment.fragment_id}"
        started = time.perf_counter()
        chunks = []
        async with session.get(url + path, headers=sign_request(gateway, "GET", path, miner)) as r:
            if r.status != 200:
                raise _fail(f"miner GET {path}", r.status, await r.text())
            async for chunk in r.content.iter_chunked(CHUNK):
                chunks.append(chunk)
        get_seconds += time.perf_counter() - started
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        if digest.hexdigest() != fragment.sha256:
            raise SystemExit(f"bench_miner: {path} came back with different bytes")
    return Transfer(put_seconds, get_seconds, sum(len(f.data) for f in fragments))


async def _register_gateway(chain: HttpChain) -> Keypair:
    gateway = ChainAccount(chain, Keypair.generate())
    alice = ChainAccount(chain, dev_keypair("Alice"))
    await alice.call("balances.faucet", dest=gateway.address)
    await gateway.call("oss.register", endpoint="http://127.0.0.1:9")
    return gateway.keypair


async def _wait_for_idle_space(chain: HttpChain, miner: str) -> None:
    # Once its declared space is proven idle the miner stops generating and certifying
    # units, so it does not share the two cores with the requests being timed.
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        record = await chain.query("sminer.miner", account=miner)
        if record is not None and record["idle"] >= DECLARED_SPACE:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_miner: the miner proved {record} after {START_TIMEOUT} s")
        await asyncio.sleep(0.1)


async def _measure(
    raw_url: str, chain_url: str, miner: MinerProcess, fragments: Sequence[Fragment]
) -> tuple[Transfer, Transfer]:
    chain = HttpChain(chain_url)
    try:
        gateway = await _register_gateway(chain)
        log = miner.directory / "miner.log"
        miner_url = await asyncio.to_thread(
            _wait_for_url, "the miner", miner.directory / "miner.url", miner.process, log
        )
        await _wait_for_idle_space(chain, miner.address)
    finally:
        await chain.close()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        raw = await _raw_round(session, raw_url, fragments)
        served = await _miner_round(session, miner_url, miner.address, gateway, fragments)
    return raw, served


# -- entry points -------------------------------------------------------------------------


def _size_label(size: int) -> str:
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def _disk_rate(directory: Path, fragments: Sequence[Fragment]) -> float:
    """What the disk under the miner takes: write + fsync of the same bodies (MB/s).
    A fragment PUT is durable before it is acknowledged, so this bounds it."""
    started = time.perf_counter()
    total = 0
    for number, fragment in enumerate(fragments):
        path = directory / f"disk-{number}"
        with open(path, "wb") as handle:
            handle.write(fragment.data)
            handle.flush()
            os.fsync(handle.fileno())
        total += len(fragment.data)
        path.unlink()
    return total / (time.perf_counter() - started) / 1e6


def _report(count: int, size: int, raw: Transfer, miner: Transfer, disk: float) -> None:
    label = _size_label(size)
    print(f"miner: {count} fragments of {label} over loopback, one request at a time")
    lines = [
        (f"raw aiohttp PUT {label} bodies", f"{raw.put_rate:6.0f} MB/s"),
        (f"raw aiohttp GET {label} bodies", f"{raw.get_rate:6.0f} MB/s"),
        (f"disk write + fsync {label}", f"{disk:6.0f} MB/s (bounds a durable PUT)"),
        (
            f"miner PUT {label} fragments",
            f"{miner.put_rate:6.0f} MB/s (raw aiohttp {raw.put_rate:.0f} MB/s, "
            f"ratio {miner.put_rate / raw.put_rate:.2f})",
        ),
        (
            f"miner GET {label} fragments",
            f"{miner.get_rate:6.0f} MB/s (raw aiohttp {raw.get_rate:.0f} MB/s, "
            f"ratio {miner.get_rate / raw.get_rate:.2f})",
        ),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}: {value}")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup below, as Ctrl-C does


def run(count: int, size: int) -> None:
    params = bench_params()
    if count < 1 or not 1 <= size <= params.fragment_size:
        raise SystemExit(
            f"bench_miner: --fragments must be at least 1 and --size 1..{params.fragment_size}"
        )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with (
        tempfile.TemporaryDirectory(prefix="bench-miner-") as tmp,
        contextlib.ExitStack() as processes,  # stopped before the directory goes
    ):
        root = Path(tmp)
        raw_file = root / "raw.url"
        raw_process = _spawn(
            _python(str(Path(__file__).resolve()), "--raw-server", str(raw_file)),
            root / "raw.log",
            processes,
        )
        chain_dir, chain_process = _start_chain(root, params, processes)
        fragments = _make_fragments(count, size, params.leaf_size)  # while they start
        raw_url = _wait_for_url("the raw server", raw_file, raw_process, root / "raw.log")
        chain_url = _wait_for_url(
            "the chain node", chain_dir / "rpc.url", chain_process, chain_dir / "node.log"
        )
        miner = _start_miner(root, chain_url, processes)
        raw, served = asyncio.run(_measure(raw_url, chain_url, miner, fragments))
        disk = _disk_rate(root, fragments)
    _report(count, size, raw, served, disk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fragments", type=int, default=16, help="fragments each way (16)")
    parser.add_argument("--size", type=int, default=8 * MIB, help="bytes per fragment (8 MiB)")
    parser.add_argument(
        "--raw-server",
        metavar="URLFILE",
        help="internal: serve the bare aiohttp baseline, write its URL to URLFILE",
    )
    args = parser.parse_args()
    if args.raw_server is not None:
        asyncio.run(_serve_raw(Path(args.raw_server)))
        return
    run(args.fragments, args.size)


if __name__ == "__main__":
    main()
