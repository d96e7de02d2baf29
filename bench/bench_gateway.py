"""How fast the gateway moves objects end to end, on a whole network of real processes.

Starts, under a temporary directory, what ``deoss devnet`` starts (gateway.devnet): a chain
node with 0.2 s blocks, 14 miners, the gateway and a dev user who authorized it and owns
a territory, all sized for this run. Waits until every miner has certified all of its
declared idle space, so no idle generation shares the two cores with the requests timed,
then measures through the native API (docs/native-api.md §5, §7), bodies streamed in
1 MiB chunks, every request freshly signed:

- upload and download MB/s (10**6 bytes) of an 8 MiB and a 256 MiB object; each is
  read back once Active (declared, reported by its miners), and checked by sha256 after
  the clock stops;
- time to the first byte of a 1-byte range (``Range: bytes=0-0``), median of 10;
- the in-process codec bound (``gateway.codec.measure_codec``, 64 MiB) and the 256 MiB
  upload's rate over it;
- 4 KiB uploads and downloads per second, 16 requests at a time;
- through the gateway's S3 API, with the load generator of ``s3peer`` (aiohttp, lean
  SigV4): PUT and GET MB/s of an 8 MiB and a 256 MiB object, 4 KiB PUTs and GETs per
  second, 16 at a time; and the same figures for SeaweedFS (``weed mini``, measured
  first, before the network starts), each pair with its ratio; the load generator's own
  ceiling against a server that stores nothing shows it is not what limits them;
- unless ``--no-big``: the gateway's peak RSS while it uploads a 2 GiB object and
  downloads it back (its body pseudo-random, regenerated to check the download).

``--layout real`` (default) uses the network's real segment layout (8 MiB fragments,
32 MiB segments, 256 KiB blocks); ``--layout devnet`` the devnet's small one (256 KiB
fragments, 1 MiB segments, 64 KiB blocks). Both with k = 4, n = 12 and cheap idle units.

A full run takes about 5 minutes on 2 cores, most of it the miners filling 9 GiB of idle
space, and needs about 18 GiB of free disk; ``--no-big`` about 2 minutes and 4 GiB.

    python bench/bench_gateway.py [--no-big] [--layout real|devnet] [--dir DIR]
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeAlias, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from chain_client.files import write_atomically
from chain_client.keys import Keypair, load_key_file
from chain_client.params import GIB, KIB, MIB, Genesis, NetworkParams, devnet_params
from chain_client.rpc_client import HttpChain
from gateway.codec import Layout, measure_codec
from gateway.devnet import (
    DEVNET_TERRITORY,
    TerritoryKeeper,
    _access_key,
    _wait_for_blocks,
    prepare_user,
    start_chain_process,
    start_gateway_process,
    start_miner_process,
    stop_process,
)
from gateway.native.signing import ACCOUNT_HEADER, gateway_account, signing_middleware

sys.path.insert(0, str(Path(__file__).resolve().parent))
import s3peer
from s3peer import CONCURRENCY, SIZES, SMALL_SIZE, size_label

T = TypeVar("T")
Body: TypeAlias = bytes | AsyncIterator[bytes] | AsyncIterator[memoryview]

MB = 10**6
CHUNK = MIB
MINERS = 14
BLOCK_TIME = 0.2
IDLE_UNIT = 16 * MIB
DISK_FLOOR = 256 * MIB
TIMED_SIZES = SIZES  # 8 MiB and 256 MiB, through the native API and through S3
BIG_SIZE = 2 * GIB
CODEC_SIZE = 64 * MIB
SMALL_COUNT = 200
S3_BUCKET = "bench"
TTFB_TRIES = 10
RSS_POLL_SECONDS = 0.05
RSS_TARGET = 300 * MIB
# A miner holds at most one fragment of each segment (14 miners, n = 12), so the stored
# bytes over n bound what one miner's idle space has to take.
IDLE_MARGIN = 1.1
TERRITORY_MARGIN = 1.05
TERRITORY_UNITS = 256  # the territory is minted as this many units, sized for the run
IDLE_TIMEOUT = 1800.0
ACTIVE_TIMEOUT = 120.0
LAYOUTS: dict[str, dict[str, int]] = {
    "real": {"fragment_size": 8 * MIB, "segment_size": 32 * MIB, "stripe_block_size": 256 * KIB},
    "devnet": {},  # devnet_params' own: 256 KiB fragments, 1 MiB segments, 64 KiB blocks
}
CODEC_TRIES = 3
WIDTH = 44  # of the name column, fixed so each figure prints as soon as it is measured


def _fail(message: str) -> SystemExit:
    return SystemExit(f"bench_gateway: {message}")


def _report(name: str, value: str) -> None:
    print(f"{name:<{WIDTH}}: {value}", flush=True)


# -- sizing the network -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizing:
    stored: int  # bytes every object of the run takes on miners, all fragments
    declared_space: int  # per miner
    territory_unit: int  # TERRITORY_UNITS of them hold `stored`
    disk: int  # free bytes the run needs under its directory


def stored_bytes(layout: Layout, size: int) -> int:
    segments = range(layout.segment_count(size))
    return layout.n * sum(layout.fragment_size(size, segment) for segment in segments)


def plan(layout: Layout, big: bool) -> Sizing:
    sizes = [*TIMED_SIZES, *TIMED_SIZES, *([BIG_SIZE] if big else [])]  # native, then S3
    stored = sum(stored_bytes(layout, size) for size in sizes)
    small = SMALL_COUNT + s3peer.SMALL_COUNT + 1  # native, S3 and S3's warm-up
    stored += small * stored_bytes(layout, SMALL_SIZE)
    declared = math.ceil(stored / layout.n * IDLE_MARGIN / IDLE_UNIT) * IDLE_UNIT
    territory_unit = math.ceil(stored * TERRITORY_MARGIN / TERRITORY_UNITS / MIB) * MIB
    # Idle units fill the declared space; fragments land before the idle units they
    # displace are deleted; the miners' floor (one disk), logs and databases take the rest.
    # SeaweedFS keeps one copy of its objects.
    disk = MINERS * declared + DISK_FLOOR + stored + sum(TIMED_SIZES) + 2 * GIB
    return Sizing(stored, declared, territory_unit, disk)


def bench_params(layout: str, big: bool) -> tuple[NetworkParams, Sizing]:
    shape = devnet_params(
        block_time=BLOCK_TIME,
        idle_unit_size=IDLE_UNIT,
        # One layer generates twice as fast as the devnet's two; what is measured here
        # does not depend on how hard idle units are to fake.
        idle_layers=1,
        **LAYOUTS[layout],
    )
    sizing = plan(Layout.from_params(shape), big)
    segments = Layout.from_params(shape).segment_count(BIG_SIZE)
    params = shape.replace(
        territory_unit=sizing.territory_unit,
        # 300 blocks is one minute: miners busy with a 2 GiB upload still report in time.
        deal_report_timeout=300,
        # The devnet layout cuts 2 GiB into more segments than a file may have by default.
        max_segments_per_file=max(shape.max_segments_per_file, segments),
    )
    return params, sizing


# -- the network --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Network:
    gateway_url: str
    gateway_pid: int
    user: Keypair
    s3_url: str
    access_key: str
    secret_key: str


def _gateway_address(root: Path) -> str:
    return str(json.loads((root / "gateway" / "key.json").read_text())["address"])


def _write_genesis(root: Path, params: NetworkParams) -> Path:
    path = root / "genesis.json"
    write_atomically(path, json.dumps(Genesis(params=params, dev=True).to_json(), indent=2))
    return path


async def _wait_for_idle(
    chain_url: str, wanted: int, processes: list[subprocess.Popen[bytes]], root: Path
) -> None:
    chain = HttpChain(chain_url)
    deadline = time.monotonic() + IDLE_TIMEOUT
    try:
        while (idle := (await chain.query("sminer.totals"))["idle"]) < wanted:
            if any(process.poll() is not None for process in processes):
                raise _fail(
                    f"a process exited while the miners filled their space; see the logs in "
                    f"{root} (kept with --dir)"
                )
            if time.monotonic() > deadline:
                raise _fail(f"the miners certified {idle} of {wanted} bytes in {IDLE_TIMEOUT} s")
            await asyncio.sleep(1.0)
    finally:
        await chain.close()


async def start_network(
    root: Path, params: NetworkParams, sizing: Sizing, processes: list[subprocess.Popen[bytes]]
) -> Network:
    """Starts every process (each appended to ``processes`` at once, for the caller to
    stop) and returns once the miners' idle space is certified and the user is ready."""
    genesis = _write_genesis(root, params)
    chain = await start_chain_process(
        root / "chain",
        block_time=BLOCK_TIME,
        log_file=root / "chain.log",
        extra=("--genesis", str(genesis)),
    )
    processes.append(chain.process)
    await _wait_for_blocks(chain.url, 1, timeout=10.0)
    miners = await asyncio.gather(
        *(
            start_miner_process(
                root / f"miner{number}",
                chain.url,
                declared_space=sizing.declared_space,
                free_disk_floor=DISK_FLOOR,
                log_file=root / f"miner{number}.log",
            )
            for number in range(MINERS)
        ),
        return_exceptions=True,
    )
    processes += [m.process for m in miners if not isinstance(m, BaseException)]
    for miner in miners:
        if isinstance(miner, BaseException):
            raise miner
    gateway_process, gateway_url, s3_url = await start_gateway_process(
        root / "gateway", chain.url, root / "gateway.log"
    )
    processes.append(gateway_process)
    await _wait_for_idle(chain.url, MINERS * sizing.declared_space, processes, root)
    await asyncio.to_thread(os.sync)  # gigabytes of idle units: not written back while timing
    key_file = await prepare_user(root, chain.url, _gateway_address(root))
    user = load_key_file(key_file)
    chain_client = HttpChain(chain.url)
    try:  # the whole territory at once: the miners certified all their space
        territory = TERRITORY_UNITS * params.territory_unit
        found = await TerritoryKeeper(chain_client, user, params, territory).step(territory)
        if found is None or found["total"] < territory:
            raise _fail(f"no territory of {territory} bytes: {found}")
    finally:
        await chain_client.close()
    access_key, secret_key = await _access_key(root, gateway_url, user)
    return Network(gateway_url, gateway_process.pid, user, s3_url, access_key, secret_key)


# -- bodies -------------------------------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]


def _pseudo_random_chunk(block: bytes, number: int, length: int) -> bytes:
    """Chunk ``number`` of a stream: ``block`` rotated by a per-chunk offset and led by
    the chunk's number, so no two chunks are alike and any of them can be made again."""
    view = memoryview(block)
    offset = number * 4099 % len(block)  # 4099 is odd: distinct offsets for 2**20 chunks
    rotated = b"".join((view[offset:], view[:offset]))
    return number.to_bytes(8, "big") + rotated[8:length]


def _pseudo_random_stream(block: bytes, size: int) -> Iterator[bytes]:
    for number in range(-(-size // CHUNK)):
        yield _pseudo_random_chunk(block, number, min(CHUNK, size - number * CHUNK))


async def _streamed(block: bytes, size: int) -> AsyncIterator[bytes]:
    for chunk in _pseudo_random_stream(block, size):
        yield chunk


def _stream_digest(block: bytes, size: int) -> bytes:
    digest = hashlib.sha256()
    for chunk in _pseudo_random_stream(block, size):
        digest.update(chunk)
    return digest.digest()


# -- requests -----------------------------------------------------------------------------


class GatewayClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, user: Keypair) -> None:
        self.session = session
        self.url = url
        self.user = user

    async def upload(self, name: str, body: Body, size: int) -> tuple[str, float]:
        """(fid, seconds) of ``PUT /object/{name}``, from the request to the answer."""
        headers = {ACCOUNT_HEADER: self.user.address}
        headers["Content-Length"] = str(size)
        started = time.perf_counter()
        async with self.session.put(f"{self.url}/object/{name}", data=body, headers=headers) as r:
            if r.status != 200:
                raise _fail(f"PUT /object/{name} answered {r.status}: {(await r.text())[:500]}")
            answer = await r.json()
        return str(answer["data"]["fid"]), time.perf_counter() - started

    async def download(self, fid: str, sink: Callable[[bytes], object]) -> tuple[int, float]:
        """(bytes, seconds) of ``GET /file/download/{fid}``, each chunk handed to ``sink``."""
        headers = {ACCOUNT_HEADER: self.user.address}
        received = 0
        started = time.perf_counter()
        async with self.session.get(f"{self.url}/file/download/{fid}", headers=headers) as r:
            if r.status != 200:
                raise _fail(f"GET /file/download/{fid} answered {r.status}: {await r.text()}")
            async for chunk in r.content.iter_chunked(CHUNK):
                sink(chunk)
                received += len(chunk)
        return received, time.perf_counter() - started

    async def first_byte(self, fid: str) -> float:
        headers = {ACCOUNT_HEADER: self.user.address}
        headers["Range"] = "bytes=0-0"
        started = time.perf_counter()
        async with self.session.get(f"{self.url}/file/open/{fid}", headers=headers) as r:
            body = await r.content.read(1)
            elapsed = time.perf_counter() - started
            if r.status != 206 or len(body) != 1:
                raise _fail(f"GET /file/open/{fid} bytes=0-0 answered {r.status}, {body!r}")
        return elapsed

    async def wait_all_active(self) -> None:
        """Returns once every object of the user is Active (every page of ``/file/list``),
        or after ACTIVE_TIMEOUT with a note of how many are not."""
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            waiting, after = 0, ""
            while True:
                headers = {ACCOUNT_HEADER: self.user.address}
                query = {"limit": "1000", "start_after": after}
                async with self.session.get(
                    f"{self.url}/file/list", params=query, headers=headers
                ) as r:
                    if r.status != 200:
                        raise _fail(f"GET /file/list answered {r.status}: {await r.text()}")
                    page = (await r.json())["data"]
                waiting += sum(entry["state"] != "Active" for entry in page)
                if len(page) < 1000:
                    break
                after = page[-1]["name"]
            if not waiting:
                return
            if time.monotonic() > deadline:
                _report("note", f"{waiting} objects not Active after {ACTIVE_TIMEOUT:.0f} s")
                return
            await asyncio.sleep(0.25)

    async def wait_active(self, fid: str) -> str:
        """The object's state once Active, or after ACTIVE_TIMEOUT: the deal's chain and
        miner traffic is over before the next figure is timed."""
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            headers = {ACCOUNT_HEADER: self.user.address}
            async with self.session.get(f"{self.url}/file/metadata/{fid}", headers=headers) as r:
                if r.status != 200:
                    raise _fail(f"GET /file/metadata/{fid} answered {r.status}: {await r.text()}")
                state = str((await r.json())["data"]["state"])
            if state == "Active" or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.25)


# -- the measurements ---------------------------------------------------------------------


async def _settle(client: GatewayClient, fid: str, what: str) -> None:
    state = await client.wait_active(fid)
    if state != "Active":
        _report(f"note: {what}", f"still {state} after {ACTIVE_TIMEOUT:.0f} s")


async def measure_object(client: GatewayClient, size: int) -> tuple[float, str]:
    """Upload MB/s of a ``size``-byte random object, then its download MB/s; returns the
    upload rate and the fid."""
    data = os.urandom(size)
    expected = hashlib.sha256(data).digest()
    label = size_label(size)
    fid, upload_seconds = await client.upload(
        f"timed/{label.replace(' ', '')}", _chunks(data), size
    )
    _report(f"upload {label}", f"{size / upload_seconds / MB:7.1f} MB/s")
    await _settle(client, fid, f"{label} object")
    pieces: list[bytes] = []
    received, download_seconds = await client.download(fid, pieces.append)
    if received != size or hashlib.sha256(b"".join(pieces)).digest() != expected:
        raise _fail(f"the {label} object came back different ({received} bytes)")
    _report(f"download {label}", f"{size / download_seconds / MB:7.1f} MB/s")
    return size / upload_seconds / MB, fid


async def measure_small(client: GatewayClient) -> None:
    bodies = [os.urandom(SMALL_SIZE) for _ in range(SMALL_COUNT)]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def upload(number: int) -> str:
        async with gate:
            fid, _ = await client.upload(f"small/{number}", bodies[number], SMALL_SIZE)
            return fid

    async def download(fid: str) -> bytes:
        async with gate:
            pieces: list[bytes] = []
            await client.download(fid, pieces.append)
            return b"".join(pieces)

    label = size_label(SMALL_SIZE)
    started = time.perf_counter()
    fids = await asyncio.gather(*(upload(number) for number in range(SMALL_COUNT)))
    rate = SMALL_COUNT / (time.perf_counter() - started)
    _report(f"{label} uploads, {CONCURRENCY} at a time", f"{rate:7.1f} /s ({SMALL_COUNT} objects)")
    started = time.perf_counter()
    got = await asyncio.gather(*(download(fid) for fid in fids))
    rate = SMALL_COUNT / (time.perf_counter() - started)
    if got != bodies:
        raise _fail(f"a {label} object came back different")
    _report(f"{label} downloads, {CONCURRENCY} at a time", f"{rate:7.1f} /s")


def _status_kib(pid: int, field: str) -> int:
    # Tiny /proc reads, microseconds each: done inline rather than in a thread, which
    # would only add scheduling noise to a 50 ms poll.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise _fail(f"/proc/{pid}/status has no {field}")


def _reset_peak_rss(pid: int) -> bool:
    """Resets the process's VmHWM to its current RSS (Linux >= 4.0, same user)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _poll_rss(pid: int, peak_kib: list[int]) -> None:
    while True:
        peak_kib[0] = max(peak_kib[0], _status_kib(pid, "VmRSS"))
        await asyncio.sleep(RSS_POLL_SECONDS)


async def peak_rss_during(pid: int, work: Awaitable[T]) -> tuple[T, int]:
    """What ``work`` returns, and the process's peak RSS (bytes) meanwhile: its VmHWM,
    reset first, or where that cannot be reset, its VmRSS polled every 50 ms."""
    reset = _reset_peak_rss(pid)
    peak_kib = [0]
    polling = asyncio.create_task(_poll_rss(pid, peak_kib))
    try:
        result = await work
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
    if reset:
        peak_kib[0] = max(peak_kib[0], _status_kib(pid, "VmHWM"))
    return result, peak_kib[0] * KIB


async def measure_big(client: GatewayClient, gateway_pid: int) -> None:
    block = random.Random(BIG_SIZE).randbytes(CHUNK)
    label = size_label(BIG_SIZE)
    body = _streamed(block, BIG_SIZE)
    (fid, upload_seconds), upload_peak = await peak_rss_during(
        gateway_pid, client.upload("big/object", body, BIG_SIZE)
    )
    _report(f"upload {label}", f"{BIG_SIZE / upload_seconds / MB:7.1f} MB/s")
    await _settle(client, fid, f"{label} object")
    digest = hashlib.sha256()
    (received, download_seconds), download_peak = await peak_rss_during(
        gateway_pid, client.download(fid, digest.update)
    )
    _report(
        f"download {label}", f"{BIG_SIZE / download_seconds / MB:7.1f} MB/s (hashed as it arrives)"
    )
    expected = await asyncio.to_thread(_stream_digest, block, BIG_SIZE)
    if received != BIG_SIZE or digest.digest() != expected:
        raise _fail(f"the {label} object came back different ({received} bytes)")
    _report(
        "gateway peak RSS",
        f"{max(upload_peak, download_peak) // MIB} MiB (target < {RSS_TARGET // MIB} MiB; "
        f"upload {upload_peak // MIB} MiB, download {download_peak // MIB} MiB)",
    )


async def measure_peer(root: Path) -> s3peer.S3Figures:
    """The load generator's own ceiling, then SeaweedFS's S3 figures; on a quiet machine,
    before the network starts. SeaweedFS's files are gone afterwards."""
    async with s3peer.null_server(root / "null-server.log") as url:
        puts, gets = await s3peer.ceiling(url)
    _report(
        f"S3 load generator ceiling ({size_label(SMALL_SIZE)})",
        f"{puts:7.0f} PUT/s, {gets:7.0f} GET/s (against a server that stores nothing)",
    )
    weed = root / "seaweedfs"
    async with s3peer.seaweedfs(weed) as endpoint, s3peer.session() as session:
        client = s3peer.S3Client(session, endpoint, "bench", "bench")
        await client.create_bucket(S3_BUCKET)
        figures = await s3peer.measure_s3(client, S3_BUCKET, "seaweedfs", _report)
    await asyncio.to_thread(shutil.rmtree, weed)
    return figures


async def measure(network: Network, layout: Layout, big: bool, peer: s3peer.S3Figures) -> None:
    codec = max(
        [await asyncio.to_thread(measure_codec, layout, CODEC_SIZE) for _ in range(CODEC_TRIES)]
    )
    _report(f"codec bound ({size_label(CODEC_SIZE)}, best of {CODEC_TRIES})", f"{codec:7.1f} MB/s")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
    connector = aiohttp.TCPConnector(limit=2 * CONCURRENCY)
    # Each request signed for the gateway, its method, path and body, as clients must.
    signer = signing_middleware(network.user, await gateway_account(network.gateway_url))
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, middlewares=(signer,)
    ) as session:
        client = GatewayClient(session, network.gateway_url, network.user)
        upload_rate, fid = 0.0, ""
        for size in TIMED_SIZES:
            upload_rate, fid = await measure_object(client, size)
        _report(
            f"upload {size_label(TIMED_SIZES[-1])} / codec bound",
            f"{upload_rate / codec:7.2f} (the aim is >= 0.5)",
        )
        tries = [await client.first_byte(fid) for _ in range(TTFB_TRIES)]
        _report(
            f"first byte of a 1-byte range (median of {TTFB_TRIES})",
            f"{statistics.median(tries) * 1000:7.1f} ms",
        )
        await measure_small(client)
        s3 = s3peer.S3Client(session, network.s3_url, network.access_key, network.secret_key)
        await s3.create_bucket(S3_BUCKET, {"x-deoss-territory": DEVNET_TERRITORY})
        ours = await s3peer.measure_s3(s3, S3_BUCKET, "deoss", _report, client.wait_all_active)
        s3peer.compare(_report, ours, peer)
        if big:
            await measure_big(client, network.gateway_pid)


# -- entry points -------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup below, as Ctrl-C does


def _check_disk(root: Path, sizing: Sizing) -> None:
    free = shutil.disk_usage(root).free
    if free < sizing.disk:
        raise _fail(
            f"{root} has {free / GIB:.1f} GiB free; this run needs {sizing.disk / GIB:.1f} GiB "
            "(idle space for the miners and the objects' fragments); --no-big needs less"
        )


def run(*, big: bool, layout_name: str, directory: Path | None) -> None:
    started = time.perf_counter()
    params, sizing = bench_params(layout_name, big)
    layout = Layout.from_params(params)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.ExitStack() as stack:
        if directory is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gateway-")))
        else:
            if directory.exists() and any(directory.iterdir()):
                raise _fail(f"--dir {directory} is not empty")
            directory.mkdir(parents=True, exist_ok=True)
            root = directory
        _check_disk(root, sizing)
        print(
            f"gateway: {MINERS} miners, k={layout.k} n={layout.n}, {layout_name} layout "
            f"({size_label(params.fragment_size)} fragments, "
            f"{size_label(params.segment_size)} segments, "
            f"{size_label(params.stripe_block_size)} blocks), {BLOCK_TIME} s blocks, "
            f"{size_label(sizing.declared_space)} declared per miner",
            flush=True,
        )
        print(
            f"S3 peer: SeaweedFS {s3peer.weed_version()} (weed mini: one copy, no encryption)",
            flush=True,
        )
        peer = asyncio.run(measure_peer(root))
        processes: list[subprocess.Popen[bytes]] = []
        try:
            network = asyncio.run(start_network(root, params, sizing, processes))
            _report(
                "network ready, idle space certified", f"{time.perf_counter() - started:7.0f} s"
            )
            asyncio.run(measure(network, layout, big, peer))
        finally:
            for process in reversed(processes):  # before their directory goes
                stop_process(process)
    _report("run time", f"{time.perf_counter() - started:7.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--no-big",
        dest="big",
        action="store_false",
        help=f"skip the {size_label(BIG_SIZE)} object and the gateway's peak RSS",
    )
    parser.add_argument(
        "--layout", choices=sorted(LAYOUTS), default="real", help="segment layout (real)"
    )
    parser.add_argument(
        "--dir", type=Path, help="run (and keep the network's files and logs) here, not in /tmp"
    )
    args = parser.parse_args()
    run(big=args.big, layout_name=args.layout, directory=args.dir)


if __name__ == "__main__":
    main()
