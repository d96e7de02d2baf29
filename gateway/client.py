"""Client commands for the native API: ``deoss put|get|rm|ls|keys``.

They talk to a gateway with fresh signatures for every request (docs/native-api.md §2),
reading the gateway URL and the key from ``.devnet/devnet.json`` unless told otherwise.
Progress goes to stderr; the answer (a fid, a listing) to stdout.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiofiles
import aiohttp

from chain_client.keys import KeyMaterialError, Keypair, load_signer
from gateway.native.signing import signed_session

__all__ = ["add_client_commands"]

CHUNK = 1024 * 1024


class ClientError(Exception):
    pass


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when asked)."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total, self.label = total, label
        self.done = 0
        self.started = time.monotonic()
        self.shown = 0.0
        self.enabled = sys.stderr.isatty()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self.shown > 0.1 or self.done == self.total):
            self.shown = now
            rate = self.done / max(now - self.started, 1e-6) / 1e6
            of = f" / {self.total / 2**20:.1f} MiB" if self.total else ""
            sys.stderr.write(f"\r{self.label} {self.done / 2**20:.1f}{of} MiB  {rate:.1f} MB/s ")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _target(args: argparse.Namespace) -> tuple[str, Keypair]:
    gateway, key = args.gateway, args.key
    if gateway is None or key is None:
        info_path = Path(args.devnet) / "devnet.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError) as exc:
            raise ClientError(f"no --gateway/--key and no devnet at {info_path}: {exc}") from None
        gateway = gateway or info["native_endpoint"]
        key = key or info["key_file"]
    try:
        return str(gateway).rstrip("/"), load_signer(str(key), dev=args.dev)
    except KeyMaterialError as exc:
        raise ClientError(str(exc)) from None


async def _answer(response: aiohttp.ClientResponse) -> Any:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    if response.status >= 400:
        detail = body.get("msg") if isinstance(body, dict) else await response.text()
        raise ClientError(f"{response.status}: {detail}")
    return body["data"] if isinstance(body, dict) and "data" in body else body


async def _put(args: argparse.Namespace) -> None:
    gateway, keypair = _target(args)
    path = Path(args.file)
    size = (await asyncio.to_thread(path.stat)).st_size
    progress = Progress(size, "put")

    async def body() -> AsyncIterator[bytes]:
        async with aiofiles.open(path, "rb") as handle:
            while data := await handle.read(CHUNK):
                progress.advance(len(data))
                yield data

    headers = {"Content-Length": str(size)}
    for name, value in (
        ("Territory", args.territory),
        ("Cipher", args.cipher),
        ("Copies", args.copies),
    ):
        if value is not None:
            headers[name] = str(value)
    name = args.name or path.name
    async with (
        signed_session(gateway, keypair) as session,
        session.put(f"{gateway}/object/{name}", data=body(), headers=headers) as response,
    ):
        data = await _answer(response)
    progress.finish()
    print(data["fid"])


async def _get(args: argparse.Namespace) -> None:
    gateway, keypair = _target(args)
    headers = {}
    if args.range:
        headers["Range"] = f"bytes={args.range}"
    if args.cipher is not None:
        headers["Cipher"] = args.cipher
    output = Path(args.output)
    partial = output.with_name(f".{output.name}.part")
    async with (
        signed_session(gateway, keypair) as session,
        session.get(f"{gateway}/file/download/{args.fid}", headers=headers) as response,
    ):
        if response.status >= 400:
            await _answer(response)
        progress = Progress(response.content_length, "get")
        async with aiofiles.open(partial, "wb") as handle:
            async for data in response.content.iter_chunked(CHUNK):
                await handle.write(data)
                progress.advance(len(data))
        if response.content_length is not None and progress.done != response.content_length:
            partial.unlink(missing_ok=True)
            raise ClientError(
                f"the gateway sent {progress.done} of {response.content_length} bytes"
            )
    os.replace(partial, output)  # never a half file under the asked name
    progress.finish()
    print(f"{output} {progress.done} bytes", file=sys.stderr)


async def _rm(args: argparse.Namespace) -> None:
    gateway, keypair = _target(args)
    async with (
        signed_session(gateway, keypair) as session,
        session.delete(f"{gateway}/file/{args.fid}") as response,
    ):
        data = await _answer(response)
    print(json.dumps(data))


async def _ls(args: argparse.Namespace) -> None:
    gateway, keypair = _target(args)
    start_after = ""
    async with signed_session(gateway, keypair) as session:
        while True:
            query = {"limit": "1000", "start_after": start_after}
            async with session.get(f"{gateway}/file/list", params=query) as response:
                rows = await _answer(response)
                more = "Link" in response.headers
            for row in rows:
                print(f"{row['fid']}  {row['size']:>12}  {row['state']:<8} {row['name']}")
            if not more or not rows:
                return
            start_after = rows[-1]["name"]


async def _keys(args: argparse.Namespace) -> None:
    """``deoss keys create|list|revoke``: the signer's S3 access keys (docs/s3.md §2)."""
    gateway, keypair = _target(args)
    async with signed_session(gateway, keypair) as session:
        if args.keys_command == "create":
            body = json.dumps({"label": args.label}).encode()
            call = session.post(f"{gateway}/keys", data=body)
        elif args.keys_command == "list":
            call = session.get(f"{gateway}/keys")
        else:
            call = session.delete(f"{gateway}/keys/{args.access_key}")
        async with call as response:
            data = await _answer(response)
    if args.keys_command == "list":
        for row in data:
            state = "revoked" if row["revoked"] else "live"
            print(f"{row['access_key']}  {state:<7}  {row['label']}")
    else:
        print(json.dumps(data, indent=2))


def _runner(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            asyncio.run(handler(args))
        except (ClientError, aiohttp.ClientError, OSError) as exc:
            print(f"deoss: {exc}", file=sys.stderr)
            return 1
        return 0

    return run


def add_client_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--gateway", help="native API URL (default: the devnet's)")
        parser.add_argument("--key", help="key file (default: the devnet user's)")
        parser.add_argument("--devnet", default=".devnet", help="devnet directory")
        parser.add_argument("--dev", action="store_true", help="allow //Name dev keys")

    put = commands.add_parser("put", help="upload a file; prints its fid")
    put.add_argument("file")
    put.add_argument("--name")
    put.add_argument("--territory")
    put.add_argument("--cipher", help="a password that encrypts the object's keys")
    put.add_argument("--copies", type=int)
    common(put)
    put.set_defaults(func=_runner(_put))
    get = commands.add_parser("get", help="download a file")
    get.add_argument("fid")
    get.add_argument("-o", "--output", required=True)
    get.add_argument("--range", help="A-B (inclusive), A- or -N")
    get.add_argument("--cipher")
    common(get)
    get.set_defaults(func=_runner(_get))
    rm = commands.add_parser("rm", help="delete a file")
    rm.add_argument("fid")
    common(rm)
    rm.set_defaults(func=_runner(_rm))
    ls = commands.add_parser("ls", help="list your files")
    common(ls)
    ls.set_defaults(func=_runner(_ls))
    keys = commands.add_parser("keys", help="your S3 access keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="a new key; prints its secret once")
    create.add_argument("--label", default="")
    listing = keys_commands.add_parser("list", help="your keys (never their secrets)")
    revoke = keys_commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("access_key")
    for parser in (create, listing, revoke):
        common(parser)
        parser.set_defaults(func=_runner(_keys))
