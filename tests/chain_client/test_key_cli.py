import argparse
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from chain_client.key_cli import add_key_commands
from chain_client.keys import Keypair, load_key_file, save_key_file
from chain_client.ss58 import GENERIC_SS58_PREFIX, ss58_encode

ALICE_CESS = "cXjmuHdBk4J3Zyt2oGodwGegNFaTFPcfC48PZ9NMmcUFzF6cc"
ALICE_GENERIC = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="deoss-chain")
    add_key_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)


def _fields(output: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in output.splitlines())
    return {label.strip(): value.strip() for label, value in pairs}


@pytest.mark.parametrize("scheme", ["sr25519", "ed25519"])
def test_key_new_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: str) -> None:
    path = tmp_path / "signer.json"
    assert main(["key", "new", "--scheme", scheme, "--out", str(path)]) == 0
    out, err = capsys.readouterr()
    keypair = load_key_file(path)
    assert keypair.scheme == scheme
    assert keypair.seed is not None
    assert keypair.seed.hex() not in out
    fields = _fields(out)
    assert fields["address"] == keypair.address
    assert fields["public key"] == "0x" + keypair.public_key.hex()
    assert err == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_new_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signer.json"
    existing = Keypair.generate()
    save_key_file(path, existing)
    assert main(["key", "new", "--out", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ")
    assert "already exists" in err
    assert err.count("\n") == 1
    assert load_key_file(path) == existing
    assert main(["key", "new", "--out", str(path), "--overwrite"]) == 0
    assert load_key_file(path) != existing


def test_key_new_to_stdout_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "new"]) == 0
    out, err = capsys.readouterr()
    assert "secret" in err
    path = tmp_path / "from-stdout.json"
    path.write_text(out)
    keypair = load_key_file(path)
    assert json.loads(out)["address"] == keypair.address


def test_key_new_overwrite_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "new", "--overwrite"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: --overwrite only applies with --out FILE\n")


def test_key_new_rejects_unknown_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["key", "new", "--scheme", "ecdsa"])
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_key_show_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keypair = Keypair.generate("ed25519")
    path = tmp_path / "signer.json"
    save_key_file(path, keypair)
    assert main(["key", "show", str(path)]) == 0
    out, err = capsys.readouterr()
    assert keypair.seed is not None
    assert keypair.seed.hex() not in out
    assert _fields(out) == {
        "scheme": "ed25519",
        "public key": "0x" + keypair.public_key.hex(),
        "address": keypair.address,
        "generic address": ss58_encode(keypair.public_key, GENERIC_SS58_PREFIX),
    }
    assert err == ""


def test_key_show_dev_account(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "show", "//Alice", "--dev"]) == 0
    fields = _fields(capsys.readouterr().out)
    assert fields["address"] == ALICE_CESS
    assert fields["generic address"] == ALICE_GENERIC
    assert fields["scheme"] == "sr25519"


def test_key_show_dev_account_needs_dev(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "show", "//Alice"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: refusing dev key //Alice")
    assert "--dev" in err
    assert err.count("\n") == 1


def test_key_show_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signer.json"
    path.write_text('{"scheme": "sr25519"}')
    assert main(["key", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert "missing field" in err


def test_key_show_unknown_dev_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "show", "//alice", "--dev"]) == 2
    assert "unsupported key URI" in capsys.readouterr().err
