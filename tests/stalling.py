"""Clients that hold connections without finishing a request (slowloris), and the probes
the serving tests measure them with: when the server closed each one, and whether a
fresh connection still gets an answer."""

import asyncio
import contextlib
import os
import resource
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

__all__ = [
    "Stalled",
    "answer_within",
    "descriptor_limit",
    "open_descriptors",
    "stall",
    "wait_closed",
]

PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: stalled\r\nX-Slow: "


@dataclass
class Stalled:
    """One connection held open by a client; ``closed_at`` is when the server ended it
    (loop time), None while it is open."""

    writer: asyncio.StreamWriter
    opened_at: float
    closed_at: float | None = None
    watcher: "asyncio.Task[None] | None" = field(default=None, repr=False)

    @property
    def held_for(self) -> float:
        assert self.closed_at is not None, "still open"
        return self.closed_at - self.opened_at


async def _watch(stalled: Stalled, reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass  # a refusal's 503, or a response: the end is what is measured
    stalled.closed_at = asyncio.get_running_loop().time()


async def _trickle(stalled: Stalled, interval: float) -> None:
    # One more byte of a header value every interval: the head never ends.
    with contextlib.suppress(ConnectionError):
        while stalled.closed_at is None:
            await asyncio.sleep(interval)
            stalled.writer.write(b"a")


async def _open(host: str, port: int, first: bytes) -> Stalled:
    reader, writer = await asyncio.open_connection(host, port)
    stalled = Stalled(writer, asyncio.get_running_loop().time())
    if first:
        writer.write(first)
    stalled.watcher = asyncio.create_task(_watch(stalled, reader))
    return stalled


@contextlib.asynccontextmanager
async def stall(
    host: str,
    port: int,
    *,
    silent: int = 0,
    trickling: int = 0,
    sending: bytes = b"",
    interval: float = 0.5,
) -> AsyncIterator[list[Stalled]]:
    """``silent`` connections that send ``sending`` (default nothing) and then nothing,
    and ``trickling`` ones that send a request head a byte per ``interval``; all of
    them are closed on the way out."""
    held: list[Stalled] = []
    tricklers: list[asyncio.Task[None]] = []
    try:
        for _ in range(silent):
            held.append(await _open(host, port, sending))
        for _ in range(trickling):
            stalled = await _open(host, port, PARTIAL_HEAD)
            held.append(stalled)
            tricklers.append(asyncio.create_task(_trickle(stalled, interval)))
        yield held
    finally:
        for task in tricklers:
            task.cancel()
        for stalled in held:
            stalled.writer.transport.abort()
            if stalled.watcher is not None:
                stalled.watcher.cancel()
        await asyncio.gather(
            *tricklers, *(s.watcher for s in held if s.watcher), return_exceptions=True
        )


async def wait_closed(held: list[Stalled], timeout: float) -> list[Stalled]:
    """Waits up to ``timeout`` seconds for the server to close every one of ``held``;
    the ones still open."""
    watchers = [s.watcher for s in held if s.watcher is not None]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(asyncio.shield(w) for w in watchers))
    return [s for s in held if s.closed_at is None]


async def answer_within(url: str, timeout: float = 1.0, method: str = "GET") -> bytes:
    """The status line and headers a fresh connection to ``url`` gets within ``timeout``
    seconds (raw HTTP/1.1, so nothing is pooled or retried)."""
    _scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    host, _, port = authority.rpartition(":")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            request = f"{method} {slash}{path} HTTP/1.1\r\nHost: {authority}\r\n"
            writer.write(request.encode() + b"Connection: close\r\n\r\n")
            return await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.transport.abort()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def descriptor_limit(soft: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE at ``soft`` (at most the hard limit) inside the
    block, the old one after it."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))
