"""The console's one refusal: a status, a machine-readable name and a sentence, shown as
an HTML page (or JSON to the upload script) by the console's error middleware."""

from collections.abc import Mapping

__all__ = ["ConsoleError"]


class ConsoleError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, code, message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"ConsoleError(status={self.status}, code={self.code!r}, message={self.message!r})"
