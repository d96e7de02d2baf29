"""Where a client command goes and as whom: the gateway's native URL, the chain node's
RPC URL and the signing key, each from its flag or else from the devnet's
``devnet.json`` (``--devnet DIR``, default ``.devnet``), as ``make devnet`` writes it.

A command fails with ``ClientError`` (exit 1: the gateway or the chain said no, or could
not be reached) or ``UsageError`` (exit 2: an argument, a key file or the devnet is not
what it must be).
"""

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from chain_client.keys import KeyMaterialError, Keypair, load_signer
from gateway.native.signing import ACCOUNT_HEADER, gateway_account, signing_middleware

__all__ = [
    "ClientError",
    "UsageError",
    "add_target_options",
    "answer",
    "chain_url",
    "client_session",
    "gateway_url",
    "signer",
]

# A transfer may take as long as it takes; a peer that stops answering may not.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)


class ClientError(Exception):
    pass


class UsageError(ClientError):
    pass


def add_target_options(
    parser: argparse.ArgumentParser, *, gateway: bool = False, chain: bool = False
) -> None:
    if gateway:
        parser.add_argument("--gateway", help="native API URL (default: the devnet's)")
    if chain:
        parser.add_argument("--chain-rpc", help="the chain node's URL (default: the devnet's)")
    parser.add_argument("--key", help="key file, or //Name with --dev (default: the devnet user's)")
    parser.add_argument("--devnet", default=".devnet", help="devnet directory (.devnet)")
    parser.add_argument("--dev", action="store_true", help="allow //Name dev keys")


def _from_devnet(args: argparse.Namespace, field: str, flag: str) -> str:
    path = Path(args.devnet) / "devnet.json"
    try:
        value = json.loads(path.read_text())[field]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"no {flag} given and no devnet at {path}: {exc!r}") from None
    return str(value)


def signer(args: argparse.Namespace) -> Keypair:
    spec = args.key or _from_devnet(args, "key_file", "--key")
    try:
        return load_signer(spec, dev=args.dev)
    except KeyMaterialError as exc:
        raise UsageError(str(exc)) from None


def gateway_url(args: argparse.Namespace) -> str:
    url = args.gateway or _from_devnet(args, "native_endpoint", "--gateway")
    return _http_url(url, "--gateway")


def chain_url(args: argparse.Namespace) -> str:
    url = args.chain_rpc or _from_devnet(args, "chain_rpc", "--chain-rpc")
    return _http_url(url, "--chain-rpc")


def _http_url(url: str, flag: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{flag} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


async def answer(response: aiohttp.ClientResponse) -> Any:
    """The envelope's ``data`` (docs/native-api.md §1); ClientError names the error."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    if response.status >= 400:
        if isinstance(body, dict):
            error = (
                body.get("data", {}).get("error") if isinstance(body.get("data"), dict) else None
            )
            detail = f"{error}: {body.get('msg')}" if error else str(body.get("msg"))
        else:
            detail = await response.text()
        raise ClientError(f"{response.status} {detail}")
    return body["data"] if isinstance(body, dict) and "data" in body else body


@contextlib.asynccontextmanager
async def client_session(
    url: str, keypair: Keypair
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A session that signs every request for the gateway at ``url`` (its account comes
    from its ``/version``), and that account; no overall time limit, so a long transfer
    is not cut short."""
    try:
        account = await gateway_account(url)
    except (aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"{url} is not a gateway's native API: {exc!r}") from None
    async with aiohttp.ClientSession(
        headers={ACCOUNT_HEADER: keypair.address},
        middlewares=(signing_middleware(keypair, account),),
        timeout=TIMEOUT,
    ) as session:
        yield session, account
