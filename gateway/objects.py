"""The object service both APIs use: the upload path (``gateway.upload``: encrypt,
encode, place, store, record) and the read path (``gateway.read``: fetch only the needed
blocks, verify, decode, decrypt) over one set of parts, and deletion."""

import asyncio
import collections
from collections.abc import Callable

from chain_client.account import ChainAccount
from chain_client.params import NetworkParams
from gateway.index import MetadataIndex
from gateway.keywrap import Secret
from gateway.pack import pack_layout
from gateway.packer import Packer
from gateway.read import ReadPath
from gateway.records import DeleteOutcome, ObjectRecord
from gateway.stripe_cache import StripeCache
from gateway.transfer import MinerClient, MinerDirectory
from gateway.upload import TERRITORY_TTL, GroupCommit, PlacedUnit, UploadPath

__all__ = ["ObjectService", "PlacedUnit", "Secret"]


ARGON2_CONCURRENCY = 4  # Cipher derivations at once (64 MiB each)


class ObjectService(UploadPath, ReadPath):
    def __init__(
        self,
        *,
        params: NetworkParams,
        index: MetadataIndex,
        directory: MinerDirectory,
        client: MinerClient,
        account: ChainAccount,
        master_key: bytes,
        on_committed: Callable[[], None] | None = None,
        pack_delay: float | None = None,  # None: small objects are not packed
        territory_ttl: float = TERRITORY_TTL,
    ) -> None:
        self.params = params
        self.index = index
        self.directory = directory
        self.client = client
        self.account = account
        self.chain = account.chain
        self.master_key = master_key
        self.on_committed = on_committed
        self._argon2 = asyncio.Semaphore(ARGON2_CONCURRENCY)
        self._reserved = {}
        self._territories = {}
        self.territory_ttl = territory_ttl
        self._commits = GroupCommit(index)
        self.stripes = StripeCache()
        self._packer = None
        if pack_delay is not None:
            self._packer = Packer(
                self,
                pack_layout(params),
                delay=pack_delay,
                sealed_meta=self.sealed_meta,
                cache=self.stripes,
            )
        self.fragments_reported = 0
        self._fetch_per_byte = 0.0
        self._fetch_bytes = 0.0
        self._late = {}
        self._tasks = set()
        self._reading = collections.Counter()

    async def delete(self, record: ObjectRecord) -> DeleteOutcome | None:
        """That version gone from the index at once, for good (the file with the last
        version naming it); the deal tracker drops the reference on chain."""
        return await self.delete_version(record.owner, record.name, record.version_id)

    async def delete_version(self, owner: str, name: str, version_id: str) -> DeleteOutcome | None:
        outcome = await asyncio.to_thread(self.index.delete_version, owner, name, version_id)
        self.committed()
        return outcome

    async def delete_object(
        self, owner: str, name: str, bucket: str | None = None
    ) -> DeleteOutcome:
        """S3's DeleteObject: the object goes, or a delete marker hides it (versioning)."""
        outcome = await asyncio.to_thread(self.index.delete_object, owner, name, bucket)
        self.committed()
        return outcome
