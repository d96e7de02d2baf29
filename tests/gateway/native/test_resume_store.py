"""The resumable-upload spool (docs/native-api.md §6): ``Content-Range`` parsing, chunks
appended under the stored prefix rules, durability of a broken-off body, a torn spool
after a crash, restarts, limits, the idle sweep and the one-chunk-at-a-time guard."""

import asyncio
import itertools
import os
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.exceptions import CryptoError

from gateway.native.resume_store import ResumeError, ResumeSession, ResumeStore, parse_content_range

OWNER = "alice"
OTHER_OWNER = "bob"
TERRITORY = "default"
TTL = 3600.0

# The spool's record layout, as the module docstring draws it: offset u64 ‖ length u32 ‖
# nonce (24) ‖ sealed bytes (length + a 16-byte tag).
RECORD_HEADER = struct.Struct(">QI")
NONCE = 24
TAG = 16
RECORD_OVERHEAD = RECORD_HEADER.size + NONCE + TAG


class FreeSpace:
    """An injectable ``free_space``: the answer the test sets, and the paths asked about."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.asked: list[Path] = []

    def __call__(self, path: Path) -> int:
        self.asked.append(path)
        return self.free


def payload_of(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset, so a misplaced piece cannot read back equal."""
    return bytes((index * 31 + seed * 7 + index // 251) % 256 for index in range(size))


async def body_of(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece


async def body_breaking_off(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    """A client that sends ``pieces`` and then drops the connection."""
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece
    raise ConnectionResetError("the client went away")


def split(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """``data`` cut into pieces of ``sizes`` (repeated), with empty pieces in between."""
    pieces: list[bytes] = []
    sizes = list(sizes)
    at, turn = 0, 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        pieces.append(data[at : at + size])
        if turn % 3 == 1:
            pieces.append(b"")
        at, turn = at + size, turn + 1
    return pieces


def spool_path(store: ResumeStore, session: ResumeSession) -> Path:
    return store.spool_dir / session.spool


def spool_records(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every whole record in a spool file."""
    raw, at, records = path.read_bytes(), 0, []
    while at + RECORD_HEADER.size <= len(raw):
        offset, length = RECORD_HEADER.unpack_from(raw, at)
        records.append((offset, length))
        at += RECORD_OVERHEAD + length
    return records


async def plaintext(store: ResumeStore, session: ResumeSession) -> bytes:
    return b"".join([piece async for piece in store.plaintext(session)])


def current(store: ResumeStore, owner: str = OWNER, name: str = "obj") -> ResumeSession:
    session = store.session(owner, name)
    assert session is not None
    return session


def open_session(
    store: ResumeStore, total: int, *, owner: str = OWNER, name: str = "obj"
) -> ResumeSession:
    return store.open(owner, name, total, TERRITORY, None, False)


async def append(
    store: ResumeStore, session: ResumeSession, start: int, data: bytes, sizes: Iterable[int]
) -> ResumeSession:
    return await store.append(session, start, body_of(split(data, sizes)), len(data))


def wait_for_clock_to_move() -> None:
    """Lets ``time.time()`` pass the previous reading, so two updated_at values differ."""
    before = time.time()
    while time.time() <= before:
        time.sleep(0.001)


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "resume"


@pytest.fixture
def store(directory: Path, master_key: bytes) -> Iterator[ResumeStore]:
    resume = ResumeStore(directory, master_key, ttl=TTL, spool_floor=0)
    yield resume
    resume.close()


# -- parse_content_range ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 0-0/1", (0, 0, 1)),
        ("bytes 0-99/100", (0, 99, 100)),
        ("bytes 5-9/1000", (5, 9, 1000)),
        ("bytes 999-999/1000", (999, 999, 1000)),
        ("bytes 1048576-2097151/5000000", (1048576, 2097151, 5000000)),
        ("bytes */1", (None, None, 1)),
        ("bytes */42", (None, None, 42)),
    ],
)
def test_parse_content_range_valid(
    header: str, expected: tuple[int | None, int | None, int]
) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes ",
        "bytes 0-1",
        "bytes 0-1/",
        "bytes /5",
        "bytes 0-1/0",
        "bytes */0",
        "bytes */-1",
        "bytes */",
        "bytes */*",
        "bytes 0-1/*",
        "bytes 1-0/5",
        "bytes 0-5/5",
        "bytes 3-7/5",
        "bytes -1-2/5",
        "bytes 0-/5",
        "bytes -3/5",
        "bytes 3/5",
        "bytes a-b/5",
        "bytes 0-1-2/5",
        "bytes 0--1/5",
        "bytes 0-1/5/6",
        "bytes 1.5-2/5",
        "bytes 0x1-2/5",
        "bytes +0-2/5",
        "bytes 0-2/+5",
        "bytes *-2/5",
        "bytes=0-1/5",
        "Bytes 0-1/5",
        "bits 0-1/5",
        "0-1/5",
        " bytes 0-1/5",
    ],
)
def test_parse_content_range_malformed(header: str | None) -> None:
    with pytest.raises(ResumeError) as caught:
        parse_content_range(header)
    assert (caught.value.status, caught.value.code) == (400, "InvalidContentRange")


@pytest.mark.parametrize(
    "header",
    [
        "bytes */²",
        "bytes ²-3/5",
        "bytes 0-³/5",
        "bytes 0-1/5²",
        "bytes */" + "9" * 5000,
        "bytes 0-1/١٢",  # Arabic-Indic digits: isdigit() says yes, HTTP says no
    ],
)
def test_parse_content_range_digits_int_refuses(header: str) -> None:
    with pytest.raises(ResumeError) as caught:
        parse_content_range(header)
    assert (caught.value.status, caught.value.code) == (400, "InvalidContentRange")


def check_parse(header: str) -> None:
    """Either a consistent triple or ``400 InvalidContentRange``; never another exception."""
    parsed: tuple[int | None, int | None, int] | ResumeError
    try:
        parsed = parse_content_range(header)
    except ResumeError as exc:
        parsed = exc
    if isinstance(parsed, ResumeError):
        assert (parsed.status, parsed.code) == (400, "InvalidContentRange")
        return
    start, end, total = parsed
    assert total >= 1
    if start is None or end is None:
        assert start is None and end is None
    else:
        assert 0 <= start <= end < total


RANGE_ALPHABET = "0123456789-*/ +.xbytes\t"


@given(st.text())
def test_parse_content_range_arbitrary_text(header: str) -> None:
    check_parse(header)


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_parse_content_range_arbitrary_ascii_after_prefix(rest: str) -> None:
    check_parse("bytes " + rest)


@given(
    st.text(alphabet=RANGE_ALPHABET, max_size=12),
    st.text(alphabet=RANGE_ALPHABET, max_size=12),
    st.text(alphabet=RANGE_ALPHABET, max_size=12),
)
def test_parse_content_range_near_misses(first: str, last: str, total: str) -> None:
    check_parse(f"bytes {first}-{last}/{total}")
    check_parse(f"bytes {first}/{total}")


@given(st.integers(min_value=1, max_value=2**64), st.data())
def test_parse_content_range_well_formed(total: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=total - 1))
    end = data.draw(st.integers(min_value=start, max_value=total - 1))
    assert parse_content_range(f"bytes {start}-{end}/{total}") == (start, end, total)
    assert parse_content_range(f"bytes */{total}") == (None, None, total)
    with pytest.raises(ResumeError):
        parse_content_range(f"bytes {start}-{end}/{end}")  # end == total


# -- open, append, plaintext --------------------------------------------------------------


async def test_round_trip_several_chunks(store: ResumeStore) -> None:
    data = payload_of(12_000)
    session = open_session(store, len(data))
    assert (session.stored, session.total, session.complete) == (0, len(data), False)
    assert spool_path(store, session).exists()
    bounds = [0, 1, 1000, 5096, 5097, 9000, 12_000]
    piece_sizes = [[1], [7, 300, 64], [4096], [1], [333, 1, 2000], [5000]]
    spans = list(itertools.pairwise(bounds))
    for (start, end), sizes in zip(spans, piece_sizes, strict=True):
        session = await append(store, session, start, data[start:end], sizes)
        assert session.stored == end
        assert current(store).stored == end
        assert await plaintext(store, session) == data[:end]
    assert session.stored == session.total
    assert await plaintext(store, session) == data


async def test_plaintext_of_fresh_session_is_empty(store: ResumeStore) -> None:
    session = open_session(store, 10)
    assert await plaintext(store, session) == b""


async def test_session_keeps_what_open_was_given(store: ResumeStore) -> None:
    session = store.open(OWNER, "obj", 77, "photos", 3, True)
    assert (session.owner, session.name, session.total, session.territory) == (
        OWNER,
        "obj",
        77,
        "photos",
    )
    assert (session.copies, session.create_only, session.fid) == (3, True, None)
    assert current(store) == session
    assert store.session(OWNER, "other") is None
    assert store.session(OTHER_OWNER, "obj") is None


async def test_reopen_replaces_the_session_and_its_spool(store: ResumeStore) -> None:
    data = payload_of(100)
    first = open_session(store, 100)
    await append(store, first, 0, data[:40], [40])
    second = open_session(store, 200)
    assert (second.stored, second.total) == (0, 200)
    assert second.spool != first.spool
    assert not spool_path(store, first).exists()
    assert await plaintext(store, second) == b""


async def test_chunk_gap_keeps_nothing(store: ResumeStore) -> None:
    data = payload_of(300)
    session = await append(store, open_session(store, 300), 0, data[:100], [50])
    spool_before = spool_path(store, session).read_bytes()
    with pytest.raises(ResumeError) as caught:
        await append(store, session, 101, data[101:200], [99])
    assert (caught.value.status, caught.value.code) == (409, "ChunkGap")
    assert current(store).stored == 100
    assert spool_path(store, session).read_bytes() == spool_before
    assert await plaintext(store, current(store)) == data[:100]


async def test_chunk_gap_on_an_empty_session(store: ResumeStore) -> None:
    session = open_session(store, 300)
    with pytest.raises(ResumeError) as caught:
        await append(store, session, 1, payload_of(10), [10])
    assert (caught.value.status, caught.value.code) == (409, "ChunkGap")
    assert current(store).stored == 0
    assert spool_path(store, session).read_bytes() == b""


@pytest.mark.parametrize(
    ("differs_at", "sizes"),
    [
        (50, [30, 70]),  # the first overlapping byte
        (75, [10, 10, 10, 70]),  # in a later piece of the overlap
        (99, [30, 70]),  # the last stored byte, in the piece that also brings new bytes
        (99, [100]),  # one piece holding the whole chunk
    ],
)
async def test_chunk_mismatch_keeps_nothing(
    store: ResumeStore, differs_at: int, sizes: list[int]
) -> None:
    data = payload_of(300)
    session = await append(store, open_session(store, 300), 0, data[:100], [100])
    spool_before = spool_path(store, session).read_bytes()
    chunk = bytearray(data[50:150])
    chunk[differs_at - 50] ^= 0xFF
    with pytest.raises(ResumeError) as caught:
        await append(store, session, 50, bytes(chunk), sizes)
    assert (caught.value.status, caught.value.code) == (409, "ChunkMismatch")
    after = current(store)
    assert after.stored == 100
    assert spool_path(store, session).read_bytes() == spool_before
    assert await plaintext(store, after) == data[:100]
    # The session is still usable: the right bytes go on.
    after = await append(store, after, 100, data[100:300], [64])
    assert await plaintext(store, after) == data


async def test_matching_overlap_appends_only_new_bytes(store: ResumeStore) -> None:
    data = payload_of(300)
    session = await append(store, open_session(store, 300), 0, data[:100], [60])
    path = spool_path(store, session)
    records_before, size_before = spool_records(path), path.stat().st_size
    # The overlap 50..99 spans three pieces; the last of them also brings 100..129.
    pieces = [data[50:70], data[70:90], data[90:130], data[130:150]]
    session = await store.append(session, 50, body_of(pieces), 100)
    assert session.stored == 150
    records = spool_records(path)
    assert records[: len(records_before)] == records_before
    assert records[len(records_before) :] == [(100, 30), (130, 20)]
    assert path.stat().st_size == size_before + 2 * RECORD_OVERHEAD + 50
    assert await plaintext(store, session) == data[:150]


async def test_chunk_wholly_below_stored_changes_nothing(store: ResumeStore) -> None:
    data = payload_of(300)
    session = await append(store, open_session(store, 300), 0, data[:100], [33])
    spool_before = spool_path(store, session).read_bytes()
    again = await append(store, session, 10, data[10:60], [7])
    assert again.stored == 100
    again = await append(store, again, 0, data[:100], [100])  # the very same chunk, retried
    assert again.stored == 100
    assert spool_path(store, session).read_bytes() == spool_before
    assert await plaintext(store, again) == data[:100]


async def test_chunk_wholly_below_stored_that_differs_is_refused(store: ResumeStore) -> None:
    data = payload_of(300)
    session = await append(store, open_session(store, 300), 0, data[:100], [100])
    spool_before = spool_path(store, session).read_bytes()
    with pytest.raises(ResumeError) as caught:
        await append(store, session, 10, payload_of(50, seed=1), [50])
    assert (caught.value.status, caught.value.code) == (409, "ChunkMismatch")
    assert current(store).stored == 100
    assert spool_path(store, session).read_bytes() == spool_before


@given(
    st.integers(min_value=1, max_value=2000),
    st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(1, 700)), min_size=0, max_size=6
    ),
)
def test_any_sequence_of_valid_chunks_reads_back(
    total: int, chunks: list[tuple[float, float, int]]
) -> None:
    """Chunks start anywhere in [0, stored] and end anywhere after; whatever the order,
    overlap and cut into pieces, the spool reads back as the object's prefix."""
    data = payload_of(total, seed=total)

    async def scenario(directory: Path) -> None:
        store = ResumeStore(directory, os.urandom(32), ttl=TTL, spool_floor=0)
        try:
            session = open_session(store, total)
            for start_at, end_at, piece in chunks:
                start = int(start_at * min(session.stored, total - 1))
                end = start + 1 + int(end_at * (total - start - 1))
                expected = max(session.stored, end)
                session = await append(store, session, start, data[start:end], [piece])
                assert session.stored == expected
                assert await plaintext(store, session) == data[:expected]
            session = await append(store, session, session.stored, data[session.stored :], [97])
            assert session.stored == total
            assert await plaintext(store, session) == data
        finally:
            store.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(Path(directory)))


# -- bodies that break off, fall short or run over -----------------------------------------


async def test_body_breaking_off_keeps_what_arrived(store: ResumeStore) -> None:
    data = payload_of(1000)
    session = open_session(store, 1000)
    with pytest.raises(ConnectionResetError):
        await store.append(session, 0, body_breaking_off([data[:100], data[100:150]]), 1000)
    after = current(store)
    assert after.stored == 150
    assert await plaintext(store, after) == data[:150]
    after = await append(store, after, 150, data[150:], [256])
    assert after.stored == 1000
    assert await plaintext(store, after) == data


async def test_body_breaking_off_later_in_the_upload(store: ResumeStore) -> None:
    data = payload_of(1000)
    session = await append(store, open_session(store, 1000), 0, data[:300], [300])
    # A retry overlapping 200..299 that then brings 300..449 and breaks off.
    pieces = [data[200:320], data[320:450]]
    with pytest.raises(ConnectionResetError):
        await store.append(session, 200, body_breaking_off(pieces), 800)
    after = current(store)
    assert after.stored == 450
    assert await plaintext(store, after) == data[:450]


async def test_body_breaking_off_within_the_overlap_keeps_the_prefix(store: ResumeStore) -> None:
    data = payload_of(1000)
    session = await append(store, open_session(store, 1000), 0, data[:300], [300])
    spool_before = spool_path(store, session).read_bytes()
    with pytest.raises(ConnectionResetError):
        await store.append(session, 100, body_breaking_off([data[100:200]]), 900)
    assert current(store).stored == 300
    assert spool_path(store, session).read_bytes() == spool_before


async def test_body_breaking_off_is_durable_across_a_restart(
    store: ResumeStore, directory: Path, master_key: bytes
) -> None:
    data = payload_of(1000)
    session = open_session(store, 1000)
    with pytest.raises(ConnectionResetError):
        await store.append(session, 0, body_breaking_off(split(data[:420], [100])), 1000)
    store.close()
    restarted = ResumeStore(directory, master_key, ttl=TTL, spool_floor=0)
    try:
        after = current(restarted)
        assert after.stored == 420
        assert await plaintext(restarted, after) == data[:420]
        after = await append(restarted, after, 420, data[420:], [111])
        assert await plaintext(restarted, after) == data
    finally:
        restarted.close()


async def test_body_shorter_than_its_length(store: ResumeStore) -> None:
    data = payload_of(500)
    session = open_session(store, 500)
    with pytest.raises(ResumeError) as caught:
        await store.append(session, 0, body_of([data[:40], data[40:60]]), 100)
    assert (caught.value.status, caught.value.code) == (400, "IncompleteBody")
    after = current(store)
    assert after.stored == 60
    assert await plaintext(store, after) == data[:60]
    after = await append(store, after, 60, data[60:], [200])
    assert await plaintext(store, after) == data


async def test_empty_body(store: ResumeStore) -> None:
    session = open_session(store, 500)
    with pytest.raises(ResumeError) as caught:
        await store.append(session, 0, body_of([]), 100)
    assert (caught.value.status, caught.value.code) == (400, "IncompleteBody")
    assert current(store).stored == 0


@pytest.mark.parametrize("sizes", [[60, 60], [120], [100, 1], [10, 90, 5]])
async def test_body_longer_than_its_length(store: ResumeStore, sizes: list[int]) -> None:
    data = payload_of(500)
    session = open_session(store, 500)
    with pytest.raises(ResumeError) as caught:
        await store.append(session, 0, body_of(split(data[: sum(sizes)], sizes)), 100)
    assert (caught.value.status, caught.value.code) == (400, "IncompleteBody")
    after = current(store)
    assert after.stored <= 100  # never beyond the chunk's own range
    assert await plaintext(store, after) == data[: after.stored]
    after = await append(store, after, after.stored, data[after.stored :], [128])
    assert await plaintext(store, after) == data


# -- crashes and restarts -----------------------------------------------------------------


def torn_record(stored: int) -> bytes:
    """What a crash part way through writing the record for ``stored..`` leaves behind."""
    return RECORD_HEADER.pack(stored, 4096) + os.urandom(NONCE) + os.urandom(100)


TORN_TAILS: dict[str, Callable[[int], bytes]] = {
    "part-of-a-header": lambda stored: RECORD_HEADER.pack(stored, 600)[:5],
    "header-then-part-of-a-nonce": lambda stored: (
        RECORD_HEADER.pack(stored, 600) + os.urandom(NONCE // 2)
    ),
    "part-of-the-sealed-bytes": torn_record,
    "random-bytes": lambda stored: os.urandom(200),
}


@pytest.mark.parametrize("tail", list(TORN_TAILS))
async def test_torn_spool_after_a_crash(
    store: ResumeStore, directory: Path, master_key: bytes, tail: str
) -> None:
    data = payload_of(900)
    session = await append(store, open_session(store, 900), 0, data[:300], [100])
    with spool_path(store, session).open("ab") as handle:
        handle.write(TORN_TAILS[tail](300))
    store.close()

    restarted = ResumeStore(directory, master_key, ttl=TTL, spool_floor=0)
    try:
        after = current(restarted)
        assert after.stored == 300
        assert await plaintext(restarted, after) == data[:300]
        after = await append(restarted, after, 300, data[300:600], [70])
        assert after.stored == 600
        assert await plaintext(restarted, after) == data[:600]
        after = await append(restarted, after, 250, data[250:900], [650])
        assert await plaintext(restarted, after) == data
    finally:
        restarted.close()


@pytest.mark.parametrize("zeros", [20, 64, 4096])
async def test_torn_spool_with_a_zero_filled_tail(
    store: ResumeStore, directory: Path, master_key: bytes, zeros: int
) -> None:
    # Some file systems, after a power cut, show an extended file's unwritten tail as zeros.
    data = payload_of(900)
    session = await append(store, open_session(store, 900), 0, data[:300], [100])
    with spool_path(store, session).open("ab") as handle:
        handle.write(bytes(zeros))
    store.close()

    restarted = ResumeStore(directory, master_key, ttl=TTL, spool_floor=0)
    try:
        after = current(restarted)
        assert await plaintext(restarted, after) == data[:300]
        after = await append(restarted, after, 300, data[300:], [600])
        assert await plaintext(restarted, after) == data
    finally:
        restarted.close()


async def test_restart_sees_sessions_and_their_bytes(
    store: ResumeStore, directory: Path, master_key: bytes
) -> None:
    data, other = payload_of(1000), payload_of(50, seed=3)
    mine = await append(store, open_session(store, 1000), 0, data[:700], [123])
    theirs = store.open(OTHER_OWNER, "x", 50, "photos", 2, True)
    theirs = await append(store, theirs, 0, other[:10], [10])
    store.close()

    restarted = ResumeStore(directory, master_key, ttl=TTL, spool_floor=0)
    try:
        assert current(restarted) == mine
        assert current(restarted, OTHER_OWNER, "x") == theirs
        assert restarted.open_sessions() == 2
        assert await plaintext(restarted, mine) == data[:700]
        assert await plaintext(restarted, theirs) == other[:10]
        mine = await append(restarted, mine, 700, data[700:], [300])
        assert await plaintext(restarted, mine) == data
    finally:
        restarted.close()


async def test_no_plaintext_rests_on_disk(store: ResumeStore, directory: Path) -> None:
    marker = b"<<plaintext that must never be on disk>>"
    data = marker * 200
    session = await append(store, open_session(store, len(data)), 0, data[:5000], [1000])
    session = await append(store, session, 5000, data[5000:], [777])
    assert await plaintext(store, session) == data
    spool = spool_path(store, session).read_bytes()
    assert len(spool) > len(data)
    assert marker not in spool
    assert marker[:16] not in spool
    for path in directory.rglob("*"):
        if path.is_file():
            assert marker[:16] not in path.read_bytes(), path


async def test_spool_needs_the_master_key(store: ResumeStore, directory: Path) -> None:
    data = payload_of(100)
    session = await append(store, open_session(store, 100), 0, data[:50], [50])
    store.close()
    stranger = ResumeStore(directory, os.urandom(32), ttl=TTL, spool_floor=0)
    try:
        with pytest.raises(CryptoError):
            await plaintext(stranger, current(stranger))
    finally:
        stranger.close()
    assert session.stored == 50


# -- limits -------------------------------------------------------------------------------


async def test_open_sessions_per_account_are_limited(directory: Path, master_key: bytes) -> None:
    store = ResumeStore(directory, master_key, ttl=TTL, max_per_account=2, spool_floor=0)
    try:
        open_session(store, 10, name="a")
        open_session(store, 10, name="b")
        with pytest.raises(ResumeError) as caught:
            open_session(store, 10, name="c")
        assert (caught.value.status, caught.value.code) == (429, "TooManyRequests")
        assert store.session(OWNER, "c") is None
        # Reopening a name already open is no new session.
        assert open_session(store, 20, name="a").total == 20
        # Another account has its own allowance.
        open_session(store, 10, owner=OTHER_OWNER, name="c")
        open_session(store, 10, owner=OTHER_OWNER, name="d")
        # A complete session no longer counts.
        store.complete(current(store, OWNER, "b"), "fid-b")
        assert open_session(store, 10, name="c").stored == 0
    finally:
        store.close()


async def test_spool_needs_free_space(directory: Path, master_key: bytes) -> None:
    free = FreeSpace(1099)
    store = ResumeStore(directory, master_key, ttl=TTL, spool_floor=100, free_space=free)
    try:
        with pytest.raises(ResumeError) as caught:
            open_session(store, 1000)
        assert (caught.value.status, caught.value.code) == (507, "InsufficientGatewaySpace")
        assert store.session(OWNER, "obj") is None
        assert free.asked == [store.spool_dir]
        free.free = 1100
        session = open_session(store, 1000)
        assert session.total == 1000
    finally:
        store.close()


async def test_refused_reopen_keeps_the_open_session(directory: Path, master_key: bytes) -> None:
    free = FreeSpace(10_000)
    store = ResumeStore(directory, master_key, ttl=TTL, spool_floor=0, free_space=free)
    try:
        data = payload_of(100)
        session = await append(store, open_session(store, 100), 0, data[:40], [40])
        free.free = 500
        with pytest.raises(ResumeError) as caught:
            open_session(store, 1000)
        assert caught.value.status == 507
        assert current(store) == session
        assert await plaintext(store, session) == data[:40]
    finally:
        store.close()


# -- sweep, completion, busy sessions -----------------------------------------------------


async def test_sweep_ends_idle_sessions_only(store: ResumeStore) -> None:
    data = payload_of(100)
    idle = open_session(store, 100, name="idle")
    busy = open_session(store, 100, name="busy")
    wait_for_clock_to_move()
    busy = await append(store, busy, 0, data[:10], [10])  # a chunk refreshes updated_at
    assert busy.updated_at > idle.updated_at
    assert store.sweep(time.time()) == 0

    now = (idle.updated_at + busy.updated_at) / 2 + TTL
    assert store.sweep(now) == 1
    assert store.session(OWNER, "idle") is None
    assert not spool_path(store, idle).exists()
    assert current(store, OWNER, "busy") == busy
    assert spool_path(store, busy).exists()
    assert await plaintext(store, busy) == data[:10]

    assert store.sweep(busy.updated_at + TTL + 1) == 1
    assert store.session(OWNER, "busy") is None
    assert not spool_path(store, busy).exists()
    assert store.open_sessions() == 0


async def test_complete_sessions_are_forgotten_after_ttl(store: ResumeStore) -> None:
    data = payload_of(64)
    session = await append(store, open_session(store, 64), 0, data, [64])
    store.complete(session, "fid-1")
    done = current(store)
    assert (done.complete, done.fid, done.stored) == (True, "fid-1", 64)
    assert not spool_path(store, session).exists()
    assert store.open_sessions() == 0
    assert store.sweep(done.updated_at + TTL - 1) == 0
    assert current(store).complete
    assert store.sweep(done.updated_at + TTL + 1) == 1
    assert store.session(OWNER, "obj") is None


async def test_complete_marks_stored_as_total(store: ResumeStore) -> None:
    session = open_session(store, 64)
    store.complete(session, "fid-2")
    assert current(store).stored == 64


def test_abort_removes_session_and_spool(store: ResumeStore) -> None:
    session = open_session(store, 64)
    store.abort(session)
    assert store.session(OWNER, "obj") is None
    assert not spool_path(store, session).exists()


def test_acquire_one_chunk_at_a_time(store: ResumeStore) -> None:
    store.acquire(OWNER, "obj")
    with pytest.raises(ResumeError) as caught:
        store.acquire(OWNER, "obj")
    assert (caught.value.status, caught.value.code) == (409, "SessionBusy")
    store.acquire(OWNER, "other")
    store.acquire(OTHER_OWNER, "obj")
    store.release(OWNER, "obj")
    store.acquire(OWNER, "obj")
    with pytest.raises(ResumeError):
        store.acquire(OTHER_OWNER, "obj")
    store.release(OWNER, "never-acquired")  # harmless


def test_open_sessions_counts_incomplete_only(store: ResumeStore) -> None:
    assert store.open_sessions() == 0
    first = open_session(store, 10, name="a")
    open_session(store, 10, name="b")
    open_session(store, 10, owner=OTHER_OWNER, name="a")
    assert store.open_sessions() == 3
    store.complete(first, "fid-a")
    assert store.open_sessions() == 2
    store.abort(current(store, OWNER, "b"))
    assert store.open_sessions() == 1


async def test_an_overlap_sent_a_byte_at_a_time_decrypts_each_record_once(
    store: ResumeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security review #6: every piece of an overlapping retry decrypted the whole spool,
    so 200 one-byte pieces against a 16 MiB spool cost 4 s of gateway CPU."""
    data = payload_of(64 * 100)
    session = await append(store, open_session(store, len(data)), 0, data, [100])
    assert len(spool_records(spool_path(store, session))) == 64
    from nacl import bindings

    decrypt = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt
    calls: list[int] = []

    def counted(*args: bytes) -> bytes:
        if len(args[1]) == RECORD_HEADER.size:  # a record's, not the session key's
            calls.append(RECORD_HEADER.unpack(args[1])[0])
        result: bytes = decrypt(*args)
        return result

    # resume_store calls through the module, so the patch reaches it.
    monkeypatch.setattr(bindings, "crypto_aead_xchacha20poly1305_ietf_decrypt", counted)
    # The last 2000 bytes again, one byte per piece: they span 20 records.
    tail = len(data) - 2000
    again = await store.append(session, tail, body_of(split(data[tail:], [1])), 2000)
    assert again.stored == len(data)
    # Each record under the overlap once; the 44 before it never.
    assert calls == list(range(tail, len(data), 100))


async def test_a_chunk_under_a_signed_digest_counts_only_whole_and_matching(
    store: ResumeStore,
) -> None:
    import hashlib

    data = payload_of(300)
    session = await append(store, open_session(store, 300), 0, data[:100], [40])
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ResumeError) as caught:
        await store.append(session, 100, body_of([data[100:200]]), 100, sha256=wrong)
    assert caught.value.code == "BadDigest"
    assert current(store).stored == 100
    with pytest.raises(ResumeError):  # cut short: nothing under a digest counts
        await store.append(
            current(store),
            100,
            body_of([data[100:150]]),
            100,
            sha256=hashlib.sha256(data[100:200]).hexdigest(),
        )
    assert current(store).stored == 100
    right = hashlib.sha256(data[100:200]).hexdigest()
    session = await store.append(current(store), 100, body_of([data[100:200]]), 100, sha256=right)
    assert session.stored == 200
    assert await plaintext(store, session) == data[:200]
