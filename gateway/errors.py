"""What the object pipeline refuses, told as facts (docs/native-api.md §3, docs/s3.md §6).

No exception here knows HTTP: each API holds one table from these types to its status
and code (``gateway/native/errors.py``, ``gateway/s3/errors.py``), looked up along the
class's MRO by ``lookup``. An exception's facts are its public attributes; the native
API answers them as ``data`` fields beside ``error``.
"""

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp.http_exceptions import BadHttpMessage

__all__ = [
    "BODY_BROKE_OFF",
    "CipherRequired",
    "FragmentsUnavailable",
    "HeaderNotText",
    "InsufficientMinerSpace",
    "InsufficientTerritorySpace",
    "InvalidBucketName",
    "InvalidCopies",
    "MinersUnavailable",
    "NoSuchFile",
    "NoSuchTerritory",
    "ObjectError",
    "ObjectTooLarge",
    "RebuildMismatch",
    "ReplacedMeanwhile",
    "SseKeyRequired",
    "TerritoryNotActive",
    "TooManyCopies",
    "WrongCipher",
    "WrongSseKey",
    "lookup",
    "translate",
]

T = TypeVar("T")
# The client went away or broke its own framing mid-body: nothing was stored, and each
# API answers 400 IncompleteBody.
BODY_BROKE_OFF: tuple[type[BaseException], ...] = (
    ConnectionError,
    asyncio.IncompleteReadError,
    BadHttpMessage,
)


class ObjectError(Exception):
    """A refused object operation."""

    @property
    def facts(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if not name.startswith("_")}


def lookup(table: Mapping[type[BaseException], T], exc: BaseException) -> T | None:
    """The entry of the nearest class of ``exc`` that ``table`` names (as Starlette
    looks up its exception handlers)."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def translate(
    table: Mapping[type[BaseException], tuple[int, str] | Callable[[BaseException], T]],
    exc: BaseException,
    plain: Callable[[int, str, BaseException], T],
) -> T | None:
    """``exc`` as an API's table says it: a ``(status, code)`` entry through ``plain``,
    a function entry called; None for what the table does not name (a bug)."""
    entry = lookup(table, exc)
    if entry is None:
        return None
    if isinstance(entry, tuple):
        return plain(entry[0], entry[1], exc)
    return entry(exc)


# -- the request itself -----------------------------------------------------------------


class HeaderNotText(ObjectError):
    """A header the request needs as text carries bytes that are not UTF-8."""

    def __init__(self, header: str) -> None:
        super().__init__(f"header {header} is not UTF-8 text")
        self.header = header


# -- the request does not fit the network -----------------------------------------------


class InvalidCopies(ObjectError):
    def __init__(self, copies: int, low: int, high: int) -> None:
        super().__init__(f"Copies is {low} to {high} on this network, not {copies}")
        self.copies, self.low, self.high = copies, low, high


class TooManyCopies(ObjectError):
    def __init__(self, copies: int, needed: int, miners: int, max_copies: int) -> None:
        super().__init__(f"{copies} copies need {needed} distinct miners; the network has {miners}")
        self.copies, self.needed, self.miners, self.max_copies = copies, needed, miners, max_copies


class ObjectTooLarge(ObjectError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"an object is at most {limit} bytes")
        self.size, self.limit = size, limit


class InvalidBucketName(ObjectError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"{bucket!r} breaks the S3 bucket naming rules")
        self.bucket = bucket


# -- the territory ----------------------------------------------------------------------


class NoSuchTerritory(ObjectError):
    def __init__(self, owner: str, territory: str) -> None:
        super().__init__(f"{owner} has no territory {territory!r}")
        self.owner, self.territory = owner, territory


class TerritoryNotActive(ObjectError):
    def __init__(self, territory: str, state: str, deadline: int) -> None:
        super().__init__(f"territory {territory!r} is {state}")
        self.territory, self.state, self.deadline = territory, state, deadline


class InsufficientTerritorySpace(ObjectError):
    """``total`` is the territory's size, ``held`` what the chain counts in it (used and
    locked), ``pending`` what this gateway holds that the chain does not count yet;
    ``available`` is what is left of it, never below 0 (a territory shrunk by another
    gateway's uploads, or by expiry, can be overdrawn: then nothing is left)."""

    def __init__(self, territory: str, needed: int, *, total: int, held: int, pending: int) -> None:
        available = max(total - held - pending, 0)
        super().__init__(
            f"territory {territory!r} holds {total} bytes: {held} counted on chain, "
            f"{pending} pending at this gateway, {available} left; "
            f"this object needs about {needed}"
        )
        self.territory, self.needed, self.available = territory, needed, available
        self.total, self.held, self.pending = total, held, pending


# -- stored objects ---------------------------------------------------------------------


class NoSuchFile(ObjectError):
    """Unknown, deleted, or someone else's: one answer for all three."""

    def __init__(self, fid: str) -> None:
        super().__init__(f"no file {fid}")
        self.fid = fid


class ReplacedMeanwhile(ObjectError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} was replaced meanwhile")
        self.name = name


class CipherRequired(ObjectError):
    def __init__(self) -> None:
        super().__init__("this object was stored with a Cipher")


class WrongCipher(ObjectError):
    def __init__(self) -> None:
        super().__init__("the Cipher does not open this object")


class SseKeyRequired(ObjectError):
    def __init__(self) -> None:
        super().__init__("the object was stored with an SSE-C key: send it to read the object")


class WrongSseKey(ObjectError):
    def __init__(self) -> None:
        super().__init__("the SSE-C key does not open this object")


# -- miners -----------------------------------------------------------------------------


class InsufficientMinerSpace(ObjectError):
    def __init__(self, miners_needed: int, need: int) -> None:
        super().__init__(f"fewer than {miners_needed} miners have {need} idle bytes")
        self.miners_needed, self.need = miners_needed, need


class MinersUnavailable(ObjectError):
    def __init__(self, fragment_id: str) -> None:
        super().__init__(f"no miner took fragment {fragment_id}")
        self.fragment_id = fragment_id


class FragmentsUnavailable(ObjectError):
    def __init__(self, fid: str, seg_no: int, readable: int, needed: int) -> None:
        super().__init__(
            f"segment {seg_no} of {fid}: {readable} of the {needed} fragments needed readable"
        )
        self.fid, self.seg_no, self.readable, self.needed = fid, seg_no, readable, needed


class RebuildMismatch(ObjectError):
    """k verified siblings decoded to a fragment other than its id: a bug, not a fault."""

    def __init__(self, fragment_id: str) -> None:
        super().__init__(f"the rebuilt {fragment_id} differs from its id")
        self.fragment_id = fragment_id
