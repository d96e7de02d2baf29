"""An in-process grid (as Tahoe-LAFS's no-network grid): the real ledger (``LocalChain``),
n + 2 real miner apps and one real gateway, all in the test's event loop, served over
loopback as the roles serve (``chain_client.serving``, with their configs' limits).
Handler tests run here in a fraction of a second each; ``tests/e2e`` keeps the real
processes and the real clients.

``open_grid`` yields a ``Grid`` whose dev user (Alice) has authorized the gateway and
owns its default territory; ``grid.native`` and ``grid.s3`` are clients of the two APIs.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import StrOrURL
from yarl import URL

from chain_client.account import ChainAccount
from chain_client.keys import Keypair, dev_keypair, save_key_file
from chain_client.local import LocalChain
from chain_client.params import KIB, Genesis, NetworkParams, PenaltySchedule, dev_params
from chain_client.serving import ServedSite, ServerLimits, serve
from gateway.app import Gateway, open_gateway, register_gateway
from gateway.config import GatewayConfig
from gateway.native.signing import ACCOUNT_HEADER, sign_request, signing_middleware
from miner_agent.app import open_node, register
from miner_agent.config import MinerConfig
from miner_agent.loops import MinerLoops
from miner_agent.node import MinerNode
from miner_agent.service import make_app
from tests.polling import eventually

__all__ = ["GRID_PARAMS", "TERRITORY", "USER", "Grid", "open_grid"]

T = TypeVar("T")
GRID_PARAMS = dev_params(
    data_shards=2,
    total_shards=4,
    fragment_size=64 * KIB,
    segment_size=128 * KIB,
    stripe_block_size=16 * KIB,
    block_time=0.05,
    blocks_per_day=100_000,  # territories outlive the test run
    challenge_interval=10**6,
    offline_after=10**6,
    penalties=PenaltySchedule(force_exit_misses=50, failed_proof_threshold=1),
)
TERRITORY = "home"
MINER_UNITS = 32  # idle units each miner declares: 2 MiB at the grid's sizes
TERRITORY_UNITS = 32  # what the dev user's territory holds: 8 MiB
USER = dev_keypair("Alice")


@dataclass
class Grid:
    chain: LocalChain
    miners: list[MinerNode]
    gateway: Gateway
    native: TestClient[Any, Any]
    s3: TestClient[Any, Any]
    s3_url: str
    # Further gateways of the same network, each authorized by the dev user: (gateway,
    # its native API client).
    others: list[tuple[Gateway, TestClient[Any, Any]]] = field(default_factory=list)

    def signed(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Headers that make ``grid.native`` sign the request as the dev user."""
        return {ACCOUNT_HEADER: USER.address, **(extra or {})}

    def signed_for(
        self,
        method: str,
        target: str,
        body: bytes | None = b"",
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The dev user's signature of one request, made by hand (``body=None``: UNSIGNED)."""
        headers = sign_request(
            USER, gateway=self.gateway.address, method=method, target=target, body=body
        )
        return {**headers, **(extra or {})}

    async def s3_keys(self) -> tuple[str, str]:
        """A new S3 access key of the dev user: (access key, secret)."""
        response = await self.native.post("/keys", data=b"{}", headers=self.signed())
        answer = await response.json()
        assert response.status == 200, answer
        return str(answer["data"]["access_key"]), str(answer["data"]["secret_key"])


class ServedApp(TestServer):
    """A TestClient's server that serves as the roles do (chain_client.serving, with the
    role config's limits), not with aiohttp's test defaults; ``stack`` stops it."""

    def __init__(
        self, stack: contextlib.AsyncExitStack, app: aiohttp.web.Application, limits: ServerLimits
    ) -> None:
        super().__init__(app, host="127.0.0.1")
        self._stack, self._limits = stack, limits
        self.site: ServedSite | None = None

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.site is None:
            served = serve(self.app, self.host, 0, limits=self._limits)
            self.site = await self._stack.enter_async_context(served)
            self.port, self.scheme = self.site.port, "http"

    def make_url(self, path: StrOrURL) -> URL:
        assert self.site is not None, "not started"
        return URL(self.site.url).join(URL(path))

    async def close(self) -> None:
        pass  # the grid's exit stack stops the server, after its clients


async def _serve(
    stack: contextlib.AsyncExitStack, app: aiohttp.web.Application, limits: ServerLimits
) -> ServedApp:
    server = ServedApp(stack, app, limits)
    await server.start_server()
    return server


async def _loop(stack: contextlib.AsyncExitStack, work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


async def _miner(
    stack: contextlib.AsyncExitStack, root: Path, chain: LocalChain, params: NetworkParams
) -> MinerNode:
    root.mkdir(parents=True)
    save_key_file(root / "key.json", Keypair.generate())
    config = MinerConfig(
        data_dir=root,
        declared_space=MINER_UNITS * params.idle_unit_size,
        chain_rpc="in-process",
        faucet=True,
        free_disk_floor=64 * KIB,
        poll_seconds=0.05,
    )
    node = await stack.enter_async_context(open_node(config, chain))
    server = await _serve(stack, make_app(node), config.server_limits)
    await register(node, str(server.make_url("")).rstrip("/"))
    await _loop(stack, MinerLoops(node).run())
    return node


@contextlib.asynccontextmanager
async def open_grid(
    root: Path,
    params: NetworkParams = GRID_PARAMS,
    miners: int | None = None,
    before_serving: Callable[[Gateway], None] | None = None,
    gateways: int = 1,
) -> AsyncIterator[Grid]:
    """A chain, ``miners`` (default n + 2) positive miners and a gateway, all in this
    event loop; everything stops on the way out. ``before_serving`` may still add to the
    gateway's apps (signals, routes)."""
    async with contextlib.AsyncExitStack() as stack:
        chain = await LocalChain.open(root / "chain", Genesis(params=params, dev=True))
        stack.push_async_callback(chain.close)
        count = params.total_shards + 2 if miners is None else miners
        nodes = [await _miner(stack, root / f"miner{i}", chain, params) for i in range(count)]
        await eventually(  # every idle unit certified: the space a territory may buy
            lambda: chain.query("sminer.miners", state="positive"),
            lambda positive: (
                len(positive) == count and all(m["certified"] == m["declared"] for m in positive)
            ),
        )
        gateway, native, s3, s3_url = await _gateway(stack, root / "gateway", chain, before_serving)
        others = [
            (await _gateway(stack, root / f"gateway{i}", chain, None))[:2]
            for i in range(1, gateways)
        ]
        user = ChainAccount(chain, USER)
        await user.call(
            "storage_handler.mint_territory", name=TERRITORY, gib=TERRITORY_UNITS, days=5
        )
        yield Grid(chain, nodes, gateway, native, s3, s3_url, others)


async def _gateway(
    stack: contextlib.AsyncExitStack,
    root: Path,
    chain: LocalChain,
    before_serving: Callable[[Gateway], None] | None,
) -> tuple[Gateway, TestClient[Any, Any], TestClient[Any, Any], str]:
    """A gateway the dev user authorized, serving both APIs: (gateway, its native client,
    its S3 client, its S3 URL)."""
    root.mkdir()
    save_key_file(root / "key.json", Keypair.generate())
    config = GatewayConfig(
        data_dir=root,
        chain_rpc="in-process",
        faucet=True,
        default_territory=TERRITORY,
        multipart_min_part_size=16 * KIB,
        spool_floor=0,
    )
    gateway = await stack.enter_async_context(open_gateway(config, chain))
    if before_serving is not None:
        before_serving(gateway)
    # The client signs every request that names the dev user (Grid.signed) for this
    # gateway, method, path and body, as a real client of the native API must.
    native = TestClient(
        await _serve(stack, gateway.native, config.server_limits),
        middlewares=(signing_middleware(USER, gateway.address),),
    )
    await native.start_server()
    stack.push_async_callback(native.close)
    s3_server = await _serve(stack, gateway.s3, config.server_limits)
    s3: TestClient[Any, Any] = TestClient(s3_server)
    await s3.start_server()
    stack.push_async_callback(s3.close)
    await register_gateway(gateway.account, config, str(native.make_url("")).rstrip("/"))
    await _loop(stack, gateway.run_loops(config))
    await ChainAccount(chain, USER).call("oss.authorize", gateway=gateway.address)
    return gateway, native, s3, str(s3_server.make_url("")).rstrip("/")
