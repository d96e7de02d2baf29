"""Exceptions a chain client sees, whichever implementation of ``Chain`` it talks to."""

from pydantic import ValidationError

__all__ = [
    "ChainError",
    "ChainUnavailable",
    "ExtrinsicFailed",
    "GenesisMismatch",
    "InvalidArguments",
    "Rejected",
    "UnknownCall",
]


class ChainError(Exception):
    """Base of every chain client error."""


class Rejected(ChainError):
    """The node refused an extrinsic before it reached a block; nothing changed.

    ``code`` is one of: TooLarge, DevAccountRefused, UnknownCall, InvalidArguments,
    BadSignature, AlreadyInPool, StaleNonce, FutureNonce, PoolFull, Malformed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ExtrinsicFailed(ChainError):
    """The extrinsic was included but its call was refused: its changes were rolled back
    (only its nonce was used). ``reason`` reads ``module.Error: detail``."""

    def __init__(self, call: str, tx_hash: str, reason: str) -> None:
        super().__init__(f"{call} failed: {reason}")
        self.call = call
        self.tx_hash = tx_hash
        self.reason = reason

    @property
    def error(self) -> str:
        """``module.Error``, without the detail: what code should compare against."""
        return self.reason.split(":", 1)[0]


class ChainUnavailable(ChainError):
    """The chain node could not be reached, or did not answer in time."""


class GenesisMismatch(ChainError):
    """A data directory or a peer belongs to another chain than the one expected."""


class UnknownCall(LookupError):
    """A call or query the runtime does not know (the node and every client raise it)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no such call or query: {name!r}")
        self.name = name


class InvalidArguments(ValueError):
    """Arguments the runtime's types refuse, naming the field."""

    def __init__(self, name: str, error: ValidationError | str) -> None:
        if isinstance(error, ValidationError):
            parts = []
            for item in error.errors(include_url=False):
                where = ".".join(str(p) for p in item["loc"]) or "(args)"
                parts.append(f"{where}: {item['msg']}")
            message = "; ".join(parts)
        else:
            message = error
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
