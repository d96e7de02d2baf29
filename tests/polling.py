"""Waiting, in tests, for something another process or task does in its own time."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    timeout: float = 60.0,
    interval: float = 0.2,
) -> T:
    """``probe()``'s first answer that passes ``check``; AssertionError (with the last
    answer) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(interval)
