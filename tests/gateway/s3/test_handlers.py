"""Every S3 handler, driven by boto3 through the in-process grid (tests/grid.py): the
real chain, miners and gateway in this event loop, boto3 in a worker thread. A last test
checks that the module reached every handler the router has."""

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import boto3
import pytest
import pytest_asyncio
from botocore.client import BaseClient, Config
from botocore.exceptions import ClientError

from gateway.s3 import api
from tests.grid import Grid, open_grid

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = TypeVar("T")
REACHED: set[str] = set()  # handler names the router chose during this module


@pytest.fixture(scope="module")
def recorded() -> Iterator[None]:
    route = api._route

    def recording(request: Any) -> Any:
        handler = route(request)
        REACHED.add(handler.__name__)
        return handler

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "_route", recording)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(tmp_path_factory: pytest.TempPathFactory, recorded: None) -> AsyncIterator[Grid]:
    async with open_grid(tmp_path_factory.mktemp("s3grid")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def s3(grid: Grid) -> BaseClient:
    access_key, secret = await grid.s3_keys()
    return boto3.client(
        "s3",
        endpoint_url=grid.s3_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


async def call(method: Callable[..., T], **kwargs: Any) -> T:
    """A boto3 call off the event loop the grid serves on."""
    return await asyncio.to_thread(functools.partial(method, **kwargs))


async def read(s3: BaseClient, **kwargs: Any) -> bytes:
    """An object's bytes: the body is read in the worker thread too (read on the event
    loop, it would wait for bytes that loop has to send)."""
    return await asyncio.to_thread(lambda: bytes(s3.get_object(**kwargs)["Body"].read()))


async def code_of(method: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as refused:
        await call(method, **kwargs)
    return str(refused.value.response["Error"]["Code"])


async def test_buckets_and_their_configuration(s3: BaseClient) -> None:
    await call(s3.create_bucket, Bucket="conf")
    await call(s3.head_bucket, Bucket="conf")
    assert "conf" in [b["Name"] for b in (await call(s3.list_buckets))["Buckets"]]
    assert (await call(s3.get_bucket_location, Bucket="conf"))["LocationConstraint"] is None
    await call(
        s3.put_bucket_versioning, Bucket="conf", VersioningConfiguration={"Status": "Enabled"}
    )
    assert (await call(s3.get_bucket_versioning, Bucket="conf"))["Status"] == "Enabled"
    tags = {"TagSet": [{"Key": "team", "Value": "a"}]}
    await call(s3.put_bucket_tagging, Bucket="conf", Tagging=tags)
    assert (await call(s3.get_bucket_tagging, Bucket="conf"))["TagSet"] == tags["TagSet"]
    await call(s3.delete_bucket_tagging, Bucket="conf")
    await call(s3.put_bucket_acl, Bucket="conf", ACL="private")
    grants = (await call(s3.get_bucket_acl, Bucket="conf"))["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    refused = await code_of(s3.put_bucket_acl, Bucket="conf", ACL="public-read")
    assert refused == "AccessControlListNotSupported"
    await call(s3.delete_bucket, Bucket="conf")
    assert await code_of(s3.head_bucket, Bucket="conf") == "404"


async def test_objects_copies_tags_and_listings(s3: BaseClient) -> None:
    await call(s3.create_bucket, Bucket="objs")
    data = bytes(range(256)) * 1000  # two segments at the grid's sizes
    put = await call(s3.put_object, Bucket="objs", Key="dir/a", Body=data, ContentType="x/y")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert await read(s3, Bucket="objs", Key="dir/a", Range="bytes=1000-1999") == data[1000:2000]
    head = await call(s3.head_object, Bucket="objs", Key="dir/a")
    assert (head["ContentLength"], head["ContentType"]) == (len(data), "x/y")
    await call(
        s3.copy_object, Bucket="objs", Key="b", CopySource={"Bucket": "objs", "Key": "dir/a"}
    )
    assert await read(s3, Bucket="objs", Key="b") == data
    await call(
        s3.put_object_tagging,
        Bucket="objs",
        Key="b",
        Tagging={"TagSet": [{"Key": "k", "Value": "v"}]},
    )
    tags = (await call(s3.get_object_tagging, Bucket="objs", Key="b"))["TagSet"]
    assert tags == [{"Key": "k", "Value": "v"}]
    await call(s3.delete_object_tagging, Bucket="objs", Key="b")
    await call(s3.put_object_acl, Bucket="objs", Key="b", ACL="private")
    assert (await call(s3.get_object_acl, Bucket="objs", Key="b"))["Grants"]
    v1 = await call(s3.list_objects, Bucket="objs", Delimiter="/")
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["dir/"]
    v2 = await call(s3.list_objects_v2, Bucket="objs", Prefix="dir/")
    assert [o["Key"] for o in v2["Contents"]] == ["dir/a"]
    versions = await call(s3.list_object_versions, Bucket="objs")
    assert sorted(v["Key"] for v in versions["Versions"]) == ["b", "dir/a"]
    deleted = await call(
        s3.delete_objects, Bucket="objs", Delete={"Objects": [{"Key": "b"}, {"Key": "dir/a"}]}
    )
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["b", "dir/a"]
    await call(s3.put_object, Bucket="objs", Key="c", Body=b"c")
    await call(s3.delete_object, Bucket="objs", Key="c")
    assert await code_of(s3.get_object, Bucket="objs", Key="c") == "NoSuchKey"
    await call(s3.delete_bucket, Bucket="objs")


async def test_multipart_uploads(s3: BaseClient) -> None:
    await call(s3.create_bucket, Bucket="parts")
    upload = await call(s3.create_multipart_upload, Bucket="parts", Key="big")
    upload_id = upload["UploadId"]
    first, last = b"1" * (16 * 1024), b"2" * 100
    etags = [
        (
            await call(
                s3.upload_part,
                Bucket="parts",
                Key="big",
                UploadId=upload_id,
                PartNumber=n,
                Body=body,
            )
        )["ETag"]
        for n, body in ((1, first), (2, last))
    ]
    listed = await call(s3.list_parts, Bucket="parts", Key="big", UploadId=upload_id)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2]
    uploads = await call(s3.list_multipart_uploads, Bucket="parts")
    assert [u["UploadId"] for u in uploads["Uploads"]] == [upload_id]
    parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    await call(
        s3.complete_multipart_upload,
        Bucket="parts",
        Key="big",
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )
    assert await read(s3, Bucket="parts", Key="big") == first + last
    dropped = (await call(s3.create_multipart_upload, Bucket="parts", Key="gone"))["UploadId"]
    await call(s3.abort_multipart_upload, Bucket="parts", Key="gone", UploadId=dropped)
    assert (
        await code_of(s3.list_parts, Bucket="parts", Key="gone", UploadId=dropped) == "NoSuchUpload"
    )


async def test_every_handler_of_the_router_was_reached() -> None:
    tables = [api.ACL, api.BUCKET, api.OBJECT, *api.BUCKET_SUBRESOURCES.values()]
    tables += api.OBJECT_SUBRESOURCES.values()
    handlers = {handler.__name__ for table in tables for handler in table.values()}
    handlers |= {"list_buckets", "list_v2"}
    assert handlers - REACHED == set()
