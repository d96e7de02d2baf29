"""Every refusal of every layer as S3 says it (docs/s3.md §6): one table from exception
type to status and code, used by the one dispatcher and by DeleteObjects' per-key
errors. Anything the table does not name is the dispatcher's 500 ``InternalError``."""

from collections.abc import Callable, Mapping

from chain_client.errors import ChainError
from gateway import access_keys, errors
from gateway.records import (
    IndexRefusal,
    NoSuchBucket,
    NoSuchObject,
    NoSuchUpload,
    PreconditionFailed,
    UploadCompleted,
)
from gateway.s3.checksums import ChecksumError
from gateway.s3.chunked import ChunkedError
from gateway.s3.signing import S3AuthError
from gateway.s3.xml import S3Error

__all__ = ["TABLE", "as_s3_error"]

Entry = tuple[int, str] | Callable[[BaseException], S3Error]


def _carried(exc: BaseException) -> S3Error:
    """Layers of the S3 API itself carry their S3 status and code."""
    assert isinstance(exc, S3AuthError | ChecksumError | ChunkedError)
    error = S3Error(exc.status, exc.code, exc.message)
    if isinstance(exc, S3AuthError):
        error.extra.update(exc.details)
    return error


def _no_such_bucket(exc: BaseException) -> S3Error:
    assert isinstance(exc, NoSuchBucket)
    return S3Error(404, "NoSuchBucket", "the bucket does not exist", BucketName=exc.bucket)


def _no_such_upload(exc: BaseException) -> S3Error:
    assert isinstance(exc, NoSuchUpload | UploadCompleted)
    return S3Error(404, "NoSuchUpload", "the upload does not exist", UploadId=exc.upload_id)


def _header_not_text(exc: BaseException) -> S3Error:
    assert isinstance(exc, errors.HeaderNotText)
    return S3Error(400, "InvalidArgument", str(exc), ArgumentName=exc.header)


def _chain(exc: BaseException) -> S3Error:
    return S3Error(503, "ServiceUnavailable", f"the chain is unreachable: {exc}")


def _body_broke_off(exc: BaseException) -> S3Error:
    # The client went away or broke its own framing mid-body: nothing was stored.
    return S3Error(400, "IncompleteBody", "the request body terminated unexpectedly")


TABLE: Mapping[type[BaseException], Entry] = {
    S3AuthError: _carried,
    ChecksumError: _carried,
    ChunkedError: _carried,
    access_keys.InvalidLabel: (400, "InvalidArgument"),
    access_keys.TooManyAccessKeys: (400, "TooManyAccessKeys"),
    access_keys.NoSuchAccessKey: (403, "InvalidAccessKeyId"),
    # the index
    NoSuchBucket: _no_such_bucket,
    NoSuchObject: (404, "NoSuchKey"),
    PreconditionFailed: (412, "PreconditionFailed"),
    NoSuchUpload: _no_such_upload,
    UploadCompleted: _no_such_upload,
    IndexRefusal: (409, "OperationAborted"),
    # the object pipeline
    errors.HeaderNotText: _header_not_text,
    errors.InvalidCopies: (400, "InvalidArgument"),
    errors.TooManyCopies: (400, "InvalidArgument"),
    errors.ObjectTooLarge: (400, "EntityTooLarge"),
    errors.InvalidBucketName: (400, "InvalidBucketName"),
    errors.NoSuchTerritory: (404, "NoSuchTerritory"),
    errors.TerritoryNotActive: (403, "TerritoryNotActive"),
    errors.InsufficientTerritorySpace: (403, "InsufficientTerritorySpace"),
    errors.NoSuchFile: (404, "NoSuchKey"),
    errors.ReplacedMeanwhile: (404, "NoSuchKey"),
    errors.CipherRequired: (403, "CipherRequired"),
    errors.WrongCipher: (403, "WrongCipher"),
    errors.SseKeyRequired: (400, "InvalidRequest"),
    errors.WrongSseKey: (403, "AccessDenied"),
    errors.InsufficientMinerSpace: (507, "InsufficientMinerSpace"),
    errors.MinersUnavailable: (503, "MinersUnavailable"),
    errors.FragmentsUnavailable: (503, "FragmentsUnavailable"),
    # the outside
    ChainError: _chain,
    **dict.fromkeys(errors.BODY_BROKE_OFF, _body_broke_off),
}


def as_s3_error(exc: BaseException) -> S3Error | None:
    """``exc`` as S3 tells it; None for what no table names (a bug)."""
    if isinstance(exc, S3Error):
        return exc
    return errors.translate(TABLE, exc, lambda status, code, exc: S3Error(status, code, str(exc)))
