"""Starting a role: waiting for the chain's genesis, and running the role's background
work until SIGINT or SIGTERM."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from chain_client.errors import ChainUnavailable
from chain_client.params import Genesis
from chain_client.protocol import Chain

__all__ = ["run_until_signal", "wait_for_genesis"]


async def wait_for_genesis(chain: Chain, log: logging.Logger) -> tuple[bytes, Genesis]:
    """The chain's genesis hash and config, retried with backoff (up to 10 s apart) while
    the chain is unreachable: no role works without the network's parameters."""
    delay = 0.2
    while True:
        try:
            return await chain.genesis()
        except ChainUnavailable as exc:
            log.warning("chain unreachable (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def run_until_signal(work: Coroutine[Any, Any, Any]) -> None:
    """Runs ``work`` until a stop signal arrives or it ends; a crash of ``work`` is
    re-raised (a crashed loop is a crashed service: say why), a signal cancels it."""
    task = asyncio.create_task(work)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
    finally:
        task.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
