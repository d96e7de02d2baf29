"""Serving an aiohttp app with the limits a public server needs (security review #7).

With aiohttp's defaults a connection that sends nothing, a request head sent a byte a
minute or a body that stops halfway holds its descriptor for an hour or for ever; a few
hundred of them exhaust the process's descriptors, the listener fails with EMFILE and
the service stops answering. ``serve`` runs an app with these limits per connection:

- **header timeout**: a request head must be complete ``header_timeout`` seconds after
  the connection opened or, on a kept-alive connection, after the head's first byte;
  bytes that trickle in do not extend it (slowloris);
- **keep-alive timeout**: a connection with no request in progress and no byte of the
  next one is closed after ``keepalive_timeout`` (aiohttp's own timer);
- **body-idle timeout**: a request body that stays silent for ``body_idle_timeout``
  while the server is reading it is cut off; the handler's read raises ``BodyStalled``.
  Time in which the server has stopped reading (its buffer is full because the handler
  is busy) does not count, and a body that keeps trickling is never cut off;

and a **connection cap** per server: ``max_connections``, and at most
``descriptor_share`` of the process's soft ``RLIMIT_NOFILE``, so the process keeps
descriptors for its own outgoing connections and files. At the cap a new connection
closes the oldest connection that has no request in progress (a head still arriving, or
an idle keep-alive), as nginx reuses its waiting connections; when every connection is
inside a request, the new one is answered ``503`` and closed at once. Either way the
listener never reaches EMFILE.

aiohttp has no hook for "a request head arrived" or "its handler returned"; the
``web.Server``'s two public attributes that every ``RequestHandler`` reads,
``request_factory`` and ``request_handler``, are wrapped to tell the connection.
"""

import asyncio
import contextlib
import enum
import logging
import resource
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields

from aiohttp import StreamReader, hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage

__all__ = [
    "BODY_IDLE_TIMEOUT",
    "HEADER_TIMEOUT",
    "KEEPALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "BodyStalled",
    "ServedSite",
    "ServerLimits",
    "connection_cap",
    "serve",
]

log = logging.getLogger("deoss.serving")
# A refusal is written before any byte of the request is read: the client may still be
# sending, so it must not expect this connection to carry anything else.
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 25\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"too many open connections"
)
BACKLOG = 128  # aiohttp's TCPSite default (asyncio's is 100)
CAP_WARNING_INTERVAL = 60.0  # seconds between two "at the cap" log lines of a server


# The defaults, which the roles' configs repeat. A client sends its head at once and its
# body without pauses; a kept-alive client comes back within seconds or not at all.
HEADER_TIMEOUT = 10.0
BODY_IDLE_TIMEOUT = 60.0
KEEPALIVE_TIMEOUT = 15.0
MAX_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    header_timeout: float = HEADER_TIMEOUT
    body_idle_timeout: float = BODY_IDLE_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    # A gateway runs two servers: together they may take half its descriptors.
    descriptor_share: float = 0.25

    @classmethod
    def configured(cls, config: object) -> "ServerLimits":
        """The limits a role's config names (its ``header_timeout``... keys)."""
        names = ("header_timeout", "body_idle_timeout", "keepalive_timeout", "max_connections")
        return cls(**{name: getattr(config, name) for name in names})

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not value > 0:
                raise ValueError(f"ServerLimits.{item.name} must be more than 0, got {value!r}")
        if self.descriptor_share > 1:
            raise ValueError(
                f"ServerLimits.descriptor_share is a share, got {self.descriptor_share}"
            )


class BodyStalled(ConnectionResetError):
    """The client sent no byte of its request body for ``idle_seconds``; the connection
    was closed. A ConnectionError, so the APIs answer it as a body that broke off."""

    def __init__(self, idle_seconds: float) -> None:
        super().__init__(f"no byte of the request body for {idle_seconds:g} s")
        self.idle_seconds = idle_seconds


def connection_cap(limits: ServerLimits) -> int:
    """How many connections one server may hold in this process, as things stand."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    return max(1, min(limits.max_connections, int(soft * limits.descriptor_share)))


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class _Phase(enum.Enum):
    AWAITING_HEAD = "awaiting a request head"
    READING_BODY = "reading a request body"
    HANDLING = "handling a request"


class _Connections:
    """One server's open connections: admission at the cap, and the waiting ones (no
    request in progress) oldest first, the ones to close when a new one arrives."""

    def __init__(self, server: web.Server, limits: ServerLimits) -> None:
        self.server = server
        self.limits = limits
        self.cap = connection_cap(limits)
        self.open: set[_LimitedHandler] = set()
        self.waiting: dict[_LimitedHandler, None] = {}  # insertion order: oldest first
        self.refused = 0
        self.evicted = 0
        self._warned_at: float | None = None
        inner_factory, inner_handler = server.request_factory, server.request_handler

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: "asyncio.Task[None]",
        ) -> web.BaseRequest:
            if isinstance(protocol, _LimitedHandler):
                protocol.request_started(payload)
            return inner_factory(message, payload, protocol, writer, task)

        async def request_handler(request: web.BaseRequest) -> web.StreamResponse:
            expect = request.headers.get(hdrs.EXPECT)
            if expect is not None and not _is_text(expect):
                # aiohttp refuses an Expect other than 100-continue with a 417 whose text
                # quotes the value; bytes that are not UTF-8 (lone surrogates here) made
                # that a UnicodeEncodeError and a 500 in every role (found by tests/fuzz).
                return web.Response(status=417, text="Expect takes only 100-continue")
            try:
                return await inner_handler(request)
            except BodyStalled as exc:
                # The connection is closed already: this answer only keeps aiohttp from
                # logging a client's silence as a server error.
                return web.Response(status=408, text=str(exc))
            except ConnectionError:
                # The client went away while its request was read or answered (its
                # "100 Continue", which aiohttp writes before the app's own handlers
                # for a method a route lacks, met a closed transport, say): nobody reads
                # an answer, and aiohttp would log a traceback and a 500 (found by
                # tests/fuzz). A ConnectionError while the client is still there, an
                # outgoing call that failed, is the app's and stays a 500.
                if request.transport is not None and not request.transport.is_closing():
                    raise
                return web.Response(status=400, text="the client went away")
            finally:
                if isinstance(request.protocol, _LimitedHandler):
                    request.protocol.request_finished()

        server.request_factory = request_factory
        server.request_handler = request_handler

    def protocol(self) -> "_LimitedHandler":
        return _LimitedHandler(self)

    def admit(self, handler: "_LimitedHandler") -> bool:
        if len(self.open) >= self.cap:
            if self.waiting:
                victim = next(iter(self.waiting))
                self.forget(victim)
                victim.force_close()
                self.evicted += 1
            else:
                self.refused += 1
                self._warn()
                return False
        self.open.add(handler)
        self.waiting[handler] = None
        return True

    def forget(self, handler: "_LimitedHandler") -> None:
        self.open.discard(handler)
        self.waiting.pop(handler, None)

    def _warn(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._warned_at is None or now - self._warned_at >= CAP_WARNING_INTERVAL:
            self._warned_at = now
            log.warning(
                "%d connections, every one inside a request: refusing new ones "
                "(%d refused, %d waiting ones closed so far)",
                len(self.open),
                self.refused,
                self.evicted,
            )


class _LimitedHandler(web.RequestHandler):
    """aiohttp's request handler (one per connection) under one timer: the head
    deadline while a head is awaited, the body-idle deadline while a body is read."""

    __slots__ = (
        "_clock",
        "_connections",
        "_cut_off",
        "_head_deadline",
        "_last_body_byte",
        "_payload",
        "_phase",
        "_reading_held",
        "_refused",
        "_timer",
    )

    def __init__(self, connections: _Connections) -> None:
        self._clock = asyncio.get_running_loop()
        super().__init__(
            connections.server,
            loop=self._clock,
            keepalive_timeout=connections.limits.keepalive_timeout,
            access_log=None,  # type: ignore[arg-type]  # aiohttp's documented "no access log"
            # Bodies reach the handlers as sent. aiohttp inflates a gzip, deflate or br
            # Content-Encoding by default: S3 then stored an object's decompressed bytes
            # under its gzip Content-Encoding, a body that was not gzip was a 500 in every
            # role, and a small body could inflate without bound (found by tests/fuzz).
            auto_decompress=False,
        )
        self._connections = connections
        self._phase = _Phase.AWAITING_HEAD
        self._head_deadline: float | None = None
        self._last_body_byte = 0.0
        self._payload: StreamReader | None = None
        self._reading_held = False
        self._refused = False
        self._cut_off: BodyStalled | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._connections.admit(self):
            # SECURITY: past the cap a connection is accepted and closed at once, so the
            # listener keeps descriptors and never stalls on EMFILE.
            self._refused = True
            assert isinstance(transport, asyncio.Transport)
            transport.write(REFUSAL)
            transport.close()
            return
        super().connection_made(transport)
        # SECURITY: the header timeout runs from the connection's first moment: a client
        # that sends nothing, or a head a byte at a time, is closed when it ends.
        self._head_deadline = self._now() + self._connections.limits.header_timeout
        self._arm(self._head_deadline)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._connections.forget(self)
        self._disarm()
        self._payload = None
        # A handler that reads the body later learns why it ended, not just that it did.
        super().connection_lost(exc if self._cut_off is None else self._cut_off)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not data:  # aiohttp re-parsing what it buffered while reading was paused
            pass
        elif self._phase is _Phase.AWAITING_HEAD and self._head_deadline is None:
            # A kept-alive connection's next head begins: from now it has header_timeout.
            self._head_deadline = self._now() + self._connections.limits.header_timeout
            self._arm(self._head_deadline)
        elif self._phase is _Phase.READING_BODY:
            self._last_body_byte = self._now()
        self._check_body_complete()

    def pause_reading(self) -> None:
        # The handler is not keeping up: silence from here on is ours, not the client's.
        self._reading_held = True
        if self._phase is _Phase.READING_BODY:
            self._disarm()
        super().pause_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_held = False
        if self._phase is _Phase.READING_BODY:
            self._last_body_byte = self._now()
            self._arm(self._last_body_byte + self._connections.limits.body_idle_timeout)
        super().resume_reading(resume_parser)

    def request_started(self, payload: StreamReader) -> None:
        self._connections.waiting.pop(self, None)
        self._head_deadline = None
        self._disarm()
        self._payload = payload
        self._phase = _Phase.READING_BODY
        self._last_body_byte = self._now()
        if not self._reading_held:
            self._arm(self._last_body_byte + self._connections.limits.body_idle_timeout)
        self._check_body_complete()

    def request_finished(self) -> None:
        self._disarm()
        self._payload = None
        self._phase = _Phase.AWAITING_HEAD
        self._head_deadline = None  # until the next head's first byte: keep-alive's turn
        if self.transport is not None and self in self._connections.open:
            self._connections.waiting[self] = None  # the newest waiting one

    def _check_body_complete(self) -> None:
        payload = self._payload
        if self._phase is _Phase.READING_BODY and payload is not None and payload.is_eof():
            self._phase = _Phase.HANDLING
            self._disarm()

    def _now(self) -> float:
        return self._clock.time()

    def _arm(self, when: float) -> None:
        self._disarm()
        self._timer = self._clock.call_at(when, self._deadline_reached)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_reached(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        limits = self._connections.limits
        if self._phase is _Phase.AWAITING_HEAD and self._head_deadline is not None:
            if self._now() < self._head_deadline:
                self._arm(self._head_deadline)
                return
            self.force_close()
        elif self._phase is _Phase.READING_BODY and not self._reading_held:
            # The timer is not moved on every chunk; it looks again when it fires.
            deadline = self._last_body_byte + limits.body_idle_timeout
            if self._now() < deadline:
                self._arm(deadline)
                return
            self._cut_off = BodyStalled(limits.body_idle_timeout)
            if self._payload is not None:
                self._payload.set_exception(self._cut_off)
            self.force_close()


@dataclass(frozen=True, slots=True)
class ServedSite:
    host: str
    port: int
    _connections: _Connections

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections.open)

    @property
    def cap(self) -> int:
        return self._connections.cap


class _LimitedSite(web.BaseSite):
    __slots__ = ("_connections", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, connections: _Connections
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._connections = host, port, connections

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connections.protocol, self._host, self._port, backlog=BACKLOG
        )


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, host: str, port: int, *, limits: ServerLimits | None = None
) -> AsyncIterator[ServedSite]:
    """Serves ``app`` on ``host:port`` (port 0: a free one) under ``limits`` until the
    block ends; yields the bound address."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert runner.server is not None
        connections = _Connections(runner.server, limits or ServerLimits())
        site = _LimitedSite(runner, host, port, connections)
        await site.start()
        bound = runner.addresses[0]
        yield ServedSite(host, int(bound[1]), connections)
    finally:
        await runner.cleanup()
