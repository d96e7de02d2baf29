"""AWS Signature V4 as a client computes it, written from the S3 reference rather than
taken from the gateway (only the key derivation is shared), so that a fuzzed request
signed here reaches the handlers exactly when the gateway agrees with the spec: the
``Authorization`` header, presigned ``X-Amz-*`` queries, and aws-chunked bodies signed
chunk by chunk, their trailers too.

Text may hold surrogates for bytes that are not UTF-8 (tests/fuzz/wire.py); they are
signed as those bytes.
"""

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes

from gateway.s3.sigv4 import derive_signing_key

__all__ = [
    "EMPTY_SHA256",
    "ChunkSigner",
    "Credentials",
    "aws_chunked",
    "canonical_query",
    "presign_query",
    "sign_headers",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret: str
    region: str = "us-east-1"


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _sha256(text: str) -> str:
    return hashlib.sha256(_bytes(text)).hexdigest()


def canonical_query(raw_query: str, *, exclude: str | None = None) -> str:
    """The query as S3 canonicalises it: each name and value decoded (``+`` is a space),
    then re-encoded strictly, sorted by encoded name then value."""

    def component(text: str) -> str:
        decoded = unquote_to_bytes(_bytes(text.replace("+", " ")))
        return quote(decoded, safe="-_.~")

    pairs = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if exclude is not None and unquote_to_bytes(_bytes(name.replace("+", " "))) == _bytes(
            exclude
        ):
            continue
        pairs.append((component(name), component(value)))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _canonical_headers(headers: list[tuple[str, str]], signed: list[str]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


@dataclass(frozen=True, slots=True)
class ChunkSigner:
    """What signs an aws-chunked body: the request's key, scope and date, and its seed."""

    key: bytes
    scope: str
    amz_date: str
    seed: str

    def sign(self, previous: str, data: bytes) -> str:
        return self._sign(
            "AWS4-HMAC-SHA256-PAYLOAD",
            previous,
            EMPTY_SHA256 + "\n" + hashlib.sha256(data).hexdigest(),
        )

    def sign_trailers(self, previous: str, trailers: list[tuple[str, str]]) -> str:
        canonical = "".join(f"{n.lower()}:{v.strip()}\n" for n, v in sorted(trailers))
        return self._sign(
            "AWS4-HMAC-SHA256-TRAILER", previous, hashlib.sha256(_bytes(canonical)).hexdigest()
        )

    def _sign(self, algorithm: str, previous: str, rest: str) -> str:
        text = f"{algorithm}\n{self.amz_date}\n{self.scope}\n{previous}\n{rest}"
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()


def _signature(
    credentials: Credentials,
    amz_date: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    signed: list[str],
    payload: str,
) -> tuple[str, bytes, str]:
    """(signature, signing key, scope) of one canonical request."""
    scope = f"{amz_date[:8]}/{credentials.region}/s3/aws4_request"
    canonical = "\n".join(
        [method, path, query, _canonical_headers(headers, signed), ";".join(signed), payload]
    )
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{_sha256(canonical)}"
    key = derive_signing_key(credentials.secret, amz_date[:8], credentials.region)
    return hmac.new(key, _bytes(to_sign), hashlib.sha256).hexdigest(), key, scope


def sign_headers(
    credentials: Credentials,
    method: str,
    path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    payload: str,
    *,
    now: datetime | None = None,
) -> tuple[list[tuple[str, str]], ChunkSigner]:
    """``headers`` with ``x-amz-date``, ``x-amz-content-sha256`` and the
    ``Authorization`` that signs every one of them (``headers`` must name ``host``)."""
    amz_date = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    sent = [*headers, ("x-amz-date", amz_date), ("x-amz-content-sha256", payload)]
    signed = sorted({name.lower() for name, _ in sent})
    signature, key, scope = _signature(
        credentials, amz_date, method, path, canonical_query(raw_query), sent, signed, payload
    )
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return [*sent, ("Authorization", authorization)], ChunkSigner(key, scope, amz_date, signature)


def presign_query(
    credentials: Credentials,
    method: str,
    path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    *,
    expires: str = "300",
    now: datetime | None = None,
) -> str:
    """``raw_query`` with the ``X-Amz-*`` parameters of a presigned URL that signs
    ``headers`` (which must name ``host``) and an UNSIGNED-PAYLOAD."""
    amz_date = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    signed = sorted({name.lower() for name, _ in headers})
    scope = f"{amz_date[:8]}/{credentials.region}/s3/aws4_request"
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{credentials.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": expires,
        "X-Amz-SignedHeaders": ";".join(signed),
    }
    extra = "&".join(f"{quote(k, safe='')}={quote(v, safe='-_.~')}" for k, v in params.items())
    query = f"{raw_query}&{extra}" if raw_query else extra
    signature, _, _ = _signature(
        credentials,
        amz_date,
        method,
        path,
        canonical_query(query),
        headers,
        signed,
        "UNSIGNED-PAYLOAD",
    )
    return f"{query}&X-Amz-Signature={signature}"


def aws_chunked(
    data: bytes,
    sizes: list[int],
    *,
    signer: ChunkSigner | None,
    trailers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """``data`` as an aws-chunked body of chunks of ``sizes`` (the rest one more chunk),
    signed by ``signer`` (None: unsigned), then its trailers (signed when ``signer``)."""
    chunks, offset = [], 0
    for size in [*sizes, len(data)]:
        piece = data[offset : offset + size]
        if piece:
            chunks.append(piece)
            offset += len(piece)
    chunks.append(b"")
    out, previous = [], signer.seed if signer else ""
    for piece in chunks:
        if signer is None:
            out.append(b"%x\r\n%s" % (len(piece), piece))
        else:
            previous = signer.sign(previous, piece)
            out.append(b"%x;chunk-signature=%s\r\n%s" % (len(piece), previous.encode(), piece))
        if piece:
            out.append(b"\r\n")
    # After the final chunk's line: the trailers, their signature, and an empty line.
    tail = b"".join(_bytes(f"{n}:{v}\r\n") for n, v in trailers)
    if signer is not None and trailers:
        signature = signer.sign_trailers(previous, list(trailers))
        tail += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return b"".join(out) + tail + b"\r\n"
