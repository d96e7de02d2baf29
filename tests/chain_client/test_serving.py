"""chain_client.serving with short limits on a small app: each timeout closes what it
should and spares what it should, the connection cap makes room or refuses, and the cap
keeps a server under a low descriptor limit (security review #7)."""

import asyncio
import resource
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from chain_client.local import LocalChain
from chain_client.params import Genesis, dev_params
from chain_client.rpc_server import make_app
from chain_client.serving import BodyStalled, ServedSite, ServerLimits, connection_cap, serve
from tests.stalling import answer_within, descriptor_limit, open_descriptors, stall, wait_closed

SHORT = ServerLimits(header_timeout=0.5, body_idle_timeout=0.5, keepalive_timeout=5.0)
UPLOAD_HEAD = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
OK = b"HTTP/1.1 200 "


class Uploads:
    """The small app: GET /health, and POST /upload, which reads the whole body after
    ``delay`` seconds and records how the read ended."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.stalled: list[BodyStalled] = []
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_post("/upload", self.upload)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def upload(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        try:
            body = await request.read()
        except BodyStalled as exc:
            self.stalled.append(exc)
            raise
        return web.Response(text=str(len(body)))


async def _serving(app: web.Application, limits: ServerLimits) -> AsyncIterator[ServedSite]:
    async with serve(app, "127.0.0.1", 0, limits=limits) as site:
        yield site


async def test_silent_and_trickling_connections_are_closed_after_the_header_timeout() -> None:
    async with (
        serve(Uploads().app, "127.0.0.1", 0, limits=SHORT) as site,
        stall("127.0.0.1", site.port, silent=50, trickling=50, interval=0.1) as held,
    ):
        assert (await answer_within(site.url + "/health")).startswith(OK)
        assert await wait_closed(held, 2.0) == []
        # Bytes that trickle in do not buy time: every one went at the same deadline.
        assert all(0.45 <= s.held_for <= 1.2 for s in held), sorted(s.held_for for s in held)
        assert site.open_connections == 0


async def test_keepalive_closes_an_idle_connection_and_a_next_head_gets_the_header_timeout() -> (
    None
):
    limits = ServerLimits(header_timeout=0.5, body_idle_timeout=5.0, keepalive_timeout=1.5)
    request = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    async with (
        serve(Uploads().app, "127.0.0.1", 0, limits=limits) as site,
        stall("127.0.0.1", site.port, silent=2, sending=request) as (idle, slow),
    ):
        await asyncio.sleep(0.3)  # both answered; then one starts a head it never ends
        slow.writer.write(b"GET /health HTTP/1.1\r\n")
        assert await wait_closed([slow], 1.0) == []
        assert 0.7 <= slow.held_for <= 1.3  # 0.3 s, then the header timeout
        assert idle.closed_at is None
        assert await wait_closed([idle], 2.0) == []
        assert 1.4 <= idle.held_for <= 2.3  # the keep-alive timeout


async def test_a_body_is_cut_off_after_the_body_idle_timeout_of_its_clients_silence() -> None:
    uploads = Uploads(delay=1.0)  # two body-idle timeouts before the handler reads
    async with (
        serve(uploads.app, "127.0.0.1", 0, limits=SHORT) as site,
        stall("127.0.0.1", site.port, silent=3, sending=UPLOAD_HEAD + b"x" * 500) as held,
    ):
        trickled, filled = await asyncio.gather(_trickled(site.port), _filled(site.port))
        assert trickled.startswith(OK) and trickled.endswith(b"\r\n\r\n8")
        assert filled.startswith(OK) and filled.endswith(str(FILLING).encode())
        assert await wait_closed(held, 1.0) == []
        assert all(0.45 <= s.held_for <= 1.3 for s in held)
        assert [exc.idle_seconds for exc in uploads.stalled] == [0.5] * 3


FILLING = 8 * 1024 * 1024


async def _trickled(port: int) -> bytes:
    """An upload whose body comes a byte every 0.2 s: never 0.5 s silent, 1.6 s in all."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPLOAD_HEAD.replace(b"1000", b"8\r\nConnection: close"))
    for _ in range(8):
        await asyncio.sleep(0.2)
        writer.write(b"y")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def _filled(port: int) -> bytes:
    """An upload that fills the server's buffer long before the handler reads: the server
    stops reading, and that silence is not the client's."""
    head = UPLOAD_HEAD.replace(b"1000", str(FILLING).encode() + b"\r\nConnection: close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"z" * FILLING)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_at_the_cap_a_new_connection_closes_the_oldest_waiting_one() -> None:
    limits = ServerLimits(header_timeout=5.0, keepalive_timeout=5.0, max_connections=8)
    async with (
        serve(Uploads().app, "127.0.0.1", 0, limits=limits) as site,
        stall("127.0.0.1", site.port, silent=8) as held,
    ):
        assert site.cap == 8
        await asyncio.sleep(0.1)
        assert site.open_connections == 8
        assert (await answer_within(site.url + "/health")).startswith(OK)
        assert await wait_closed(held[:1], 0.5) == []  # the oldest made room
        assert [s for s in held[1:] if s.closed_at is not None] == []
        assert site.open_connections <= 8


async def test_at_the_cap_with_every_connection_inside_a_request_new_ones_get_503() -> None:
    limits = ServerLimits(
        header_timeout=5.0, body_idle_timeout=1.0, keepalive_timeout=5.0, max_connections=8
    )
    async with (
        serve(Uploads().app, "127.0.0.1", 0, limits=limits) as site,
        stall("127.0.0.1", site.port, silent=8, sending=UPLOAD_HEAD) as held,
    ):
        await asyncio.sleep(0.2)
        for _ in range(3):
            refusal = await answer_within(site.url + "/health")
            assert refusal.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in refusal
        assert [s for s in held if s.closed_at is not None] == []
        # Once the stalled bodies are cut off, the server answers again.
        assert await wait_closed(held, 2.0) == []
        assert (await answer_within(site.url + "/health")).startswith(OK)


async def test_a_chain_node_under_a_low_descriptor_limit_keeps_answering(tmp_path: Path) -> None:
    """The review's reproduction: a node at ``ulimit -n 256`` stopped answering (EMFILE in
    accept) once idle connections took every descriptor. Here the clients share the
    process, so the limit leaves room for them: 1200 descriptors beyond those open, of
    which the 680 stalled clients take 680 and an uncapped server would need 680 more."""
    chain = await LocalChain.open(
        tmp_path / "chain.db", Genesis(params=dev_params(block_time=0.0), dev=True)
    )
    try:
        with descriptor_limit(open_descriptors() + 1200):
            async with (
                serve(make_app(chain), "127.0.0.1", 0) as site,
                stall("127.0.0.1", site.port, silent=680) as held,
            ):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                assert site.cap == soft // 4 == connection_cap(ServerLimits())
                assert connection_cap(ServerLimits(max_connections=10)) == 10
                assert (await answer_within(site.url + "/health")).startswith(OK)
                assert site.open_connections <= site.cap
                assert len([s for s in held if s.closed_at is not None]) >= 680 - site.cap
    finally:
        await chain.close()
