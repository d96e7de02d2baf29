"""``deoss-miner``: the storage miner's command line (for now: its keys)."""

import argparse
import sys
from collections.abc import Sequence

from chain_client.key_cli import add_key_commands

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deoss-miner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
