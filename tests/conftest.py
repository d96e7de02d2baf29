"""Fixtures shared by every test: small dev networks, in-process and as real processes."""

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from chain_client.keys import Keypair, dev_keypair
from chain_client.node import LedgerNode
from chain_client.params import Genesis, NetworkParams, dev_params
from gateway.devnet import chain_command, stop_process
from tests.chain_client.sim import Sim

settings.register_profile(
    "deoss", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=50
)
settings.load_profile("deoss")


@pytest.fixture(autouse=True)
def only_e2e_starts_processes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make unit`` (``-m "not e2e"``) must start no process: a test that does is e2e."""
    if request.node.get_closest_marker("e2e") is not None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process: mark it e2e")

    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.fixture
def params() -> NetworkParams:
    return dev_params(block_time=0.0)


@pytest.fixture
def node(tmp_path: Path, params: NetworkParams) -> Iterator[LedgerNode]:
    ledger = LedgerNode(tmp_path / "chain.db", Genesis(params=params, dev=True))
    yield ledger
    ledger.close()


@pytest.fixture
def sim(node: LedgerNode) -> Sim:
    return Sim(node)


@pytest.fixture
def alice() -> Keypair:
    return dev_keypair("Alice")


@dataclass
class ChainProcess:
    process: subprocess.Popen[bytes]
    directory: Path
    url: str
    log: Path

    def stop(self) -> int:
        stop_process(self.process)
        return self.process.returncode


def start_chain(directory: Path, *args: str, timeout: float = 30.0) -> ChainProcess:
    """Starts ``deoss-chain run`` on a free loopback port and waits for its rpc.url."""
    directory.mkdir(parents=True, exist_ok=True)
    url_file = directory / "rpc.url"
    if url_file.exists():
        url_file.unlink()
    log = directory / "node.log"
    command = chain_command(directory, *args)
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"chain node did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return ChainProcess(process, directory, url_file.read_text().strip(), log)


@pytest.fixture(scope="session")
def chain_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainProcess]:
    """One manual-mode dev node shared by the HTTP contract tests (each test makes its
    own accounts, so they do not depend on each other's state)."""
    node = start_chain(tmp_path_factory.mktemp("chain"), "--dev", "--block-time", "0")
    yield node
    node.stop()
