"""HTTP/1.1 requests as bytes on a socket, for the fuzz suite: aiohttp's client refuses
to send most of what is worth sending (header bytes that are not UTF-8, a Content-Length
that lies, both framings at once, broken chunks), so requests are written by hand and
each one has a connection of its own (``Connection: close``).

Text in a request (target, header names and values) holds surrogates for bytes that are
not UTF-8 (``surrogateescape``): that is how aiohttp hands such bytes to a handler, so a
signature computed over the text covers what the server will see.
"""

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp.test_utils import TestClient

__all__ = ["Answer", "Framing", "FramingKind", "Request", "exchange", "served"]

# length: a true Content-Length; chunked: Transfer-Encoding: chunked in ``pieces``; none:
# neither (and so no body); short: a Content-Length ``skew`` bytes beyond the body, then
# the write side closed; long: one ``skew`` bytes short (the rest is a second request);
# both: Content-Length and chunked at once (request smuggling); bad-chunked: chunked with
# the chunk-size line ``bad`` first.
FramingKind = Literal["length", "chunked", "none", "short", "long", "both", "bad-chunked"]
_CODE_XML = re.compile(rb"<Code>([^<]{1,80})</Code>")


@dataclass(frozen=True, slots=True)
class Framing:
    kind: FramingKind = "length"
    pieces: tuple[int, ...] = ()  # chunk sizes (chunked); the rest of the body is one more
    skew: int = 1  # short, long: how far the Content-Length is off
    bad: bytes = b"zz\r\n"  # bad-chunked: the first chunk-size line, sent as is

    @property
    def cut_short(self) -> bool:
        """Whether the body ends before its framing says it does: the server can only
        wait for the rest, so the write side is closed and it may answer nothing."""
        return self.kind in ("short", "bad-chunked")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    framing: Framing = field(default_factory=Framing)

    def wire(self) -> bytes:
        """The request's bytes: request line, the headers given, the framing's headers,
        ``Connection: close``, then the body as the framing sends it."""
        framing, body = self.framing, self.body
        lines = [f"{self.method} {self.target} HTTP/1.1", *(f"{n}: {v}" for n, v in self.headers)]
        if framing.kind in ("length", "short", "long", "both"):
            skew = {"short": framing.skew, "long": -min(framing.skew, len(body))}.get(
                framing.kind, 0
            )
            lines.append(f"Content-Length: {len(body) + skew}")
        if framing.kind in ("chunked", "both", "bad-chunked"):
            lines.append("Transfer-Encoding: chunked")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        if framing.kind == "none":
            return head
        if framing.kind in ("chunked", "both", "bad-chunked"):
            encoded = _chunked(body, framing.pieces)
            return head + (framing.bad + encoded if framing.kind == "bad-chunked" else encoded)
        return head + body

    def describe(self, limit: int = 600) -> str:
        """The request for a failure message, cut to ``limit`` characters."""
        text = repr(self.wire())
        return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _chunked(body: bytes, pieces: tuple[int, ...]) -> bytes:
    out, offset = [], 0
    for size in pieces:
        piece = body[offset : offset + size]
        if not piece:
            break
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        offset += len(piece)
    if offset < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - offset, body[offset:]))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)

    @property
    def code(self) -> str:
        """The error's name in whichever envelope the API answers: S3 XML ``<Code>``,
        the native ``data.error``, or the miner's and chain's ``error.code``."""
        found = _CODE_XML.search(self.body)
        if found:
            return found[1].decode("utf-8", "replace")
        try:
            answer: Any = json.loads(self.body)
        except ValueError:
            return ""
        if not isinstance(answer, dict):
            return ""
        error = answer.get("error")
        if isinstance(error, dict):
            return str(error.get("code", ""))
        data = answer.get("data")
        return str(data.get("error", "")) if isinstance(data, dict) else ""

    def json(self) -> Any:
        return json.loads(self.body)


def served(client: TestClient[Any, Any]) -> tuple[str, int]:
    """The (host, port) a grid client's server listens on."""
    assert client.port is not None, "not started"
    return client.host, client.port


async def exchange(
    host: str, port: int, request: Request, *, timeout: float = 20.0
) -> Answer | None:
    """Sends ``request`` on a new connection and reads the answer to its end; None when
    the server closed the connection without answering. TimeoutError when it neither
    answers nor closes within ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            # The server may answer (and close) before taking the whole body: what it
            # sent before the reset is still the answer.
            with contextlib.suppress(ConnectionError):
                writer.write(request.wire())
                await writer.drain()
                if request.framing.cut_short:
                    writer.write_eof()
            received = bytearray()
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    received += chunk
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    return _parse(bytes(received), head_only=request.method == "HEAD")


def _parse(data: bytes, *, head_only: bool) -> Answer | None:
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            raise AssertionError(f"an answer without the end of its head: {data[:300]!r}")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest_of_line = status_line.partition(" ")
        status_text = rest_of_line.partition(" ")[0]
        if not version.startswith("HTTP/1.") or not status_text.isdigit():
            raise AssertionError(f"not an HTTP answer: {data[:300]!r}")
        status = int(status_text)
        if 100 <= status < 200:  # 100 Continue, then the answer itself
            data = rest
            continue
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines)
        )
        answer = Answer(status, headers, b"")
        chunked = (answer.header("Transfer-Encoding") or "").lower() == "chunked"
        body = b"" if head_only else _dechunk(rest) if chunked else rest
        return Answer(status, headers, body)
    return None


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)
