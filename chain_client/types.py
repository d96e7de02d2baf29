"""Argument types shared by extrinsics and queries, validated by pydantic in strict mode:
no silent coercion ("1" is not 1), every bound explicit, errors that name the field."""

import base64
import binascii
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from chain_client.ss58 import canonical_address

__all__ = [
    "U32",
    "U64",
    "U128",
    "Address",
    "Args",
    "Base64Bytes",
    "Endpoint",
    "Hash32",
    "Name",
    "NoArgs",
    "ObjectKey",
]

U32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
U64 = Annotated[int, Field(ge=0, le=2**63 - 1)]  # SQLite's INTEGER: sizes, heights, counts
U128 = Annotated[int, Field(ge=0, le=2**128 - 1)]  # balances
Address = Annotated[str, StringConstraints(max_length=64), AfterValidator(canonical_address)]
Hash32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._-]+$")]
# A gateway's name (at most 1024 bytes), or a version's: the name, U+0000, a 32-character id.
ObjectKey = Annotated[str, StringConstraints(min_length=1, max_length=1100)]
Endpoint = Annotated[
    str,
    StringConstraints(max_length=100, pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?$"),
]


def _decode_base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc


Base64Bytes = Annotated[bytes, BeforeValidator(_decode_base64)]


class Args(BaseModel):
    """Base of every extrinsic's and query's arguments."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoArgs(Args):
    pass
