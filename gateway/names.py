"""The names both APIs share: an object's name on chain is at most ``MAX_NAME_BYTES``
(the chain's ``ObjectKey``), and an S3 bucket (the first part of ``<bucket>/<key>``)
follows S3's naming rules, which recovery also applies to names it reads back."""

import re

from gateway.errors import InvalidBucketName

__all__ = ["MAX_NAME_BYTES", "check_bucket_name", "is_bucket_name"]

MAX_NAME_BYTES = 1024  # the chain's ObjectKey
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def is_bucket_name(bucket: str) -> bool:
    return (
        _BUCKET.match(bucket) is not None
        and ".." not in bucket
        and _IPV4.match(bucket) is None
        and not bucket.startswith(("xn--", "sthree-"))
        and not bucket.endswith("-s3alias")
    )


def check_bucket_name(bucket: str) -> None:
    if not is_bucket_name(bucket):
        raise InvalidBucketName(bucket)
