"""``deoss-chain``: run a ledger node, and manage keys."""

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from chain_client.errors import GenesisMismatch
from chain_client.files import write_atomically
from chain_client.key_cli import add_key_commands
from chain_client.local import LocalChain
from chain_client.params import ConfigError, Genesis, NetworkParams, dev_params
from chain_client.rpc_server import make_app
from chain_client.serving import (
    BODY_IDLE_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    ServerLimits,
    serve,
)

__all__ = ["main", "parse_listen"]

log = logging.getLogger("deoss-chain")
DB_NAME = "chain.db"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if not number > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {value!r}")
        return number

    return parse


def _genesis_for(args: argparse.Namespace) -> Genesis:
    if args.genesis is not None:
        genesis = Genesis.load(Path(args.genesis))
    else:
        genesis = Genesis(params=dev_params() if args.dev else NetworkParams())
    return dataclasses.replace(genesis, dev=args.dev)


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    database = directory / DB_NAME
    genesis = None if database.exists() else _genesis_for(args)
    chain = await LocalChain.open(database, genesis, block_time=args.block_time)
    if chain.node.dev != args.dev:
        await chain.close()
        wanted = "with" if chain.node.dev else "without"
        print(
            f"deoss-chain: {database} is a chain made {wanted} --dev; start it the same way",
            file=sys.stderr,
        )
        return 2
    limits = ServerLimits(
        header_timeout=args.header_timeout,
        body_idle_timeout=args.body_idle_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
    )
    try:
        async with serve(make_app(chain), *args.listen, limits=limits) as site:
            write_atomically(directory / "rpc.url", site.url + "\n")
            mode = "manual blocks" if chain.manual else f"a block every {chain.block_time:g} s"
            print(
                f"deoss-chain: serving {site.url} ({'dev, ' if chain.node.dev else ''}{mode}; "
                f"genesis {chain.node.genesis_hash_hex})",
                flush=True,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await chain.close()
        with contextlib.suppress(FileNotFoundError):
            (directory / "rpc.url").unlink()
    print("deoss-chain: stopped", flush=True)
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.block_time is not None and args.block_time < 0:
        print("deoss-chain: --block-time must be >= 0 (0 = manual blocks)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args))
    except (ConfigError, GenesisMismatch) as exc:
        print(f"deoss-chain: {exc}", file=sys.stderr)
        return 2


def _genesis_cmd(args: argparse.Namespace) -> int:
    genesis = Genesis(params=dev_params() if args.dev else NetworkParams(), dev=args.dev)
    import json

    print(json.dumps(genesis.to_json(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deoss-chain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a ledger node serving the JSON RPC")
    run.add_argument("--dir", required=True, help="data directory (chain.db, rpc.url)")
    run.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 9944),
        help="HOST:PORT; port 0 picks a free one (default 127.0.0.1:9944)",
    )
    run.add_argument("--genesis", help="genesis JSON (first start only)")
    run.add_argument(
        "--block-time",
        type=float,
        default=None,
        help="seconds between blocks, fractions allowed; 0 = manual mode",
    )
    run.add_argument(
        "--dev",
        action="store_true",
        help="dev network: fund the well-known dev accounts, enable dev calls",
    )
    # The RPC's connection limits (docs/chain.md §7.1).
    for flag, kind, default, text in (
        ("--header-timeout", float, HEADER_TIMEOUT, "seconds a request head may take"),
        ("--body-idle-timeout", float, BODY_IDLE_TIMEOUT, "seconds a request body may pause"),
        ("--keepalive-timeout", float, KEEPALIVE_TIMEOUT, "seconds an idle connection stays"),
        ("--max-connections", int, MAX_CONNECTIONS, "open connections at most"),
    ):
        run.add_argument(flag, type=_positive(kind), default=default, help=f"{text} ({default})")
    run.set_defaults(func=_run)
    genesis = commands.add_parser("genesis", help="print a genesis config to start from")
    genesis.add_argument("--dev", action="store_true", help="small dev parameters")
    genesis.set_defaults(func=_genesis_cmd)
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
