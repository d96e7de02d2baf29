"""Bucket names as S3 allows them, checked in one place for both APIs and recovery."""

import pytest

from gateway.errors import InvalidBucketName
from gateway.names import check_bucket_name, is_bucket_name


@pytest.mark.parametrize("bucket", ["abc", "my.photos-2", "a" * 63, "0ab"])
def test_s3_bucket_names(bucket: str) -> None:
    assert is_bucket_name(bucket)
    check_bucket_name(bucket)


@pytest.mark.parametrize(
    "bucket",
    [
        "ab",
        "a" * 64,
        "Abc",
        "a..b",
        "192.168.0.1",
        "xn--abc",
        "sthree-x",
        "x-s3alias",
        "-ab",
        "ab-",
    ],
)
def test_names_s3_refuses(bucket: str) -> None:
    assert not is_bucket_name(bucket)
    with pytest.raises(InvalidBucketName) as refused:
        check_bucket_name(bucket)
    assert refused.value.bucket == bucket
