"""The object service's upload checks against a chain whose answers the test sets:
territories missing, frozen, full (counting this gateway's own promises), the chain away,
and copies beyond the network's miners; and its upload pipeline against miners the test
plays: a segment is stored while the next is read, in order, one at a time."""

import asyncio
import collections
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chain_client.account import ChainAccount
from chain_client.errors import ChainError, ChainUnavailable
from chain_client.keys import dev_keypair
from chain_client.params import dev_params
from gateway.codec import Layout
from gateway.errors import (
    InsufficientTerritorySpace,
    InvalidCopies,
    MinersUnavailable,
    NoSuchTerritory,
    ObjectError,
    ObjectTooLarge,
    TerritoryNotActive,
    TooManyCopies,
)
from gateway.index import MetadataIndex
from gateway.objects import ObjectService
from gateway.records import PartRecord, UploadRecord
from gateway.transfer import MinerClient, MinerDirectory
from tests.gateway.fakes import PlayedMiners

PARAMS = dev_params(data_shards=2, total_shards=4)
OWNER = dev_keypair("Alice").address


def territory_json(state: str, remaining: int, deadline: int = 7) -> dict[str, Any]:
    """``storage_handler.territory`` as the chain answers it."""
    return {
        "owner": OWNER,
        "name": "home",
        "state": state,
        "total": remaining,
        "used": 0,
        "locked": 0,
        "remaining": remaining,
        "deadline": deadline,
    }


class ScriptedChain:
    """Answers the two queries the checks make; ``territory`` None means none exists."""

    def __init__(self) -> None:
        self.territory: dict[str, Any] | None = territory_json("active", 10**9)
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
                    "scheme": "sr25519",
                    "state": "positive",
                    "declared": 10**9,
                    "idle": 10**9,
                    "service": 0,
                    "certified": 10**9,
                }
                for i in range(self.miners)
            ]
        raise AssertionError(f"unexpected query {name}")


@pytest.fixture
def chain() -> ScriptedChain:
    return ScriptedChain()


def make_service(chain: ScriptedChain, path: Path, client: MinerClient) -> ObjectService:
    return ObjectService(
        params=PARAMS,
        index=MetadataIndex(path / "index.db"),
        directory=MinerDirectory(chain),  # type: ignore[arg-type]
        client=client,
        account=ChainAccount(chain, client.keypair),  # type: ignore[arg-type]
        master_key=bytes(32),
        territory_ttl=0,  # the tests change the chain's answers between checks
    )


@pytest.fixture
def service(chain: ScriptedChain, tmp_path: Path) -> ObjectService:
    return make_service(chain, tmp_path, MinerClient(dev_keypair("Dave")))


async def refused(service: ObjectService, size: int, copies: int | None = None) -> Exception:
    with pytest.raises((ObjectError, ChainError)) as caught:
        await service.check_upload(OWNER, "home", size, copies)
    return caught.value


async def test_a_territory_that_holds_the_object_passes(service: ObjectService) -> None:
    await service.check_upload(OWNER, "home", 10**6, None)


async def test_missing_frozen_and_expired_territories(
    service: ObjectService, chain: ScriptedChain
) -> None:
    chain.territory = None
    assert isinstance(await refused(service, 1), NoSuchTerritory)
    for state in ("frozen", "expired"):
        chain.territory = territory_json(state, 10**9)
        error = await refused(service, 1)
        assert isinstance(error, TerritoryNotActive)
        assert error.facts == {"territory": "home", "state": state, "deadline": 7}


async def test_quota_is_the_exact_stored_size(service: ObjectService, chain: ScriptedChain) -> None:
    layout = Layout.from_params(PARAMS)
    size = 3 * layout.chunk_plain + 6  # the last stripe exactly fills its k blocks
    assert chain.territory is not None
    chain.territory["remaining"] = layout.stored_size(size)
    await service.check_upload(OWNER, "home", size, None)
    error = await refused(service, size + 1)
    assert isinstance(error, InsufficientTerritorySpace)
    assert (error.needed, error.available) == (
        layout.stored_size(size + 1),
        layout.stored_size(size),
    )


async def test_uploads_in_flight_count_against_the_quota(
    service: ObjectService, chain: ScriptedChain
) -> None:
    layout = Layout.from_params(PARAMS)
    assert chain.territory is not None
    chain.territory["remaining"] = layout.stored_size(1000) * 2 - 1

    async def body() -> Any:
        # While this upload waits for its body, a second one of the same size must not fit.
        second = await refused(service, 1000)
        assert isinstance(second, InsufficientTerritorySpace)
        raise ConnectionResetError("the client went away")
        yield b""  # an async generator

    with pytest.raises(ConnectionResetError):
        await service.put(owner=OWNER, territory="home", name="a", body=body(), size_hint=1000)
    await service.check_upload(OWNER, "home", 1000, None)  # the reservation was released
    assert service.index.find(OWNER, "a") is None  # and nothing became visible


def placed_part(upload_id: str, number: int, fragment_sizes: list[int]) -> PartRecord:
    """A recorded part whose fragments (of the given sizes) are on miners."""
    unit = {
        "placements": [
            [0, i, f"frag{i}", f"m{i}", size, ""] for i, size in enumerate(fragment_sizes)
        ]
    }
    return PartRecord(upload_id, number, "etag", sum(fragment_sizes), unit, 0.0)


async def test_parts_of_unfinished_uploads_count_against_the_quota(
    service: ObjectService, chain: ScriptedChain
) -> None:
    """Each part passed the check alone, then the object they made overdrew the
    territory, and every later upload read a negative figure (issue 13)."""
    assert chain.territory is not None
    chain.territory.update(total=10_000, used=2_000, locked=1_000, remaining=7_000)
    service.index.create_upload(UploadRecord("u1", OWNER, "big", "home", "", {}, 0.0))
    service.index.put_part(placed_part("u1", 1, [1_000] * 4))
    service.index.put_part(placed_part("u1", 2, [500] * 4))
    assert service.index.pending_bytes(OWNER, "home") == 6_000
    await service.check_upload(OWNER, "home", 0, None)
    error = await refused(service, 1000)
    assert isinstance(error, InsufficientTerritorySpace)
    assert (error.total, error.held, error.pending, error.available) == (
        10_000,
        3_000,
        6_000,
        1_000,
    )
    assert "holds 10000 bytes: 3000 counted on chain, 6000 pending" in str(error)
    assert f"needs about {error.needed}" in str(error)
    # Another territory of the same owner, and an aborted upload, count nothing.
    assert service.index.pending_bytes(OWNER, "other") == 0
    assert service.index.delete_upload("u1")
    assert service.index.pending_bytes(OWNER, "home") == 0


async def test_an_overdrawn_territory_says_nothing_is_left(
    service: ObjectService, chain: ScriptedChain
) -> None:
    """Another gateway's uploads can take what this one counted on: the refusal says 0
    left, never a negative figure."""
    assert chain.territory is not None
    chain.territory.update(total=5_000, used=4_000, locked=1_000, remaining=0)
    service.index.create_upload(UploadRecord("u1", OWNER, "big", "home", "", {}, 0.0))
    service.index.put_part(placed_part("u1", 1, [1_000] * 2))
    error = await refused(service, 10)
    assert isinstance(error, InsufficientTerritorySpace)
    assert error.available == 0
    assert "-" not in str(error)


async def test_concurrent_reservations_cannot_share_free_space(
    service: ObjectService, chain: ScriptedChain
) -> None:
    layout = Layout.from_params(PARAMS)
    assert chain.territory is not None
    chain.territory["remaining"] = layout.stored_size(1000) * 2 - 1
    async with service.reserving_upload(OWNER, "home", 1000, None):
        with pytest.raises(InsufficientTerritorySpace):
            async with service.reserving_upload(OWNER, "home", 1000, None):
                pass
    async with service.reserving_upload(OWNER, "home", 1000, None):
        pass  # released when the first block ended


async def test_the_chain_away_is_the_chains_error(
    service: ObjectService, chain: ScriptedChain
) -> None:
    chain.down = True
    assert isinstance(await refused(service, 1), ChainUnavailable)


async def test_copies(service: ObjectService, chain: ScriptedChain) -> None:
    await service.check_upload(OWNER, "home", 1, 3)  # 6 fragments on 6 miners
    error = await refused(service, 1, 4)
    assert isinstance(error, TooManyCopies) and error.max_copies == 3
    error = await refused(service, 1, 1)  # below the network's default of n / k = 2
    assert isinstance(error, InvalidCopies) and (error.low, error.high) == (2, 127)


async def test_an_object_beyond_the_chain_limit_is_413(service: ObjectService) -> None:
    layout = Layout.from_params(PARAMS)
    limit = service.max_object_size(layout)
    assert limit == PARAMS.max_segments_per_file * layout.stripes_per_segment * layout.chunk_plain
    error = await refused(service, limit + 1)
    assert isinstance(error, ObjectTooLarge) and error.limit == limit


async def segments_of(count: int, asked: list[int]) -> AsyncIterator[bytes]:
    """``count`` segments' worth of plaintext, a segment per chunk; ``asked`` records
    each chunk as it is asked for."""
    layout = Layout.from_params(PARAMS)
    for number in range(count):
        asked.append(number)
        yield bytes([number]) * (layout.stripes_per_segment * layout.chunk_plain)


async def test_a_segment_is_stored_while_the_next_is_read(
    chain: ScriptedChain, tmp_path: Path
) -> None:
    miners = PlayedMiners()
    service = make_service(chain, tmp_path, miners)
    miners.gate = gate = asyncio.Event()
    asked: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        async for chunk in segments_of(4, asked):
            # Segment 0 is complete only once chunk 1 has arrived; its PUTs finish only
            # once chunk 2 is asked for.
            if len(asked) == 3:
                gate.set()
            yield chunk

    record = await service.put(owner=OWNER, territory="home", name="a", body=body(), size_hint=None)
    assert asked == [0, 1, 2, 3]
    assert miners.most_in_flight == PARAMS.total_shards  # one segment at a time
    placed = sorted(service.index.fragments(record.fid), key=lambda p: (p.seg_no, p.idx))
    assert [p.fragment_id for p in placed] == miners.stored  # in order
    assert len({p.seg_no for p in placed}) == 4


async def test_a_failed_segment_fails_the_upload(chain: ScriptedChain, tmp_path: Path) -> None:
    miners = PlayedMiners()
    service = make_service(chain, tmp_path, miners)
    miners.failing = True
    with pytest.raises(MinersUnavailable):
        await service.put(
            owner=OWNER, territory="home", name="a", body=segments_of(3, []), size_hint=None
        )
    assert service.index.find(OWNER, "a") is None


async def test_a_body_that_breaks_stops_the_segment_in_flight(
    chain: ScriptedChain, tmp_path: Path
) -> None:
    miners = PlayedMiners()
    service = make_service(chain, tmp_path, miners)
    miners.gate = asyncio.Event()  # never set: segment 0 stays in flight

    async def body() -> AsyncIterator[bytes]:
        async for chunk in segments_of(2, []):
            yield chunk
        await asyncio.sleep(0.1)  # the segment's PUTs are under way
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await service.put(owner=OWNER, territory="home", name="a", body=body(), size_hint=None)
    assert miners.cancelled == PARAMS.total_shards and miners.in_flight == 0
    assert service.index.find(OWNER, "a") is None


@pytest.mark.parametrize(
    ("positive", "outcome"),
    [
        (PARAMS.total_shards, "refused"),  # the chain would make them apart: 503 now
        (PARAMS.total_shards + 1, "apart"),  # another miner takes the refused fragments
        (PARAMS.total_shards - 1, "shared"),  # too few miners: reduced independence
    ],
)
async def test_a_miner_that_refuses_is_placed_around_only_as_the_chain_allows(
    chain: ScriptedChain, tmp_path: Path, positive: int, outcome: str
) -> None:
    """The chain refuses a deal whose segment shares a miner while n miners are positive:
    such an upload must fail while the client can retry, never be answered and then
    dropped."""
    chain.miners = positive
    miners = PlayedMiners()
    miners.refusing = {"m0"}
    service = make_service(chain, tmp_path, miners)
    upload = service.put(
        owner=OWNER, territory="home", name="a", body=segments_of(3, []), size_hint=None
    )
    if outcome == "refused":
        with pytest.raises(MinersUnavailable):
            await upload
        assert service.index.find(OWNER, "a") is None
        return
    record = await upload
    for seg_no in range(3):
        held = [p.miner for p in service.index.fragments(record.fid) if p.seg_no == seg_no]
        assert "m0" not in held and len(held) == PARAMS.total_shards
        assert len(set(held)) == (PARAMS.total_shards if outcome == "apart" else positive - 1)


async def test_a_failing_miner_is_chosen_last_even_when_the_others_are_excluded(
    chain: ScriptedChain,
) -> None:
    chain.miners = 3
    directory = MinerDirectory(chain, rng=random.Random(7))  # type: ignore[arg-type]
    everyone = sorted(await directory.miners())
    directory.mark_failed("m0")
    assert await directory.choose(1, 1, exclude=everyone) == []  # apart, or none
    for _ in range(50):  # sharing allowed: a healthy one is shared, never m0
        (pick,) = await directory.choose(1, 1, exclude=everyone, share=True)
        assert pick.account != "m0"
    for name in everyone:
        directory.mark_failed(name)
    assert len(await directory.choose(2, 1, exclude=everyone, share=True)) == 2


async def test_miners_that_failed_recently_still_keep_a_segment_apart(
    chain: ScriptedChain, tmp_path: Path
) -> None:
    """n + 2 miners, three of them failed a read a moment ago (killed and restarted, as
    the e2e test of n - k deaths does): the healthy ones are too few for a segment, so
    the recently failed take the rest rather than a healthy miner taking two (which the
    chain refuses)."""
    chain.miners = PARAMS.total_shards + 2
    miners = PlayedMiners()
    service = make_service(chain, tmp_path, miners)
    for number in range(3):
        service.directory.mark_failed(f"m{number}")
    record = await service.put(
        owner=OWNER, territory="home", name="a", body=segments_of(2, []), size_hint=None
    )
    for seg_no in range(2):
        held = [p.miner for p in service.index.fragments(record.fid) if p.seg_no == seg_no]
        assert len(set(held)) == PARAMS.total_shards


async def test_a_stalled_miner_costs_one_hedge_not_one_per_segment(
    chain: ScriptedChain, tmp_path: Path
) -> None:
    chain.miners = PARAMS.total_shards  # every miner holds one fragment of each segment
    miners = PlayedMiners()
    service = make_service(chain, tmp_path, miners)
    record = await service.put(
        owner=OWNER, territory="home", name="a", body=segments_of(3, []), size_hint=None
    )
    # The miner asked first (systematic fragments) in the most segments: at least two.
    systematic = collections.Counter(
        p.miner for p in service.index.fragments(record.fid) if p.idx < PARAMS.data_shards
    )
    slow, segments = systematic.most_common(1)[0]
    assert segments >= 2
    miners.stalled = {slow}
    read = b"".join([piece async for piece in service.read(record, 0, record.size, None)])
    assert read == b"".join([chunk async for chunk in segments_of(3, [])])
    assert miners.gets[slow] == 1  # late once: asked last from then on


async def test_a_stale_miner_list_is_reloaded_when_too_few_fit(chain: ScriptedChain) -> None:
    """Right after the miners certify idle space, the cached list still says they have
    none: a placement short of miners looks again instead of refusing the upload."""
    directory = MinerDirectory(chain)  # type: ignore[arg-type]
    chain.miners = 2
    assert len(await directory.miners()) == 2
    chain.miners = 6
    assert len(await directory.choose(4, 1)) == 2  # a list younger than half a second
    await asyncio.sleep(0.6)
    assert len(await directory.choose(4, 1)) == 4


async def test_a_territory_view_is_asked_again_once_declarations_reach_the_chain(
    chain: ScriptedChain, tmp_path: Path
) -> None:
    """docs/native-api.md §4.4: a cached view serves checks until this gateway's
    versions reach the chain (which then counts them), never one query per upload."""
    service = make_service(chain, tmp_path, MinerClient(dev_keypair("Dave")))
    service.territory_ttl = 60.0
    await service.check_upload(OWNER, "home", 1, None)
    chain.territory = territory_json("frozen", 10**9)
    await service.check_upload(OWNER, "home", 1, None)  # the cached view
    service.index.set_entry_states([], "declared")  # a declaration batch went in
    assert isinstance(await refused(service, 1), TerritoryNotActive)
