"""The miner's configuration: one TOML file, loaded once into a frozen dataclass.

Network parameters (idle unit size, deadlines, ...) are not here: they come from the
chain, so every miner agrees with it.
"""

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from chain_client.params import GIB, ConfigError
from miner_agent.store import statvfs_free

__all__ = ["MinerConfig", "file_probe", "render_config"]

SECTION = "miner"


def file_probe(path: Path) -> Callable[[Path], int]:
    """A free-space probe that reads the byte count from a file: tests simulate a nearly
    full disk by writing a small number there, without filling one."""

    def probe(_root: Path) -> int:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return statvfs_free(_root)

    return probe


@dataclass(frozen=True, slots=True, kw_only=True)
class MinerConfig:
    data_dir: Path
    declared_space: int
    chain_rpc: str
    listen: str = "127.0.0.1:0"
    endpoint: str = ""  # the URL gateways use; empty: http://<bound address>
    key_file: str = "key.json"  # relative to data_dir unless absolute; //Name needs dev
    dev: bool = False
    faucet: bool = False  # dev networks only: top up from the faucet before registering
    free_disk_floor: int = 2 * GIB
    free_space_probe: str = "statvfs"  # or "file:PATH"
    poll_seconds: float = 1.0
    tidy_seconds: float = 600.0
    source: str = "(defaults)"

    @property
    def key_spec(self) -> str:
        if self.key_file.startswith("//") or Path(self.key_file).is_absolute():
            return self.key_file
        return str(self.data_dir / self.key_file)

    def probe(self) -> Callable[[Path], int]:
        if self.free_space_probe == "statvfs":
            return statvfs_free
        return file_probe(Path(self.free_space_probe.removeprefix("file:")))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)

    @classmethod
    def load(cls, path: Path) -> "MinerConfig":
        source = str(path)
        try:
            document = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, "(file)", f"not TOML: {exc}") from None
        section = document.get(SECTION)
        if not isinstance(section, dict):
            raise ConfigError(source, f"[{SECTION}]", "missing section")
        known = {f.name: f for f in fields(cls) if f.name != "source"}
        values: dict[str, Any] = {"source": source}
        for key, value in section.items():
            if key not in known:
                raise ConfigError(source, f"{SECTION}.{key}", "unknown key")
            values[key] = _convert(source, key, value, known[key].type)
        for key in ("data_dir", "declared_space", "chain_rpc"):
            if key not in values:
                raise ConfigError(source, f"{SECTION}.{key}", "missing")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, key: str, reason: str) -> None:
            if not ok:
                raise ConfigError(
                    self.source, f"{SECTION}.{key}", f"{reason} (got {getattr(self, key)!r})"
                )

        need(self.declared_space > 0, "declared_space", "bytes, more than 0")
        need(self.free_disk_floor >= 0, "free_disk_floor", "bytes, 0 or more")
        need(self.chain_rpc.startswith(("http://", "https://")), "chain_rpc", "an http(s) URL")
        host, _, port = self.listen.rpartition(":")
        need(bool(host) and port.isdigit() and int(port) < 65536, "listen", "HOST:PORT")
        need(
            self.endpoint == "" or self.endpoint.startswith(("http://", "https://")),
            "endpoint",
            "empty or an http(s) URL",
        )
        need(
            self.free_space_probe == "statvfs" or self.free_space_probe.startswith("file:"),
            "free_space_probe",
            '"statvfs" or "file:PATH"',
        )
        need(self.poll_seconds > 0, "poll_seconds", "more than 0")
        need(self.tidy_seconds > 0, "tidy_seconds", "more than 0")


_ACCEPTED: dict[str, tuple[type, ...]] = {
    "Path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
}


def _convert(source: str, key: str, value: object, annotation: Any) -> object:
    name = annotation if isinstance(annotation, str) else annotation.__name__
    accepted = _ACCEPTED[name]
    # TOML booleans are ints to Python; a flag is never a number here, and vice versa.
    if isinstance(value, bool) != (bool in accepted) or not isinstance(value, accepted):
        raise ConfigError(source, f"{SECTION}.{key}", f"wrong type: {value!r}")
    if name == "Path":
        return Path(str(value))
    if name == "float":
        return float(value)  # type: ignore[arg-type]
    return value


def render_config(config: MinerConfig) -> str:
    lines = [f"[{SECTION}]"]
    for item in fields(config):
        if item.name == "source":
            continue
        value = getattr(config, item.name)
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int | float):
            rendered = repr(value)
        else:
            rendered = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{item.name} = {rendered}")
    return "\n".join(lines) + "\n"
