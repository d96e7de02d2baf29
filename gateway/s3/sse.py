"""SSE-C (docs/s3.md §8): the customer sends a 256-bit key with every request that
touches the object's bytes, and the gateway uses it, instead of its master key, to wrap
the object's data keys (the bytes are encrypted either way). The gateway keeps no copy of
the key: a salted check value with the wrapped keys (gateway/keywrap.py) and its MD5 in
the object's metadata, to echo and to tell a missing key from a wrong one.
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping

from gateway.s3.xml import S3Error

__all__ = ["COPY_SOURCE", "PREFIX", "customer_key", "key_md5", "response_headers"]

PREFIX = "x-amz-server-side-encryption-customer-"
COPY_SOURCE = "x-amz-copy-source-server-side-encryption-customer-"


def key_md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key, usedforsecurity=False).digest()).decode()


def customer_key(headers: Mapping[str, str], prefix: str = PREFIX) -> bytes | None:
    """The SSE-C key a request carries (under ``prefix``), checked; None without one."""
    algorithm = headers.get(prefix + "algorithm")
    encoded = headers.get(prefix + "key")
    digest = headers.get(prefix + "key-MD5")
    if algorithm is None and encoded is None and digest is None:
        return None
    if algorithm != "AES256":
        raise S3Error(400, "InvalidEncryptionAlgorithmError", "the SSE-C algorithm must be AES256")
    try:
        key = base64.b64decode(encoded or "", validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII at all
        key = b""
    if len(key) != 32:
        raise S3Error(
            400, "InvalidArgument", "The secret key was invalid for the specified algorithm."
        )
    # SECURITY: constant-time compare (the MD5 guards against a mangled key, not a secret).
    # compare_digest takes only ASCII text: a header with other bytes is no digest.
    if digest is None or not digest.isascii() or not hmac.compare_digest(key_md5(key), digest):
        raise S3Error(
            400,
            "InvalidArgument",
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        )
    return key


def response_headers(md5: str | None) -> dict[str, str]:
    if md5 is None:
        return {}
    return {PREFIX + "algorithm": "AES256", PREFIX + "key-MD5": md5}
