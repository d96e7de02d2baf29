"""``deoss put`` of a file larger than one chunk: the native resume API
(docs/native-api.md §6) one chunk at a time, with a state file, so that running the same
command again after a Ctrl-C, a kill or a broken connection asks the gateway what it
holds and sends only the rest (docs/cli.md).

The state file, ``<state dir>/<key>.json`` (``~/.cache/deoss/uploads`` unless told), says
that this client started the gateway's session for the name. Its key is a digest of
what makes two runs the same upload: the file (absolute path, size, mtime), the gateway
URL, the signer, the name, the territory and the copies. Without it a session the
gateway holds for the name is someone else's (or a file since changed), so it is
deleted and the upload starts at byte 0; with it, the upload goes on from the stored
prefix the gateway reports. Each chunk's sha256 is signed: the gateway counts a chunk
only whole and matching (§2.1), so a chunk cut off by a kill leaves nothing half-stored.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from chain_client.files import private_directory, write_atomically
from chain_client.keys import Keypair
from gateway.client_session import ClientError, answer
from gateway.native.signing import sign_request
from gateway.progress import Progress

__all__ = ["DEFAULT_CHUNK", "PutOutcome", "UploadPlan", "default_state_dir", "resumable_put"]

DEFAULT_CHUNK = 16 * 1024 * 1024
BUSY_WAIT = 120.0  # seconds: a gateway reads a dead client's chunk until its body timeout
MAX_ASKED = 3  # chunks in a row refused SignatureUsed or ChunkGap (_Upload.send)


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadPlan:
    """What makes two runs of ``deoss put`` the same upload."""

    file: str  # absolute
    size: int
    mtime_ns: int
    gateway: str
    account: str
    name: str
    territory: str | None
    copies: int | None

    @classmethod
    def of(cls, path: Path, *, gateway: str, account: str, **rest: Any) -> "UploadPlan":
        stat = path.stat()
        return cls(
            file=str(path.resolve()),
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            gateway=gateway,
            account=account,
            **rest,
        )

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]

    def same_target(self, other: dict[str, Any]) -> bool:
        """Whether a state file is for this gateway, signer and name (whatever the file)."""
        return all(other.get(k) == getattr(self, k) for k in ("gateway", "account", "name"))


@dataclass(frozen=True, slots=True)
class PutOutcome:
    fid: str
    size: int
    resumed_at: int  # bytes the gateway already held when this run began
    sent: int  # bytes of chunks this run sent


def default_state_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "deoss" / "uploads"


class _State:
    def __init__(self, directory: Path, plan: UploadPlan) -> None:
        self.directory, self.plan = directory, plan
        self.path = directory / f"{plan.key()}.json"

    def exists(self) -> bool:
        return self.path.exists()

    def start(self) -> None:
        """Records the upload before its first byte goes out, dropping the records of
        earlier uploads of the same name to the same gateway (their sessions are gone)."""
        private_directory(self.directory)  # SECURITY: file paths and names are private
        for other in self._others():
            other.unlink(missing_ok=True)
        record = {**asdict(self.plan), "started": int(time.time())}
        write_atomically(self.path, json.dumps(record, indent=2) + "\n")

    def _others(self) -> Iterator[Path]:
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                if path != self.path and self.plan.same_target(json.loads(path.read_text())):
                    yield path

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _note(text: str) -> None:
    print(f"deoss put: {text}", file=sys.stderr, flush=True)


def _url(gateway: str, name: str) -> URL:
    # Encoded here, once, so that what is signed is what is sent (a name may hold / ? % #).
    return URL(gateway).with_path("/resume/" + quote(name, safe="/"), encoded=True)


async def _session_of(session: aiohttp.ClientSession, url: URL) -> dict[str, Any] | None:
    async with session.get(url) as response:
        if response.status == 404:
            return None
        data: dict[str, Any] = await answer(response)
        return data


async def _error(response: aiohttp.ClientResponse) -> str | None:
    """The native error name of a refusal (docs/native-api.md §1)."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return str(data.get("error")) if isinstance(data, dict) else None


def _read_chunk(handle: int, start: int, length: int) -> bytes:
    data = os.pread(handle, length, start)
    if len(data) != length:
        raise ClientError(f"the file shrank while it was sent: {len(data)} of {length} bytes")
    return data


class _Upload:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        keypair: Keypair,
        gateway_account: str,
        plan: UploadPlan,
        chunk_size: int,
        cipher: str | None,
        progress: Progress,
    ) -> None:
        self.session, self.keypair, self.gateway_account = session, keypair, gateway_account
        self.plan, self.chunk_size, self.cipher, self.progress = plan, chunk_size, cipher, progress
        self.url = _url(plan.gateway, plan.name)
        self.sent = 0

    def _headers(self, start: int, end: int, chunk: bytes) -> dict[str, str]:
        headers = sign_request(
            self.keypair,
            gateway=self.gateway_account,
            method="PUT",
            target=self.url.raw_path_qs,
            body=chunk,
        )
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{self.plan.size}"
        if self.plan.territory is not None:
            headers["Territory"] = self.plan.territory
        if self.plan.copies is not None:
            headers["Copies"] = str(self.plan.copies)
        if end == self.plan.size and self.cipher is not None:
            headers["Cipher"] = self.cipher  # read from the completing chunk only
        return headers

    async def send(self, handle: int, position: int) -> str:
        """Sends the chunks from ``position`` on; the fid."""
        size = self.plan.size
        busy_since: float | None = None
        asked = 0
        while True:
            # A session holding every byte but not complete (the completing chunk's answer
            # never came) completes on the last chunk sent again.
            start = position if position < size else max(size - self.chunk_size, 0)
            end = min(start + self.chunk_size, size)
            chunk = await asyncio.to_thread(_read_chunk, handle, start, end - start)
            if end == size:
                await asyncio.to_thread(self._check_unchanged)
            # Signing hashes the chunk: off the event loop.
            headers = await asyncio.to_thread(self._headers, start, end, chunk)
            async with self.session.put(self.url, data=chunk, headers=headers) as response:
                error = await _error(response) if response.status in (401, 409) else None
                if error in ("SignatureUsed", "ChunkGap"):
                    # SignatureUsed: aiohttp sent the request again, headers and all, after
                    # the connection broke under it, so the first try reached the gateway.
                    # ChunkGap: the gateway holds less than this chunk assumed. Either way,
                    # ask how far it got.
                    asked += 1
                    if asked > MAX_ASKED:
                        raise ClientError(f"the gateway keeps refusing the chunk: {error}")
                    found = await _session_of(self.session, self.url)
                    if found is not None and found["complete"] and found["total"] == size:
                        self.progress.update(size)
                        return str(found["fid"])
                    position = 0 if found is None else int(found["stored"])
                    continue
                if response.status == 409:
                    if error == "SessionBusy":
                        busy_since = busy_since or time.monotonic()
                        if time.monotonic() - busy_since > BUSY_WAIT:
                            raise ClientError("the gateway is still busy with an earlier chunk")
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    raise _Mismatch(f"{error}: the gateway's session differs from this upload")
                data = await answer(response)
                self.sent += end - start
                if response.status == 200:
                    self.progress.update(size)
                    return str(data["fid"])
                if response.status != 308 or int(data["stored"]) <= start:
                    raise ClientError(f"the gateway did not take bytes {start}..{end - 1}: {data}")
                position = int(data["stored"])
                busy_since, asked = None, 0
                self.progress.update(position)

    def _check_unchanged(self) -> None:
        stat = os.stat(self.plan.file)
        if (stat.st_size, stat.st_mtime_ns) != (self.plan.size, self.plan.mtime_ns):
            raise ClientError(f"{self.plan.file} changed while it was sent; put it again")


class _Mismatch(ClientError):
    """The gateway's session holds other bytes, or was opened with another territory."""


async def resumable_put(
    session: aiohttp.ClientSession,
    *,
    keypair: Keypair,
    gateway_account: str,
    plan: UploadPlan,
    state_dir: Path,
    chunk_size: int = DEFAULT_CHUNK,
    cipher: str | None = None,
    progress: bool | None = None,
) -> PutOutcome:
    state = _State(state_dir, plan)
    url = _url(plan.gateway, plan.name)
    found = await _session_of(session, url)
    position = 0
    if not state.exists():
        if found is not None and not found["complete"]:
            # Not started by this client for this file: its bytes may be anyone's.
            _note(f"discarding the gateway's unfinished upload of {plan.name!r}")
            async with session.delete(url) as response:
                if response.status != 404:
                    await answer(response)
        state.start()
    elif found is None:
        _note("the gateway no longer holds the earlier upload (expired or deleted): from 0")
    elif int(found["total"]) != plan.size:
        _note("the gateway's upload of this name is another one now: from 0")
    elif found["complete"]:
        _note("the earlier run had completed the upload; its answer was lost")
        state.remove()
        return PutOutcome(str(found["fid"]), plan.size, plan.size, 0)
    else:
        position = int(found["stored"])
        _note(f"resuming at {position} of {plan.size} bytes (the gateway holds them)")
    bar = Progress(plan.size, "put", start=position, enabled=progress)
    upload = _Upload(
        session,
        keypair=keypair,
        gateway_account=gateway_account,
        plan=plan,
        chunk_size=chunk_size,
        cipher=cipher,
        progress=bar,
    )
    handle = await asyncio.to_thread(os.open, plan.file, os.O_RDONLY)
    try:
        fid = await upload.send(handle, position)
    except _Mismatch as exc:
        state.remove()
        raise ClientError(f"{exc}; run the same command again to start over") from None
    except (aiohttp.ClientError, asyncio.CancelledError) as exc:
        bar.finish()
        stored = bar.done
        _note(f"stopped at {stored} of {plan.size} bytes; run the same command again to resume")
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise ClientError(f"the connection broke: {exc!r}") from None
    finally:
        os.close(handle)
    bar.finish()
    state.remove()
    return PutOutcome(fid, plan.size, position, upload.sent)
