"""S3 request bodies for the fuzz suite: the XML documents S3 takes (DeleteObjects,
CompleteMultipartUpload, tagging, versioning, ACL, CreateBucketConfiguration), valid
and mutated, object data of a few sizes, and the checksums a client sends with it."""

import base64
import hashlib
import zlib
from collections.abc import Callable
from xml.sax.saxutils import escape

from awscrt import checksums as crt
from hypothesis import strategies as st

from tests.fuzz.strategies import digits, mutated, number, odd_text, one_in, pick

__all__ = ["ALGORITHMS", "XML_KINDS", "checksum", "content_md5", "object_data", "xml_body"]

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
# The AWS Common Runtime's CRCs, as botocore computes them (awscrt has no type hints).
_CRC32C: Callable[[bytes], int] = crt.crc32c
_CRC64NVME: Callable[[bytes], int] = crt.crc64nvme
XML_KINDS = ("delete", "complete", "tagging", "versioning", "acl", "location")


def checksum(algorithm: str, body: bytes) -> str:
    """``x-amz-checksum-<algorithm>``'s value for ``body``: its big-endian digest, base64."""
    digest = {
        "crc32": lambda: zlib.crc32(body).to_bytes(4, "big"),
        "crc32c": lambda: _CRC32C(body).to_bytes(4, "big"),
        "crc64nvme": lambda: _CRC64NVME(body).to_bytes(8, "big"),
        "sha1": lambda: hashlib.sha1(body, usedforsecurity=False).digest(),
        "sha256": lambda: hashlib.sha256(body).digest(),
    }[algorithm]()
    return base64.b64encode(digest).decode()


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def object_data(draw: st.DrawFn) -> bytes:
    """Mostly small bodies; then one past the grid's smallest multipart part (16 KiB),
    and one time in twenty one of several segments (128 KiB each), which streams to
    miners before its end is read."""
    size = number(draw, 0, 19)
    if size == 0:
        return draw(_PATTERN) * number(draw, 10_000, 14_000)
    if size <= 3:
        return draw(_PATTERN) * number(draw, 1100, 1300)
    return draw(_SMALL)


_PATTERN = st.binary(min_size=1, max_size=16)
_SMALL = st.binary(max_size=2000)
_NUMBERS = st.one_of(st.sampled_from(["1", "2"]), digits())
_QUIET = ("", "<Quiet>true</Quiet>", "<Quiet>maybe</Quiet>")


def _text(draw: st.DrawFn, text: str) -> str:
    # Escaped mostly, so that the document parses; raw now and then, so that it may not.
    return text if one_in(draw, 5) else escape(text)


def _one(draw: st.DrawFn, known: tuple[str, ...]) -> str:
    return draw(odd_text(max_size=8)) if not known or one_in(draw, 3) else pick(draw, known)


def _document(
    draw: st.DrawFn,
    kind: str,
    keys: tuple[str, ...],
    versions: tuple[str, ...],
    etags: tuple[str, ...],
) -> str:
    if kind == "delete":
        objects = []
        for _ in range(number(draw, 0, 4)):
            version = _one(draw, (*versions, "null"))
            found = f"<VersionId>{_text(draw, version)}</VersionId>" if one_in(draw, 2) else ""
            objects.append(f"<Object><Key>{_text(draw, _one(draw, keys))}</Key>{found}</Object>")
        return f"<Delete>{pick(draw, _QUIET)}{''.join(objects)}</Delete>"
    if kind == "complete":
        parts = []
        for _ in range(number(draw, 0, 3)):
            part_number = _text(draw, draw(_NUMBERS))
            etag = _text(draw, _one(draw, tuple(f'"{e}"' for e in etags)))
            parts.append(f"<Part><PartNumber>{part_number}</PartNumber><ETag>{etag}</ETag></Part>")
        return f"<CompleteMultipartUpload>{''.join(parts)}</CompleteMultipartUpload>"
    if kind == "tagging":
        tags = "".join(
            f"<Tag><Key>{_text(draw, draw(odd_text(max_size=6)))}</Key>"
            f"<Value>{_text(draw, draw(odd_text(max_size=6)))}</Value></Tag>"
            for _ in range(number(draw, 0, 12))
        )
        return f"<Tagging><TagSet>{tags}</TagSet></Tagging>"
    if kind == "versioning":
        status = pick(draw, ("Enabled", "Suspended", "", "enabled", "Off"))
        mfa = pick(draw, ("", "<MfaDelete>Disabled</MfaDelete>"))
        return f"<VersioningConfiguration><Status>{status}</Status>{mfa}</VersioningConfiguration>"
    if kind == "acl":
        grantee = pick(draw, ("CanonicalUser", "Group", "AmazonCustomerByEmail"))
        permission = pick(draw, ("FULL_CONTROL", "READ", "WRITE_ACP"))
        return (
            "<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList><Grant>"
            '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:type="{grantee}"><ID>x</ID></Grantee><Permission>{permission}</Permission>'
            "</Grant></AccessControlList></AccessControlPolicy>"
        )
    where = _text(draw, pick(draw, ("us-east-1", "", "eu-west-1", "EU")))
    return (
        "<CreateBucketConfiguration><LocationConstraint>"
        f"{where}</LocationConstraint></CreateBucketConfiguration>"
    )


def xml_body(
    draw: st.DrawFn,
    kind: str,
    keys: tuple[str, ...] = (),
    versions: tuple[str, ...] = (),
    etags: tuple[str, ...] = (),
) -> bytes:
    """A document of ``kind`` naming ``keys``, ``versions`` and ``etags`` (or others),
    with an XML declaration or not, mutated a third of the time."""
    document = _document(draw, kind, keys, versions, etags)
    if one_in(draw, 2):
        document = '<?xml version="1.0" encoding="UTF-8"?>' + document
    raw = document.encode("utf-8", "surrogateescape")
    return mutated(draw, raw) if one_in(draw, 3) else raw
