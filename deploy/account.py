"""``python -m deploy.account``: the chain calls an operator or a user makes by hand when
setting up a network (deploy/README.md): look at an account, send funds, authorize a
gateway, mint a territory. Each call is signed with a key file (or a //Name dev key,
with --dev) and waits for its block; a refusal prints the chain's reason and exits 1.

    python -m deploy.account --chain-rpc URL --key FILE balance [ACCOUNT]
    python -m deploy.account --chain-rpc URL --key FILE transfer DEST TOKENS
    python -m deploy.account --chain-rpc URL --key FILE authorize (GATEWAY | --gateway-url URL)
    python -m deploy.account --chain-rpc URL --key FILE territory NAME --units N [--days D]
"""

import argparse
import asyncio
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp

from chain_client.account import ChainAccount
from chain_client.errors import ChainError
from chain_client.keys import KeyMaterialError, load_signer
from chain_client.params import TOKEN, NetworkParams
from chain_client.protocol import Chain
from chain_client.rpc_client import HttpChain
from gateway.native.signing import gateway_account

__all__ = ["NoSpaceForTerritory", "authorize", "main", "mint_territory", "tokens", "unsold_space"]

WAIT_INTERVAL = 1.0


class NoSpaceForTerritory(ChainError):
    def __init__(self, unsold: int, needed: int, waited: float) -> None:
        super().__init__(
            f"the miners have certified {unsold} bytes no territory holds, after {waited:.0f} s; "
            f"the territory needs {needed}"
        )
        self.unsold, self.needed = unsold, needed


def tokens(text: str) -> int:
    """``"1500"`` or ``"0.25"`` tokens, in the chain's base units."""
    try:
        amount = Decimal(text) * TOKEN
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number of tokens: {text!r}") from None
    if amount <= 0 or amount != amount.to_integral_value():
        raise argparse.ArgumentTypeError(f"not a positive amount: {text!r}")
    return int(amount)


async def unsold_space(chain: Chain) -> int:
    """Certified space no territory has bought yet: what a new territory can take."""
    totals = await chain.query("sminer.totals")
    certified = int(totals["idle"]) + int(totals["service"]) + int(totals["locked"])
    return certified - int(await chain.query("storage_handler.purchased"))


async def authorize(account: ChainAccount, gateway: str) -> bool:
    """Lets ``gateway`` store for this account; False when it already may."""
    chain = account.chain
    if await chain.query("oss.is_authorized", owner=account.address, gateway=gateway):
        return False
    await account.call("oss.authorize", gateway=gateway)
    return True


async def mint_territory(
    account: ChainAccount, params: NetworkParams, name: str, units: int, days: int, wait: float
) -> dict[str, Any]:
    """The account's territory ``name``, minted (``units`` of ``territory_unit`` bytes)
    if it has none, once the miners have certified that much (up to ``wait`` seconds)."""
    chain = account.chain
    found: dict[str, Any] | None = await chain.query(
        "storage_handler.territory", owner=account.address, name=name
    )
    if found is not None and found["state"] != "expired":
        return found
    needed, deadline = units * params.territory_unit, time.monotonic() + wait
    while (unsold := await unsold_space(chain)) < needed:
        if time.monotonic() > deadline:
            raise NoSpaceForTerritory(unsold, needed, wait)
        await asyncio.sleep(WAIT_INTERVAL)
    await account.call("storage_handler.mint_territory", name=name, gib=units, days=days)
    minted: dict[str, Any] = await chain.query(
        "storage_handler.territory", owner=account.address, name=name
    )
    return minted


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.account", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--chain-rpc", required=True, help="the chain node's URL")
    parser.add_argument("--key", required=True, help="key file, or //Name with --dev")
    parser.add_argument("--dev", action="store_true", help="allow //Name dev keys")
    commands = parser.add_subparsers(dest="command", required=True)
    balance = commands.add_parser("balance", help="free and reserved balance")
    balance.add_argument("account", nargs="?", help="default: the key's own")
    transfer = commands.add_parser("transfer", help="send tokens")
    transfer.add_argument("dest")
    transfer.add_argument("amount", type=tokens, help="tokens (fractions allowed)")
    auth = commands.add_parser("authorize", help="let a gateway store for this account")
    auth.add_argument("gateway", nargs="?", help="the gateway's account")
    auth.add_argument("--gateway-url", help="or its native API URL (asks its /version)")
    territory = commands.add_parser("territory", help="mint a territory unless it exists")
    territory.add_argument("name")
    territory.add_argument("--units", type=int, required=True, help="of territory_unit bytes")
    territory.add_argument("--days", type=int, default=30)
    territory.add_argument("--wait", type=float, default=300.0, help="for certified space, s")
    return parser


async def _run(args: argparse.Namespace) -> int:
    chain = HttpChain(args.chain_rpc)
    try:
        account = ChainAccount(chain, load_signer(args.key, dev=args.dev))
        if args.command == "balance":
            found = await chain.query("balances.account", account=args.account or account.address)
            free, reserved = int(found["free"]), int(found["reserved"])
            print(f"free {Decimal(free) / TOKEN:f} reserved {Decimal(reserved) / TOKEN:f} tokens")
        elif args.command == "transfer":
            await account.call("balances.transfer", dest=args.dest, amount=args.amount)
            print(f"sent {Decimal(args.amount) / TOKEN} tokens to {args.dest}")
        elif args.command == "authorize":
            if (args.gateway is None) == (args.gateway_url is None):
                print("authorize: give GATEWAY or --gateway-url", file=sys.stderr)
                return 2
            gateway = args.gateway or await gateway_account(args.gateway_url)
            done = await authorize(account, gateway)
            print(f"{gateway} {'is now' if done else 'already was'} authorized")
        else:
            params = (await chain.genesis())[1].params
            found = await mint_territory(
                account, params, args.name, args.units, args.days, args.wait
            )
            print(f"territory {args.name}: {found['total']} bytes, {found['state']}")
    except (ChainError, KeyMaterialError, aiohttp.ClientError, OSError) as exc:
        print(f"deploy.account: {exc}", file=sys.stderr)
        return 1
    finally:
        await chain.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
