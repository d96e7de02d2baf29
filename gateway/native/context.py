"""What the native API's handlers share (docs/native-api.md): the context, the
``{code, msg, data}`` envelope and its error, and the checks of common headers and paths."""

import contextlib
import mimetypes
import re
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from gateway.access_keys import AccessKeyStore
from gateway.metrics import GatewayMetrics
from gateway.names import MAX_NAME_BYTES
from gateway.native.auth import NativeAuth
from gateway.native.errors import NativeError, envelope
from gateway.native.resume_store import ResumeStore
from gateway.objects import ObjectService
from gateway.records import ObjectRecord
from gateway.tracker import DealTracker

__all__ = [
    "CONTROL",
    "EXTENSION",
    "FID",
    "NATIVE",
    "STATES",
    "TERRITORY",
    "TYPES",
    "NativeContext",
    "check_name",
    "cipher_of",
    "copies_of",
    "fid_in_path",
    "owned",
    "record_json",
    "signer",
    "territory_of",
    "uploaded",
]

FID = re.compile(r"^[0-9a-fA-F]{64}")  # upper case accepted, and lowercased


CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # not in native names (S3 keys may hold them)


TERRITORY = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


EXTENSION = re.compile(r"^[A-Za-z0-9]{1,16}$")


TYPES = mimetypes.MimeTypes(filenames=())  # the built-in table only, not the host's files


STATES = {
    "pending": "Pending",
    "declared": "Pending",
    "active": "Active",
    "unpaid": "Unpaid",
    "refused": "Refused",
}


class NativeContext:
    def __init__(
        self,
        *,
        service: ObjectService,
        auth: NativeAuth,
        gateway: str,
        default_territory: str | None,
        genesis_hash: str,
        resume: ResumeStore,
        tracker: DealTracker,
        keys: AccessKeyStore | None = None,
        metrics: GatewayMetrics | None = None,
        max_uploads_per_account: int = 32,
        max_uploads: int = 256,
    ) -> None:
        self.max_uploads_per_account = max_uploads_per_account
        self.max_uploads = max_uploads
        self._uploads: dict[str, int] = {}
        self.service = service
        self.tracker = tracker
        self.keys = keys
        self.metrics = metrics or GatewayMetrics()
        self.metrics.gauge(
            "deoss_replay_cache_entries", "Signatures remembered", lambda: len(auth.replay)
        )
        self.metrics.gauge(
            "deoss_resume_sessions", "Resumable uploads open", lambda: resume.open_sessions()
        )
        self.metrics.counter(
            "deoss_fragments_reported",
            "Fragments reported to the chain as failed or corrupt",
            lambda: service.fragments_reported,
        )
        self.resume = resume
        self.auth = auth
        self.gateway = gateway
        self.default_territory = default_territory
        self.genesis_hash = genesis_hash

    @contextlib.contextmanager
    def upload_slot(self, owner: str) -> Iterator[None]:
        """One upload in flight (body being read or placed), within the §1 limits."""
        if sum(self._uploads.values()) >= self.max_uploads:
            raise NativeError(503, "Busy", "the gateway is at its upload limit")
        if self._uploads.get(owner, 0) >= self.max_uploads_per_account:
            raise NativeError(
                429, "TooManyRequests", f"at most {self.max_uploads_per_account} uploads at once"
            )
        self._uploads[owner] = self._uploads.get(owner, 0) + 1
        try:
            yield
        finally:
            self._uploads[owner] -= 1
            if not self._uploads[owner]:
                del self._uploads[owner]


NATIVE = web.AppKey("native", NativeContext)


async def signer(request: web.Request) -> str:
    return await request.app[NATIVE].auth.authenticate(request.headers)


def territory_of(request: web.Request) -> str:
    territory = request.headers.get("Territory") or request.app[NATIVE].default_territory
    if not territory:
        raise NativeError(400, "MissingTerritory", "header Territory is required")
    if not TERRITORY.match(territory):
        raise NativeError(400, "InvalidTerritory", "Territory is 1..63 of [A-Za-z0-9._-]")
    return territory


def copies_of(request: web.Request) -> int | None:
    raw = request.headers.get("Copies")
    if raw is None:
        return None
    if not raw.isdigit():
        raise NativeError(400, "InvalidCopies", "Copies is an integer")
    return int(raw)


def cipher_of(request: web.Request) -> str | None:
    cipher = request.headers.get("Cipher")
    if cipher is not None and not 1 <= len(cipher.encode()) <= 256:
        raise NativeError(400, "InvalidCipher", "Cipher is 1..256 bytes")
    return cipher


def check_name(name: str) -> str:
    if not name:
        raise NativeError(400, "MissingName", "an object needs a name")
    if len(name.encode()) > MAX_NAME_BYTES or CONTROL.search(name):
        raise NativeError(
            400,
            "InvalidName",
            f"a name is 1..{MAX_NAME_BYTES} bytes without control characters",
        )
    return name


def uploaded(request: web.Request, record: ObjectRecord, copies: int) -> web.Response:
    request.app[NATIVE].metrics.upload_bytes.inc(record.size)
    return envelope(
        200,
        {
            "fid": record.fid,
            "name": record.name,
            "territory": record.territory,
            "size": record.size,
            "stored_bytes": record.stored,
            "copies": copies,
            "state": STATES.get(record.state, record.state),
        },
    )


def fid_in_path(request: web.Request) -> tuple[str, str | None]:
    raw = request.match_info["fid"]
    if not FID.match(raw):
        raise NativeError(400, "InvalidFid", "a fid is 64 hex characters")
    extension = raw[64:].lstrip(".") or None
    return raw[:64].lower(), extension


async def owned(request: web.Request) -> tuple[str, ObjectRecord]:
    """The signer and the object the path names, which must be the signer's."""
    owner = await signer(request)
    fid, _ = fid_in_path(request)
    return owner, request.app[NATIVE].service.lookup(fid, owner)


def record_json(record: ObjectRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "fid": record.fid,
        "territory": record.territory,
        "size": record.size,
        "stored_bytes": record.stored,
        "state": STATES.get(record.state, record.state),
        "created": record.created_at,
    }
