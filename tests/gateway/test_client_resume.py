"""``deoss put``'s resumable path (gateway/resume_upload.py) against the in-process grid's
gateway: a run cut off after some chunks leaves its state file, and the next run sends
only what the gateway lacks; a session this client did not start is discarded; a run
whose completing answer was lost finds the fid. The e2e twin (tests/e2e/test_cli_client.py)
kills a real ``deoss put``."""

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from gateway.client_session import ClientError, client_session
from gateway.native.signing import ACCOUNT_HEADER, gateway_account, signing_middleware
from gateway.resume_upload import PutOutcome, UploadPlan, default_state_dir, resumable_put
from tests.grid import TERRITORY, USER, Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHUNK = 64 * 1024


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("resumegrid")) as running:
        yield running


def _url(grid: Grid) -> str:
    return str(grid.native.make_url("")).rstrip("/")


class Breaker:
    """A client middleware that breaks the connection on the resume chunk number
    ``before`` (before it is sent), or just after the answer of the completing one."""

    def __init__(
        self, *, before: int | None = None, after_complete: bool = False, twice: int | None = None
    ) -> None:
        self.before, self.after_complete, self.twice = before, after_complete, twice
        self.chunks = 0

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if request.method == "PUT" and request.url.path.startswith("/resume/"):
            self.chunks += 1
            if self.chunks == self.before:
                raise aiohttp.ClientConnectionError("cut by the test")
            if self.chunks == self.twice:  # as aiohttp's own retry on a broken connection
                (await handler(request)).release()
            response = await handler(request)
            if self.after_complete and response.status == 200:
                raise aiohttp.ClientPayloadError("the answer was lost")  # not retried
            return response
        return await handler(request)


async def put(
    grid: Grid,
    path: Path,
    state_dir: Path,
    name: str,
    breaker: Breaker | None = None,
    cipher: str | None = None,
) -> PutOutcome:
    url = _url(grid)
    account = await gateway_account(url)
    plan = UploadPlan.of(
        path, gateway=url, account=USER.address, name=name, territory=TERRITORY, copies=None
    )
    middlewares: tuple[Any, ...] = (signing_middleware(USER, account),)
    if breaker is not None:
        middlewares = (breaker, *middlewares)
    async with aiohttp.ClientSession(
        headers={ACCOUNT_HEADER: USER.address}, middlewares=middlewares
    ) as session:
        return await resumable_put(
            session,
            keypair=USER,
            gateway_account=account,
            plan=plan,
            state_dir=state_dir,
            chunk_size=CHUNK,
            cipher=cipher,
            progress=False,
        )


async def stored_object(grid: Grid, fid: str) -> bytes:
    response = await grid.native.get(f"/file/download/{fid}", headers=grid.signed())
    assert response.status == 200
    return await response.read()


async def session_of(grid: Grid, name: str) -> dict[str, Any] | None:
    async with (
        client_session(_url(grid), USER) as (session, _),
        session.get(f"{_url(grid)}/resume/{name}") as response,
    ):
        if response.status == 404:
            return None
        data: dict[str, Any] = (await response.json())["data"]
        return data


def a_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


async def test_a_cut_upload_resumes_where_it_stopped(grid: Grid, tmp_path: Path) -> None:
    path, data = a_file(tmp_path, 5 * CHUNK + 1000)
    state = tmp_path / "state"
    with pytest.raises(ClientError, match="the connection broke"):
        await put(grid, path, state, "cut.bin", Breaker(before=4))
    assert len(list(state.glob("*.json"))) == 1  # kept for the next run
    assert (state.stat().st_mode & 0o777) == 0o700
    session = await session_of(grid, "cut.bin")
    assert session is not None and session["stored"] == 3 * CHUNK and not session["complete"]

    outcome = await put(grid, path, state, "cut.bin")
    assert (outcome.resumed_at, outcome.sent) == (3 * CHUNK, len(data) - 3 * CHUNK)
    assert await stored_object(grid, outcome.fid) == data
    assert list(state.glob("*.json")) == []


async def test_a_chunk_aiohttp_sent_twice_is_asked_about(grid: Grid, tmp_path: Path) -> None:
    """aiohttp resends a PUT, headers and all, when a kept-alive connection breaks under
    it; the gateway refuses the repeated signature, and the upload asks how far it got."""
    path, data = a_file(tmp_path, 4 * CHUNK)
    outcome = await put(grid, path, tmp_path / "state", "twice.bin", Breaker(twice=2))
    assert outcome.resumed_at == 0
    assert await stored_object(grid, outcome.fid) == data


async def test_a_session_this_client_did_not_start_is_discarded(grid: Grid, tmp_path: Path) -> None:
    path, data = a_file(tmp_path, 3 * CHUNK)
    state = tmp_path / "state"
    with pytest.raises(ClientError):
        await put(grid, path, state, "foreign.bin", Breaker(before=2))
    for record in state.glob("*.json"):
        record.unlink()  # another machine, or the cache wiped
    outcome = await put(grid, path, state, "foreign.bin")
    assert (outcome.resumed_at, outcome.sent) == (0, len(data))
    assert await stored_object(grid, outcome.fid) == data


async def test_a_session_the_gateway_dropped_starts_over(grid: Grid, tmp_path: Path) -> None:
    """The state file is there but the session is not (its resume_ttl passed, or it was
    deleted): the upload starts at byte 0."""
    path, data = a_file(tmp_path, 3 * CHUNK)
    state = tmp_path / "state"
    with pytest.raises(ClientError):
        await put(grid, path, state, "dropped.bin", Breaker(before=3))
    response = await grid.native.delete("/resume/dropped.bin", headers=grid.signed())
    assert response.status == 200
    outcome = await put(grid, path, state, "dropped.bin")
    assert (outcome.resumed_at, outcome.sent) == (0, len(data))
    assert await stored_object(grid, outcome.fid) == data


async def test_a_changed_file_starts_over(grid: Grid, tmp_path: Path) -> None:
    path, _ = a_file(tmp_path, 3 * CHUNK)
    state = tmp_path / "state"
    with pytest.raises(ClientError):
        await put(grid, path, state, "changed.bin", Breaker(before=3))
    data = os.urandom(3 * CHUNK)
    path.write_bytes(data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    outcome = await put(grid, path, state, "changed.bin")
    assert (outcome.resumed_at, outcome.sent) == (0, len(data))
    assert await stored_object(grid, outcome.fid) == data
    assert list(state.glob("*.json")) == []  # the first file's record went with it


async def test_a_lost_completing_answer_finds_the_fid(grid: Grid, tmp_path: Path) -> None:
    path, data = a_file(tmp_path, 2 * CHUNK + 1)
    state = tmp_path / "state"
    with pytest.raises(ClientError):
        await put(grid, path, state, "lost.bin", Breaker(after_complete=True))
    session = await session_of(grid, "lost.bin")
    assert session is not None and session["complete"]
    outcome = await put(grid, path, state, "lost.bin")
    assert (outcome.fid, outcome.sent) == (session["fid"], 0)
    assert await stored_object(grid, outcome.fid) == data
    assert list(state.glob("*.json")) == []


async def test_a_cipher_goes_with_the_completing_chunk(grid: Grid, tmp_path: Path) -> None:
    path, data = a_file(tmp_path, 3 * CHUNK + 7)
    state = tmp_path / "state"
    with pytest.raises(ClientError):
        await put(grid, path, state, "secret.bin", Breaker(before=2), cipher="horse")
    outcome = await put(grid, path, state, "secret.bin", cipher="horse")
    response = await grid.native.get(f"/file/download/{outcome.fid}", headers=grid.signed())
    assert response.status == 403  # CipherRequired
    response = await grid.native.get(
        f"/file/download/{outcome.fid}", headers=grid.signed({"Cipher": "horse"})
    )
    assert response.status == 200 and await response.read() == data


async def test_names_that_need_escaping(grid: Grid, tmp_path: Path) -> None:
    path, data = a_file(tmp_path, 2 * CHUNK + 5)
    outcome = await put(grid, path, tmp_path / "state", "dir/a b?c#d%41.bin")
    assert await stored_object(grid, outcome.fid) == data
    session = await session_of(grid, "dir/a%20b%3Fc%23d%2541.bin")
    assert session is not None and session["name"] == "dir/a b?c#d%41.bin"


async def test_the_state_directory_follows_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "deoss" / "uploads"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / ".cache" / "deoss" / "uploads"


async def test_what_makes_two_runs_the_same_upload(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)

    def plan(**changes: Any) -> UploadPlan:
        fields: dict[str, Any] = {
            "gateway": "http://g",
            "account": USER.address,
            "name": "f",
            "territory": "t",
            "copies": None,
            **changes,
        }
        return UploadPlan.of(path, **fields)

    key = plan().key()
    assert plan().key() == key
    for change in (
        {"gateway": "http://h"},
        {"name": "g"},
        {"territory": "u"},
        {"copies": 4},
        {"account": "someone else"},
    ):
        assert plan(**change).key() != key, change
    path.write_bytes(b"y" * 11)
    assert plan().key() != key
