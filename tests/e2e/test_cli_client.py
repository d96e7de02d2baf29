"""The ``deoss`` client commands as real processes on the shared network (chain node,
n + 2 miners, gateway): ``territory mint|expand|renew|ls``, ``authorize|unauthorize``,
and ``put`` resumed after a SIGKILL and after a broken connection, each through a TCP
proxy in front of the gateway that paces, counts and cuts what the client sends."""

import asyncio
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain_client.account import ChainAccount
from chain_client.keys import Keypair, dev_keypair, save_key_file
from chain_client.params import KIB, TOKEN
from chain_client.rpc_client import HttpChain
from gateway.native.signing import ACCOUNT_HEADER, signing_middleware
from tests.e2e.gateway_network import PARAMS, USER, Network
from tests.polling import eventually

# Each command is a process of its own (about a second to start), and the first test
# also waits for the shared network to come up.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

UPLOADER = dev_keypair("Eve")
UPLOADS = "cli-put"  # the uploader's territory, minted through the CLI


def deoss(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # Bytes, decoded here: text mode would turn the progress bar's \r into \n.
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def chain_query(network: Network, query: str, **args: Any) -> Any:
    async def ask() -> Any:
        chain = HttpChain(network.chain.url)
        try:
            return await chain.query(query, **args)
        finally:
            await chain.close()

    return asyncio.run(ask())


@pytest.fixture(scope="module")
def network(gateway_network: Network) -> Network:
    async def space() -> None:
        chain = HttpChain(gateway_network.chain.url)
        try:
            await eventually(
                functools.partial(chain.query, "sminer.miners", state="positive"),
                lambda m: len(m) >= PARAMS.total_shards and all(x["idle"] > 0 for x in m),
                timeout=120,
            )

            async def unsold() -> int:
                miners = await chain.query("sminer.miners")
                certified: int = sum(m["idle"] + m["locked"] + m["service"] for m in miners)
                purchased: int = await chain.query("storage_handler.purchased")
                return certified - purchased

            # What this module mints: miners certify idle space in the background.
            await eventually(unsold, lambda left: left >= 60 * PARAMS.territory_unit, 120)
        finally:
            await chain.close()

    asyncio.run(space())
    return gateway_network


@pytest.fixture(scope="module")
def key_user(network: Network, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keypair]:
    """A key file whose account the dev user funded: (its path, its keypair)."""
    keypair = Keypair.generate()
    path = tmp_path_factory.mktemp("cli-user") / "user.json"
    save_key_file(path, keypair)

    async def fund() -> None:
        chain = HttpChain(network.chain.url)
        try:
            await ChainAccount(chain, USER).call(
                "balances.transfer", dest=keypair.address, amount=1000 * TOKEN
            )
        finally:
            await chain.close()

    asyncio.run(fund())
    return path, keypair


def test_territory_mint_expand_renew_ls(
    network: Network, key_user: tuple[Path, Keypair], tmp_path: Path
) -> None:
    key, keypair = key_user
    chain = ["--chain-rpc", network.chain.url, "--key", str(key)]
    listed = deoss("territory", "ls", "--json", *chain)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []

    minted = deoss("territory", "mint", "docs", "--size", "1", "--days", "3", *chain)
    assert minted.returncode == 0, minted.stderr
    # 1 unit of 256 KiB for 3 days at 1 token a unit-day
    assert "minted docs: 256.0 KiB, paid 3 tokens" in minted.stderr
    header, row = minted.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "USED", "STATE", "EXPIRY"]
    assert re.match(r"docs +256\.0 KiB +0 B +active +freezes at block \d+ \(in ", row), row
    before = chain_query(network, "storage_handler.territory", owner=keypair.address, name="docs")
    assert before["total"] == PARAMS.territory_unit

    again = deoss("territory", "mint", "docs", "--size", "1", "--days", "3", *chain)
    assert again.returncode == 1
    assert "storage_handler.TerritoryExists" in again.stderr, again.stderr

    expanded = deoss("territory", "expand", "docs", "--size", "2", "--json", *chain)
    assert expanded.returncode == 0, expanded.stderr
    assert json.loads(expanded.stdout)["total"] == 3 * PARAMS.territory_unit

    renewed = deoss("territory", "renew", "docs", "--days", "2", "--json", *chain)
    assert renewed.returncode == 0, renewed.stderr
    shown = json.loads(renewed.stdout)
    assert shown["deadline"] == before["deadline"] + 2 * PARAMS.blocks_per_day
    assert "renewed docs by 2 days, paid 6 tokens" in renewed.stderr  # 3 units x 2 days
    assert shown["expires_at"] == shown["deadline"] + PARAMS.grace_period
    assert shown["state"] == "active" and shown["deadline_in"] > 0

    everything = json.loads(deoss("territory", "ls", "--json", *chain).stdout)
    on_chain = chain_query(network, "storage_handler.territories", owner=keypair.address)
    assert [(t["name"], t["total"], t["used"], t["deadline"]) for t in everything] == [
        (t["name"], t["total"], t["used"], t["deadline"]) for t in on_chain
    ]
    other = deoss("territory", "ls", "--owner", keypair.address, *chain[:2], "--key", "//Bob")
    assert other.returncode == 2 and "--dev" in other.stderr  # a dev key needs --dev
    other = deoss(
        "territory", "ls", "--owner", keypair.address, *chain[:2], "--key", "//Bob", "--dev"
    )
    assert other.returncode == 0 and "docs" in other.stdout, other.stderr

    missing = deoss("territory", "expand", "nothing", "--size", "1", *chain)
    assert missing.returncode == 1 and "storage_handler.NoSuchTerritory" in missing.stderr

    for bad in (
        ["mint", "no spaces", "--size", "1", "--days", "1"],
        ["mint", "x", "--size", "0", "--days", "1"],
        ["renew", "x", "--days", "-3"],
        ["ls", "--owner", "not-an-address"],
    ):
        refused = deoss("territory", *bad, *chain)
        assert refused.returncode == 2, (bad, refused.stderr)

    # Without --chain-rpc and --key, the devnet's devnet.json says where and who.
    devnet = tmp_path / "devnet"
    devnet.mkdir()
    info = {"chain_rpc": network.chain.url, "key_file": str(key)}
    (devnet / "devnet.json").write_text(json.dumps(info))
    fallback = deoss("territory", "ls", "--devnet", str(devnet))
    assert fallback.returncode == 0 and "docs" in fallback.stdout, fallback.stderr
    nowhere = deoss("territory", "ls", "--devnet", str(tmp_path / "none"))
    assert nowhere.returncode == 2 and "given and no devnet at" in nowhere.stderr


def test_an_unfunded_account_cannot_mint(network: Network, tmp_path: Path) -> None:
    key = tmp_path / "poor.json"
    save_key_file(key, Keypair.generate())
    poor = deoss(
        "territory", "mint", "t", "--size", "1", "--days", "1",
        "--chain-rpc", network.chain.url, "--key", str(key),
    )  # fmt: skip
    assert poor.returncode == 1 and poor.stderr.startswith("deoss: "), poor.stderr


def test_authorize_and_unauthorize(network: Network) -> None:
    dave = dev_keypair("Dave")
    chain = ["--chain-rpc", network.chain.url, "--key", "//Dave", "--dev"]
    gateway = network.gateway_account

    def authorized() -> bool:
        return bool(chain_query(network, "oss.is_authorized", owner=dave.address, gateway=gateway))

    assert not authorized()
    by_url = deoss("authorize", network.url, *chain)
    assert by_url.returncode == 0, by_url.stderr
    assert f"gateway {gateway} may act for {dave.address}" in by_url.stdout
    assert authorized()
    twice = deoss("authorize", gateway, *chain)
    assert twice.returncode == 1 and "oss.AlreadyAuthorized" in twice.stderr, twice.stderr

    by_address = deoss("unauthorize", gateway, *chain)
    assert by_address.returncode == 0, by_address.stderr
    assert f"gateway {gateway} may no longer act for {dave.address}" in by_address.stdout
    assert not authorized()
    twice = deoss("unauthorize", network.url, *chain)
    assert twice.returncode == 1 and "oss.NotAuthorized" in twice.stderr, twice.stderr

    no_gateway = deoss("authorize", USER.address, *chain)
    assert no_gateway.returncode == 1 and "oss.NotRegistered" in no_gateway.stderr
    assert deoss("authorize", "nonsense", *chain).returncode == 2
    assert deoss("authorize", gateway, *chain[:-1]).returncode == 2  # //Dave without --dev


class Proxy:
    """A TCP proxy in front of the gateway, on its own thread and event loop. It counts
    the bytes clients send (``sent``), paces them to ``rate`` bytes a second when set,
    and, when ``cut_after`` is set, breaks the connection that carries the total past it
    and is ``down`` from then on (every new connection closed at once) until told not."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.sent = 0
        self.rate: float | None = None
        self.cut_after: int | None = None
        self.down = False
        self.connections: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", 0), self.loop
        ).result()
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)
        if self.down:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        tasks = [
            asyncio.ensure_future(self._pipe(reader, up_writer, counted=True)),
            asyncio.ensure_future(self._pipe(up_reader, writer, counted=False)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for side in (writer, up_writer):
            side.transport.abort()  # either side gone: the other sees it at once

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, counted: bool
    ) -> None:
        while data := await reader.read(16 * KIB):
            if counted:
                if self.cut_after is not None and self.sent + len(data) > self.cut_after:
                    self.cut_after, self.down = None, True
                    return
                self.sent += len(data)
                if self.rate:
                    await asyncio.sleep(len(data) / self.rate)
            writer.write(data)
            await writer.drain()

    async def _shutdown(self) -> None:
        self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        await self.server.wait_closed()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def proxy(network: Network) -> Iterator[Proxy]:
    running = Proxy(network.url)
    yield running
    running.close()


@pytest.fixture(scope="module")
def uploader(network: Network) -> list[str]:
    """Eve authorized the gateway and owns a territory, both through the CLI: the put
    arguments but --gateway."""
    chain = ["--chain-rpc", network.chain.url, "--key", "//Eve", "--dev"]
    authorized = deoss("authorize", network.url, *chain)
    assert authorized.returncode == 0, authorized.stderr
    minted = deoss("territory", "mint", UPLOADS, "--size", "48", "--days", "3", *chain)
    assert minted.returncode == 0, minted.stderr
    return ["--key", "//Eve", "--dev", "--territory", UPLOADS]


def resume_session(network: Network, name: str) -> dict[str, Any] | None:
    """The gateway's resume session for Eve's ``name``, asked directly."""

    async def ask() -> dict[str, Any] | None:
        async with (
            aiohttp.ClientSession(
                middlewares=(signing_middleware(UPLOADER, network.gateway_account),)
            ) as session,
            session.get(
                f"{network.url}/resume/{name}", headers={ACCOUNT_HEADER: UPLOADER.address}
            ) as response,
        ):
            if response.status == 404:
                return None
            data: dict[str, Any] = (await response.json())["data"]
            return data

    return asyncio.run(ask())


def sent_this_run(stderr: str) -> tuple[int, int]:
    """(bytes sent, bytes the gateway already held) as the put's last line says."""
    found = re.search(r"sent (\d+) bytes this run \((\d+) were already stored\)", stderr)
    assert found, stderr
    return int(found[1]), int(found[2])


def downloads_identical(network: Network, fid: str, data: bytes, tmp_path: Path) -> None:
    output = tmp_path / "downloaded.bin"
    got = deoss("get", fid, "-o", str(output), "--gateway", network.url, "--key", "//Eve", "--dev")
    assert got.returncode == 0, got.stderr
    assert output.read_bytes() == data


def test_put_resumes_after_the_client_is_killed(
    network: Network, uploader: list[str], proxy: Proxy, tmp_path: Path
) -> None:
    data = os.urandom(1536 * KIB + 12_345)
    source = tmp_path / "killed.bin"
    source.write_bytes(data)
    state = tmp_path / "state"
    command = [
        sys.executable, "-m", "gateway.cli", "put", str(source), "--chunk-size", "64K",
        "--state-dir", str(state), "--gateway", proxy.url, *uploader,
    ]  # fmt: skip
    proxy.rate = 256 * KIB  # six seconds for the whole file: time to kill it midway
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while (found := resume_session(network, "killed.bin")) is None or found["stored"] < (
            512 * KIB
        ):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
        for stream in (first.stdout, first.stderr):
            assert stream is not None
            stream.close()
    assert first.returncode == -signal.SIGKILL
    assert len(list(state.glob("*.json"))) == 1
    time.sleep(0.5)  # the gateway finishes with the chunk the kill cut off
    held = resume_session(network, "killed.bin")
    assert held is not None and not held["complete"]
    assert 512 * KIB <= held["stored"] < len(data)

    proxy.rate, before = None, proxy.sent
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert f"resuming at {held['stored']} of {len(data)} bytes" in second.stderr
    sent, already = sent_this_run(second.stderr)
    assert (sent, already) == (len(data) - held["stored"], held["stored"])
    on_the_wire = proxy.sent - before
    chunks = -(-sent // (64 * KIB))
    assert sent <= on_the_wire < sent + (chunks + 4) * 2 * KIB  # bodies and their heads only
    fid = second.stdout.strip()
    done = resume_session(network, "killed.bin")
    assert done is not None and done["complete"] and done["fid"] == fid
    assert list(state.glob("*.json")) == []
    downloads_identical(network, fid, data, tmp_path)


def test_ctrl_c_stops_a_put_that_the_same_command_resumes(
    network: Network, uploader: list[str], proxy: Proxy, tmp_path: Path
) -> None:
    data = os.urandom(768 * KIB + 3)
    source = tmp_path / "interrupted.bin"
    source.write_bytes(data)
    command = [
        sys.executable, "-m", "gateway.cli", "put", str(source), "--chunk-size", "64K",
        "--state-dir", str(tmp_path / "state"), "--gateway", proxy.url, *uploader,
    ]  # fmt: skip
    proxy.rate = 128 * KIB
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while (found := resume_session(network, "interrupted.bin")) is None or found["stored"] == 0:
        assert first.poll() is None and time.monotonic() < deadline, found
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert b"run the same command again to resume" in stderr and b"interrupted" in stderr
    proxy.rate = None
    second = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    sent, already = sent_this_run(second.stderr.decode())
    assert already > 0 and sent == len(data) - already
    downloads_identical(network, second.stdout.decode().strip(), data, tmp_path)


def test_put_resumes_after_a_broken_connection(
    network: Network, uploader: list[str], proxy: Proxy, tmp_path: Path
) -> None:
    data = os.urandom(512 * KIB + 1)
    source = tmp_path / "broken.bin"
    source.write_bytes(data)
    state = tmp_path / "state"
    command = [
        "put", str(source), "--chunk-size", "64K", "--state-dir", str(state),
        "--gateway", proxy.url, "--no-progress", *uploader,
    ]  # fmt: skip
    proxy.cut_after = proxy.sent + 300 * KIB
    first = deoss(*command)
    assert first.returncode == 1, first.stderr
    assert "run the same command again to resume" in first.stderr
    assert "the connection broke" in first.stderr
    assert "\r" not in first.stderr  # --no-progress
    stopped = int(re.search(r"stopped at (\d+) of", first.stderr)[1])  # type: ignore[index]
    assert 0 < stopped < len(data)

    proxy.down = False
    second = deoss(*command[: -len(uploader)], "--progress", *uploader)
    assert second.returncode == 0, second.stderr
    sent, already = sent_this_run(second.stderr)
    assert already >= stopped and sent == len(data) - already
    assert "\rput [" in second.stderr and "100%" in second.stderr  # --progress on a pipe
    downloads_identical(network, second.stdout.strip(), data, tmp_path)

    # Again, with the state file lost: the gateway's unfinished session is not trusted.
    proxy.cut_after = proxy.sent + 300 * KIB
    assert deoss(*command, "--name", "again.bin").returncode == 1
    for record in state.glob("*.json"):
        record.unlink()
    proxy.down = False
    third = deoss(*command, "--name", "again.bin")
    assert third.returncode == 0, third.stderr
    assert "discarding the gateway's unfinished upload of 'again.bin'" in third.stderr
    assert sent_this_run(third.stderr) == (len(data), 0)
    downloads_identical(network, third.stdout.strip(), data, tmp_path)


def test_a_small_put_and_a_get_show_progress_only_when_asked(
    network: Network, uploader: list[str], tmp_path: Path
) -> None:
    data = os.urandom(100 * KIB)
    source = tmp_path / "small.bin"
    source.write_bytes(data)
    gateway = ["--gateway", network.url]
    quiet = deoss("put", str(source), *gateway, *uploader)  # stderr is a pipe here
    assert quiet.returncode == 0, quiet.stderr
    assert "\r" not in quiet.stderr and f"sent {len(data)} bytes" in quiet.stderr
    assert resume_session(network, "small.bin") is None  # one chunk or less: one PUT
    fid = quiet.stdout.strip()
    output = tmp_path / "copy.bin"
    keys = uploader[:3]
    shown = deoss("get", fid, "-o", str(output), "--progress", *gateway, *keys)
    assert shown.returncode == 0, shown.stderr
    assert "\rget [" in shown.stderr and "100%" in shown.stderr
    assert output.read_bytes() == data
    # Larger than one chunk, but --no-resume: one streamed PUT, no state.
    state = tmp_path / "state"
    whole = deoss(
        "put", str(source), "--chunk-size", "16K", "--no-resume", "--state-dir", str(state),
        "--progress", "--name", "whole.bin", *gateway, *uploader,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    assert "\rput [" in whole.stderr and not state.exists()
    assert resume_session(network, "whole.bin") is None
    missing = deoss("put", str(tmp_path / "nothing"), *gateway, *uploader)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.timeout(450)
def test_scrub_and_recover_show_progress(network: Network, tmp_path: Path) -> None:
    """``deoss scrub`` beside the running gateway, and ``deoss recover`` into a copy of
    its config with an empty data directory (the running gateway is left alone)."""
    config = network.gateway_dir / "gateway.toml"
    scrub = deoss("scrub", "--config", str(config), "--sample", "0.05", "--progress")
    assert scrub.returncode in (0, 1), scrub.stderr
    assert re.search(r"\rscrub \d+ fragments", scrub.stderr), scrub.stderr
    copy = tmp_path / "recovered"
    copy.mkdir(mode=0o700)
    for name in ("key.json", "master.key"):
        (copy / name).write_bytes((network.gateway_dir / name).read_bytes())
        (copy / name).chmod(0o600)
    text = config.read_text()
    text = re.sub(r"(?m)^data_dir = .*$", f'data_dir = "{copy}"', text)
    (copy / "gateway.toml").write_text(text)
    recovered = deoss("recover", "--config", str(copy / "gateway.toml"), "--progress", timeout=300)
    assert recovered.returncode in (0, 1), recovered.stderr
    files = int(re.search(r"deoss recover: (\d+) files", recovered.stdout)[1])  # type: ignore[index]
    assert files > 0
    assert f"\rrecover {files} files" in recovered.stderr.replace("\n", "")
    quiet = deoss("scrub", "--config", str(config), "--sample", "0.01")
    assert "\r" not in quiet.stderr
