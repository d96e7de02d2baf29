"""The miner's configuration: one TOML file, loaded once into a frozen dataclass.

Network parameters (idle unit size, deadlines, ...) are not here: they come from the
chain, so every miner agrees with it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chain_client.params import GIB, ConfigError
from chain_client.serving import (
    BODY_IDLE_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    ServerLimits,
)
from chain_client.tomlconfig import load_section, render_section
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
    # The fragment server's connection limits (chain_client/serving.py).
    header_timeout: float = HEADER_TIMEOUT
    body_idle_timeout: float = BODY_IDLE_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
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

    @property
    def server_limits(self) -> ServerLimits:
        return ServerLimits.configured(self)

    @classmethod
    def load(cls, path: Path) -> "MinerConfig":
        config = load_section(cls, path, SECTION, ("data_dir", "declared_space", "chain_rpc"))
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
        for key in ("header_timeout", "body_idle_timeout", "keepalive_timeout"):
            need(getattr(self, key) > 0, key, "seconds, more than 0")
        need(self.max_connections >= 1, "max_connections", "at least 1")


def render_config(config: MinerConfig) -> str:
    return render_section(config, SECTION)
