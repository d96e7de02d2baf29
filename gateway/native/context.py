"""What the native API's handlers share (docs/native-api.md): the context (its parts
and limits) and the answers that describe an object."""

import contextlib
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from gateway.access_keys import AccessKeyStore
from gateway.metrics import GatewayMetrics
from gateway.native.auth import NativeAuth
from gateway.native.errors import NativeError, envelope
from gateway.native.resume_store import ResumeStore
from gateway.objects import ObjectService
from gateway.records import ObjectRecord
from gateway.tracker import DealTracker

__all__ = [
    "NATIVE",
    "STATES",
    "NativeContext",
    "record_json",
    "uploaded",
]

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


def uploaded(request: web.Request, record: ObjectRecord, copies: int) -> web.Response:
    request.app[NATIVE].metrics.upload_bytes.inc(record.size)
    return envelope(
        200,
        {
            "fid": record.object_id,
            "name": record.name,
            "territory": record.territory,
            "size": record.size,
            "stored_bytes": record.stored,
            "copies": copies,
            "state": STATES.get(record.state, record.state),
        },
    )


def record_json(record: ObjectRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "fid": record.object_id,
        # The chain's file: the fid itself, or a packed object's pack (docs/packing.md §5).
        "file": record.fid,
        "territory": record.territory,
        "size": record.size,
        "stored_bytes": record.stored,
        "state": STATES.get(record.state, record.state),
        "created": record.created_at,
    }
