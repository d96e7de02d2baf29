"""The S3 API under fuzz (issue 12 item 6): random and mutated requests, most of them
signed, against the grid's real gateway. No answer is a 5xx, no handler crashes, the
gateway still answers, and a refused request changes nothing stored."""

import hashlib
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import (
    EVERYTHING,
    Address,
    CrashWatch,
    State,
    Surface,
    Tally,
    fuzz_settings,
    needs_no_body,
    timeout_for,
)
from tests.fuzz.s3_requests import S3World, s3_requests
from tests.fuzz.s3_signing import Credentials, sign_headers
from tests.fuzz.stored import gateway_state
from tests.fuzz.strategies import percent_encoded
from tests.fuzz.wire import Answer, Request, exchange, served
from tests.grid import Grid

pytestmark = pytest.mark.asyncio(loop_scope="package")

BUDGET = 30.0  # seconds of examples; DEOSS_FUZZ_SCALE stretches it
# A body that failed once it had streamed to miners leaves orphan fragments, by design
# (docs/native-api.md §5): these refusals are only known at the body's end.
AFTER_THE_BODY = frozenset(
    {
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "IncompleteBody",
        "SignatureDoesNotMatch",
        "InvalidChunkSizeError",
        "MalformedTrailerError",
        "EntityTooLarge",
    }
)


async def _signed(
    grid: Grid,
    credentials: Credentials,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
) -> Answer:
    address = served(grid.s3)
    host = f"{address[0]}:{address[1]}"
    headers, _ = sign_headers(
        credentials, method, path, query, [("Host", host)], hashlib.sha256(body).hexdigest()
    )
    target = f"{path}?{query}" if query else path
    answer = await exchange(*address, Request(method, target, tuple(headers), body))
    assert answer is not None and answer.status < 300, (method, target, answer)
    return answer


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def world(grid: Grid) -> AsyncIterator[S3World]:
    """Two buckets (one versioned) holding a few objects, an unfinished multipart
    upload with a part, and their names, versions, ids and ETags."""
    credentials = Credentials(*await grid.s3_keys())
    keys = [
        ("fuzz-a", "a.txt"),
        ("fuzz-a", "dir/b c+d.txt"),
        ("fuzz-a", "é\U0010ffff"),
        ("fuzz-v", "v.txt"),
    ]
    await _signed(grid, credentials, "PUT", "/fuzz-a")
    await _signed(grid, credentials, "PUT", "/fuzz-v")
    versioning = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    await _signed(grid, credentials, "PUT", "/fuzz-v", "versioning=", versioning)
    etags, version_ids = [], []
    for bucket, key in [*keys, ("fuzz-v", "v.txt")]:
        path = f"/{bucket}/" + "/".join(percent_encoded(p) for p in key.split("/"))
        answer = await _signed(grid, credentials, "PUT", path, body=f"{bucket}/{key}".encode())
        etags.append((answer.header("ETag") or "").strip('"'))
        if version := answer.header("x-amz-version-id"):
            version_ids.append(version)
    created = await _signed(grid, credentials, "POST", "/fuzz-a/mp", "uploads=")
    found = re.search(rb"<UploadId>([^<]+)</UploadId>", created.body)
    assert found
    upload_id = found[1].decode()
    part = await _signed(
        grid, credentials, "PUT", "/fuzz-a/mp", f"partNumber=1&uploadId={upload_id}", b"p" * 100
    )
    etags.append((part.header("ETag") or "").strip('"'))
    yield S3World(
        host="{}:{}".format(*served(grid.s3)),
        credentials=credentials,
        buckets=("fuzz-a", "fuzz-v"),
        keys=(*keys, ("fuzz-a", "mp")),
        version_ids=tuple(version_ids),
        upload_ids=(upload_id,),
        etags=tuple(etags),
    )


def _acts_without_body(request: Request) -> bool:
    """A PUT or POST whose handler reads no body (CopyObject, UploadPartCopy,
    CreateMultipartUpload): unanswered, it may still have been carried out."""
    query = request.target.partition("?")[2]
    copy = any(name.lower() == "x-amz-copy-source" for name, _ in request.headers)
    return copy or (
        request.method == "POST" and any(p.partition("=")[0] == "uploads" for p in query.split("&"))
    )


@pytest.fixture(scope="module")
def surface(grid: Grid, tally: Tally, crash_watch: CrashWatch) -> Surface:
    async def snapshot() -> State:
        return gateway_state(grid)

    async def alive(address: Address) -> bool:
        # Nothing is public: an anonymous ListBuckets is refused, by a gateway that serves.
        answer = await exchange(*served(grid.s3), Request("GET", "/", (("Host", "x"),)))
        health = await grid.native.get("/health")
        return answer is not None and answer.status == 403 and health.status == 200

    def changeable(answer: Answer | None, request: Request) -> frozenset[str]:
        if needs_no_body(answer, request) or (answer is None and _acts_without_body(request)):
            return frozenset({EVERYTHING})
        broke_off = answer is None or answer.code in AFTER_THE_BODY
        return frozenset({"fragments"}) if broke_off else frozenset()

    return Surface(
        "s3",
        served(grid.s3),
        tally=tally.of("s3"),
        watch=crash_watch,
        snapshot=snapshot,
        alive=alive,
        budget=BUDGET,
        shrinking=frozenset({"fragments"}),
        changeable=changeable,
    )


@pytest.fixture(scope="module")
def requests(world: S3World) -> st.SearchStrategy[Request]:
    # Built once: a composite strategy costs a compile each time it is made.
    return s3_requests(world)


@pytest.mark.fuzz
@pytest.mark.timeout(timeout_for(BUDGET))
@fuzz_settings(max_examples=1500)
@given(data=st.data())
async def test_s3_requests(
    requests: st.SearchStrategy[Request], surface: Surface, data: st.DataObject
) -> None:
    request = data.draw(requests, label="request")
    if not surface.over_budget():  # drawn all the same: a shorter draw would be flaky
        await surface.send(request)
