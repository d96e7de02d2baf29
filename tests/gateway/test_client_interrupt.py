"""Ctrl-C stops a client command even when a library swallowed the first cancellation
(gateway.client._interruptible)."""

import asyncio
import os
import signal

import pytest

from gateway.client import _interruptible


async def _swallows_one_cancel(steps: list[str]) -> str:
    for _ in range(50):
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if "swallowed" in steps:
                raise
            steps.append("swallowed")  # as a timeout racing the cancel would
    return "finished"


def test_ctrl_c_stops_work_that_swallows_the_first_cancellation() -> None:
    steps: list[str] = []

    async def main() -> str:
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
        return str(await _interruptible(_swallows_one_cancel(steps)))

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert steps == ["swallowed"]


def test_work_that_ends_on_its_own_returns_its_result() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert asyncio.run(_interruptible(work())) == 7
