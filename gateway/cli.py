"""``deoss``: the gateway (``gateway init|run``), client commands, and the devnet."""

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from chain_client.files import private_directory, write_atomically
from chain_client.key_cli import add_key_commands
from chain_client.keys import KeyMaterialError, Keypair, load_signer, save_key_file
from chain_client.params import ConfigError
from gateway.chain_commands import add_chain_commands
from gateway.client import add_client_commands, add_progress_option
from gateway.config import GatewayConfig
from gateway.devnet import DevnetError, run_devnet
from gateway.native.signing import gateway_account, sign_bare, sign_request
from gateway.progress import Progress

__all__ = ["build_parser", "main"]

CONFIG_NAME = "gateway.toml"


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


def _gateway_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    config_path = directory / CONFIG_NAME
    if config_path.exists() and not args.force:
        print(f"deoss: {config_path} exists (use --force to replace it)", file=sys.stderr)
        return 2
    config = GatewayConfig(
        data_dir=directory,
        chain_rpc=args.chain_rpc,
        native_listen=args.native_listen,
        s3_listen=args.s3_listen,
        s3_domain=args.s3_domain,
        key_file=args.key or "key.json",
        dev=args.dev,
        faucet=args.faucet,
        default_territory=args.default_territory,
        source=str(config_path),
    )
    try:
        config.validate()  # before anything is written
        private_directory(directory)  # SECURITY: the key, then the index and spools
        if args.key is None:
            save_key_file(directory / "key.json", Keypair.generate(), overwrite=args.force)
    except (ConfigError, KeyMaterialError) as exc:
        print(f"deoss: {exc}", file=sys.stderr)
        return 2
    write_atomically(config_path, config.render())
    print(f"deoss: wrote {config_path}")
    return 0


def _gateway_run(args: argparse.Namespace) -> int:
    if "MALLOC_ARENA_MAX" not in os.environ:
        # glibc keeps freed buffers: per worker-thread arenas, and 8 MiB fragments on the
        # heap once its dynamic mmap threshold has grown. Two arenas and a fixed 1 MiB
        # threshold (big buffers mmapped, so freed ones go back to the OS) cut the
        # gateway's peak RSS on a 2 GiB upload from 636 to 355 MiB, download 364 -> 104,
        # at the same throughput (make bench). They are read at start: hence the re-exec.
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1024 * 1024))
        os.execv(sys.executable, [sys.executable, "-m", "gateway.cli", *sys.argv[1:]])  # noqa: S606
    from gateway.app import run_gateway  # the server pulls in much more: load it late

    return run_gateway(GatewayConfig.load(Path(args.config)))


def _recover(args: argparse.Namespace) -> int:
    """docs/durability.md §5: run it with the gateway stopped, its key and master key
    in place, and an empty (or lost) index."""
    from gateway.durability.recover import recover

    config = GatewayConfig.load(Path(args.config))
    if (config.data_dir / "index.db").exists():
        print(f"deoss: {config.data_dir / 'index.db'} exists: recover fills an empty index")
        return 2
    progress = Progress(None, "recover", unit="files", enabled=args.progress)
    report = asyncio.run(recover(config, progress=progress.advance))
    progress.finish()
    print(
        f"deoss recover: {report.files} files, {report.names} names, {report.buckets} buckets; "
        f"{len(report.unreadable)} unreadable, {report.foreign} references of other keys"
    )
    return 1 if report.unreadable else 0


def _scrub(args: argparse.Namespace) -> int:
    """docs/durability.md §4: exit 1 when a fragment did not come back intact."""
    from gateway.durability.scrub import scrub_now

    config = GatewayConfig.load(Path(args.config))
    progress = Progress(None, "scrub", unit="fragments", enabled=args.progress)
    report = asyncio.run(scrub_now(config, args.sample, progress=progress.advance))
    progress.finish()
    for fid, segment, index in report.bad:
        print(f"bad {fid} segment {segment} fragment {index}")
    print(f"deoss scrub: {report.checked} fragments checked, {len(report.bad)} bad (reported)")
    return 1 if report.bad else 0


def _sign(args: argparse.Namespace) -> int:
    """Fresh native-API headers for one request as curl arguments:
    ``curl $(deoss sign --key K --gateway G GET /file/list) G_URL/file/list``."""
    try:
        keypair = load_signer(args.key, dev=args.dev)
        if args.bare:
            headers = sign_bare(keypair, ttl=args.ttl)
        else:
            if args.gateway is None or args.method is None or args.target is None:
                raise ValueError("give --gateway, the METHOD and the TARGET (or --bare)")
            gateway = args.gateway
            if gateway.startswith(("http://", "https://")):
                gateway = asyncio.run(gateway_account(gateway.rstrip("/")))
            body: bytes | None = None
            if not args.unsigned:
                body = b"" if args.body is None else _read_body(args.body)
            headers = sign_request(
                keypair,
                gateway=gateway,
                method=args.method,
                target=args.target,
                body=body,
                ttl=args.ttl,
            )
    except (KeyMaterialError, ValueError, OSError, aiohttp.ClientError) as exc:
        print(f"deoss sign: {exc}", file=sys.stderr)
        return 2
    print(" ".join(f"-H{name}:{value}" for name, value in headers.items()))
    return 0


def _read_body(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deoss", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    devnet = commands.add_parser("devnet", help="run a local network of real processes")
    devnet.add_argument("--dir", default=".devnet", help="where the network keeps its state")
    devnet.add_argument("--block-time", type=float, default=1.0, help="seconds between blocks")
    devnet.add_argument("--fresh", action="store_true", help="start from an empty directory")
    devnet.add_argument("--miners", type=int, default=None, help="how many miners (n + 2)")
    devnet.set_defaults(func=_devnet)

    gateway = commands.add_parser("gateway", help="run a gateway")
    gateway_commands = gateway.add_subparsers(dest="gateway_command", required=True)
    init = gateway_commands.add_parser("init", help="write a gateway config and key")
    init.add_argument("--dir", required=True)
    init.add_argument("--chain-rpc", required=True)
    init.add_argument("--native-listen", default="127.0.0.1:8080", help="HOST:PORT (0: any)")
    init.add_argument("--s3-listen", default="127.0.0.1:8081", help="HOST:PORT (0: any)")
    init.add_argument("--s3-domain", default="", help="virtual-host style under this domain")
    init.add_argument("--key", help="use this key file or //Name (dev) instead of a new key")
    init.add_argument("--default-territory", default="")
    init.add_argument("--dev", action="store_true", help="allow dev keys")
    init.add_argument("--faucet", action="store_true", help="dev networks: fund from the faucet")
    init.add_argument("--force", action="store_true")
    init.set_defaults(func=_gateway_init)
    run = gateway_commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, help=f"the {CONFIG_NAME} file")
    run.set_defaults(func=_gateway_run)

    recover = commands.add_parser(
        "recover", help="rebuild a lost gateway index from the chain and the miners"
    )
    recover.add_argument("--config", required=True, help=f"the gateway's {CONFIG_NAME}")
    add_progress_option(recover)
    recover.set_defaults(func=_recover)
    scrub = commands.add_parser(
        "scrub", help="check the gateway's fragments now; report the bad ones to the chain"
    )
    scrub.add_argument("--config", required=True, help=f"the gateway's {CONFIG_NAME}")
    scrub.add_argument("--sample", type=float, default=1.0, help="share to check (1: all)")
    add_progress_option(scrub)
    scrub.set_defaults(func=_scrub)
    sign = commands.add_parser(
        "sign", help="print fresh Account/Message/Signature headers for one request"
    )
    sign.add_argument("method", nargs="?", help="the request's method: GET, PUT, POST...")
    sign.add_argument("target", nargs="?", help="its path and query, e.g. /file/list?limit=5")
    sign.add_argument("--key", required=True, help="key file, or //Name with --dev")
    sign.add_argument("--gateway", help="the gateway's account, or its native API URL")
    body = sign.add_mutually_exclusive_group()
    body.add_argument("--body", help="the file the request sends ('-': stdin); signs its sha256")
    body.add_argument("--unsigned", action="store_true", help="a streamed upload: UNSIGNED")
    sign.add_argument(
        "--bare", action="store_true", help="DeOSS's unbound message (reads, where allowed)"
    )
    sign.add_argument("--dev", action="store_true")
    sign.add_argument("--ttl", type=int, default=60, help="seconds the signature lives")
    sign.set_defaults(func=_sign)
    add_client_commands(commands)
    add_chain_commands(commands)
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"deoss: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
