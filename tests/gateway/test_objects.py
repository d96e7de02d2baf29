"""The object service's upload checks against a chain whose answers the test sets:
territories missing, frozen, full (counting this gateway's own promises), the chain away,
and copies beyond the network's miners."""

from pathlib import Path
from typing import Any

import pytest

from chain_client.account import ChainAccount
from chain_client.errors import ChainUnavailable
from chain_client.keys import dev_keypair
from chain_client.params import dev_params
from gateway.codec import Layout
from gateway.index import MetadataIndex
from gateway.objects import ObjectError, ObjectService
from gateway.transfer import MinerClient, MinerDirectory

PARAMS = dev_params(data_shards=2, total_shards=4)
OWNER = dev_keypair("Alice").address


class ScriptedChain:
    """Answers the two queries the checks make; ``territory`` None means none exists."""

    def __init__(self) -> None:
        self.territory: dict[str, Any] | None = {"state": "active", "remaining": 10**9}
        self.miners = 6
        self.down = False

    async def query(self, name: str, /, **args: Any) -> Any:
        if self.down:
            raise ChainUnavailable("the node is away")
        if name == "storage_handler.territory":
            return self.territory
        if name == "sminer.miners":
            return [
                {
                    "account": f"m{i}",
                    "endpoint": "http://127.0.0.1:1",
                    "idle": 10**9,
                    "scheme": "sr25519",
                }
                for i in range(self.miners)
            ]
        raise AssertionError(f"unexpected query {name}")


@pytest.fixture
def chain() -> ScriptedChain:
    return ScriptedChain()


@pytest.fixture
def service(chain: ScriptedChain, tmp_path: Path) -> ObjectService:
    keypair = dev_keypair("Dave")
    return ObjectService(
        params=PARAMS,
        index=MetadataIndex(tmp_path / "index.db"),
        directory=MinerDirectory(chain),  # type: ignore[arg-type]
        client=MinerClient(keypair),
        account=ChainAccount(chain, keypair),  # type: ignore[arg-type]
        master_key=bytes(32),
    )


async def refused(service: ObjectService, size: int, copies: int | None = None) -> ObjectError:
    with pytest.raises(ObjectError) as caught:
        await service.check_upload(OWNER, "home", size, copies)
    return caught.value


async def test_a_territory_that_holds_the_object_passes(service: ObjectService) -> None:
    await service.check_upload(OWNER, "home", 10**6, None)


async def test_missing_frozen_and_expired_territories(
    service: ObjectService, chain: ScriptedChain
) -> None:
    chain.territory = None
    assert (await refused(service, 1)).code == "NoSuchTerritory"
    for state in ("frozen", "expired"):
        chain.territory = {"state": state, "remaining": 10**9}
        error = await refused(service, 1)
        assert (error.status, error.code) == (403, "TerritoryNotActive")


async def test_quota_is_the_exact_stored_size(service: ObjectService, chain: ScriptedChain) -> None:
    layout = Layout.from_params(PARAMS)
    size = 3 * layout.chunk_plain + 6  # the last stripe exactly fills its k blocks
    assert chain.territory is not None
    chain.territory["remaining"] = layout.stored_size(size)
    await service.check_upload(OWNER, "home", size, None)
    error = await refused(service, size + 1)
    assert (error.status, error.code) == (403, "InsufficientTerritorySpace")


async def test_uploads_in_flight_count_against_the_quota(
    service: ObjectService, chain: ScriptedChain
) -> None:
    layout = Layout.from_params(PARAMS)
    assert chain.territory is not None
    chain.territory["remaining"] = layout.stored_size(1000) * 2 - 1

    async def body() -> Any:
        # While this upload waits for its body, a second one of the same size must not fit.
        second = await refused(service, 1000)
        assert second.code == "InsufficientTerritorySpace"
        raise ConnectionResetError("the client went away")
        yield b""  # an async generator

    with pytest.raises(ConnectionResetError):
        await service.put(owner=OWNER, territory="home", name="a", body=body(), size_hint=1000)
    await service.check_upload(OWNER, "home", 1000, None)  # the reservation was released
    assert service.index.find(OWNER, "a") is None  # and nothing became visible


async def test_the_chain_away_is_503(service: ObjectService, chain: ScriptedChain) -> None:
    chain.down = True
    error = await refused(service, 1)
    assert (error.status, error.code) == (503, "ChainUnavailable")


async def test_copies(service: ObjectService, chain: ScriptedChain) -> None:
    await service.check_upload(OWNER, "home", 1, 3)  # 6 fragments on 6 miners
    error = await refused(service, 1, 4)
    assert (error.status, error.code) == (400, "TooManyCopies")
    error = await refused(service, 1, 1)  # below the network's default of n / k = 2
    assert (error.status, error.code) == (400, "InvalidCopies")


async def test_an_object_beyond_the_chain_limit_is_413(service: ObjectService) -> None:
    layout = Layout.from_params(PARAMS)
    limit = service.max_object_size(layout)
    assert limit == PARAMS.max_segments_per_file * layout.stripes_per_segment * layout.chunk_plain
    error = await refused(service, limit + 1)
    assert (error.status, error.code) == (413, "ObjectTooLarge")
