"""The console's settings: a ``[console]`` section of the gateway's TOML file, optional
(docs/console.md §6)."""

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from chain_client.params import ConfigError
from chain_client.tomlconfig import load_section

__all__ = ["SECURE_MODES", "ConsoleConfig"]

SECTION: Final = "console"
SECURE_MODES: Final = ("auto", "always", "never")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    enabled: bool = True
    session_ttl: float = 3600.0  # seconds a login lasts
    login_ttl: float = 600.0  # seconds a login challenge may be answered in
    # "auto": Secure when the request came over TLS or the gateway's registered endpoint
    # is https (a TLS proxy in front); "always" or "never" say it outright.
    cookie_secure: str = "auto"
    history_blocks: int = 2000  # blocks of restoral events read back at start
    source: str = "(defaults)"

    @classmethod
    def load(cls, path: Path) -> "ConsoleConfig":
        """The ``[console]`` section of ``path``; the defaults when it has none."""
        try:
            document = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), "(file)", f"not TOML: {exc}") from None
        if SECTION not in document:
            config = cls(source=str(path))
        else:
            config = load_section(cls, path, SECTION, ())
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, key: str, reason: str) -> None:
            if not ok:
                raise ConfigError(
                    self.source, f"{SECTION}.{key}", f"{reason} (got {getattr(self, key)!r})"
                )

        for key, low, high in (("session_ttl", 60, 7 * 86_400), ("login_ttl", 30, 3600)):
            value = getattr(self, key)
            need(math.isfinite(value) and low <= value <= high, key, f"seconds, {low}..{high}")
        need(self.cookie_secure in SECURE_MODES, "cookie_secure", " or ".join(SECURE_MODES))
        need(0 <= self.history_blocks <= 100_000, "history_blocks", "blocks, 0..100000")
