"""Every native answer's ``{code, msg, data}`` envelope, and every refusal as the native
API says it (docs/native-api.md §3): one table from exception type to status and
``data.error``, used by the one error middleware (``gateway.native.app``)."""

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from chain_client.errors import ChainError
from gateway import access_keys, errors
from gateway.native.auth import AuthError
from gateway.native.resume_store import ResumeError
from gateway.records import IndexRefusal, PreconditionFailed

__all__ = ["TABLE", "NativeError", "as_native_error", "envelope"]

BUSY = (429, 503)  # statuses answered with Retry-After


def envelope(status: int, data: Any, msg: str = "ok", **kwargs: Any) -> web.Response:
    return web.json_response({"code": status, "msg": msg, "data": data}, status=status, **kwargs)


class NativeError(Exception):
    """A refusal in the native API's own terms: status, ``data.error``, ``msg``, more
    ``data`` fields, and response headers."""

    def __init__(
        self,
        status: int,
        error: str,
        msg: str,
        *,
        headers: Mapping[str, str] | None = None,
        **data: Any,
    ) -> None:
        super().__init__(msg)
        self.status, self.error, self.msg, self.data = status, error, msg, data
        self.headers = dict(headers or {})
        if status in BUSY:
            self.headers.setdefault("Retry-After", "5")

    def response(self) -> web.Response:
        return envelope(
            self.status, {"error": self.error, **self.data}, self.msg, headers=self.headers
        )


Entry = tuple[int, str] | Callable[[BaseException], NativeError]


def _carried(exc: BaseException) -> NativeError:
    """The native API's own layers carry their status and code."""
    assert isinstance(exc, AuthError | ResumeError)
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'DeOSS-Signature realm="deoss"'
    return NativeError(exc.status, exc.code, exc.message, headers=headers)


def _chain(exc: BaseException) -> NativeError:
    return NativeError(503, "ChainUnavailable", str(exc), headers={"Retry-After": "2"})


def _named(status: int) -> Callable[[BaseException], NativeError]:
    """The index's refusals are named by their class."""
    return lambda exc: NativeError(status, type(exc).__name__, str(exc))


def _body_broke_off(exc: BaseException) -> NativeError:
    # The client went away or broke its own framing mid-body: nothing was stored.
    return NativeError(400, "IncompleteBody", "the request body broke off")


TABLE: Mapping[type[BaseException], Entry] = {
    AuthError: _carried,
    ResumeError: _carried,
    # the access-key store
    access_keys.InvalidLabel: (400, "InvalidArgument"),
    access_keys.TooManyAccessKeys: (400, "TooManyAccessKeys"),
    access_keys.NoSuchAccessKey: (404, "NoSuchAccessKey"),
    # the index
    PreconditionFailed: _named(412),
    IndexRefusal: _named(409),
    # the object pipeline
    errors.HeaderNotText: (400, "InvalidHeader"),
    errors.InvalidCopies: (400, "InvalidCopies"),
    errors.TooManyCopies: (400, "TooManyCopies"),
    errors.ObjectTooLarge: (413, "ObjectTooLarge"),
    errors.InvalidBucketName: (400, "InvalidName"),
    errors.NoSuchTerritory: (404, "NoSuchTerritory"),
    errors.TerritoryNotActive: (403, "TerritoryNotActive"),
    errors.InsufficientTerritorySpace: (403, "InsufficientTerritorySpace"),
    errors.NoSuchFile: (404, "NoSuchFile"),
    errors.ReplacedMeanwhile: (404, "NoSuchFile"),
    errors.CipherRequired: (403, "CipherRequired"),
    errors.WrongCipher: (403, "WrongCipher"),
    errors.SseKeyRequired: (403, "CipherRequired"),
    errors.WrongSseKey: (403, "WrongCipher"),
    errors.InsufficientMinerSpace: (507, "InsufficientMinerSpace"),
    errors.MinersUnavailable: (503, "MinersUnavailable"),
    errors.FragmentsUnavailable: (503, "FragmentsUnavailable"),
    # the outside
    ChainError: _chain,
    **dict.fromkeys(errors.BODY_BROKE_OFF, _body_broke_off),
}


def as_native_error(exc: BaseException) -> NativeError | None:
    """``exc`` as the native API tells it; None for what no table names (a bug)."""
    if isinstance(exc, NativeError):
        return exc
    return errors.translate(TABLE, exc, _plain)


def _plain(status: int, code: str, exc: BaseException) -> NativeError:
    facts = exc.facts if isinstance(exc, errors.ObjectError) else {}
    return NativeError(status, code, str(exc), **facts)
