"""One in-process grid (tests/grid.py) for every console test module, and a fresh
browser-like client of it per test (its own cookie jar)."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from tests.gateway.console.browser import record_reached
from tests.grid import Grid, open_grid


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    def recording(gateway: Gateway) -> None:
        gateway.native.on_response_prepare.append(record_reached)

    async with open_grid(
        tmp_path_factory.mktemp("consolegrid"), before_serving=recording
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="package")
async def browser(grid: Grid) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the grid's native port that keeps cookies as a browser does, and
    signs nothing."""
    client: TestClient[Any, Any] = TestClient(grid.native.server)
    await client.start_server()
    yield client
    await client.close()
