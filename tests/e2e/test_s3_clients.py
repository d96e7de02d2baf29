"""The S3 API through the real command-line clients the project installs (Makefile
``tools``): aws cli v2 as Debian ships it, aws cli v1 from PyPI, rclone and s3cmd. Every
byte comes back identical; bad credentials are refused with the S3 error."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from chain_client.params import KIB
from tests.e2e.gateway_network import Network

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
AWS_V2 = Path("/usr/bin/aws")
AWS_V1 = ROOT / ".venv-awscli1" / "bin" / "aws"


def run(
    *args: str | Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def files(directory: Path) -> dict[str, bytes]:
    """A small tree: several sizes, a nested name, a name with a space and non-ASCII."""
    tree = {
        "small.txt": b"hello s3\n",
        "empty": b"",
        "nested/deeper/blob.bin": os.urandom(70 * KIB + 3),
        "with space/über.bin": os.urandom(1536 * KIB + 11),  # multipart for the clients
    }
    for name, data in tree.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tree


def aws_env(network: Network, keys: tuple[str, str], home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config"
    # Small multipart thresholds, so a 1.5 MiB file goes in parts (the gateway's minimum
    # part here is 256 KiB).
    config.write_text(
        "[default]\nregion = us-east-1\ns3 =\n  multipart_threshold = 1MB\n"
        "  multipart_chunksize = 512KB\n  addressing_style = path\n"
    )
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": keys[0],
        "AWS_SECRET_ACCESS_KEY": keys[1],
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }


@pytest.mark.parametrize(
    ("aws", "bucket"), [(AWS_V2, "awscli-v2"), (AWS_V1, "awscli-v1")], ids=["v2-debian", "v1-pypi"]
)
def test_aws_cli(
    aws: Path, bucket: str, gateway_network: Network, s3_keys: tuple[str, str], tmp_path: Path
) -> None:
    env = aws_env(gateway_network, s3_keys, tmp_path / "home")
    s3 = ("--endpoint-url", gateway_network.s3_url)
    source, back = tmp_path / "source", tmp_path / "back"
    tree = files(source)
    run(aws, *s3, "s3", "mb", f"s3://{bucket}", env=env)
    run(
        aws, *s3, "s3", "cp", source / "with space/über.bin", f"s3://{bucket}/one/über.bin", env=env
    )
    run(aws, *s3, "s3", "cp", f"s3://{bucket}/one/über.bin", back / "one.bin", env=env)
    assert (back / "one.bin").read_bytes() == tree["with space/über.bin"]
    run(aws, *s3, "s3", "sync", source, f"s3://{bucket}/tree", env=env)
    listing = run(aws, *s3, "s3", "ls", "--recursive", f"s3://{bucket}/tree/", env=env).stdout
    assert all(f"tree/{name}" in listing for name in tree)
    run(aws, *s3, "s3", "sync", f"s3://{bucket}/tree", back / "tree", env=env)
    for name, data in tree.items():
        assert (back / "tree" / name).read_bytes() == data, name
    again = run(aws, *s3, "s3", "sync", source, f"s3://{bucket}/tree", env=env).stdout
    assert "upload:" not in again  # nothing changed, nothing sent
    # s3api multipart, by hand.
    upload = json.loads(
        run(
            aws,
            *s3,
            "s3api",
            "create-multipart-upload",
            "--bucket",
            bucket,
            "--key",
            "mp.bin",
            env=env,
        ).stdout
    )["UploadId"]
    pieces = [os.urandom(300 * KIB), os.urandom(1000)]
    parts = []
    for number, piece in enumerate(pieces, start=1):
        path = tmp_path / f"part{number}"
        path.write_bytes(piece)
        answer = run(
            aws,
            *s3,
            "s3api",
            "upload-part",
            "--bucket",
            bucket,
            "--key",
            "mp.bin",
            "--upload-id",
            upload,
            "--part-number",
            str(number),
            "--body",
            path,
            env=env,
        )
        parts.append({"PartNumber": number, "ETag": json.loads(answer.stdout)["ETag"]})
    listed = json.loads(
        run(
            aws,
            *s3,
            "s3api",
            "list-parts",
            "--bucket",
            bucket,
            "--key",
            "mp.bin",
            "--upload-id",
            upload,
            env=env,
        ).stdout
    )
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2]
    (tmp_path / "parts.json").write_text(json.dumps({"Parts": parts}))
    run(
        aws,
        *s3,
        "s3api",
        "complete-multipart-upload",
        "--bucket",
        bucket,
        "--key",
        "mp.bin",
        "--upload-id",
        upload,
        "--multipart-upload",
        f"file://{tmp_path / 'parts.json'}",
        env=env,
    )
    run(
        aws,
        *s3,
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "mp.bin",
        back / "mp.bin",
        env=env,
    )
    assert (back / "mp.bin").read_bytes() == b"".join(pieces)
    run(aws, *s3, "s3", "rm", "--recursive", f"s3://{bucket}/", env=env)
    run(aws, *s3, "s3", "rb", f"s3://{bucket}", env=env)
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "x" * 40}
    refused = run(aws, *s3, "s3", "ls", env=wrong, check=False)
    assert refused.returncode != 0 and "SignatureDoesNotMatch" in refused.stderr


@pytest.mark.parametrize(
    ("aws", "bucket"), [(AWS_V2, "cli-meta-v2"), (AWS_V1, "cli-meta-v1")], ids=["v2", "v1"]
)
def test_aws_cli_changes_metadata_by_copying_onto_itself(
    aws: Path, bucket: str, gateway_network: Network, s3_keys: tuple[str, str], tmp_path: Path
) -> None:
    """``aws s3 cp s3://b/k s3://b/k --metadata-directive REPLACE``: how users change an
    object's type; it once lost the object and stranded the bucket."""
    env = aws_env(gateway_network, s3_keys, tmp_path / "home")
    s3 = ("--endpoint-url", gateway_network.s3_url)
    (tmp_path / "page.html").write_bytes(b"<p>same bytes</p>")
    run(aws, *s3, "s3", "mb", f"s3://{bucket}", env=env)
    run(aws, *s3, "s3", "cp", tmp_path / "page.html", f"s3://{bucket}/k", env=env)

    def head() -> dict[str, object]:
        answer = run(aws, *s3, "s3api", "head-object", "--bucket", bucket, "--key", "k", env=env)
        found: dict[str, object] = json.loads(answer.stdout)
        return found

    before = head()
    run(
        aws,
        *s3,
        "s3",
        "cp",
        f"s3://{bucket}/k",
        f"s3://{bucket}/k",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/plain",
        env=env,
    )
    after = head()
    assert after["ContentType"] == "text/plain" and after["ETag"] == before["ETag"]
    run(aws, *s3, "s3", "cp", f"s3://{bucket}/k", tmp_path / "back", env=env)
    assert (tmp_path / "back").read_bytes() == b"<p>same bytes</p>"
    run(aws, *s3, "s3", "rb", "--force", f"s3://{bucket}", env=env)
    listed = run(aws, *s3, "s3", "ls", env=env).stdout
    assert bucket not in listed


def test_rclone(gateway_network: Network, s3_keys: tuple[str, str], tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_DEOSS_TYPE": "s3",
        "RCLONE_CONFIG_DEOSS_PROVIDER": "Other",
        "RCLONE_CONFIG_DEOSS_ACCESS_KEY_ID": s3_keys[0],
        "RCLONE_CONFIG_DEOSS_SECRET_ACCESS_KEY": s3_keys[1],
        "RCLONE_CONFIG_DEOSS_ENDPOINT": gateway_network.s3_url,
        "RCLONE_CONFIG_DEOSS_REGION": "us-east-1",
        "RCLONE_CONFIG_DEOSS_FORCE_PATH_STYLE": "true",
    }
    source = tmp_path / "source"
    tree = files(source)
    multipart = ("--s3-upload-cutoff", "1M", "--s3-chunk-size", "5M")
    run("rclone", "mkdir", "deoss:rclone-bucket", env=env)
    run("rclone", "copy", *multipart, source, "deoss:rclone-bucket/copy", env=env)
    run("rclone", "check", source, "deoss:rclone-bucket/copy", env=env)
    run("rclone", "sync", *multipart, source, "deoss:rclone-bucket/sync", env=env)
    (source / "small.txt").unlink()
    run("rclone", "sync", source, "deoss:rclone-bucket/sync", env=env)
    remaining = run("rclone", "lsf", "-R", "deoss:rclone-bucket/sync", env=env).stdout
    assert "small.txt" not in remaining and "nested/deeper/blob.bin" in remaining
    blob = tree["nested/deeper/blob.bin"]
    for offset, count in [(0, 10), (1000, 5000), (len(blob) - 7, 7)]:
        part = subprocess.run(
            [
                "rclone",
                "cat",
                "--offset",
                str(offset),
                "--count",
                str(count),
                "deoss:rclone-bucket/copy/nested/deeper/blob.bin",
            ],
            capture_output=True,
            timeout=120,
            env=env,
            check=True,
        ).stdout
        assert part == blob[offset : offset + count]
    whole = subprocess.run(
        ["rclone", "cat", "deoss:rclone-bucket/copy/with space/über.bin"],
        capture_output=True,
        timeout=120,
        env=env,
        check=True,
    ).stdout
    assert hashlib.sha256(whole).digest() == hashlib.sha256(tree["with space/über.bin"]).digest()
    run("rclone", "purge", "deoss:rclone-bucket", env=env)


@pytest.mark.parametrize("signature", ["v4", "v2"])
def test_s3cmd(
    signature: str, gateway_network: Network, s3_keys: tuple[str, str], tmp_path: Path
) -> None:
    host = gateway_network.s3_url.removeprefix("http://")
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {s3_keys[0]}\nsecret_key = {s3_keys[1]}\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
        f"signature_v2 = {signature == 'v2'}\nbucket_location = us-east-1\n"
        "multipart_chunk_size_mb = 5\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    s3cmd = ("s3cmd", "-c", config)
    bucket = f"s3://s3cmd-{signature}"
    source = tmp_path / "source"
    tree = files(source)
    run(*s3cmd, "mb", bucket, env=env)
    run(*s3cmd, "put", source / "nested/deeper/blob.bin", f"{bucket}/blob.bin", env=env)
    run(*s3cmd, "get", f"{bucket}/blob.bin", tmp_path / "blob.back", env=env)
    assert (tmp_path / "blob.back").read_bytes() == tree["nested/deeper/blob.bin"]
    run(*s3cmd, "sync", f"{source}/", f"{bucket}/tree/", env=env)
    listing = run(*s3cmd, "ls", "--recursive", bucket, env=env).stdout
    assert all(f"tree/{name}" in listing for name in tree)
    info = run(*s3cmd, "info", f"{bucket}/blob.bin", env=env).stdout
    assert str(len(tree["nested/deeper/blob.bin"])) in info
    run(*s3cmd, "del", "--recursive", "--force", f"{bucket}/", env=env)
    run(*s3cmd, "rb", bucket, env=env)
