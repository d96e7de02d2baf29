"""``deoss-miner``: init, run, tidy and stat a storage miner; add collateral, exit the
network and see the collateral back (docs/cli.md); manage its keys."""

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from chain_client.account import ChainAccount
from chain_client.errors import ChainError
from chain_client.files import write_atomically
from chain_client.key_cli import add_key_commands
from chain_client.keys import KeyMaterialError, Keypair, load_signer, save_key_file
from chain_client.params import GIB, TOKEN, ConfigError
from chain_client.rpc_client import HttpChain
from miner_agent.app import open_node, run_miner
from miner_agent.config import MinerConfig, render_config
from miner_agent.loops import ChainAdapter
from miner_agent.tidy import tidy

__all__ = ["build_parser", "main"]

CONFIG_NAME = "miner.toml"
EXIT_HELP = """\
Leave the network. The chain takes the exit from a positive, frozen or offline miner
with no deal in flight (sminer.DealsInFlight otherwise, sminer.CannotExit once exiting
or exited). The miner is then "exiting" for the network's exit_cooldown (1 day of blocks
by default) and can no longer add collateral; when the cool-down ends the chain drops
its idle space, returns all of its collateral to its free balance, marks it "exited"
and opens restoral orders so that other miners take over its fragments. An exit cannot
be undone. `deoss-miner withdraw --wait` waits for the end and shows the balance.
"""


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


def tokens(amount: int) -> str:
    whole, fraction = divmod(amount, TOKEN)
    return f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")


def _amount(text: str) -> int:
    """Tokens, as a decimal (100, 2.5), in base units."""
    try:
        value = Decimal(text) * TOKEN
    except InvalidOperation:
        value = Decimal(0)
    if not value.is_finite() or value != value.to_integral_value() or value <= 0:
        raise argparse.ArgumentTypeError(f"a positive amount of tokens (100, 2.5), got {text!r}")
    return int(value)


class _Miner:
    """The miner's chain account, from its config, without opening its store: these
    commands work beside a running miner, or with it stopped."""

    def __init__(self, config: MinerConfig) -> None:
        self.keypair = load_signer(config.key_spec, dev=config.dev)
        self.chain = HttpChain(config.chain_rpc)
        self.account = ChainAccount(self.chain, self.keypair)

    async def state(self) -> dict[str, Any]:
        """Where the miner stands on chain: the commands' output."""
        address = self.keypair.address
        miner = await self.chain.query("sminer.miner", account=address)
        balance = await self.chain.query("balances.account", account=address)
        _, genesis = await self.chain.genesis()
        best = (await self.chain.head()).best_block
        exit_at = miner.get("exit_at") if miner else None
        block_time = genesis.params.block_time
        return {
            "account": address,
            "state": miner["state"] if miner else "unregistered",
            "collateral": int(balance["reserved"]),
            "collateral_limit": int(miner["collateral_limit"]) if miner else 0,
            "free": int(balance["free"]),
            "locked_space": int(miner["locked"]) if miner else 0,
            "best_block": best,
            "exit_at": exit_at,
            "exit_in": (exit_at - best) * block_time if exit_at and block_time else None,
        }


def _print_state(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(state))
        return
    print(f"miner       {state['account']} ({state['state']})")
    print(
        f"collateral  {tokens(state['collateral'])} tokens "
        f"(limit {tokens(state['collateral_limit'])})"
    )
    print(f"free        {tokens(state['free'])} tokens")
    if state["state"] == "exiting":
        seconds = state["exit_in"]
        when = f" (in about {max(seconds, 0):.0f} s)" if seconds is not None else ""
        print(
            f"exit        the chain finishes it at block {state['exit_at']}{when}, "
            "then returns the collateral"
        )


async def _account_command(args: argparse.Namespace) -> int:
    miner = _Miner(_load(args))
    try:
        if args.command == "increase-collateral":
            await miner.account.call("sminer.increase_collateral", amount=args.amount)
        elif args.command == "exit":
            await miner.account.call("sminer.exit")
        else:
            return await _withdraw(miner, args)
        _print_state(await miner.state(), args.json)
        return 0
    finally:
        await miner.chain.close()


async def _withdraw(miner: _Miner, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        state = await miner.state()
        if state["state"] == "exited":
            _print_state(state, args.json)
            return 0
        if state["state"] != "exiting":
            _print_state(state, args.json)
            print(
                f"deoss-miner: {state['account']} is {state['state']}, not exiting: "
                "`deoss-miner exit` first",
                file=sys.stderr,
            )
            return 1
        if not args.wait or time.monotonic() > deadline:
            _print_state(state, args.json)
            print(
                "deoss-miner: still exiting: the collateral comes back when the exit ends "
                "(--wait to wait for it)",
                file=sys.stderr,
            )
            return 1
        await asyncio.sleep(1.0)


def _account_cmd(args: argparse.Namespace) -> int:
    code: int = asyncio.run(_account_command(args))
    return code


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
    increase = commands.add_parser(
        "increase-collateral",
        help="reserve more collateral (a frozen miner back at its limit is positive again)",
    )
    increase.add_argument("amount", type=_amount, help="tokens, e.g. 100 or 2.5")
    leave = commands.add_parser(
        "exit",
        help="leave the network: the collateral returns after the chain's cool-down",
        description=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    withdraw = commands.add_parser(
        "withdraw",
        help="after an exit: see the collateral back in the free balance",
        description="The chain returns an exiting miner's collateral by itself when the "
        "exit's cool-down ends; this shows it (exit 0) or says the exit is still running "
        "(exit 1). --wait waits for the end.",
    )
    withdraw.add_argument("--wait", action="store_true", help="wait for the exit to end")
    withdraw.add_argument(
        "--timeout", type=float, default=86_400.0, help="seconds --wait waits at most"
    )
    for command in (increase, leave, withdraw):
        command.add_argument("--config", required=True, help=f"the {CONFIG_NAME} file")
        command.add_argument("--json", action="store_true", help="machine-readable, base units")
        command.set_defaults(func=_account_cmd)
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
    except KeyMaterialError as exc:
        print(f"deoss-miner: {exc}", file=sys.stderr)
        return 2
    except ChainError as exc:
        print(f"deoss-miner: chain: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
