"""The native API's S3 access key routes (docs/native-api.md §8, docs/s3.md §2): an
account creates, lists and revokes its own keys with a native signature."""

from aiohttp import web

from chain_client.strict import StrictJSONError, strict_json
from gateway.access_keys import AccessKeyStore
from gateway.native.context import NATIVE
from gateway.native.errors import NativeError, envelope
from gateway.native.params import signed_body, signer
from gateway.streaming import read_up_to

__all__ = [
    "create_key",
    "list_keys",
    "revoke_key",
]


def _key_store(request: web.Request) -> AccessKeyStore:
    keys = request.app[NATIVE].keys
    if keys is None:
        raise NativeError(501, "NotImplemented", "this gateway serves no S3 API")
    return keys


async def create_key(request: web.Request) -> web.Response:
    """A new S3 access key of the signer (docs/s3.md §2): the secret is shown once."""
    owner = await signer(request)
    raw = signed_body(request, await read_up_to(request.content, 4097))
    label = ""
    if raw.strip():
        try:
            # {"label": ...} is one level deep: a deeper body is no key request.
            body = strict_json(raw, max_depth=2) if len(raw) <= 4096 else None
        except StrictJSONError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("label", ""), str):
            raise NativeError(400, "InvalidBody", 'the body is {"label": "<text>"} or empty')
        label = body.get("label", "")
    access_key, secret = _key_store(request).create(owner, label)
    return envelope(200, {"access_key": access_key, "secret_key": secret, "owner": owner})


async def list_keys(request: web.Request) -> web.Response:
    owner = await signer(request)
    rows = _key_store(request).list(owner)
    return envelope(
        200,
        [
            {
                "access_key": r.access_key,
                "label": r.label,
                "created": r.created_at,
                "revoked": r.revoked,
            }
            for r in rows
        ],
    )


async def revoke_key(request: web.Request) -> web.Response:
    owner = await signer(request)
    access_key = request.match_info["access_key"]
    _key_store(request).revoke(owner, access_key)
    return envelope(200, {"access_key": access_key, "revoked": True})
