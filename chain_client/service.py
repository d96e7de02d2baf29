"""Running a role's background work until SIGINT or SIGTERM."""

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

__all__ = ["run_until_signal"]


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
