import base64
import hashlib
from typing import Any

import pytest
from botocore.httpchecksum import (
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.s3.checksums import (
    ALGORITHMS,
    DIGEST_SIZES,
    Algorithm,
    Checksum,
    ChecksumError,
    algorithm_from_header,
    check_content_md5,
    checksum_from_headers,
    decode_checksum,
    decode_content_md5,
    header_name,
    parse_algorithm,
)

BOTOCORE: dict[Algorithm, Any] = {
    "CRC32": Crc32Checksum,
    "CRC32C": CrtCrc32cChecksum,
    "CRC64NVME": CrtCrc64NvmeChecksum,
    "SHA1": Sha1Checksum,
    "SHA256": Sha256Checksum,
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("CRC32", 0xCBF43926),
        ("CRC32C", 0xE3069283),
        ("CRC64NVME", 0xAE8B14860A799888),
    ],
)
def test_crc_check_values(algorithm: Algorithm, expected: int) -> None:
    checksum = Checksum(algorithm)
    checksum.update(b"123456789")
    assert checksum.digest() == expected.to_bytes(DIGEST_SIZES[algorithm], "big")
    assert base64.b64decode(checksum.b64()) == checksum.digest()


def test_hash_vectors_and_empty_input() -> None:
    sha1, sha256 = Checksum("SHA1"), Checksum("SHA256")
    sha1.update(b"abc")
    sha256.update(b"abc")
    assert sha1.digest().hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert sha256.digest() == hashlib.sha256(b"abc").digest()
    assert Checksum("CRC32").b64() == "AAAAAA=="
    assert Checksum("CRC64NVME").b64() == "AAAAAAAAAAA="


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(data=st.binary(max_size=5000))
def test_matches_botocore(algorithm: Algorithm, data: bytes) -> None:
    reference = BOTOCORE[algorithm]()
    reference.update(data)
    checksum = Checksum(algorithm)
    checksum.update(memoryview(data))
    assert checksum.b64() == reference.b64digest()
    checksum.verify(reference.b64digest())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(parts=st.lists(st.binary(max_size=700), max_size=8))
def test_incremental_equals_one_shot(algorithm: Algorithm, parts: list[bytes]) -> None:
    incremental, one_shot = Checksum(algorithm), Checksum(algorithm)
    for part in parts:
        incremental.update(part)
    one_shot.update(b"".join(parts))
    assert incremental.digest() == one_shot.digest()


def test_verify_mismatch_is_bad_digest() -> None:
    checksum = Checksum("CRC32C")
    checksum.update(b"data")
    with pytest.raises(ChecksumError) as caught:
        checksum.verify("AAAAAA==")
    assert (caught.value.status, caught.value.code) == (400, "BadDigest")
    assert "CRC32C" in caught.value.message
    with pytest.raises(ChecksumError) as caught:
        checksum.verify(b"\x00" * 4)
    assert caught.value.code == "BadDigest"
    with pytest.raises(ChecksumError) as caught:
        checksum.verify("not base64")
    assert caught.value.code == "InvalidRequest"


def test_header_names() -> None:
    assert [header_name(a) for a in ALGORITHMS] == [
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha1",
        "x-amz-checksum-sha256",
    ]
    assert Checksum("SHA1").header_name == "x-amz-checksum-sha1"
    assert algorithm_from_header("X-Amz-Checksum-CRC64NVME") == "CRC64NVME"
    for other in ("x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-md5", "etag"):
        assert algorithm_from_header(other) is None
    assert parse_algorithm(" crc32c ") == "CRC32C"
    with pytest.raises(ChecksumError) as caught:
        parse_algorithm("MD5")
    assert caught.value.code == "InvalidRequest"
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        Checksum("MD5")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [
        ("CRC32", ""),
        ("CRC32", "AAAAAA="),  # too short
        ("CRC32", "AAAAAAA="),  # 5 bytes' worth of padding bits
        ("CRC32", "AAAAAB=="),  # non-zero padding bits: an alias of AAAAAA==
        ("CRC32", "AAAAAAAA"),  # 6 bytes
        ("CRC32", "AA AAA=="),
        ("CRC32", "AAAA\u00e9A=="),
        ("CRC64NVME", "AAAAAA=="),
        ("SHA256", "A" * 44),
        ("SHA1", "A" * 26 + "=="),
    ],
)
def test_malformed_values_are_invalid_request(algorithm: Algorithm, value: str) -> None:
    with pytest.raises(ChecksumError) as caught:
        decode_checksum(algorithm, value)
    assert (caught.value.status, caught.value.code) == (400, "InvalidRequest")
    assert header_name(algorithm) in caught.value.message


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_well_formed_values_decode(algorithm: Algorithm) -> None:
    raw = bytes(range(1, DIGEST_SIZES[algorithm] + 1))
    assert decode_checksum(algorithm, base64.b64encode(raw).decode()) == raw
    assert decode_checksum(algorithm, " " + base64.b64encode(raw).decode() + " ") == raw


def test_checksum_from_headers() -> None:
    assert checksum_from_headers(CIMultiDict({"Content-Type": "x"})) is None
    found = checksum_from_headers(
        CIMultiDict({"X-Amz-Checksum-Crc32": "AAAAAQ==", "x-amz-checksum-type": "FULL_OBJECT"})
    )
    assert found == ("CRC32", b"\x00\x00\x00\x01")
    with pytest.raises(ChecksumError) as caught:
        checksum_from_headers(
            {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": "A" * 27 + "="}
        )
    assert caught.value.code == "InvalidRequest"
    with pytest.raises(ChecksumError):
        checksum_from_headers({"x-amz-checksum-crc32": "bad"})


def test_content_md5() -> None:
    digest = hashlib.md5(b"body", usedforsecurity=False).digest()
    value = base64.b64encode(digest).decode()
    assert decode_content_md5(value) == digest
    check_content_md5(value, digest)
    with pytest.raises(ChecksumError) as caught:
        check_content_md5(value, hashlib.md5(b"other", usedforsecurity=False).digest())
    assert (caught.value.status, caught.value.code) == (400, "BadDigest")
    for bad in ("", digest.hex(), value[:-2], "!" * 24):
        with pytest.raises(ChecksumError) as caught:
            decode_content_md5(bad)
        assert (caught.value.status, caught.value.code) == (400, "InvalidDigest")


def test_error_repr() -> None:
    error = ChecksumError(400, "BadDigest", "nope")
    assert repr(error) == "ChecksumError(400, 'BadDigest', 'nope')"
    assert str(error) == "nope"
