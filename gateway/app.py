"""Starting and stopping a gateway: keys, chain, index, object service, deal tracker,
registration on chain, and the native API."""

import asyncio
import logging
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from chain_client.account import ChainAccount
from chain_client.errors import ChainError, ChainUnavailable, ExtrinsicFailed
from chain_client.files import write_atomically
from chain_client.keys import load_signer
from chain_client.rpc_client import HttpChain
from chain_client.service import run_until_signal
from gateway.access_keys import AccessKeyStore
from gateway.config import GatewayConfig
from gateway.durability.repair import FragmentMover, RepairWorker
from gateway.durability.scrub import Scrubber
from gateway.index import MetadataIndex
from gateway.native.app import NativeContext, make_native_app
from gateway.native.auth import NativeAuth
from gateway.native.replay_cache import ReplayCache
from gateway.native.resume_store import ResumeStore
from gateway.objects import ObjectService
from gateway.s3.api import make_s3_app
from gateway.s3.context import S3Context
from gateway.tracker import DealTracker
from gateway.transfer import MinerClient, MinerDirectory

__all__ = ["load_master_key", "run_gateway"]

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

    def __init__(self, chain: HttpChain, gateway: str) -> None:
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


async def _register(account: ChainAccount, config: GatewayConfig, endpoint: str) -> None:
    chain = account.chain
    if config.faucet:
        free = (await chain.query("balances.account", account=account.address))["free"]
        if free == 0:
            await account.call("balances.faucet")
    record = await chain.query("oss.gateway", account=account.address)
    if record is None:
        await account.call("oss.register", endpoint=endpoint)
    elif record["endpoint"] != endpoint:
        await account.call("oss.update", endpoint=endpoint)


async def _serve(config: GatewayConfig) -> int:
    keypair = load_signer(config.key_spec, dev=config.dev)
    master_key = load_master_key(config)
    chain = HttpChain(config.chain_rpc)
    delay = 0.2
    while True:
        try:
            genesis_hash, genesis = await chain.genesis()
            break
        except ChainUnavailable as exc:
            log.warning("chain unreachable (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    index = MetadataIndex(config.data_dir / "index.db")
    account = ChainAccount(chain, keypair)
    client = MinerClient(keypair)
    service = ObjectService(
        params=genesis.params,
        index=index,
        directory=MinerDirectory(chain),
        client=client,
        account=account,
        master_key=master_key,
    )
    mover = FragmentMover(
        params=genesis.params, index=index, directory=service.directory, client=client
    )
    tracker = DealTracker(index, account, mover, busy=service.reading)
    repair = RepairWorker(index=index, mover=mover, account=account)
    scrubber = Scrubber(index=index, mover=mover, account=account)
    service.on_committed = tracker.wake
    replay = ReplayCache(path=config.data_dir / "replay.log")
    authorizations = _Authorizations(chain, keypair.address)
    keys = AccessKeyStore(config.data_dir / "access_keys.db", master_key)
    auth = NativeAuth(
        gateway=keypair.address,
        window=config.auth_window,
        replay=replay,
        is_authorized=authorizations,
        dev=genesis.dev,  # //Alice and friends sign only on dev networks
    )
    resume = ResumeStore(
        config.data_dir,
        master_key,
        ttl=config.resume_ttl,
        max_per_account=config.max_resume_sessions_per_account,
        spool_floor=config.spool_floor,
    )
    context = NativeContext(
        service=service,
        auth=auth,
        gateway=keypair.address,
        default_territory=config.default_territory or None,
        genesis_hash="0x" + genesis_hash.hex(),
        resume=resume,
        tracker=tracker,
        keys=keys,
        max_uploads_per_account=config.max_uploads_per_account,
        max_uploads=config.max_uploads,
    )
    runner = web.AppRunner(make_native_app(context), access_log=None)
    await runner.setup()
    host, port = config.host_port
    await web.TCPSite(runner, host, port).start()
    bound: Any = runner.addresses[0]
    endpoint = config.native_endpoint or f"http://{host}:{bound[1]}"
    s3_context = S3Context(
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
    s3_runner = web.AppRunner(make_s3_app(s3_context), access_log=None)
    await s3_runner.setup()
    s3_host, s3_port = config.s3_host_port
    await web.TCPSite(s3_runner, s3_host, s3_port).start()
    s3_bound: Any = s3_runner.addresses[0]
    s3_endpoint = config.s3_endpoint or f"http://{s3_host}:{s3_bound[1]}"
    try:
        await _register(account, config, endpoint)
    except (ExtrinsicFailed, ChainError) as exc:
        print(f"deoss gateway: the chain refused this gateway: {exc}", file=sys.stderr)
        await runner.cleanup()
        await s3_runner.cleanup()
        await chain.close()
        index.close()
        replay.close()
        keys.close()
        return 2
    write_atomically(config.data_dir / "s3.url", s3_endpoint + "\n")
    write_atomically(config.data_dir / "native.url", endpoint + "\n")
    print(
        f"deoss gateway: {keypair.address} serving the native API at {endpoint} "
        f"and S3 at {s3_endpoint}",
        flush=True,
    )
    try:
        await run_until_signal(
            _run_all(
                tracker.run(),
                repair.run(),
                scrubber.run(config.scrub_interval, config.scrub_sample),
            )
        )
    finally:
        await runner.cleanup()
        await s3_runner.cleanup()
        keys.close()
        (config.data_dir / "s3.url").unlink(missing_ok=True)
        await client.close()
        await chain.close()
        index.close()
        resume.close()
        replay.close()
        (config.data_dir / "native.url").unlink(missing_ok=True)
    print("deoss gateway: stopped", flush=True)
    return 0


async def _run_all(*loops: Coroutine[Any, Any, None]) -> None:
    await asyncio.gather(*loops)


def run_gateway(config: GatewayConfig) -> int:
    return asyncio.run(_serve(config))
