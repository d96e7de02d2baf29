"""The fuzz suite's fixtures: one in-process grid for the gateway and miner surfaces, the
crash watch on the servers' loggers, and the tally of requests sent, printed at the end
of the session ("fuzz: s3 N, native N, miner N, chain N requests; 0 5xx")."""

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.fuzz.harness import CrashWatch, Tally
from tests.grid import Grid, open_grid

__all__ = ["crash_watch", "grid", "tally"]

TALLY = pytest.StashKey[Tally]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[TALLY] = Tally()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    for line in config.stash[TALLY].lines():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tally(request: pytest.FixtureRequest) -> Tally:
    return request.config.stash[TALLY]


@pytest.fixture(scope="package")
def crash_watch() -> Iterator[CrashWatch]:
    watch = CrashWatch()
    watch.install()
    yield watch
    watch.remove()


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("fuzz")) as running:
        yield running
