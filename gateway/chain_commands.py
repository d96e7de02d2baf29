"""Client commands that sign chain calls with the user's key (docs/cli.md):
``deoss territory mint|expand|renew|ls`` (storage_handler) and ``deoss authorize|
unauthorize`` (oss), against ``--chain-rpc`` or the devnet's chain node.

Each waits for its block and prints the chain's state after it. A call the chain refuses
prints the chain's error by name (``storage_handler.TerritoryExists: ...``) and exits 1.
"""

import argparse
import json
import re
import sys
from typing import Any

import aiohttp

from chain_client.account import ChainAccount
from chain_client.errors import ChainError, ExtrinsicFailed, InvalidArguments, Rejected
from chain_client.keys import Keypair
from chain_client.params import TOKEN, NetworkParams
from chain_client.protocol import Chain
from chain_client.rpc_client import HttpChain
from chain_client.ss58 import canonical_address
from gateway.client import run_command
from gateway.client_session import ClientError, UsageError, add_target_options, chain_url, signer
from gateway.native.signing import gateway_account
from gateway.progress import human_bytes

__all__ = ["add_chain_commands", "expiry_text", "territory_rows", "tokens"]

TERRITORY_NAME = re.compile(r"[A-Za-z0-9._-]{1,63}")  # the chain's Name


def tokens(amount: int) -> str:
    """An amount in base units as tokens: 30, 0.5, 0.001."""
    whole, fraction = divmod(amount, TOKEN)
    return f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _territory_name(text: str) -> str:
    if not TERRITORY_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"1..63 of A-Z a-z 0-9 . _ -, got {text!r}")
    return text


def _address(text: str) -> str:
    try:
        return canonical_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) < 2**32:
        raise argparse.ArgumentTypeError(f"a whole number from 1, got {text!r}")
    return int(text)


class _Session:
    """The chain client and the signing account of one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.keypair: Keypair = signer(args)
        self.chain = HttpChain(chain_url(args))
        self.account = ChainAccount(self.chain, self.keypair)

    async def params(self) -> NetworkParams:
        _, genesis = await self.chain.genesis()
        return genesis.params

    async def call(self, call: str, **call_args: Any) -> dict[str, Any]:
        """The call's events, by name; ClientError names the chain's refusal."""
        try:
            result = await self.account.call(call, **call_args)
        except ExtrinsicFailed as exc:
            raise ClientError(exc.reason) from None
        except Rejected as exc:
            raise ClientError(f"the chain node refused {call}: {exc}") from None
        except TimeoutError as exc:
            raise ClientError(f"{call}: {exc}") from None
        return {event["name"]: event["data"] for event in result.events}


async def territory_rows(chain: Chain, owner: str) -> list[dict[str, Any]]:
    """The owner's territories as ``deoss territory ls --json`` prints them: the chain's
    fields, and when the territory freezes and expires, in blocks and estimated seconds
    from now (null on a chain without a block time: manual blocks)."""
    _, genesis = await chain.genesis()
    params = genesis.params
    head = await chain.head()
    rows = []
    for found in await chain.query("storage_handler.territories", owner=owner):
        expires_at = found["deadline"] + params.grace_period
        row = {
            key: found[key]
            for key in ("name", "state", "total", "used", "locked", "remaining", "deadline")
        }
        row["expires_at"] = expires_at

        def seconds(block: int) -> float | None:
            return (block - head.best_block) * params.block_time if params.block_time else None

        row["deadline_in"] = seconds(found["deadline"])
        row["expires_in"] = seconds(expires_at)
        rows.append(row)
    return rows


def expiry_text(row: dict[str, Any]) -> str:
    if row["state"] == "active":
        block, left, what = row["deadline"], row["deadline_in"], "freezes"
    elif row["state"] == "frozen":
        block, left, what = row["expires_at"], row["expires_in"], "expires"
    else:
        return "expired"
    if left is None:
        return f"{what} at block {block}"
    return f"{what} at block {block} (in {_duration(left)})"


def _print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"{'NAME':<20} {'SIZE':>10} {'USED':>10} {'STATE':<7} EXPIRY")
    for row in rows:
        print(
            f"{row['name']:<20} {human_bytes(row['total']):>10} {human_bytes(row['used']):>10} "
            f"{row['state']:<7} {expiry_text(row)}"
        )


async def _show(session: _Session, name: str, args: argparse.Namespace) -> None:
    rows = await territory_rows(session.chain, session.keypair.address)
    rows = [row for row in rows if row["name"] == name]
    if args.json:
        print(json.dumps(rows[0] if rows else None))
    else:
        _print_rows(rows)


async def _territory(args: argparse.Namespace) -> None:
    session = _Session(args)
    try:
        if args.territory_command == "ls":
            rows = await territory_rows(session.chain, args.owner or session.keypair.address)
            if args.json:
                print(json.dumps(rows))
            else:
                _print_rows(rows)
            return
        params = await session.params()
        if args.territory_command == "mint":
            events = await session.call(
                "storage_handler.mint_territory", name=args.name, gib=args.size, days=args.days
            )
            paid = events["TerritoryMinted"]["price"]
            done = f"minted {args.name}: {human_bytes(args.size * params.territory_unit)}"
        elif args.territory_command == "expand":
            events = await session.call(
                "storage_handler.expand_territory", name=args.name, gib=args.size
            )
            paid = events["TerritoryExpanded"]["price"]
            done = f"expanded {args.name} by {human_bytes(args.size * params.territory_unit)}"
        else:
            events = await session.call(
                "storage_handler.renew_territory", name=args.name, days=args.days
            )
            paid = events["TerritoryRenewed"]["price"]
            done = f"renewed {args.name} by {args.days} days"
        print(f"deoss territory: {done}, paid {tokens(paid)} tokens", file=sys.stderr)
        await _show(session, args.name, args)
    except (ChainError, InvalidArguments) as exc:
        raise ClientError(f"chain: {exc}") from None
    finally:
        await session.chain.close()


async def _gateway_address(text: str) -> str:
    if text.startswith(("http://", "https://")):
        try:
            return await gateway_account(text.rstrip("/"))
        except (aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
            raise ClientError(f"{text} is not a gateway's native API: {exc!r}") from None
    try:
        return canonical_address(text)
    except ValueError as exc:
        raise UsageError(f"GATEWAY is an SS58 address or a native API URL: {exc}") from None


async def _authorization(args: argparse.Namespace) -> None:
    session = _Session(args)
    try:
        gateway = await _gateway_address(args.gateway)
        owner = session.keypair.address
        if args.command == "authorize":
            await session.call("oss.authorize", gateway=gateway)
        else:
            await session.call("oss.cancel_authorize", gateway=gateway)
        authorized = await session.chain.query("oss.is_authorized", owner=owner, gateway=gateway)
        verb = "may" if authorized else "may no longer"
        print(f"deoss {args.command}: gateway {gateway} {verb} act for {owner}")
    except (ChainError, InvalidArguments) as exc:
        raise ClientError(f"chain: {exc}") from None
    finally:
        await session.chain.close()


def add_chain_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    territory = commands.add_parser(
        "territory",
        help="your territories: the paid space your objects go into",
        description="Territories (docs/chain.md §5 storage_handler). SIZE counts the "
        "network's territory units (1 GiB on a production network); the price is "
        "units * days * the unit price, paid from the signer's free balance.",
    )
    territory_commands = territory.add_subparsers(dest="territory_command", required=True)
    mint = territory_commands.add_parser("mint", help="buy a new territory")
    mint.add_argument("name", type=_territory_name)
    mint.add_argument("--size", type=_positive, required=True, help="GiB (territory units)")
    mint.add_argument("--days", type=_positive, required=True, help="lease in days")
    expand = territory_commands.add_parser("expand", help="add space to an active territory")
    expand.add_argument("name", type=_territory_name)
    expand.add_argument("--size", type=_positive, required=True, help="GiB (units) to add")
    renew = territory_commands.add_parser(
        "renew", help="extend an active or frozen territory's lease"
    )
    renew.add_argument("name", type=_territory_name)
    renew.add_argument("--days", type=_positive, required=True, help="days to add")
    listing = territory_commands.add_parser("ls", help="your territories and their state")
    listing.add_argument("--owner", type=_address, help="another account's territories")
    for parser in (mint, expand, renew, listing):
        parser.add_argument("--json", action="store_true", help="machine-readable, bytes")
        add_target_options(parser, chain=True)
        parser.set_defaults(func=run_command(_territory))
    for name, text in (
        ("authorize", "let a gateway store, delete and repair files for you"),
        ("unauthorize", "withdraw a gateway's authorization"),
    ):
        parser = commands.add_parser(name, help=text)
        parser.add_argument("gateway", help="the gateway's account, or its native API URL")
        add_target_options(parser, chain=True)
        parser.set_defaults(func=run_command(_authorization))
