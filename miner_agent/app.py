"""Starting and stopping a miner: key, chain, store, HTTP service, registration, loops."""

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

from chain_client import views
from chain_client.errors import ChainError, ExtrinsicFailed
from chain_client.files import write_atomically
from chain_client.keys import load_signer
from chain_client.protocol import Chain
from chain_client.rpc_client import HttpChain
from chain_client.service import run_until_signal, wait_for_genesis
from chain_client.serving import serve
from miner_agent.config import MinerConfig
from miner_agent.loops import MinerLoops
from miner_agent.node import MinerNode
from miner_agent.service import make_app
from miner_agent.store import MinerStore

__all__ = ["RegistrationRefused", "open_node", "register", "run_miner"]

log = logging.getLogger("deoss-miner")


class RegistrationRefused(Exception):
    pass


@contextlib.asynccontextmanager
async def open_node(config: MinerConfig, chain: Chain | None = None) -> AsyncIterator[MinerNode]:
    """The miner's key, chain client (``chain``, else the node ``config`` names), network
    parameters and store; waits (with backoff) for the chain to answer, since a miner
    cannot work without its parameters."""
    keypair = load_signer(config.key_spec, dev=config.dev)
    async with contextlib.AsyncExitStack() as stack:
        if chain is None:
            http = HttpChain(config.chain_rpc)
            stack.push_async_callback(http.close)
            chain = http
        _, genesis = await wait_for_genesis(chain, log)
        store = MinerStore(
            config.data_dir, leaf_size=genesis.params.leaf_size, probe=config.probe()
        )
        stack.callback(store.close)
        yield MinerNode(
            config=config, keypair=keypair, chain=chain, params=genesis.params, store=store
        )


async def register(node: MinerNode, endpoint: str) -> None:
    """Registers (or updates the endpoint of) this miner; raises RegistrationRefused with
    the chain's reason."""
    config, chain = node.config, node.chain
    record = await views.miner(chain, node.address)
    try:
        if record is None:
            collateral = await chain.query("sminer.collateral_limit", space=config.declared_space)
            if config.faucet:
                free = (await chain.query("balances.account", account=node.address))["free"]
                if free < collateral:
                    await node.account.call("balances.faucet")
            await node.account.call(
                "sminer.register",
                endpoint=endpoint,
                declared_space=config.declared_space,
                collateral=collateral,
            )
            log.info(
                "registered %s at %s declaring %d bytes",
                node.address,
                endpoint,
                config.declared_space,
            )
        elif record.endpoint != endpoint:
            await node.account.call("sminer.update_endpoint", endpoint=endpoint)
            log.info("endpoint updated to %s", endpoint)
        await node.account.call("sminer.heartbeat")
    except ExtrinsicFailed as exc:
        raise RegistrationRefused(f"the chain refused {exc.call}: {exc.reason}") from None


async def _serve(config: MinerConfig) -> int:
    async with (
        open_node(config) as node,
        serve(make_app(node), *config.host_port, limits=config.server_limits) as site,
    ):
        endpoint = config.endpoint or site.url
        try:
            await register(node, endpoint)
        except (RegistrationRefused, ChainError) as exc:
            print(f"deoss-miner: {exc}", file=sys.stderr, flush=True)
            return 2
        write_atomically(config.data_dir / "miner.url", endpoint + "\n")
        print(f"deoss-miner: {node.address} serving {endpoint}", flush=True)
        try:
            await run_until_signal(MinerLoops(node).run())
        finally:
            (config.data_dir / "miner.url").unlink(missing_ok=True)
    print("deoss-miner: stopped", flush=True)
    return 0


def run_miner(config: MinerConfig) -> int:
    return asyncio.run(_serve(config))
