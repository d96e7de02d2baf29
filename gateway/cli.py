"""``deoss``: the gateway's command line (for now: the devnet and keys)."""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from chain_client.key_cli import add_key_commands
from gateway.devnet import DevnetError, run_devnet

__all__ = ["main"]


def _devnet(args: argparse.Namespace) -> int:
    if args.block_time <= 0:
        print("deoss devnet: --block-time must be > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(
            run_devnet(
                Path(args.dir), block_time=args.block_time, fresh=args.fresh, miners=args.miners
            )
        )
    except DevnetError as exc:
        print(f"deoss devnet: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deoss", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    devnet = commands.add_parser("devnet", help="run a local network of real processes")
    devnet.add_argument("--dir", default=".devnet", help="where the network keeps its state")
    devnet.add_argument("--block-time", type=float, default=1.0, help="seconds between blocks")
    devnet.add_argument("--fresh", action="store_true", help="start from an empty directory")
    devnet.add_argument("--miners", type=int, default=None, help="how many miners (n + 2)")
    devnet.set_defaults(func=_devnet)
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
