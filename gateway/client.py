"""Client commands for the native API: ``deoss put|get|rm|ls|keys`` (docs/cli.md).

They talk to a gateway with fresh signatures for every request (docs/native-api.md §2),
reading the gateway URL and the key from ``.devnet/devnet.json`` unless told otherwise
(gateway/client_session.py). Progress goes to stderr; the answer (a fid, a listing) to
stdout.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiofiles
import aiohttp
from yarl import URL

from gateway.client_session import (
    ClientError,
    UsageError,
    add_target_options,
    answer,
    client_session,
    gateway_url,
    signer,
)
from gateway.progress import Progress
from gateway.resume_upload import DEFAULT_CHUNK, UploadPlan, default_state_dir, resumable_put

__all__ = ["add_client_commands", "add_progress_option", "run_command"]

CHUNK = 1024 * 1024
_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _object_url(gateway: str, name: str) -> URL:
    return URL(gateway).with_path("/object/" + quote(name, safe="/"), encoded=True)


async def _put(args: argparse.Namespace) -> None:
    gateway, keypair = gateway_url(args), signer(args)
    path = Path(args.file)
    name = args.name or path.name
    try:
        plan = await asyncio.to_thread(
            UploadPlan.of,
            path,
            gateway=gateway,
            account=keypair.address,
            name=name,
            territory=args.territory,
            copies=args.copies,
        )
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    async with client_session(gateway, keypair) as (session, account):
        if args.resume and plan.size > args.chunk_size:
            outcome = await resumable_put(
                session,
                keypair=keypair,
                gateway_account=account,
                plan=plan,
                state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
                chunk_size=args.chunk_size,
                cipher=args.cipher,
                progress=args.progress,
            )
            fid = outcome.fid
            print(
                f"deoss put: {name}: sent {outcome.sent} bytes this run "
                f"({outcome.resumed_at} were already stored), {outcome.size} in all",
                file=sys.stderr,
            )
        else:
            fid = await _put_whole(session, gateway, path, plan, args)
    print(fid)


async def _put_whole(
    session: aiohttp.ClientSession,
    gateway: str,
    path: Path,
    plan: UploadPlan,
    args: argparse.Namespace,
) -> str:
    """One streamed ``PUT /object/{name}``: a file of one chunk or less, or --no-resume."""
    progress = Progress(plan.size, "put", enabled=args.progress)

    async def body() -> AsyncIterator[bytes]:
        async with aiofiles.open(path, "rb") as handle:
            while data := await handle.read(CHUNK):
                progress.advance(len(data))
                yield data

    headers = {"Content-Length": str(plan.size)}
    for header, value in (
        ("Territory", args.territory),
        ("Cipher", args.cipher),
        ("Copies", args.copies),
    ):
        if value is not None:
            headers[header] = str(value)
    async with session.put(
        _object_url(gateway, plan.name), data=body(), headers=headers
    ) as answered:
        data = await answer(answered)
    progress.finish()
    print(f"deoss put: {plan.name}: sent {progress.done} bytes", file=sys.stderr)
    return str(data["fid"])


async def _get(args: argparse.Namespace) -> None:
    gateway, keypair = gateway_url(args), signer(args)
    headers = {}
    if args.range:
        headers["Range"] = f"bytes={args.range}"
    if args.cipher is not None:
        headers["Cipher"] = args.cipher
    output = Path(args.output)
    partial = output.with_name(f".{output.name}.part")
    async with (
        client_session(gateway, keypair) as (session, _),
        session.get(f"{gateway}/file/download/{args.fid}", headers=headers) as response,
    ):
        if response.status >= 400:
            await answer(response)
        progress = Progress(response.content_length, "get", enabled=args.progress)
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
    gateway, keypair = gateway_url(args), signer(args)
    async with (
        client_session(gateway, keypair) as (session, _),
        session.delete(f"{gateway}/file/{args.fid}") as response,
    ):
        data = await answer(response)
    print(json.dumps(data))


async def _ls(args: argparse.Namespace) -> None:
    gateway, keypair = gateway_url(args), signer(args)
    start_after = ""
    async with client_session(gateway, keypair) as (session, _):
        while True:
            query = {"limit": "1000", "start_after": start_after}
            async with session.get(f"{gateway}/file/list", params=query) as response:
                rows = await answer(response)
                more = "Link" in response.headers
            for row in rows:
                print(f"{row['fid']}  {row['size']:>12}  {row['state']:<8} {row['name']}")
            if not more or not rows:
                return
            start_after = rows[-1]["name"]


async def _keys(args: argparse.Namespace) -> None:
    """``deoss keys create|list|revoke``: the signer's S3 access keys (docs/s3.md §2)."""
    gateway, keypair = gateway_url(args), signer(args)
    async with client_session(gateway, keypair) as (session, _):
        if args.keys_command == "create":
            body = json.dumps({"label": args.label}).encode()
            call = session.post(f"{gateway}/keys", data=body)
        elif args.keys_command == "list":
            call = session.get(f"{gateway}/keys")
        else:
            call = session.delete(f"{gateway}/keys/{args.access_key}")
        async with call as response:
            data = await answer(response)
    if args.keys_command == "list":
        for row in data:
            state = "revoked" if row["revoked"] else "live"
            print(f"{row['access_key']}  {state:<7}  {row['label']}")
    else:
        print(json.dumps(data, indent=2))


RECANCEL_SECONDS = 0.1


async def _interruptible(work: Any) -> Any:
    """``work``, cancelled on Ctrl-C and again every ``RECANCEL_SECONDS`` until it ends:
    a library that swallows one cancellation (a timeout racing it) cannot turn Ctrl-C
    into a finished upload."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    interrupted = False

    def cancel() -> None:
        if not task.done():
            task.cancel()
            loop.call_later(RECANCEL_SECONDS, cancel)

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        return await task
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run_command(handler: Any) -> Any:
    """An ``argparse`` ``func`` running the coroutine ``handler(args)``: exit 1 when the
    gateway or the chain refused or could not be reached, 2 for a bad argument, 130 on
    Ctrl-C."""

    def run(args: argparse.Namespace) -> int:
        try:
            asyncio.run(_interruptible(handler(args)))
        except UsageError as exc:
            print(f"deoss: {exc}", file=sys.stderr)
            return 2
        except (ClientError, aiohttp.ClientError, OSError) as exc:
            print(f"deoss: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("deoss: interrupted", file=sys.stderr)
            return 130
        return 0

    return run


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )


def _size(text: str) -> int:
    """Bytes, with an optional K, M or G (binary) suffix: 262144, 256K, 16M."""
    number, suffix = text[:-1], text[-1:].upper()
    if suffix not in _SUFFIXES or not suffix:
        number, suffix = text, ""
    if not number.isascii() or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"a size in bytes (16M, 256K, 65536), got {text!r}")
    return int(number) * _SUFFIXES[suffix]


def add_client_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        add_target_options(parser, gateway=True)

    put = commands.add_parser(
        "put",
        help="upload a file; prints its fid",
        description="Upload a file; prints its fid. A file larger than one chunk goes "
        "through the resume API: run the same command again after a Ctrl-C or a broken "
        "connection and only what the gateway lacks is sent (docs/cli.md).",
    )
    put.add_argument("file")
    put.add_argument("--name", help="the object's name (default: the file's)")
    put.add_argument("--territory")
    put.add_argument("--cipher", help="a password that encrypts the object's keys")
    put.add_argument("--copies", type=int)
    put.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="resumable chunks for files larger than one chunk (default: on)",
    )
    put.add_argument(
        "--chunk-size",
        type=_size,
        default=DEFAULT_CHUNK,
        help=f"bytes per resumable chunk, K/M/G suffixes (default {DEFAULT_CHUNK // 2**20}M)",
    )
    put.add_argument(
        "--state-dir", help="where unfinished uploads are recorded (~/.cache/deoss/uploads)"
    )
    add_progress_option(put)
    common(put)
    put.set_defaults(func=run_command(_put))
    get = commands.add_parser("get", help="download a file")
    get.add_argument("fid")
    get.add_argument("-o", "--output", required=True)
    get.add_argument("--range", help="A-B (inclusive), A- or -N")
    get.add_argument("--cipher")
    add_progress_option(get)
    common(get)
    get.set_defaults(func=run_command(_get))
    rm = commands.add_parser("rm", help="delete a file")
    rm.add_argument("fid")
    common(rm)
    rm.set_defaults(func=run_command(_rm))
    ls = commands.add_parser("ls", help="list your files")
    common(ls)
    ls.set_defaults(func=run_command(_ls))
    keys = commands.add_parser("keys", help="your S3 access keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="a new key; prints its secret once")
    create.add_argument("--label", default="")
    listing = keys_commands.add_parser("list", help="your keys (never their secrets)")
    revoke = keys_commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("access_key")
    for parser in (create, listing, revoke):
        common(parser)
        parser.set_defaults(func=run_command(_keys))
