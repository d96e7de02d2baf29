"""The chain RPC app in-process (``make_app`` over a ``LocalChain``): bad input is a 400
in the RPC's error format, never a 500, and nothing reaches the pool (issue 12 item 5;
security review #8, #12). tests/chain_client/test_rpc.py drives a real node process."""

import math
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from chain_client.errors import Rejected
from chain_client.extrinsic import Extrinsic
from chain_client.keys import dev_keypair
from chain_client.local import LocalChain
from chain_client.params import Genesis, dev_params
from chain_client.rpc_server import make_app

ALICE = dev_keypair("Alice")


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[LocalChain]:
    opened = await LocalChain.open(
        tmp_path / "chain" / "chain.db", Genesis(params=dev_params(), dev=True), block_time=0.0
    )
    yield opened
    await opened.close()


@pytest.fixture
async def rpc(chain: LocalChain, aiohttp_client: Any) -> TestClient:  # type: ignore[type-arg]
    client: TestClient = await aiohttp_client(make_app(chain))  # type: ignore[type-arg]
    return client


def extrinsic_text(args: str) -> bytes:
    """An extrinsic's JSON with ``args`` written as given (json.dumps cannot write NaN)."""
    return (
        f'{{"call": "balances.transfer", "args": {args}, "signer": "{ALICE.address}", '
        f'"nonce": 0, "scheme": "sr25519", "signature": "0x{"00" * 64}"}}'
    ).encode()


async def refused(rpc: Any, method: str, path: str, body: bytes | None = None) -> str:
    response = await rpc.request(method, path, data=body)
    answer = await response.json()
    assert response.status == 400, answer
    return str(answer["error"]["code"])


@pytest.mark.parametrize(
    "path",
    [
        "/block/%C2%B2",
        "/block/" + "9" * 19,
        "/block/+1",
        "/events?from=%C2%B2",
        "/events?from=" + "5" * 5000,
        "/events?from=1_0",
        "/events?max_blocks=%C2%B2",
        "/events?max_blocks=1.5",
        "/events?max_blocks=0",
        "/events?timeout=nan",
        "/events?timeout=inf",
        "/events?timeout=1_0",
        "/events?timeout=%D9%A3",  # an Arabic-Indic 3, which float() takes
    ],
)
async def test_numbers_in_paths_and_queries(rpc: Any, path: str) -> None:
    assert await refused(rpc, "GET", path) == "Malformed"


async def test_numbers_str_float_writes_are_taken(rpc: Any) -> None:
    for query in ("timeout=0.05&max_blocks=10", "timeout=1e-05", "timeout=0.30000000000000004"):
        response = await rpc.get(f"/events?from=0&{query}")
        assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    "args",
    [
        '{"dest": "x", "amount": NaN}',  # was canonical_json(allow_nan=False) in _admit
        '{"dest": "x", "amount": Infinity}',
        '{"dest": "x", "amount": 1e999}',
        '{"dest": "x", "amount": ' + "7" * 5000 + "}",
        '{"dest": ' + "[" * 100_000 + "]" * 100_000 + "}",  # was RecursionError
        '{"dest": "\\udcff"}',
    ],
)
async def test_extrinsic_bodies(rpc: Any, chain: LocalChain, args: str) -> None:
    assert await refused(rpc, "POST", "/extrinsic", extrinsic_text(args)) == "Malformed"
    assert chain.node.pool_size() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"name": "balances.account", "args": {"account": ' + b"[" * 100_000 + b"}}",
        b'{"name": "balances.account", "args": {"account": ' + b"5" * 5000 + b"}}",
        b'{"name": "balances.account", "args": {"account": NaN}}',
    ],
)
async def test_query_bodies(rpc: Any, body: bytes) -> None:
    assert await refused(rpc, "POST", "/query", body) == "Malformed"


async def test_query_string_arguments(rpc: Any) -> None:
    for value in ("%C2%B2", "5" * 5000, "%ED%B3%BF"):
        code = await refused(rpc, "GET", f"/query/balances.account?account={value}")
        assert code == "InvalidArguments"


async def test_admission_refuses_args_json_cannot_write(chain: LocalChain) -> None:
    # The Python API has no parser in front: NaN reaches admission itself.
    extrinsic = Extrinsic(
        call="balances.transfer",
        args={"dest": ALICE.address, "amount": math.nan},
        signer=ALICE.address,
        nonce=0,
        scheme="sr25519",
        signature=b"\0" * 64,
    )
    with pytest.raises(Rejected) as caught:
        await chain.submit(extrinsic)
    assert caught.value.code == "Malformed" and chain.node.pool_size() == 0


def test_the_chain_database_is_private(chain: LocalChain, tmp_path: Path) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    database = tmp_path / "chain" / "chain.db"
    assert mode(database.parent) == 0o700
    written = [p for p in database.parent.iterdir() if p.name.startswith("chain.db")]
    assert database in written and {mode(p) for p in written} == {0o600}
