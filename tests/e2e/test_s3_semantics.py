"""What S3 clients rely on beyond the happy path (issue 10), through boto3 and raw signed
HTTP against the shared network of real processes: a copy onto itself, retried and
re-sent multipart calls, conditional writes, listing edges, body framings, auth statuses,
part copies, bucket versioning with its chain accounting, tagging and ACLs."""

import asyncio
import concurrent.futures
import functools
import hashlib
import os
import socket
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from chain_client.account import ChainAccount
from chain_client.errors import ExtrinsicFailed
from chain_client.rpc_client import HttpChain
from gateway.records import reference_key
from tests.e2e.gateway_network import MIN_PART, USER, Network
from tests.e2e.test_s3_boto3 import client, client_with_territory, error_code
from tests.polling import eventually

pytestmark = pytest.mark.e2e
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture(scope="module")
def s3(gateway_network: Network, s3_keys: tuple[str, str]) -> BaseClient:
    return client(gateway_network, s3_keys)


def status(caught: pytest.ExceptionInfo[ClientError]) -> int:
    return int(caught.value.response["ResponseMetadata"]["HTTPStatusCode"])


def fresh_bucket(s3: BaseClient, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def territory_bucket(
    network: Network, keys: tuple[str, str], bucket: str, territory: str, units: int = 4
) -> str:
    """A bucket in a territory of its own, minted for it (a unit is 256 KiB here)."""

    async def mint() -> None:
        chain = HttpChain(network.chain.url)
        try:
            for _ in range(120):  # miners certify idle space in the background: wait for it
                try:
                    await ChainAccount(chain, USER).call(
                        "storage_handler.mint_territory", name=territory, gib=units, days=5
                    )
                    return
                except ExtrinsicFailed as exc:
                    if "InsufficientAvailableSpace" not in str(exc):
                        raise
                    await asyncio.sleep(1)
            raise AssertionError(f"the network never had {units} territory units to sell")
        finally:
            await chain.close()

    asyncio.run(mint())
    client_with_territory(client(network, keys), territory).create_bucket(Bucket=bucket)
    return bucket


class _Signer(S3SigV4Auth):  # type: ignore[misc]
    def __init__(self, credentials: Credentials, payload: str) -> None:
        super().__init__(credentials, "s3", "us-east-1")
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload


def raw(
    network: Network,
    keys: tuple[str, str],
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    chunks: list[bytes] | None = None,
    payload: str = "UNSIGNED-PAYLOAD",
) -> tuple[int, dict[str, str], bytes]:
    """A request signed as botocore signs it, sent with aiohttp: ``chunks`` go with
    ``Transfer-Encoding: chunked`` and no ``Content-Length``. Answer headers lower case."""
    url = network.s3_url + urllib.parse.quote(path)
    if query:
        url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    sent = {**(headers or {}), "X-Amz-Content-SHA256": payload}
    request = AWSRequest(method=method, url=url, headers=sent, data=b"")
    _Signer(Credentials(*keys), payload).add_auth(request)
    signed = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}

    async def pieces() -> AsyncIterator[bytes]:
        for piece in chunks or []:
            await asyncio.sleep(0.05)
            yield piece

    async def send() -> tuple[int, dict[str, str], bytes]:
        data: Any = pieces() if chunks is not None else body
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=signed, data=data) as response,
        ):
            headers = {name.lower(): value for name, value in response.headers.items()}
            return response.status, headers, await response.read()

    return asyncio.run(send())


# -- 1. a copy onto itself -----------------------------------------------------------------


def test_a_copy_onto_itself_replaces_metadata_and_keeps_the_object(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "self-copy")
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"same bytes", ContentType="a/b")
    s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
        Metadata={"colour": "blue"},
    )
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"colour": "blue"}
    assert head["ETag"] == put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"same bytes"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["k"]
    with pytest.raises(ClientError) as caught:  # COPY onto itself changes nothing: refused
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert error_code(caught) == "InvalidRequest"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)  # nothing hidden is left behind


# -- 2, 3. multipart retries and re-sent parts --------------------------------------------


def test_a_retried_completion_answers_the_same(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "retried-complete")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, b"a" * MIN_PART), (2, b"tail"))
    ]
    parts = {"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]}
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload, MultipartUpload=parts
    )
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload, MultipartUpload=parts
    )
    assert (again["ETag"], again["Location"]) == (first["ETag"], first["Location"])
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"a" * MIN_PART + b"tail"
    with pytest.raises(ClientError) as caught:  # a different list is not the same call
        s3.complete_multipart_upload(
            Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts["Parts"][:1]}
        )
    assert error_code(caught) == "NoSuchUpload"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=aborted)
    with pytest.raises(ClientError) as caught:  # a retried abort: the first one did it
        s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=aborted)
    assert error_code(caught) == "NoSuchUpload"


def test_a_part_sent_twice_counts_as_the_last_to_finish(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    bucket = fresh_bucket(s3, "resent-part")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    path, query = f"/{bucket}/k", {"partNumber": "1", "uploadId": upload}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The first upload (A) trickles in, chunked; the second (B) starts later and
        # finishes first.
        slow = pool.submit(
            raw, gateway_network, s3_keys, "PUT", path, query=query, chunks=[b"A" * 4] * 20
        )
        time.sleep(0.2)
        fast = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"B")
        code, headers, answer = slow.result()
    assert code == 200, answer
    listed = [
        {"PartNumber": 1, "ETag": fast["ETag"]},
        {"PartNumber": 1, "ETag": headers["etag"]},
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": listed}
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"A" * 80
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=2, Body=b"x")
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": part["ETag"]}, listed[0]]},
        )
    assert error_code(caught) == "InvalidPartOrder"  # descending is still refused


# -- 4. conditional writes -------------------------------------------------------------------


def test_conditional_writes(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "conditional")
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", IfMatch='"' + "0" * 32 + '"')
    assert (status(caught), error_code(caught)) == (404, "NoSuchKey")
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch='"' + "0" * 32 + '"')
    assert (status(caught), error_code(caught)) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"

    def complete(**conditions: str) -> None:
        upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
        part = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"mp")
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            **conditions,
        )

    for conditions in ({"IfNoneMatch": "*"}, {"IfMatch": first["ETag"]}):
        with pytest.raises(ClientError) as caught:
            complete(**conditions)
        assert (status(caught), error_code(caught)) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    complete(IfMatch=s3.head_object(Bucket=bucket, Key="k")["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"mp"


# -- 5. listings ----------------------------------------------------------------------------


def test_max_keys_zero_is_an_empty_untruncated_page(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "max-keys-zero")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.list_objects_v2(Bucket=bucket, MaxKeys=0)["IsTruncated"] is False
    assert s3.list_objects(Bucket=bucket, MaxKeys=0)["IsTruncated"] is False
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, MaxKeys=0)


def test_control_characters_come_back_as_stored(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    bucket = fresh_bucket(s3, "control-chars")
    for key in ("line\nbreak", "carriage\rreturn", "tab\there"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    for query in ({"list-type": "2", "prefix": "line\n"}, {"prefix": "line\n"}):
        code, _, body = raw(gateway_network, s3_keys, "GET", f"/{bucket}", query=query)
        assert code == 200, body
        root = ET.fromstring(body)
        assert root.findtext(f"{NS}Prefix") == "line\n"
        assert [k.text for k in root.iter(f"{NS}Key")] == ["line\nbreak"]
    code, _, body = raw(gateway_network, s3_keys, "GET", f"/{bucket}", query={"list-type": "2"})
    keys = [k.text for k in ET.fromstring(body).iter(f"{NS}Key")]
    assert keys == ["carriage\rreturn", "line\nbreak", "tab\there"]


def test_listing_bounds_hold_for_every_key(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "high-keys")
    keys = ["x\U0010ffff/a", "x\U0010ffff/b", "x\U0010ffff", "x\U0010ffffz", "\U0010ffff", "y"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["x\U0010ffff/"]
    seen, token = [], None
    for _ in range(len(keys) + 1):
        extra: dict[str, str] = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=1, **extra)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(keys, key=str.encode)
    prefixed = s3.list_objects_v2(Bucket=bucket, Prefix="x\U0010ffff")["Contents"]
    assert len(prefixed) == 4
    for key in keys[:-1]:
        s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(caught) == "BucketNotEmpty"  # "y" is still there
    s3.delete_object(Bucket=bucket, Key="y")
    s3.delete_bucket(Bucket=bucket)


def test_a_key_holding_u0000_is_refused(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    bucket = fresh_bucket(s3, "nul-keys")
    code, _, body = raw(gateway_network, s3_keys, "PUT", f"/{bucket}/a\x00b", body=b"x")
    assert code == 400 and b"<Code>InvalidArgument</Code>" in body
    s3.delete_bucket(Bucket=bucket)  # nothing was stored


# -- 6. body framings -----------------------------------------------------------------------


def test_chunked_and_aws_chunked_encoded_bodies_are_stored(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    bucket = fresh_bucket(s3, "framings")
    code, _, answer = raw(
        gateway_network, s3_keys, "PUT", f"/{bucket}/chunked", chunks=[b"abc", b"def" * 1000]
    )
    assert code == 200, answer
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"abc" + b"def" * 1000
    body = b"\x1f\x8b not really gzip"
    digest = hashlib.sha256(body).hexdigest()
    for payload in ("UNSIGNED-PAYLOAD", digest):
        code, _, answer = raw(
            gateway_network,
            s3_keys,
            "PUT",
            f"/{bucket}/gz",
            headers={"Content-Encoding": "gzip, aws-chunked"},
            body=body,
            payload=payload,
        )
        assert code == 200, answer
        head = s3.head_object(Bucket=bucket, Key="gz")
        assert head["ContentEncoding"] == "gzip" and head["ContentLength"] == len(body)
        code, _, answer = raw(
            gateway_network,
            s3_keys,
            "PUT",
            f"/{bucket}/chunked-signed",
            chunks=[body],
            payload=payload,
        )
        assert code == 200, answer
    assert s3.get_object(Bucket=bucket, Key="chunked-signed")["Body"].read() == body


# -- 7. auth statuses ----------------------------------------------------------------------


def test_presigned_urls_out_of_time_are_access_denied(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    bucket = fresh_bucket(s3, "presigned-statuses")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    v4 = client(gateway_network, s3_keys, signature_version="s3v4")
    url = v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )

    async def fetch(target: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session, session.get(target) as response:
            return response.status, await response.read()

    time.sleep(2.1)
    assert "X-Amz-Expires=1&" in url
    code, body = asyncio.run(fetch(url))
    assert code == 403 and b"<Code>AccessDenied</Code>" in body
    for expires in ("0", "-5", "604801"):
        code, body = asyncio.run(fetch(url.replace("X-Amz-Expires=1", f"X-Amz-Expires={expires}")))
        assert code == 403 and b"<Code>AccessDenied</Code>" in body, (expires, body)


# -- 8. UploadPartCopy -----------------------------------------------------------------------


def test_part_copy_from_an_awkward_key_and_its_range_errors(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "part-copy-keys")
    source = "dir/a b+c?d=é%25&x.bin"
    s3.put_object(Bucket=bucket, Key=source, Body=b"01234")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dest")["UploadId"]
    copy = functools.partial(
        s3.upload_part_copy,
        Bucket=bucket,
        Key="dest",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": source},
    )
    etag = copy(CopySourceRange="bytes=1-3")["CopyPartResult"]["ETag"]
    with pytest.raises(ClientError) as caught:
        copy(CopySourceRange="bytes=0-21")
    assert (status(caught), error_code(caught)) == (400, "InvalidRange")
    for improper in (
        "0-2",
        "bytes=0",
        "bytes=hello-world",
        "bytes=0-bar",
        "bytes=hello-",
        "bytes=0-2,3-5",
        "bytes=3-1",
        "bytes=-2",
    ):
        with pytest.raises(ClientError) as caught:
            copy(CopySourceRange=improper)
        assert (status(caught), error_code(caught)) == (400, "InvalidArgument"), improper
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dest",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert s3.get_object(Bucket=bucket, Key="dest")["Body"].read() == b"123"
    copied = s3.copy_object(
        Bucket=bucket, Key="whole", CopySource={"Bucket": bucket, "Key": source}
    )
    assert copied["CopyObjectResult"]["ETag"] == s3.head_object(Bucket=bucket, Key=source)["ETag"]


# -- 9. versioning ---------------------------------------------------------------------------


def test_versioning_keeps_every_version_and_charges_for_each(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    territory = "versions"
    bucket = territory_bucket(gateway_network, s3_keys, "versioned", territory)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    for configuration, code in (
        ({"Status": "Unversioned"}, "MalformedXML"),  # there is no going back
        ({"Status": "Enabled", "MFADelete": "Enabled"}, "NotImplemented"),
    ):
        with pytest.raises(ClientError) as caught:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=configuration)
        assert error_code(caught) == code
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    bodies = [b"first", b"second!", b"third!!!" * 1000]
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b)["VersionId"] for b in bodies]
    assert len(set(ids)) == 3 and "null" not in ids
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(caught) == "NoSuchKey"
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    listed = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [deleted["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True
    for version_id, body in zip(ids, bodies, strict=True):
        got = s3.get_object(Bucket=bucket, Key="k", VersionId=version_id)
        assert got["Body"].read() == body and got["VersionId"] == version_id
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="k", VersionId=deleted["VersionId"])
    assert status(caught) == 405
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    paged: list[str] = []
    markers: dict[str, str] = {}
    for _ in range(6):  # one entry a page, by key and version-id markers
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1, **markers)
        paged += [v["VersionId"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if not page["IsTruncated"]:
            break
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "VersionIdMarker": page["NextVersionIdMarker"],
        }
    assert paged == [deleted["VersionId"], *ids[::-1]]

    async def chain_state() -> tuple[dict[str, Any], dict[str, Any] | None]:
        chain = HttpChain(gateway_network.chain.url)
        try:
            ref = reference_key(f"{bucket}/k", ids[1])

            async def settled() -> tuple[dict[str, Any], dict[str, Any] | None]:
                found = await chain.query(
                    "storage_handler.territory", owner=USER.address, name=territory
                )
                version = await chain.query("file_bank.object", owner=USER.address, key=ref)
                return found, version

            return await eventually(settled, lambda s: s[0]["locked"] == 0 and s[0]["used"] > 0)
        finally:
            await chain.close()

    before, version = asyncio.run(chain_state())
    assert version is not None
    s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[1])
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="k", VersionId=ids[1])
    assert error_code(caught) == "NoSuchVersion"

    async def after_delete() -> dict[str, Any]:
        chain = HttpChain(gateway_network.chain.url)
        try:
            found: dict[str, Any] = await eventually(
                functools.partial(
                    chain.query, "storage_handler.territory", owner=USER.address, name=territory
                ),
                lambda t: t["used"] != before["used"],
            )
            return found
        finally:
            await chain.close()

    after = asyncio.run(after_delete())
    assert before["used"] - after["used"] == version["charged"]
    # The marker goes, and the newest version is current again.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=deleted["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == bodies[2]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"null one")
    assert put.get("VersionId") == "null"
    s3.put_object(Bucket=bucket, Key="k", Body=b"null two")  # replaces the null version
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == ["null", ids[2], ids[0]]
    restored = s3.copy_object(
        Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k", "VersionId": ids[0]}
    )
    assert restored["CopySourceVersionId"] == ids[0]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(caught) == "BucketNotEmpty"
    for entry in s3.list_object_versions(Bucket=bucket)["Versions"]:
        s3.delete_object(Bucket=bucket, Key="k", VersionId=entry["VersionId"])
    s3.delete_bucket(Bucket=bucket)


# -- tagging and ACLs -----------------------------------------------------------------------


def test_tagging_and_private_acls(s3: BaseClient) -> None:
    bucket = fresh_bucket(s3, "tags-acls")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="team=a&year=2026", ACL="private")
    assert (
        s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"][
            "x-amz-tagging-count"
        ]
        == "2"
    )
    tags = s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "a"), ("year", "2026")]
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "x", "Value": ""}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "x", "Value": ""}]
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    with pytest.raises(ClientError) as caught:
        s3.put_object_tagging(
            Bucket=bucket,
            Key="k",
            Tagging={"TagSet": [{"Key": f"k{n}", "Value": "v"} for n in range(11)]},
        )
    assert error_code(caught) == "InvalidTag"
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(caught) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "cost", "Value": "1"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "cost", "Value": "1"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "k"})
    assert s3.get_object_tagging(Bucket=bucket, Key="copied")["TagSet"] == [
        {"Key": "a", "Value": "1"}
    ]  # a copy takes the source's tags by default
    s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        TaggingDirective="REPLACE",
        Tagging="b=2",
    )  # new tags alone are a change: a copy onto itself may do it
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "b", "Value": "2"}]
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    for call in (
        functools.partial(s3.put_object, Bucket=bucket, Key="pub", Body=b"x", ACL="public-read"),
        functools.partial(s3.put_bucket_acl, Bucket=bucket, ACL="public-read"),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "AccessControlListNotSupported"
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="pub")
    assert status(caught) == 404  # nothing stored for a refused ACL


# -- what replaces a key while a read streams ------------------------------------------------


def slow_get(url: str) -> tuple[socket.socket, bytes]:
    """A GET through a socket whose small receive buffer keeps the kernel from taking
    the body in ahead of the reader: the gateway stays mid-stream until it is read."""
    target = urllib.parse.urlsplit(url)
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    connection.connect((target.hostname or "", target.port or 80))
    request = f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: {target.netloc}\r\n"
    connection.sendall((request + "Connection: close\r\n\r\n").encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(4096)
    return connection, received


def test_an_overwrite_while_a_read_streams_lets_the_read_finish(
    s3: BaseClient, gateway_network: Network, s3_keys: tuple[str, str]
) -> None:
    bucket = territory_bucket(gateway_network, s3_keys, "read-overwrite", "overwrites", 80)
    # More than the kernel holds in flight (a 4 MiB send buffer at most here, and the
    # reader's 16 KiB): the gateway is still streaming when the overwrite lands.
    old = os.urandom(6 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="k", Body=old)

    async def reference() -> str | None:
        chain = HttpChain(gateway_network.chain.url)
        try:
            found = await chain.query("file_bank.object", owner=USER.address, key=f"{bucket}/k")
            return None if found is None else str(found["fid"])
        finally:
            await chain.close()

    old_fid = asyncio.run(eventually(reference, lambda fid: fid is not None))
    v4 = client(gateway_network, s3_keys, signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    connection, received = slow_get(url)
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"new")
        time.sleep(3)  # a dozen blocks: the chain would have dropped the old file by now
        assert asyncio.run(reference()) == old_fid  # held back while the read goes on
        while piece := connection.recv(1024 * 1024):
            received += piece
    finally:
        connection.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == old
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    asyncio.run(eventually(reference, lambda fid: fid not in (None, old_fid)))
