"""The native API's request parameters (docs/native-api.md §1): who signed, the
territory, copies and cipher headers, names and fids, each checked once."""

import asyncio
import hashlib
import hmac
import mimetypes
import re
from collections.abc import AsyncIterator

from aiohttp import web

from chain_client.strict import ascii_int
from gateway.errors import HeaderNotText
from gateway.headers import header_text, is_text
from gateway.names import MAX_NAME_BYTES
from gateway.native.auth import Signed
from gateway.native.context import NATIVE
from gateway.native.errors import NativeError
from gateway.records import ObjectRecord

__all__ = [
    "CONTROL",
    "EXTENSION",
    "FID",
    "SIGNED",
    "TERRITORY",
    "TYPES",
    "check_name",
    "cipher_of",
    "copies_of",
    "digest_checked",
    "fid_in_path",
    "owned",
    "signed_body",
    "signer",
    "territory_of",
    "unsigned_stream",
]

FID = re.compile(r"^[0-9a-fA-F]{64}")  # upper case accepted, and lowercased
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # not in native names (S3 keys may hold them)
TERRITORY = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
EXTENSION = re.compile(r"^[A-Za-z0-9]{1,16}$")
TYPES = mimetypes.MimeTypes(filenames=())  # the built-in table only, not the host's files
COPIES_DIGITS = 9


SIGNED = web.RequestKey("signed", Signed)


async def signer(request: web.Request, *, streamed: bool = False) -> str:
    """The account that signed this request, for this gateway, method, path and query.
    ``streamed`` uploads may sign their body UNSIGNED; any other body that a handler reads
    must then match the signed digest (``signed_body``)."""
    signed = await request.app[NATIVE].auth.authenticate(
        request.headers, method=request.method, target=request.raw_path, streamed=streamed
    )
    request[SIGNED] = signed
    return signed.account


def signed_body(request: web.Request, body: bytes) -> bytes:
    """The body, once it is known to be the one the signer signed."""
    expected = request[SIGNED].body_sha256
    if expected is not None and not hmac.compare_digest(hashlib.sha256(body).hexdigest(), expected):
        raise NativeError(400, "BadDigest", "the body's sha256 is not the one signed")
    return body


async def digest_checked(
    request: web.Request, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """A streamed body that fails at its end, before anything is committed, when the
    signer signed its sha256 and the bytes differ."""
    expected = request[SIGNED].body_sha256
    digest = hashlib.sha256()
    async for chunk in chunks:
        if expected is not None:
            await asyncio.to_thread(digest.update, chunk)
        yield chunk
    if expected is not None and not hmac.compare_digest(digest.hexdigest(), expected):
        raise NativeError(400, "BadDigest", "the body's sha256 is not the one signed")


def unsigned_stream(request: web.Request) -> None:
    """Routes whose body is kept as it arrives (forms, resume chunks) cannot check a digest
    at the end, so they take only UNSIGNED."""
    if request[SIGNED].body_sha256 is not None:
        raise NativeError(
            400, "BodyDigestUnsupported", f"{request.method} {request.path} signs its body UNSIGNED"
        )


def _text(request: web.Request, name: str, error: str) -> str | None:
    """A header used as text; 400 ``error`` (the header's own refusal) when its bytes
    are not UTF-8."""
    try:
        return header_text(request.headers, name)
    except HeaderNotText as exc:
        raise NativeError(400, error, str(exc)) from None


def territory_of(request: web.Request) -> str:
    territory = _text(request, "Territory", "InvalidTerritory")
    territory = territory or request.app[NATIVE].default_territory
    if not territory:
        raise NativeError(400, "MissingTerritory", "header Territory is required")
    if not TERRITORY.match(territory):
        raise NativeError(400, "InvalidTerritory", "Territory is 1..63 of [A-Za-z0-9._-]")
    return territory


def copies_of(request: web.Request) -> int | None:
    raw = request.headers.get("Copies")
    if raw is None:
        return None
    copies = ascii_int(raw, max_digits=COPIES_DIGITS)  # the network's range is checked later
    if copies is None:
        raise NativeError(400, "InvalidCopies", "Copies is an integer")
    return copies


def cipher_of(request: web.Request) -> str | None:
    cipher = _text(request, "Cipher", "InvalidCipher")
    if cipher is not None and not 1 <= len(cipher.encode()) <= 256:
        raise NativeError(400, "InvalidCipher", "Cipher is 1..256 bytes")
    return cipher


def check_name(name: str) -> str:
    if not name:
        raise NativeError(400, "MissingName", "an object needs a name")
    # A Filename header's bytes that are not UTF-8 arrive as lone surrogates.
    if not is_text(name) or len(name.encode()) > MAX_NAME_BYTES or CONTROL.search(name):
        raise NativeError(
            400,
            "InvalidName",
            f"a name is 1..{MAX_NAME_BYTES} bytes without control characters",
        )
    return name


def fid_in_path(request: web.Request) -> tuple[str, str | None]:
    raw = request.match_info["fid"]
    if not FID.match(raw):
        raise NativeError(400, "InvalidFid", "a fid is 64 hex characters")
    extension = raw[64:].lstrip(".") or None
    return raw[:64].lower(), extension


async def owned(request: web.Request) -> tuple[str, ObjectRecord]:
    """The signer and the object the path names, which must be the signer's."""
    owner = await signer(request)
    fid, _ = fid_in_path(request)
    return owner, request.app[NATIVE].service.lookup(fid, owner)
