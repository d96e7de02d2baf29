"""Listing bounds over every valid key (U+10FFFF, the code points beside the surrogates,
control characters): paging through ListObjects and ListObjectVersions with any prefix,
delimiter, page and max-keys gives exactly the model's keys, prefixes and versions, each
once, and every page moves on."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.index import MetadataIndex
from gateway.records import ENABLED, NameWrite, prefix_end
from gateway.s3.listing import Cursor, after_marker, all_versions, current_objects, scan
from tests.gateway.test_index import OWNER, upload

ALPHABET = ["a", "b", "/", "é", "\n", "\x01", "\ud7ff", "\ue000", "\U0010fffe", "\U0010ffff"]
KEYS = st.text(st.sampled_from(ALPHABET), min_size=1, max_size=4)
BASE = "b/"
FIXTURE = (
    HealthCheck.function_scoped_fixture
)  # the fixture is a directory; each example its own file


def utf8(text: str) -> bytes:
    return text.encode()


def model(keys: set[str], prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    """S3's answer over all pages: the keys, and the common prefixes, in byte order."""
    found, folded = [], set()
    for key in sorted(keys, key=utf8):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            folded.add(prefix + rest[: rest.index(delimiter) + len(delimiter)])
        else:
            found.append(key)
    return found, sorted(folded, key=utf8)


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("listing")


@given(st.text(st.sampled_from(ALPHABET), max_size=3))
def test_prefix_end_bounds_exactly_the_texts_with_the_prefix(prefix: str) -> None:
    end = prefix_end(prefix)
    for text in (prefix, prefix + "\U0010ffff", prefix + "\U0010ffff" * 3, prefix + "\x00"):
        assert end is None or utf8(text) < utf8(end)
    if end is not None:
        assert not end.startswith(prefix) and utf8(prefix) < utf8(end)
        end.encode()  # never a surrogate: UTF-8 holds it


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.sets(KEYS, max_size=14),
    prefix=st.text(st.sampled_from(ALPHABET), max_size=2),
    delimiter=st.sampled_from(["", "/", "\U0010ffff", "a", "\n"]),
    max_keys=st.integers(0, 4),
    page_size=st.integers(1, 4),
)
def test_objects_page_through_every_key_once(
    fresh: Path, keys: set[str], prefix: str, delimiter: str, max_keys: int, page_size: int
) -> None:
    index = MetadataIndex(fresh / f"{len(list(fresh.iterdir()))}.db")
    for number, key in enumerate(keys):
        upload(index, f"f{number}", BASE + key)
    fetch = current_objects(index, OWNER, BASE + prefix)
    got_keys: list[str] = []
    got_prefixes: list[str] = []
    marker = ""
    for _ in range(len(keys) + 2):
        start = after_marker(BASE, prefix, delimiter, marker)
        page = scan(fetch, BASE, prefix, delimiter, start, max_keys, page_size=page_size)
        got_keys += [r.name[len(BASE) :] for r in page.entries]
        got_prefixes += page.prefixes
        if max_keys == 0:
            assert not page.truncated and not page.entries and not page.prefixes
            break
        if not page.truncated:
            break
        assert utf8(page.last) > utf8(marker)  # the continuation always advances
        marker = page.last
    else:
        pytest.fail("the listing never ended")
    if max_keys:
        assert (got_keys, got_prefixes) == model(keys, prefix, delimiter)
    index.close()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(st.tuples(KEYS, st.booleans()), max_size=14),
    delimiter=st.sampled_from(["", "/", "\U0010ffff"]),
    max_keys=st.integers(1, 3),
    page_size=st.integers(1, 3),
)
def test_versions_page_through_every_version_once(
    fresh: Path, writes: list[tuple[str, bool]], delimiter: str, max_keys: int, page_size: int
) -> None:
    index = MetadataIndex(fresh / f"{len(list(fresh.iterdir()))}.db")
    index.create_bucket("b", OWNER, "home", ENABLED)
    history: dict[str, list[tuple[str, bool]]] = {}  # key: (version id, marker), oldest first
    for number, (key, delete) in enumerate(writes):
        if delete:
            outcome = index.delete_object(OWNER, BASE + key, "b")
            assert outcome.version_id is not None
            history.setdefault(key, []).append((outcome.version_id, True))
        else:
            written = upload(index, f"f{number}", BASE + key, write=NameWrite(bucket="b"))
            history.setdefault(key, []).append((written.version_id, False))
    wanted_versions = []
    folded = set()
    for key in sorted(history, key=utf8):
        if delimiter and delimiter in key:
            folded.add(key[: key.index(delimiter) + len(delimiter)])
        else:
            wanted_versions += [(key, vid, marker) for vid, marker in reversed(history[key])]
    fetch = all_versions(index, OWNER, BASE)
    got_versions: list[tuple[str, str, bool]] = []
    got_prefixes: list[str] = []
    start = Cursor()
    for _ in range(len(writes) + 2):
        page = scan(fetch, BASE, "", delimiter, start, max_keys, versions=True, page_size=page_size)
        got_versions += [(r.name[len(BASE) :], r.version_id, r.marker) for r in page.entries]
        got_prefixes += page.prefixes
        if not page.truncated:
            break
        if page.last_entry is not None:  # NextKeyMarker and NextVersionIdMarker
            marked = index.version(OWNER, BASE + page.last, page.last_entry.version_id)
            assert marked is not None
            start = Cursor(BASE + page.last, older_than=marked.seq)
        else:
            start = after_marker(BASE, "", delimiter, page.last)
    else:
        pytest.fail("the listing never ended")
    assert got_versions == wanted_versions
    assert got_prefixes == sorted(folded, key=utf8)
    latest = {key: versions[-1][0] for key, versions in history.items()}
    for record in fetch(Cursor(), 1000):
        assert record.latest == (latest[record.name[len(BASE) :]] == record.version_id)
    index.close()
