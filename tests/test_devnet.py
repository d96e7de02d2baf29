"""``deoss devnet``, as ``make devnet`` runs it: real processes, a live chain."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest


def sign(info: dict[str, Any], *request: str) -> list[str]:
    """What the devnet's examples do: ``$(deoss sign --key KEY --gateway G METHOD PATH)``."""
    key, gateway = info["key_file"], info["gateway"]
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sign", "--key", key, "--gateway", gateway, *request],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.split()


def health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


@pytest.mark.e2e
def test_devnet_runs_chain_miners_and_gateway(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    log = tmp_path / "devnet.out"
    output = open(log, "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "devnet",
            "--dir",
            str(root),
            "--block-time",
            "0.3",
            "--fresh",
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while not (root / "devnet.json").exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "devnet.json never appeared"
            time.sleep(0.1)
        info = json.loads((root / "devnet.json").read_text())
        first = int(health(info["chain_rpc"])["best_block"])
        time.sleep(1.5)
        assert int(health(info["chain_rpc"])["best_block"]) > first
        assert "Alice" in info["dev_accounts"]
        # n + 2 real miner processes and a gateway, all answering.
        assert len(info["miners"]) == 14
        for miner in info["miners"]:
            with urllib.request.urlopen(miner["endpoint"] + "/health", timeout=5) as response:
                assert json.loads(response.read())["account"] == miner["account"]
            assert Path(miner["config"]).is_absolute()
        with urllib.request.urlopen(info["native_endpoint"] + "/health", timeout=5) as response:
            assert json.loads(response.read())["data"]["positive_miners"] == 14
        # The printed curl examples work: upload with fresh headers, download it back.
        data = os.urandom(300_000)
        source = tmp_path / "up.bin"
        source.write_bytes(data)
        put = subprocess.run(
            [
                "curl",
                "-sS",
                "-X",
                "PUT",
                *sign(info, "PUT", "/object/hello.bin", "--unsigned"),
                "--data-binary",
                f"@{source}",
                info["native_endpoint"] + "/object/hello.bin",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        fid = json.loads(put.stdout)["data"]["fid"]
        got = subprocess.run(
            [
                "curl",
                "-sS",
                "-f",
                *sign(info, "GET", f"/file/download/{fid}"),
                info["native_endpoint"] + f"/file/download/{fid}",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        assert got.stdout == data
        # The printed S3 example works with the devnet's access key.
        s3 = boto3.client(
            "s3",
            endpoint_url=info["s3_endpoint"],
            aws_access_key_id=info["access_key"],
            aws_secret_access_key=info["secret_key"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="my-bucket")
        s3.put_object(Bucket="my-bucket", Key="hello.bin", Body=data)
        assert s3.get_object(Bucket="my-bucket", Key="hello.bin")["Body"].read() == data
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        output.close()
    text = log.read_text()
    assert process.returncode == 0, text
    assert "chain RPC" in text and "deoss sign" in text
    assert not (root / "devnet.json").exists()
