"""``deoss-miner``: init, run, tidy and stat a storage miner; manage its keys."""

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chain_client.errors import ChainError
from chain_client.files import write_atomically
from chain_client.key_cli import add_key_commands
from chain_client.keys import KeyMaterialError, Keypair, save_key_file
from chain_client.params import GIB, ConfigError
from miner_agent.app import open_node, run_miner
from miner_agent.config import MinerConfig, render_config
from miner_agent.loops import ChainAdapter
from miner_agent.tidy import tidy

__all__ = ["build_parser", "main"]

CONFIG_NAME = "miner.toml"


def _init(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    config_path = directory / CONFIG_NAME
    if config_path.exists() and not args.force:
        print(f"deoss-miner: {config_path} exists (use --force to replace it)", file=sys.stderr)
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    config = MinerConfig(
        data_dir=directory,
        declared_space=args.declared_space,
        chain_rpc=args.chain_rpc,
        listen=args.listen,
        endpoint=args.endpoint,
        key_file=args.key or "key.json",
        dev=args.dev,
        faucet=args.faucet,
        free_disk_floor=args.free_disk_floor,
        free_space_probe=args.free_space_probe,
        source=str(config_path),
    )
    try:
        config.validate()  # before anything is written: a refused init changes nothing
        if args.key is None:
            keypair = Keypair.generate(args.scheme)
            save_key_file(directory / "key.json", keypair, overwrite=args.force)
    except (ConfigError, KeyMaterialError) as exc:
        print(f"deoss-miner: {exc}", file=sys.stderr)
        return 2
    write_atomically(config_path, render_config(config))
    print(f"deoss-miner: wrote {config_path}")
    return 0


def _load(args: argparse.Namespace) -> MinerConfig:
    return MinerConfig.load(Path(args.config))


def _run(args: argparse.Namespace) -> int:
    return run_miner(_load(args))


async def _tidy(config: MinerConfig) -> dict[str, Any]:
    async with open_node(config) as node:
        head = await node.chain.head()
        report = await tidy(
            node.store,
            ChainAdapter(node),
            me=node.address,
            best_block=head.best_block,
            orphan_ttl=node.params.orphan_ttl,
            unit_size=node.params.idle_unit_size,
        )
        return report.to_json()


def _tidy_cmd(args: argparse.Namespace) -> int:
    report = asyncio.run(_tidy(_load(args)))
    print(json.dumps(report, indent=2))
    return 0


async def _stat(config: MinerConfig) -> dict[str, Any]:
    async with open_node(config) as node:
        chain = node.chain
        miner = await chain.query("sminer.miner", account=node.address) or {}
        challenges = await chain.query(
            "audit.challenges", miner=node.address, open_only=False, limit=1000
        )
        outcomes = {"passed": 0, "failed": 0, "missed": 0}
        for challenge in challenges:
            parts = {challenge["service_status"], challenge["idle_status"]} - {"none", "open"}
            for outcome in ("missed", "failed", "passed"):
                if outcome in parts:
                    outcomes[outcome] += 1
                    break
        store = node.store
        return {
            "account": node.address,
            "chain": {
                "declared_space": miner.get("declared", 0),
                "idle_space": miner.get("idle", 0),
                "locked_space": miner.get("locked", 0),
                "service_space": miner.get("service", 0),
                "pending_replacement": miner.get("pending_replacement", 0),
            },
            "disk": {
                "idle_bytes": store.idle_bytes(node.params.idle_unit_size),
                "fragment_bytes": store.fragment_bytes(),
                "free_bytes": store.free_bytes(),
            },
            "fragments": len(store.fragments()),
            "challenges": outcomes,
            "rewards": miner.get("rewarded", 0),
            "state": miner.get("state", "unregistered"),
        }


def _stat_cmd(args: argparse.Namespace) -> int:
    stat = asyncio.run(_stat(_load(args)))
    if args.json:
        print(json.dumps(stat))
        return 0
    chain, disk = stat["chain"], stat["disk"]
    print(f"miner      {stat['account']} ({stat['state']})")
    print(
        f"chain      declared {chain['declared_space']}  idle {chain['idle_space']}  "
        f"locked {chain['locked_space']}  service {chain['service_space']}  "
        f"owed replacement {chain['pending_replacement']}"
    )
    print(
        f"disk       idle {disk['idle_bytes']}  fragments {disk['fragment_bytes']}  "
        f"free {disk['free_bytes']}"
    )
    print(f"fragments  {stat['fragments']}")
    print(
        f"challenges passed {stat['challenges']['passed']}  failed "
        f"{stat['challenges']['failed']}  missed {stat['challenges']['missed']}"
    )
    print(f"rewards    {stat['rewards']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deoss-miner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="write a config and a key")
    init.add_argument("--dir", required=True, help="data directory")
    init.add_argument("--declared-space", type=int, required=True, help="bytes to declare")
    init.add_argument("--chain-rpc", required=True, help="the chain node's URL")
    init.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free)")
    init.add_argument("--endpoint", default="", help="URL gateways use (default: bound address)")
    init.add_argument(
        "--free-disk-floor",
        type=int,
        default=2 * GIB,
        help="stop filling idle space below this many free bytes (2 GiB)",
    )
    init.add_argument("--free-space-probe", default="statvfs", help='"statvfs" or "file:PATH"')
    init.add_argument("--key", help="use this key file or //Name (dev) instead of a new key")
    init.add_argument("--scheme", choices=["sr25519", "ed25519"], default="sr25519")
    init.add_argument("--dev", action="store_true", help="allow dev keys (//Alice...)")
    init.add_argument(
        "--faucet", action="store_true", help="dev networks: take collateral from the faucet"
    )
    init.add_argument("--force", action="store_true", help="replace an existing config")
    init.set_defaults(func=_init)
    for name, func, text in (
        ("run", _run, "run the miner"),
        ("tidy", _tidy_cmd, "remove invalid data now and report it"),
        ("stat", _stat_cmd, "space as the chain and the disk see it"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", required=True, help=f"the {CONFIG_NAME} file")
        if name == "stat":
            command.add_argument("--json", action="store_true", help="machine-readable, bytes")
        command.set_defaults(func=func)
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"deoss-miner: {exc}", file=sys.stderr)
        return 2
    except ChainError as exc:
        print(f"deoss-miner: chain: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
