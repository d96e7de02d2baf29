"""``make devnet`` as a user runs it: real processes, a live chain, the real aws cli; then
Ctrl-C and ``make devnet`` again, a SIGKILLed launcher and ``make devnet`` again, and
``--fresh``. The capacity plan is checked on its own below."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chain_client.params import GIB, MIB, devnet_params
from gateway.devnet import (
    DevnetError,
    LauncherLock,
    _free_port,
    _refuse_old_state,
    _stop_strays,
    plan_capacity,
)

ROOT = Path(__file__).resolve().parent.parent
AWS = Path("/usr/bin/aws")
READY_WITHIN = 60.0
BIG = 1 * GIB


# -- the plan -----------------------------------------------------------------------------

PARAMS = devnet_params()


def test_the_plan_declares_the_territory_with_two_miners_to_spare() -> None:
    plan = plan_capacity(PARAMS, 14, 100 * GIB, target=4 * GIB, floor=2 * GIB)
    assert plan.territory == 4 * GIB
    # Any two miners can go: the other twelve still declare the whole territory.
    assert plan.per_miner * 12 >= plan.territory
    assert plan.per_miner % PARAMS.idle_unit_size == 0
    assert "14 miners declare" in plan.describe() and "4.0 GiB" in plan.describe()


def test_a_small_disk_gets_a_smaller_territory_within_its_free_space() -> None:
    free = 3 * GIB
    plan = plan_capacity(PARAMS, 14, free, target=4 * GIB, floor=2 * GIB)
    assert 64 * MIB <= plan.territory < 4 * GIB
    assert plan.declared <= free - 2 * GIB
    assert plan.territory % PARAMS.territory_unit == 0


def test_a_full_disk_is_refused_with_what_it_would_need() -> None:
    with pytest.raises(DevnetError, match="holds no devnet"):
        plan_capacity(PARAMS, 14, 2 * GIB + 10 * MIB, target=4 * GIB, floor=2 * GIB)


def test_one_launcher_per_directory(tmp_path: Path) -> None:
    with (
        LauncherLock(tmp_path),
        pytest.raises(DevnetError, match=f"launcher pid {os.getpid()}"),
        LauncherLock(tmp_path),
    ):
        pass
    with LauncherLock(tmp_path):  # released with the first
        pass


def test_a_resumed_role_keeps_its_port_while_it_is_free(tmp_path: Path) -> None:
    import socket

    port = _free_port()
    assert _free_port(port) == port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert _free_port(port) != port


@pytest.mark.e2e
def test_strays_of_a_killed_launcher_are_stopped(tmp_path: Path) -> None:
    """Only processes of this directory: a reused pid of another program is left alone."""
    root = tmp_path / "devnet"
    root.mkdir()
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(root)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (root / "pids.json").write_text(json.dumps([ours.pid, other.pid]))
        _stop_strays(root)
        assert ours.wait(timeout=5) == -signal.SIGTERM
        assert other.poll() is None
        assert not (root / "pids.json").exists()
    finally:
        ours.kill()
        other.kill()
        ours.wait()
        other.wait()


def test_an_older_devnet_is_refused_with_how_to_start_over(tmp_path: Path) -> None:
    error = _refuse_old_state(tmp_path, DevnetError("holds a chain of ledger schema 1; ..."))
    assert "--fresh" in str(error) and "FRESH=1" in str(error)
    other = DevnetError("something else")
    assert _refuse_old_state(tmp_path, other) is other


# -- the network --------------------------------------------------------------------------


class Devnet:
    """``make devnet DEVNET_DIR=...`` in its own process group, as a terminal runs it."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> dict[str, Any]:
        """Starts it and returns devnet.json once written; asserts it took < 60 s."""
        output = open(self.log, "ab")  # noqa: SIM115 - the child holds it
        started = time.monotonic()
        self.process = subprocess.Popen(
            ["make", "-s", "-C", str(ROOT), "devnet", f"DEVNET_DIR={self.root}", *extra],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()
        info = self.root / "devnet.json"
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() - started < READY_WITHIN, "not ready within 60 s"
            if info.exists():  # a SIGKILLed launcher's is left behind until replaced
                result: dict[str, Any] = json.loads(info.read_text())
                if _alive(result["launcher_pid"]):
                    return result
            time.sleep(0.1)

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole foreground group, make and the devnet alike."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        # make itself dies of the SIGINT once its child is done, as a shell expects.
        assert self.process.wait(timeout=90) in (0, -signal.SIGINT)
        assert "a process exited" not in self.log.read_text(), self.log.read_text()[-3000:]

    def kill_launcher(self, info: dict[str, Any]) -> None:
        """SIGKILL of ``deoss devnet`` alone: its roles must stop with it."""
        assert self.process is not None
        os.kill(info["launcher_pid"], signal.SIGKILL)
        self.process.wait(timeout=30)
        roles = [info["chain_pid"], info["gateway_pid"], *(m["pid"] for m in info["miners"])]
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in roles):
            assert time.monotonic() < deadline, "roles outlived their SIGKILLed launcher"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    network = Devnet(tmp_path / "devnet", tmp_path / "devnet.out")
    try:
        yield network
    finally:
        network.stop()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


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


def aws(info: dict[str, Any], home: Path, *args: str, timeout: float = 600) -> str:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": info["access_key"],
        "AWS_SECRET_ACCESS_KEY": info["secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
        "AWS_CONFIG_FILE": str(home / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    result = subprocess.run(
        [str(AWS), "--endpoint-url", info["s3_endpoint"], *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def territory(info: dict[str, Any]) -> dict[str, Any]:
    url = f"{info['chain_rpc']}/query/storage_handler.territory"
    query = f"?owner={info['account']}&name={info['territory']}"
    found: dict[str, Any] = get_json(url + query)["result"]
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for _ in range(size // (16 * MIB)):
            out.write(os.urandom(16 * MIB))


def examples_work(info: dict[str, Any], tmp_path: Path) -> None:
    """The printed curl examples and the S3 key, on the network as it came up."""
    assert len(info["miners"]) == 14
    for miner in info["miners"]:
        assert get_json(miner["endpoint"] + "/health")["account"] == miner["account"]
        assert Path(miner["config"]).is_absolute()
    assert get_json(info["native_endpoint"] + "/health")["data"]["positive_miners"] == 14
    for url in (info["metrics"]["chain"], info["metrics"]["gateway"], *info["metrics"]["miners"]):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"# TYPE" in response.read()
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
    answer = json.loads(put.stdout)
    assert answer["code"] == 200, answer
    fid = answer["data"]["fid"]
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


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_devnet_holds_a_gigabyte_and_resumes(devnet: Devnet, tmp_path: Path) -> None:
    info = devnet.start()
    assert info["ready_seconds"] < READY_WITHIN
    text = devnet.log.read_text()
    assert "miners declare" in text and "chain RPC" in text and "deoss sign" in text
    assert "/metrics" in text and "/console/" in text
    examples_work(info, tmp_path)

    # The territory grows in the background to at least 4 GiB.
    deadline = time.monotonic() + 600
    while territory(info)["total"] < 4 * GIB:
        assert time.monotonic() < deadline, f"the territory stayed at {territory(info)}"
        time.sleep(2)

    home = tmp_path / "aws"
    big = tmp_path / "big.bin"
    write_random(big, BIG)
    digest = sha256_of(big)
    aws(info, home, "s3", "mb", "s3://videos")
    aws(info, home, "s3", "cp", "--no-progress", str(big), "s3://videos/big.bin")
    back = tmp_path / "back.bin"
    aws(info, home, "s3", "cp", "--no-progress", "s3://videos/big.bin", str(back))
    assert sha256_of(back) == digest
    back.unlink()

    # Ctrl-C, then make devnet again: the same network, the file intact, uploads work.
    devnet.interrupt()
    assert not (devnet.root / "devnet.json").exists()
    resumed = devnet.start()
    assert (resumed["chain_rpc"], resumed["s3_endpoint"]) == (
        info["chain_rpc"],
        info["s3_endpoint"],
    )
    aws(info, home, "s3", "cp", "--no-progress", "s3://videos/big.bin", str(back))
    assert sha256_of(back) == digest
    back.unlink()
    small = tmp_path / "small.txt"
    small.write_text("after the restart\n")
    aws(info, home, "s3", "cp", "--no-progress", str(small), "s3://videos/small.txt")

    # A SIGKILLed launcher takes its roles with it; make devnet again resumes.
    devnet.kill_launcher(resumed)
    again = devnet.start()
    listing = aws(again, home, "s3", "ls", "s3://videos/")
    assert "big.bin" in listing and "small.txt" in listing
    aws(again, home, "s3", "cp", "--no-progress", "s3://videos/small.txt", str(tmp_path / "s.txt"))
    assert (tmp_path / "s.txt").read_text() == "after the restart\n"
    assert territory(again)["total"] >= 4 * GIB
    devnet.interrupt()

    # FRESH=1 (deoss devnet --fresh) starts over: a new chain, nothing stored.
    fresh = devnet.start("FRESH=1")
    assert fresh["account"] != info["account"]
    assert "videos" not in aws(fresh, home, "s3", "ls")
    devnet.interrupt()
