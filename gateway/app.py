"""Starting and stopping a gateway: keys, chain, index, object service, deal tracker,
registration on chain, and the native API."""

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from chain_client.account import ChainAccount
from chain_client.errors import ChainError, ExtrinsicFailed
from chain_client.files import private_directory, write_atomically
from chain_client.keys import load_signer
from chain_client.protocol import Chain
from chain_client.rpc_client import HttpChain
from chain_client.service import run_until_signal, wait_for_genesis
from chain_client.serving import serve
from gateway.access_keys import AccessKeyStore
from gateway.config import GatewayConfig
from gateway.console.config import ConsoleConfig
from gateway.durability.repair import FragmentMover, RepairWorker, keep_bonded
from gateway.durability.scrub import Scrubber
from gateway.index import MetadataIndex
from gateway.metrics import GatewayMetrics
from gateway.native.app import NativeContext, make_native_app
from gateway.native.auth import NativeAuth
from gateway.native.replay_cache import ReplayCache
from gateway.native.resume_store import ResumeStore
from gateway.objects import ObjectService
from gateway.repack import Repacker
from gateway.s3.api import make_s3_app
from gateway.s3.context import S3Context
from gateway.tracker import DealTracker
from gateway.transfer import MinerClient, MinerDirectory

__all__ = [
    "Gateway",
    "load_master_key",
    "open_gateway",
    "register_gateway",
    "run_gateway",
    "watch_loops",
]

log = logging.getLogger("deoss.gateway")
AUTHORIZED_TTL, REFUSED_TTL = 30.0, 5.0


def load_master_key(config: GatewayConfig) -> bytes:
    """The key that wraps every data key this gateway stores; made on first start."""
    path = config.path(config.master_key_file)
    if not path.exists():
        write_atomically(path, os.urandom(32))
        path.chmod(0o600)
    key = path.read_bytes()
    if len(key) != 32:
        raise ValueError(f"{path}: a master key is 32 bytes, found {len(key)}")
    return key


class _Authorizations:
    """``oss.is_authorized(owner, this gateway)``, cached briefly."""

    def __init__(self, chain: Chain, gateway: str) -> None:
        self.chain = chain
        self.gateway = gateway
        self._cache: dict[str, tuple[float, bool]] = {}

    async def __call__(self, owner: str) -> bool:
        cached = self._cache.get(owner)
        if cached is not None:
            ttl = AUTHORIZED_TTL if cached[1] else REFUSED_TTL
            if time.monotonic() - cached[0] < ttl:
                return cached[1]
        allowed = bool(
            await self.chain.query("oss.is_authorized", owner=owner, gateway=self.gateway)
        )
        self._cache[owner] = (time.monotonic(), allowed)
        return allowed


async def register_gateway(account: ChainAccount, config: GatewayConfig, endpoint: str) -> None:
    chain = account.chain
    if config.faucet:
        free = (await chain.query("balances.account", account=account.address))["free"]
        if free == 0:
            await account.call("balances.faucet")
    record = await chain.query("oss.gateway", account=account.address)
    if record is None:
        await account.call("oss.register", endpoint=endpoint)  # reserves the bond
        return
    if record["endpoint"] != endpoint:
        await account.call("oss.update", endpoint=endpoint)
    await keep_bonded(account)  # slashed below gateway_bond: miners refuse it until then


def watch_loops(
    metrics: GatewayMetrics, tracker: DealTracker, repair: RepairWorker, scrubber: Scrubber
) -> None:
    """The background loops' figures, read at each scrape (docs/native-api.md §8)."""
    for name, help_text, read in (
        ("deoss_repair_orders_claimed", "Restoral orders claimed", lambda: repair.stats.claimed),
        (
            "deoss_repair_orders_completed",
            "Restoral orders completed: the fragment rebuilt and placed",
            lambda: repair.stats.repaired,
        ),
        (
            "deoss_repair_orders_failed",
            "Repair attempts that failed; the order stays open for a later pass",
            lambda: repair.stats.failed,
        ),
        (
            "deoss_repair_bytes_rebuilt",
            "Fragment bytes rebuilt for completed restoral orders",
            lambda: repair.stats.bytes,
        ),
        ("deoss_scrub_fragments_checked", "Fragments scrubbed", lambda: scrubber.stats.checked),
        (
            "deoss_scrub_fragments_bad",
            "Fragments scrubbed that did not come back intact",
            lambda: scrubber.stats.bad,
        ),
    ):
        metrics.counter(name, help_text, read)
    metrics.gauges(
        "deoss_segments",
        "Segments of this gateway's files with fragments ordered restored, by health",
        "health",
        lambda: repair.segment_health,
    )
    for name, help_text, read_gauge in (
        (
            "deoss_tracker_pending_declarations",
            "Versions whose declaration the chain has not accepted yet",
            tracker.pending_declarations,
        ),
        (
            "deoss_tracker_unpaid_objects",
            "Versions stored but refused for quota, declared again later",
            tracker.unpaid_objects,
        ),
        (
            "deoss_tracker_oldest_pending_seconds",
            "Age of the pending declaration first in line, 0 when none",
            tracker.oldest_pending_seconds,
        ),
    ):
        metrics.gauge(name, help_text, read_gauge)


@dataclass(frozen=True, slots=True)
class Gateway:
    """A gateway's parts, built and not yet serving: its two apps and its loops."""

    address: str
    account: ChainAccount
    service: ObjectService
    tracker: DealTracker
    repair: RepairWorker
    scrubber: Scrubber
    repacker: Repacker
    native: web.Application
    s3: web.Application

    async def run_loops(self, config: GatewayConfig) -> None:
        await asyncio.gather(
            self.tracker.run(),
            self.repair.run(),
            self.scrubber.run(config.scrub_interval, config.scrub_sample),
            self.repacker.run(),
        )


@contextlib.asynccontextmanager
async def open_gateway(config: GatewayConfig, chain: Chain | None = None) -> AsyncIterator[Gateway]:
    """Everything a gateway is, on ``chain`` (else the node ``config`` names, waited for),
    closed again in reverse order on exit."""
    # SECURITY: the index and the spools hold every user's names, sizes and metadata
    # (review #16); each database is 0600 too.
    private_directory(config.data_dir)
    keypair = load_signer(config.key_spec, dev=config.dev)
    master_key = load_master_key(config)
    async with contextlib.AsyncExitStack() as stack:
        if chain is None:
            http = HttpChain(config.chain_rpc)
            stack.push_async_callback(http.close)
            chain = http
        genesis_hash, genesis = await wait_for_genesis(chain, log)
        index = MetadataIndex(config.data_dir / "index.db")
        stack.callback(index.close)
        account = ChainAccount(chain, keypair)
        client = MinerClient(keypair)
        stack.push_async_callback(client.close)
        service = ObjectService(
            params=genesis.params,
            index=index,
            directory=MinerDirectory(chain),
            client=client,
            account=account,
            master_key=master_key,
            pack_delay=config.pack_delay if config.pack else None,
        )
        mover = FragmentMover(
            params=genesis.params, index=index, directory=service.directory, client=client
        )
        tracker = DealTracker(index, account, mover, busy=service.reading)
        service.on_committed = tracker.wake
        replay = ReplayCache(path=config.data_dir / "replay.log")
        stack.callback(replay.close)
        authorizations = _Authorizations(chain, keypair.address)
        keys = AccessKeyStore(config.data_dir / "access_keys.db", master_key)
        stack.callback(keys.close)
        resume = ResumeStore(
            config.data_dir,
            master_key,
            ttl=config.resume_ttl,
            max_per_account=config.max_resume_sessions_per_account,
            spool_floor=config.spool_floor,
        )
        stack.callback(resume.close)
        metrics = GatewayMetrics()
        repair = RepairWorker(index=index, mover=mover, account=account)
        scrubber = Scrubber(index=index, mover=mover, account=account)
        watch_loops(metrics, tracker, repair, scrubber)
        native = NativeContext(
            service=service,
            auth=NativeAuth(
                gateway=keypair.address,
                window=config.auth_window,
                replay=replay,
                is_authorized=authorizations,
                dev=genesis.dev,  # //Alice and friends sign only on dev networks
                bare_reads=config.native_bare_reads,
            ),
            gateway=keypair.address,
            default_territory=config.default_territory or None,
            genesis_hash="0x" + genesis_hash.hex(),
            resume=resume,
            tracker=tracker,
            keys=keys,
            max_uploads_per_account=config.max_uploads_per_account,
            max_uploads=config.max_uploads,
            metrics=metrics,
        )
        s3 = S3Context(
            service=service,
            keys=keys,
            is_authorized=authorizations,
            gateway=keypair.address,
            region=config.s3_region,
            domain=config.s3_domain,
            default_territory=config.default_territory,
            multipart_ttl=config.multipart_ttl,
            min_part_size=config.multipart_min_part_size,
        )
        yield Gateway(
            address=keypair.address,
            account=account,
            service=service,
            tracker=tracker,
            repair=repair,
            scrubber=scrubber,
            repacker=Repacker(service, below=config.repack_below, interval=config.repack_interval),
            native=make_native_app(native, console=_console_config(config)),
            s3=make_s3_app(s3, metrics=metrics),
        )


async def _serve(config: GatewayConfig) -> int:
    async with open_gateway(config) as gateway, contextlib.AsyncExitStack() as sites:
        limits = config.server_limits
        native = await sites.enter_async_context(
            serve(gateway.native, *config.host_port, limits=limits)
        )
        endpoint = config.native_endpoint or native.url
        s3 = await sites.enter_async_context(serve(gateway.s3, *config.s3_host_port, limits=limits))
        s3_endpoint = config.s3_endpoint or s3.url
        try:
            await register_gateway(gateway.account, config, endpoint)
        except (ExtrinsicFailed, ChainError) as exc:
            print(f"deoss gateway: the chain refused this gateway: {exc}", file=sys.stderr)
            return 2
        for name, url in (("s3.url", s3_endpoint), ("native.url", endpoint)):
            write_atomically(config.data_dir / name, url + "\n")
            sites.callback((config.data_dir / name).unlink, missing_ok=True)
        print(
            f"deoss gateway: {gateway.address} serving the native API at {endpoint} "
            f"and S3 at {s3_endpoint}",
            flush=True,
        )
        await run_until_signal(gateway.run_loops(config))
    print("deoss gateway: stopped", flush=True)
    return 0


def _console_config(config: GatewayConfig) -> ConsoleConfig:
    """The ``[console]`` section of the gateway's config file (the defaults without one)."""
    if config.source == "(defaults)":
        return ConsoleConfig()
    return ConsoleConfig.load(Path(config.source))


def run_gateway(config: GatewayConfig) -> int:
    return asyncio.run(_serve(config))
