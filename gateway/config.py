"""The gateway's configuration: one TOML file (``[gateway]``), loaded once."""

from dataclasses import dataclass
from pathlib import Path

from chain_client.params import ConfigError
from chain_client.serving import (
    BODY_IDLE_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    ServerLimits,
)
from chain_client.tomlconfig import load_section, render_section

__all__ = ["GatewayConfig"]

SECTION = "gateway"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    data_dir: Path
    chain_rpc: str
    native_listen: str = "127.0.0.1:8080"
    native_endpoint: str = ""  # the URL users reach; empty: http://<bound address>
    s3_listen: str = "127.0.0.1:8081"
    s3_endpoint: str = ""  # as native_endpoint, for the S3 API
    s3_domain: str = ""  # virtual-host style buckets under this domain (docs/s3.md §1)
    s3_region: str = "us-east-1"
    multipart_ttl: float = 86_400.0  # unfinished multipart uploads expire (< orphan_ttl)
    multipart_min_part_size: int = 5 * 1024 * 1024  # every part but the last (AWS's 5 MiB)
    scrub_interval: float = 3600.0  # seconds between background scrubs
    scrub_sample: float = 0.01  # the share of fragments each one fetches and checks
    key_file: str = "key.json"  # relative to data_dir unless absolute; //Name needs dev
    master_key_file: str = "master.key"
    dev: bool = False
    faucet: bool = False  # dev networks only: fund the gateway account from the faucet
    default_territory: str = ""
    auth_window: float = 300.0
    # DeOSS's bare signature (bound to no gateway or request) for GET and HEAD: for DeOSS
    # clients that cannot sign the bound message (docs/native-api.md §2.2).
    native_bare_reads: bool = False
    max_uploads_per_account: int = 32  # aws cli alone runs 10 requests at once
    max_uploads: int = 256
    max_resume_sessions_per_account: int = 16
    resume_ttl: float = 86_400.0  # an idle resumable upload is aborted after this
    spool_floor: int = 256 * 1024 * 1024  # free bytes the resume spool leaves on its disk
    # Small uploads share a pack (docs/packing.md §3), flushed this long after its first.
    pack: bool = True
    pack_delay: float = 0.005
    # A pack whose live members are charged less than this share of it is repacked
    # (docs/packing.md §6); 0: never. Looked for every repack_interval seconds.
    repack_below: float = 0.5
    repack_interval: float = 30.0
    # Each of the two servers (native, S3) on its own (chain_client/serving.py).
    header_timeout: float = HEADER_TIMEOUT
    body_idle_timeout: float = BODY_IDLE_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    source: str = "(defaults)"

    def path(self, name: str) -> Path:
        return Path(name) if Path(name).is_absolute() else self.data_dir / name

    @property
    def key_spec(self) -> str:
        return self.key_file if self.key_file.startswith("//") else str(self.path(self.key_file))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.native_listen.rpartition(":")
        return host, int(port)

    @property
    def s3_host_port(self) -> tuple[str, int]:
        host, _, port = self.s3_listen.rpartition(":")
        return host, int(port)

    @property
    def server_limits(self) -> ServerLimits:
        return ServerLimits.configured(self)

    @classmethod
    def load(cls, path: Path) -> "GatewayConfig":
        config = load_section(cls, path, SECTION, ("data_dir", "chain_rpc"))
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, key: str, reason: str) -> None:
            if not ok:
                raise ConfigError(
                    self.source, f"{SECTION}.{key}", f"{reason} (got {getattr(self, key)!r})"
                )

        need(self.chain_rpc.startswith(("http://", "https://")), "chain_rpc", "an http(s) URL")
        for key in ("native_listen", "s3_listen"):
            host, _, port = getattr(self, key).rpartition(":")
            need(bool(host) and port.isdigit() and int(port) < 65536, key, "HOST:PORT")
        need(
            self.s3_endpoint == "" or self.s3_endpoint.startswith(("http://", "https://")),
            "s3_endpoint",
            "empty or an http(s) URL",
        )
        need(bool(self.s3_region) and self.s3_region.isprintable(), "s3_region", "a region name")
        need(self.multipart_ttl >= 60, "multipart_ttl", "seconds, at least a minute")
        need(self.multipart_min_part_size >= 1, "multipart_min_part_size", "at least a byte")
        need(self.scrub_interval >= 1, "scrub_interval", "seconds, at least one")
        need(0 <= self.scrub_sample <= 1, "scrub_sample", "a share, 0 to 1")
        need(
            self.native_endpoint == "" or self.native_endpoint.startswith(("http://", "https://")),
            "native_endpoint",
            "empty or an http(s) URL",
        )
        need(0 < self.auth_window <= 3600, "auth_window", "seconds, up to an hour")
        for key in ("max_uploads_per_account", "max_uploads", "max_resume_sessions_per_account"):
            need(getattr(self, key) >= 1, key, "at least 1")
        need(self.resume_ttl >= 60, "resume_ttl", "seconds, at least a minute")
        need(self.spool_floor >= 0, "spool_floor", "bytes, not negative")
        need(0 <= self.pack_delay <= 1, "pack_delay", "seconds, 0 to 1")
        need(0 <= self.repack_below <= 1, "repack_below", "a share, 0 (never) to 1")
        need(self.repack_interval >= 0.01, "repack_interval", "seconds, at least 0.01")
        for key in ("header_timeout", "body_idle_timeout", "keepalive_timeout"):
            need(getattr(self, key) > 0, key, "seconds, more than 0")
        need(self.max_connections >= 1, "max_connections", "at least 1")

    def render(self) -> str:
        return render_section(self, SECTION)
