"""``python -m deploy.multihost``: a deoss network of separate hosts on this machine (a
chain host, n + 2 miner hosts, a gateway host, each a network namespace with its own
address on one bridge), run until Ctrl-C or SIGTERM, then removed. Needs root (or
CAP_NET_ADMIN) and iproute2; ``--clean`` only removes what dead runs left."""

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from chain_client.params import Genesis, devnet_params
from deploy.multihost.netns import NamespaceError, clean_leftovers, unsupported_reason
from deploy.multihost.roles import Network, RoleFailed, prepare_user, running

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.multihost", description=__doc__)
    parser.add_argument("--dir", type=Path, help="state and logs (default: a new temp dir)")
    parser.add_argument("--miners", type=int, help="miner hosts (default n + 2)")
    parser.add_argument(
        "--declared-units", type=int, default=16, help="idle units a miner declares"
    )
    parser.add_argument("--subnet", help="an IPv4 /24 for the hosts (default: 10.213.N.0/24 free)")
    parser.add_argument("--block-time", type=float, default=1.0)
    parser.add_argument("--genesis", type=Path, help="take the network parameters from this file")
    parser.add_argument("--no-user", action="store_true", help="skip the dev user's set-up")
    parser.add_argument("--clean", action="store_true", help="remove dead runs' left-overs, exit")
    return parser


def _stop_on(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `running`, which removes everything


def _serve(network: Network) -> int:
    """Until a signal, or until a role exits on its own (1)."""
    roles = [network.chain, *network.miners, network.gateway]
    while True:
        for role in roles:
            if role.process.poll() is not None:
                print(f"multihost: {role.name} exited; see {role.log}", file=sys.stderr)
                return 1
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    reason = unsupported_reason()
    if reason is not None:
        print(f"multihost: cannot make network namespaces: {reason}", file=sys.stderr)
        return 2
    if args.clean:
        print(f"multihost: removed {clean_leftovers() or 'nothing'}")
        return 0
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on)
    if args.genesis is not None:
        params = Genesis.load(args.genesis).params
    else:
        params = devnet_params(block_time=args.block_time)
    root = args.dir or Path(tempfile.mkdtemp(prefix="deoss-multihost-"))
    try:
        with running(
            root,
            params=params,
            miners=args.miners,
            declared_units=args.declared_units,
            subnet=args.subnet,
            say=lambda line: print(f"multihost: {line}", flush=True),
        ) as network:
            endpoints = network.endpoints()
            if not args.no_user:
                access_key, secret_key = asyncio.run(prepare_user(network))
                endpoints["dev_user"] = {
                    "account": "//Alice",
                    "access_key": access_key,
                    "secret_key": secret_key,
                }
            (root / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
            print(json.dumps(endpoints, indent=2), flush=True)
            print("multihost: up; Ctrl-C stops every role and removes the hosts", flush=True)
            return _serve(network)
    except KeyboardInterrupt:
        return 130
    except (NamespaceError, RoleFailed) as exc:
        print(f"multihost: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
