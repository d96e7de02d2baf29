"""Object integrity values as S3 clients send them: ``x-amz-checksum-<algorithm>`` (a header
or an aws-chunked trailer) and ``Content-MD5``.

Follows the S3 user guide, "Checking object integrity": a checksum value is the base64 of
the algorithm's big-endian digest, so its length is fixed per algorithm::

    CRC32, CRC32C    4 bytes    8 base64 chars
    CRC64NVME        8 bytes   12 base64 chars
    SHA1            20 bytes   28 base64 chars
    SHA256          32 bytes   44 base64 chars
    (Content-MD5    16 bytes   24 base64 chars)

The CRCs are CRC-32 (zlib), CRC-32C (Castagnoli) and CRC-64/NVME, the last two from the
AWS Common Runtime, as botocore computes them. Error codes and messages are S3's: a value
of the wrong shape is ``InvalidRequest`` (``InvalidDigest`` for Content-MD5), a value that
does not match the body is ``BadDigest``; all are 400.

Hashing is CPU work: callers feeding large bodies should run ``update`` off the event loop.
"""

import base64
import binascii
import hashlib
import hmac
import zlib
from collections.abc import Mapping
from typing import Final, Literal, get_args

from awscrt import checksums as crt

__all__ = [
    "ALGORITHMS",
    "CHECKSUM_HEADER_PREFIX",
    "DIGEST_SIZES",
    "Algorithm",
    "Checksum",
    "ChecksumError",
    "algorithm_from_header",
    "check_content_md5",
    "checksum_from_headers",
    "decode_checksum",
    "decode_content_md5",
    "header_name",
    "parse_algorithm",
]

Algorithm = Literal["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
DIGEST_SIZES: Final[Mapping[Algorithm, int]] = {
    "CRC32": 4,
    "CRC32C": 4,
    "CRC64NVME": 8,
    "SHA1": 20,
    "SHA256": 32,
}
CHECKSUM_HEADER_PREFIX: Final = "x-amz-checksum-"
_MD5_SIZE: Final = 16


class ChecksumError(ValueError):
    """A checksum or Content-MD5 that is malformed or does not match the body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def __repr__(self) -> str:
        return f"ChecksumError({self.status}, {self.code!r}, {self.message!r})"


def header_name(algorithm: Algorithm) -> str:
    """``CRC32`` -> ``x-amz-checksum-crc32``."""
    return CHECKSUM_HEADER_PREFIX + algorithm.lower()


def algorithm_from_header(name: str) -> Algorithm | None:
    """The algorithm a header (or trailer) name carries a value of, any case; None for
    other names, including ``x-amz-checksum-type`` and ``x-amz-checksum-algorithm``."""
    lowered = name.lower()
    if not lowered.startswith(CHECKSUM_HEADER_PREFIX):
        return None
    suffix = lowered[len(CHECKSUM_HEADER_PREFIX) :].upper()
    return next((algorithm for algorithm in ALGORITHMS if algorithm == suffix), None)


def parse_algorithm(value: str) -> Algorithm:
    """The value of ``x-amz-sdk-checksum-algorithm`` / ``x-amz-checksum-algorithm``."""
    wanted = value.strip().upper()
    for algorithm in ALGORITHMS:
        if algorithm == wanted:
            return algorithm
    raise ChecksumError(
        400,
        "InvalidRequest",
        "Checksum algorithm provided is unsupported. Please try again with any of the "
        f"valid types: [{', '.join(ALGORITHMS)}]",
    )


def _strict_b64(value: str, size: int) -> bytes | None:
    """The bytes of canonical base64 of exactly ``size`` bytes, else None."""
    text = value.strip()
    if len(text) != 4 * ((size + 2) // 3) or not text.isascii():
        return None
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None
    # Non-zero padding bits decode too; re-encoding rejects such aliases of a value.
    if len(raw) != size or base64.b64encode(raw).decode() != text:
        return None
    return raw


def decode_checksum(algorithm: Algorithm, value: str) -> bytes:
    """The digest a client-supplied ``x-amz-checksum-*`` value stands for."""
    raw = _strict_b64(value, DIGEST_SIZES[algorithm])
    if raw is None:
        raise ChecksumError(
            400, "InvalidRequest", f"Value for {header_name(algorithm)} header is invalid."
        )
    return raw


def checksum_from_headers(headers: Mapping[str, str]) -> tuple[Algorithm, bytes] | None:
    """The one ``x-amz-checksum-<algorithm>`` header of a request, decoded, if any."""
    found: list[tuple[Algorithm, str]] = []
    for name, value in headers.items():
        algorithm = algorithm_from_header(name)
        if algorithm is not None:
            found.append((algorithm, value))
    if not found:
        return None
    if len(found) > 1:
        raise ChecksumError(
            400,
            "InvalidRequest",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        )
    algorithm, value = found[0]
    return algorithm, decode_checksum(algorithm, value)


def decode_content_md5(value: str) -> bytes:
    """The MD5 digest a ``Content-MD5`` header stands for; check it before reading a body."""
    raw = _strict_b64(value, _MD5_SIZE)
    if raw is None:
        raise ChecksumError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
    return raw


def check_content_md5(value: str, computed: bytes) -> None:
    """Compare ``Content-MD5`` with the MD5 digest of the body as received."""
    # Not a secret, but compare_digest costs nothing and needs no argument about it.
    if not hmac.compare_digest(decode_content_md5(value), computed):
        raise ChecksumError(
            400, "BadDigest", "The Content-MD5 you specified did not match what we received."
        )


class Checksum:
    """A running checksum of one algorithm over the bytes fed to ``update``."""

    def __init__(self, algorithm: Algorithm) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}; one of {ALGORITHMS}")
        self.algorithm: Final[Algorithm] = algorithm
        self._crc = 0
        self._hash = (
            hashlib.sha1(usedforsecurity=False)
            if algorithm == "SHA1"
            else hashlib.sha256()
            if algorithm == "SHA256"
            else None
        )

    @property
    def header_name(self) -> str:
        return header_name(self.algorithm)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        elif self.algorithm == "CRC32":
            self._crc = zlib.crc32(data, self._crc)
        elif self.algorithm == "CRC32C":
            self._crc = crt.crc32c(data, self._crc)
        else:
            self._crc = crt.crc64nvme(data, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(DIGEST_SIZES[self.algorithm], "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")

    def verify(self, expected: bytes | str) -> None:
        """Compare with the client's value (raw digest, or base64 as sent)."""
        if isinstance(expected, str):
            expected = decode_checksum(self.algorithm, expected)
        if not hmac.compare_digest(self.digest(), expected):
            raise ChecksumError(
                400,
                "BadDigest",
                f"The {self.algorithm} you specified did not match the calculated checksum.",
            )

    def __repr__(self) -> str:
        return f"Checksum({self.algorithm!r}, b64={self.b64()!r})"
