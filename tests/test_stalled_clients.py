"""Security review #7 on every real server as the roles configure it (the chain RPC, a
miner, the gateway's native and S3 APIs on the in-process grid, default limits): 500
connections that send nothing and 500 that send a request head a byte a second do not
stop any of them answering a fresh connection within 1 s, and each server closes them
once the header timeout has passed."""

import contextlib
import resource
from pathlib import Path

import pytest

from chain_client import views
from chain_client.rpc_server import make_app
from chain_client.serving import HEADER_TIMEOUT, serve
from tests.grid import open_grid
from tests.stalling import Stalled, answer_within, descriptor_limit, stall, wait_closed

SILENT, TRICKLING = 500, 500
# Both ends of every stalled connection live in this process, and four servers are held.
DESCRIPTORS_NEEDED = 4 * 2 * (SILENT + TRICKLING) + 1000


@pytest.fixture
def descriptors() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < DESCRIPTORS_NEEDED:
        pytest.skip(f"needs {DESCRIPTORS_NEEDED} descriptors, the hard limit is {hard}")


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.usefixtures("descriptors")
async def test_stalled_connections_neither_block_a_server_nor_outlive_the_header_timeout(
    tmp_path: Path,
) -> None:
    with descriptor_limit(DESCRIPTORS_NEEDED):
        async with (
            open_grid(tmp_path) as grid,
            serve(make_app(grid.chain), "127.0.0.1", 0) as chain_rpc,
        ):
            miner = (await views.miners(grid.chain, "positive"))[0].endpoint
            servers = {
                "chain RPC": (chain_rpc.url, b"HTTP/1.1 200 "),
                "miner": (miner, b"HTTP/1.1 200 "),
                "native API": (str(grid.native.make_url("")).rstrip("/"), b"HTTP/1.1 200 "),
                "S3 API": (grid.s3_url, b"HTTP/1.1 403 "),  # an anonymous GetObject
            }
            async with (
                _stall(servers["chain RPC"][0]) as held_chain,
                _stall(servers["miner"][0]) as held_miner,
                _stall(servers["native API"][0]) as held_native,
                _stall(servers["S3 API"][0]) as held_s3,
            ):
                held = held_chain + held_miner + held_native + held_s3
                assert len(held) == 4 * (SILENT + TRICKLING)
                for name, (url, status) in servers.items():
                    answer = await answer_within(url + "/health", 1.0)
                    assert answer.startswith(status), (name, answer[:40])
                assert [s for s in held if s.closed_at is not None] == []

                still_open = await wait_closed(held, HEADER_TIMEOUT + 2.0)
                assert still_open == [], f"{len(still_open)} still open"
                lasted = sorted(s.held_for for s in held)
                assert HEADER_TIMEOUT - 0.5 <= lasted[0] <= lasted[-1] <= HEADER_TIMEOUT + 1.5
                for name, (url, status) in servers.items():
                    answer = await answer_within(url + "/health", 1.0)
                    assert answer.startswith(status), (name, answer[:40])


def _stall(url: str) -> contextlib.AbstractAsyncContextManager[list[Stalled]]:
    authority = url.removeprefix("http://")
    host, _, port = authority.rpartition(":")
    return stall(host, int(port), silent=SILENT, trickling=TRICKLING, interval=1.0)
