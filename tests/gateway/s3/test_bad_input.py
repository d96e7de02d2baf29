"""Bad input to the S3 API is a 4xx, never a 500 (issue 12 item 5; security review #8 to #11),
through the in-process grid. Requests are signed here, with the gateway's own key
derivation, and sent as raw bytes: botocore cannot sign, nor aiohttp send, header values
that are not UTF-8, which is what several of these are."""

import asyncio
import gzip
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import pytest_asyncio

from gateway.s3.sigv4 import derive_signing_key
from tests.grid import Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")
NOT_UTF8 = "\udcff\udcfe"  # bytes ff fe, as aiohttp hands them to the handler
BODY = b"hello world"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str:
        found = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return found[1].decode() if found else ""


@dataclass(frozen=True)
class Caller:
    """An S3 client of the dev user that signs (SigV4, header) whatever it is given."""

    grid: Grid
    access_key: str
    secret: str

    async def send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        payload: str = "UNSIGNED-PAYLOAD",
    ) -> Answer:
        host = f"{self.grid.s3.host}:{self.grid.s3.port}"
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        sent = {
            **(headers or {}),
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
        }
        lower = {name.lower(): value for name, value in sent.items()}
        signed = sorted(lower)
        raw_path = quote(path, safe="/-_.~")
        pairs = sorted(
            (quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in (query or {}).items()
        )
        raw_query = "&".join(f"{k}={v}" for k, v in pairs)
        canonical = "\n".join(
            [
                method,
                raw_path,
                raw_query,
                "".join(f"{name}:{' '.join(lower[name].split())}\n" for name in signed),
                ";".join(signed),
                payload,
            ]
        )
        scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
        key = derive_signing_key(self.secret, amz_date[:8], "us-east-1")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        sent["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={signature}"
        )
        target = raw_path + (f"?{raw_query}" if raw_query else "")
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in sent.items()
        )
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        reader, writer = await asyncio.open_connection(self.grid.s3.host, self.grid.s3.port)
        try:
            writer.write(head.encode("utf-8", "surrogateescape") + body)
            answer = await reader.read()
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        header_block, _, content = rest.partition(b"\r\n\r\n")
        fields = dict(line.decode().split(": ", 1) for line in header_block.split(b"\r\n"))
        return Answer(int(status_line.split()[1]), fields, content)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("s3bad")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def s3(grid: Grid) -> Caller:
    caller = Caller(grid, *await grid.s3_keys())
    assert (await caller.send("PUT", "/secbkt")).status == 200
    assert (await caller.send("PUT", "/secbkt/a.txt", body=BODY)).status == 200
    return caller


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upload(s3: Caller) -> str:
    answer = await s3.send("POST", "/secbkt/mp", {"uploads": ""})
    found = re.search(rb"<UploadId>([^<]+)</UploadId>", answer.body)
    assert answer.status == 200 and found, answer
    return found[1].decode()


def fragments_on(grid: Grid) -> set[str]:
    """The fragment ids the miners hold: a refused upload adds none. Ids, not counts or
    places: the gateway moves and copies fragments, and sweeps those of earlier tests'
    replaced objects, in the background."""
    return {fragment.id for miner in grid.miners for fragment in miner.store.fragments()}


# -- review #8: integers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"max-keys": "²"}, "InvalidArgument"),
        ({"max-keys": "4" * 4500}, "InvalidArgument"),
        ({"max-keys": "1_000"}, "InvalidArgument"),
        ({"list-type": "2", "max-keys": "²"}, "InvalidArgument"),
        ({"versions": "", "max-keys": "²"}, "InvalidArgument"),
        ({"uploads": "", "max-uploads": "²"}, "InvalidArgument"),
    ],
)
async def test_listing_counts_are_ascii_digits(
    s3: Caller, query: dict[str, str], code: str
) -> None:
    answer = await s3.send("GET", "/secbkt", query)
    assert (answer.status, answer.code) == (400, code)


async def test_a_count_with_leading_zeros_is_its_value(s3: Caller) -> None:
    # Cut to its first nine digits, this one used to read as 0 (an empty page).
    answer = await s3.send("GET", "/secbkt", {"list-type": "2", "max-keys": "0000000001"})
    assert answer.status == 200 and b"<Key>a.txt</Key>" in answer.body


@pytest.mark.parametrize("number", ["²", "5" * 4500, "0000010", "-1", "+1", " 1"])
async def test_get_part_number_is_checked_whole(s3: Caller, number: str) -> None:
    # "0000010": its first six digits are 1 and passed, then part 10 of 1 was an IndexError.
    answer = await s3.send("GET", "/secbkt/a.txt", {"partNumber": number})
    assert (answer.status, answer.code) == (416, "InvalidPartNumber")


@pytest.mark.parametrize("number", ["²", "5" * 5000, "0000010001", "0"])
async def test_upload_part_number_is_checked_whole(s3: Caller, upload: str, number: str) -> None:
    # "0000010001" used to pass on its first six digits and store part 10001 of 10000.
    answer = await s3.send(
        "PUT", "/secbkt/mp", {"partNumber": number, "uploadId": upload}, body=b"x"
    )
    assert (answer.status, answer.code) == (400, "InvalidArgument")


@pytest.mark.parametrize(
    "query", [{"max-parts": "²"}, {"part-number-marker": "²"}, {"part-number-marker": "7" * 5000}]
)
async def test_list_parts_numbers(s3: Caller, upload: str, query: dict[str, str]) -> None:
    answer = await s3.send("GET", "/secbkt/mp", {"uploadId": upload, **query})
    assert (answer.status, answer.code) == (400, "InvalidArgument")


@pytest.mark.parametrize("number", ["²", "5" * 5000, "1_0"])
async def test_complete_part_numbers(s3: Caller, upload: str, number: str) -> None:
    body = (
        "<CompleteMultipartUpload><Part><PartNumber>"
        f"{number}</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    answer = await s3.send("POST", "/secbkt/mp", {"uploadId": upload}, body=body)
    assert (answer.status, answer.code) == (400, "MalformedXML")


@pytest.mark.parametrize("length", ["²", "1" * 5000])
async def test_decoded_content_length(s3: Caller, length: str) -> None:
    before = fragments_on(s3.grid)
    answer = await s3.send(
        "PUT",
        "/secbkt/chunked",
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": length},
        body=b"0\r\n\r\n",
        payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    assert (answer.status, answer.code) == (411, "MissingContentLength")
    assert fragments_on(s3.grid) <= before  # none added (old objects' may be swept)


async def test_a_range_past_any_size_reads_to_the_end(s3: Caller) -> None:
    answer = await s3.send("GET", "/secbkt/a.txt", headers={"Range": "bytes=6-" + "9" * 5000})
    assert (answer.status, answer.body) == (206, BODY[6:])
    answer = await s3.send("GET", "/secbkt/a.txt", headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert (answer.status, answer.code) == (416, "InvalidRange")


# -- review #9: aws-chunked without a streaming payload ---------------------------------


@pytest.mark.parametrize("payload", ["UNSIGNED-PAYLOAD", hashlib.sha256(BODY).hexdigest()])
async def test_aws_chunked_without_a_streaming_payload_is_a_plain_body(
    s3: Caller, payload: str
) -> None:
    """This was a 500 (``ValueError: not an aws-chunked payload``). As AWS does with a
    hex-hashed body, the body is stored as sent: the payload hash says it is not framed,
    and the signed hash (when given) is checked over exactly those bytes."""
    answer = await s3.send(
        "PUT",
        "/secbkt/framed",
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "11"},
        body=BODY,
        payload=payload,
    )
    assert answer.status == 200, answer
    got = await s3.send("GET", "/secbkt/framed")
    assert (got.status, got.body) == (200, BODY)


# -- review #10: header bytes that are not UTF-8 ----------------------------------------


@pytest.mark.parametrize(
    "header",
    ["Content-Type", "Content-Disposition", "Cache-Control", "x-amz-meta-note", "x-amz-tagging"],
)
async def test_put_object_refuses_header_bytes_before_placing_data(s3: Caller, header: str) -> None:
    before = fragments_on(s3.grid)
    answer = await s3.send(
        "PUT", "/secbkt/bad-header", headers={header: "text/" + NOT_UTF8}, body=BODY
    )
    assert (answer.status, answer.code) == (400, "InvalidArgument")
    assert fragments_on(s3.grid) <= before  # nothing placed on miners: no orphans
    assert (await s3.send("HEAD", "/secbkt/bad-header")).status == 404


@pytest.mark.parametrize("source", ["/secbkt/a" + NOT_UTF8, "/secbkt/a.txt?versionId=" + NOT_UTF8])
async def test_copy_source_bytes(s3: Caller, source: str) -> None:
    answer = await s3.send("PUT", "/secbkt/copy", headers={"x-amz-copy-source": source})
    assert (answer.status, answer.code) == (400, "InvalidArgument")
    assert (await s3.send("HEAD", "/secbkt/copy")).status == 404


async def test_replaced_metadata_on_copy_and_multipart_content_type(s3: Caller) -> None:
    answer = await s3.send(
        "PUT",
        "/secbkt/copy",
        headers={
            "x-amz-copy-source": "/secbkt/a.txt",
            "x-amz-metadata-directive": "REPLACE",
            "Content-Type": NOT_UTF8,
        },
    )
    assert (answer.status, answer.code) == (400, "InvalidArgument")
    answer = await s3.send("POST", "/secbkt/mp2", {"uploads": ""}, {"Content-Type": NOT_UTF8})
    assert (answer.status, answer.code) == (400, "InvalidArgument")


async def test_bucket_territory_and_sse_key_bytes(s3: Caller) -> None:
    answer = await s3.send("PUT", "/badterritory", headers={"x-deoss-territory": NOT_UTF8})
    assert (answer.status, answer.code) == (400, "InvalidArgument")
    sse = "x-amz-server-side-encryption-customer-"
    for key, md5 in ((NOT_UTF8, "x"), ("é" * 44, "x"), ("A" * 43 + "=", "é" * 24)):
        answer = await s3.send(
            "GET",
            "/secbkt/a.txt",
            headers={sse + "algorithm": "AES256", sse + "key": key, sse + "key-MD5": md5},
        )
        assert (answer.status, answer.code) == (400, "InvalidArgument"), key


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_an_access_key_that_is_not_utf8(s3: Caller, method: str) -> None:
    # Found by tests/fuzz: the id reached SQLite as a lone surrogate, a 500.
    stranger = Caller(s3.grid, "DO" + NOT_UTF8 + "A" * 16, s3.secret)
    answer = await stranger.send(method, "/secbkt")
    assert (answer.status, answer.code) == (403, "InvalidAccessKeyId")


# -- review #11: control characters in response-* overrides ----------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"response-content-disposition": "a\rb"},
        {"response-content-type": "text/plain\nX-Injected: 1"},
        {"response-cache-control": "no\x00store"},
        {"response-expires": "\x7f"},
    ],
)
async def test_response_overrides_with_control_characters(
    s3: Caller, query: dict[str, str]
) -> None:
    for method in ("GET", "HEAD"):
        answer = await s3.send(method, "/secbkt/a.txt", query)
        assert answer.status == 400 and "X-Injected" not in answer.headers
        if method == "GET":
            assert answer.code == "InvalidArgument"


async def test_response_overrides_that_are_text_are_answered(s3: Caller) -> None:
    disposition = 'attachment; filename="r\u00e9sum\u00e9\t.txt"'
    answer = await s3.send("GET", "/secbkt/a.txt", {"response-content-disposition": disposition})
    assert answer.status == 200 and answer.body == BODY
    assert answer.headers["Content-Disposition"] == disposition


# -- found by tests/fuzz: a body is stored as it was sent ------------------------------


@pytest.mark.parametrize("body", [gzip.compress(BODY), b"not gzip at all"])
async def test_a_gzip_content_encoding_is_stored_not_inflated(s3: Caller, body: bytes) -> None:
    # aiohttp inflated gzip bodies on the way in: the object held the decompressed bytes
    # under its gzip Content-Encoding, and a body that was not gzip was a 500.
    answer = await s3.send(
        "PUT",
        "/secbkt/gzipped",
        headers={"Content-Encoding": "gzip"},
        body=body,
        payload=hashlib.sha256(body).hexdigest(),
    )
    assert answer.status == 200, answer
    stored = await s3.send("GET", "/secbkt/gzipped")
    assert (stored.status, stored.body) == (200, body)
    assert stored.headers["Content-Encoding"] == "gzip"


async def test_an_xml_body_in_an_unknown_encoding_is_malformed(s3: Caller, upload: str) -> None:
    """The fuzzer's find: an XML declaration naming an encoding Python lacks was a 500."""
    body = b'<?xml version="1.0" encoding="TTF-8"?><CompleteMultipartUpload/>'
    answer = await s3.send("POST", "/secbkt/mp", {"uploadId": upload}, body=body)
    assert (answer.status, answer.code) == (400, "MalformedXML")
