"""`deoss-chain key ...`: create and inspect signing keys.

The main CLI calls add_key_commands on its subparsers, then `args.func(args)` for the
exit code. Errors print one line to stderr and exit 2; the secret seed reaches stdout
only from `key new` without --out, which says so on stderr.
"""

import argparse
import sys
from pathlib import Path

from chain_client.keys import (
    SCHEMES,
    KeyMaterialError,
    Keypair,
    Scheme,
    key_file_json,
    load_signer,
    save_key_file,
)
from chain_client.ss58 import CESS_SS58_PREFIX, GENERIC_SS58_PREFIX, ss58_encode

__all__ = ["add_key_commands", "run_key_new", "run_key_show"]

_ERROR_EXIT: int = 2


# Quoted: _SubParsersAction is generic only to type checkers, not at runtime on 3.11.
def add_key_commands(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    key_parser = subparsers.add_parser("key", help="create and inspect signing keys")
    key_commands = key_parser.add_subparsers(dest="key_command", metavar="COMMAND", required=True)

    new_parser = key_commands.add_parser(
        "new",
        help="generate a new key",
        description="Generate a key. With --out, write a key file (mode 0600); without it, "
        "print the key file JSON, secret seed included, to stdout.",
    )
    new_parser.add_argument("--scheme", choices=SCHEMES, default="sr25519")
    new_parser.add_argument("--out", type=Path, metavar="FILE", help="key file to write")
    new_parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    new_parser.set_defaults(func=run_key_new)

    show_parser = key_commands.add_parser(
        "show",
        help="print a key's public key and addresses",
        description="Print the scheme, public key and addresses of a key file or a dev "
        "account (//Alice, ...). Never prints the secret.",
    )
    show_parser.add_argument("spec", metavar="SPEC", help="key file, or //Name with --dev")
    show_parser.add_argument("--dev", action="store_true", help="allow dev accounts (//Alice, ...)")
    show_parser.set_defaults(func=run_key_show)


def run_key_new(args: argparse.Namespace) -> int:
    scheme: Scheme = args.scheme
    out: Path | None = args.out
    overwrite: bool = args.overwrite
    if out is None and overwrite:
        return _fail("--overwrite only applies with --out FILE")
    keypair = Keypair.generate(scheme)
    if out is None:
        print(
            "warning: this JSON contains the secret seed; anyone who has it controls the "
            "account. Store it like a password, or use --out FILE",
            file=sys.stderr,
        )
        sys.stdout.write(key_file_json(keypair))
        return 0
    try:
        save_key_file(out, keypair, overwrite=overwrite)
    except KeyMaterialError as exc:
        return _fail(str(exc))
    print(f"key file:   {out}")
    print(f"address:    {keypair.address}")
    print(f"public key: 0x{keypair.public_key.hex()}")
    return 0


def run_key_show(args: argparse.Namespace) -> int:
    spec: str = args.spec
    dev: bool = args.dev
    try:
        keypair = load_signer(spec, dev=dev)
    except KeyMaterialError as exc:
        return _fail(str(exc))
    # SECURITY: public facts only; nothing here reads keypair.seed or .secret_key.
    print(f"scheme:           {keypair.scheme}")
    print(f"public key:       0x{keypair.public_key.hex()}")
    print(f"address:          {ss58_encode(keypair.public_key, CESS_SS58_PREFIX)}")
    print(f"generic address:  {ss58_encode(keypair.public_key, GENERIC_SS58_PREFIX)}")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return _ERROR_EXIT
