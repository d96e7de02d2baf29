"""The web console in a real browser (Debian's Chromium, headless, driven by Playwright)
against a network of real processes (docs/console.md): log in with a signature made by
the real ``deoss sign``; upload a file through the page and watch it become Active;
download it byte-identical; mint a territory with the command the page shows; kill a
miner holding a fragment and watch it turn offline on the miners page and its repair
complete on the restoral page. Every page is photographed into ``$DEOSS_ARTIFACTS`` (or
``artifacts/console/`` under the repository).

The network is this module's own: the shared one (tests/e2e/gateway_network.py) never
marks a dead miner offline (``offline_after`` is 10^5 blocks there), and a miner killed
on it would degrade every later test. Here, as in tests/e2e/faults, a killed miner is
offline after 3 s and its fragments are ordered restored 2 s later.
"""

import functools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from chain_client.account import ChainAccount
from chain_client.params import KIB, PenaltySchedule, dev_params
from chain_client.rpc_client import HttpChain
from tests.e2e.gateway_network import S3_TERRITORY, USER, Network, active, running_network
from tests.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PARAMS = dev_params(
    data_shards=2,
    total_shards=4,
    fragment_size=64 * KIB,
    segment_size=128 * KIB,
    stripe_block_size=16 * KIB,
    block_time=0.25,
    blocks_per_day=10_000,
    challenge_interval=10**6,
    challenge_deadline=20,
    heartbeat_interval=4,
    offline_after=12,  # a killed miner is offline after 3 s ...
    offline_restoral_delay=8,  # ... and its fragments are ordered restored 2 s later
    penalties=PenaltySchedule(force_exit_misses=50, failed_proof_threshold=1),
)
MINERS = PARAMS.total_shards + 2  # repair has somewhere to go
PAGES = ("objects", "deals", "territories", "miners", "challenges", "restoral", "health")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("console"), PARAMS, MINERS, 32) as network:
        yield network


@pytest.fixture(scope="module")
def artifacts() -> Path:
    directory = Path(os.environ.get("DEOSS_ARTIFACTS") or ROOT / "artifacts" / "console")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def deoss(command: str) -> str:
    """Runs a command the console shows, as its user would, with the dev user's key in
    place of KEY_FILE: the real CLI, a process of its own."""
    argv = shlex.split(command.replace("KEY_FILE", "//Alice"))
    assert argv[0] == "deoss", command
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv[1:], "--dev"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


async def prepare(network: Network) -> None:
    """The dev user authorized the gateway and owns its default territory."""
    chain = HttpChain(network.chain.url)
    try:
        await eventually(
            functools.partial(chain.query, "sminer.totals"),
            lambda totals: totals["idle"] >= 24 * PARAMS.territory_unit,
        )
        user = ChainAccount(chain, USER)
        await user.call("oss.authorize", gateway=network.gateway_account)
        await user.call("storage_handler.mint_territory", name=S3_TERRITORY, gib=12, days=5)
    finally:
        await chain.close()


async def shoot(page: Page, artifacts: Path, name: str) -> None:
    await page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


async def reload_until(page: Page, url: str, selector: str, timeout: float = 60) -> None:
    """Reloads ``url`` until ``selector`` is on the page (what a user watching does)."""
    deadline = time.monotonic() + timeout
    while True:
        await page.goto(url)
        if await page.locator(selector).count():
            return
        assert time.monotonic() < deadline, f"{url}: no {selector} after {timeout} s"
        await page.wait_for_timeout(500)


async def test_the_console_in_a_browser(network: Network, artifacts: Path, tmp_path: Path) -> None:
    await prepare(network)
    console = f"{network.url}/console"
    data = os.urandom(300 * KIB + 7)  # three segments
    upload = tmp_path / "through the page.bin"
    upload.write_bytes(data)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await (await browser.new_context(accept_downloads=True)).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )

            # Log in: the page shows the command; the real deoss sign answers it.
            await page.goto(f"{console}/")
            await expect(page).to_have_url(f"{console}/login")
            await shoot(page, artifacts, "login")
            command = await page.locator("#login-command").inner_text()
            await page.fill("textarea[name=signature]", deoss(command))
            await page.click("#signature-form button[type=submit]")
            await expect(page).to_have_url(f"{console}/objects")
            await expect(page.locator("header .who")).to_contain_text(USER.address[:8])

            # Upload through the page, watch it become Active, download it back.
            await page.set_input_files("#upload-form input[name=file]", str(upload))
            await page.click("#upload-form button[type=submit]")
            await expect(page.locator("#upload-percent")).to_have_text("100 %", timeout=60_000)
            status = page.locator("#upload-status")
            await expect(status).to_have_attribute("data-state", "Active", timeout=60_000)
            await expect(status).to_contain_text("through the page.bin")
            await page.goto(f"{console}/objects")
            row = page.locator("table.objects tr", has_text="through the page.bin")
            await expect(row.locator(".state")).to_have_text("Active")
            await shoot(page, artifacts, "objects")
            async with page.expect_download() as download_info:
                await row.locator("a.download").click()
            download = await download_info.value
            assert download.suggested_filename == "through the page.bin"
            assert Path(await download.path()).read_bytes() == data
            fid = await row.locator(".fid").get_attribute("title")
            assert fid is not None and re.fullmatch(r"[0-9a-f]{64}", fid)

            # A territory minted with the command the territories page shows.
            await page.goto(f"{console}/territories")
            await page.fill("form.mint input[name=name]", "made-by-console")
            await page.fill("form.mint input[name=days]", "3")
            await page.click("form.mint button[type=submit]")
            mint = await page.locator("#territory-command pre.command").inner_text()
            assert mint.startswith("deoss territory mint made-by-console --size 1 --days 3")
            deoss(mint)
            await page.goto(f"{console}/territories")
            await expect(page.locator("table.territories")).to_contain_text("made-by-console")
            await shoot(page, artifacts, "territories")

            for name in ("deals", "challenges", "health"):
                await page.goto(f"{console}/{name}")
                await shoot(page, artifacts, name)
            chain = HttpChain(network.chain.url)
            try:
                file = await active(chain, fid)
            finally:
                await chain.close()
            fragments = sum(len(segment["fragments"]) for segment in file["segments"])
            await page.goto(f"{console}/deals")
            deal = page.locator("table.deals tr", has_text="through the page.bin")
            await expect(deal).to_contain_text(f"{fragments} / {fragments}")
            await expect(deal).to_contain_text("active")
            await page.goto(f"{console}/health")
            await expect(page.locator("#health-status")).to_contain_text("Status: ok")

            # Kill a miner holding one of its fragments: offline, then repaired.
            victim = file["segments"][0]["fragments"][0]["miner"]
            by_account = {
                (directory / "key.json").read_text(): process
                for directory, process, _ in network.miners
            }
            process = next(p for key, p in by_account.items() if victim in key)
            process.send_signal(signal.SIGKILL)
            await reload_until(
                page, f"{console}/miners", f'tr:has(span[title="{victim}"]) .state-offline'
            )
            await shoot(page, artifacts, "miners")
            await reload_until(
                page,
                f"{console}/restoral",
                f'table.repairs tr:has(.state-completed):has(span[title="{fid}"])',
                timeout=90,
            )
            await shoot(page, artifacts, "restoral")

            # Deleting asks first; the object is then gone from the list.
            page.once("dialog", lambda dialog: dialog.accept())
            await page.goto(f"{console}/objects")
            await row.locator("form.delete button").click()
            await expect(page.locator(".notice")).to_have_text("Deleted through the page.bin.")
            await expect(page.locator("table.objects")).to_have_count(0)
            assert not errors, errors
        finally:
            await browser.close()
    for name in ("login", *PAGES):
        assert (artifacts / f"{name}.png").stat().st_size > 0, name
