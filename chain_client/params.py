"""Network parameters and the genesis configuration.

Every role reads these from the chain (``system.genesis``), never from its own config,
so a network agrees on them. Sizes are bytes, durations are blocks unless the name says
seconds, amounts are base units (1 token = 10**18 units, as CESS).
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from chain_client.idle import IdleSpec

__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "TIB",
    "TOKEN",
    "ConfigError",
    "Genesis",
    "NetworkParams",
    "PenaltySchedule",
    "dev_params",
    "devnet_params",
]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB
TOKEN = 10**18


class ConfigError(ValueError):
    """A configuration value is missing or wrong; names the file, the key and the value."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class PenaltySchedule:
    """CESS's schedule by default: the n-th consecutive missed proof costs a share of the
    collateral limit; a miner that never earned a reward pays a flat fine instead."""

    miss_fine_percent: tuple[int, ...] = (0, 5, 15)
    never_rewarded_fine: int = 100
    force_exit_misses: int = 100
    failed_proof_percent: int = 5
    failed_proof_threshold: int = 2
    failed_idle_percent: int = 10

    def miss_fine_percent_for(self, consecutive_misses: int) -> int:
        index = min(consecutive_misses, len(self.miss_fine_percent)) - 1
        return self.miss_fine_percent[max(index, 0)]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkParams:
    chain_name: str = "deoss"
    # Erasure coding and data layout (DESIGN.md §3).
    data_shards: int = 4
    total_shards: int = 12
    segment_size: int = 32 * MIB
    fragment_size: int = 8 * MIB
    stripe_block_size: int = 256 * KIB
    leaf_size: int = 8 * KIB
    max_segments_per_file: int = 1000
    # Packed small objects (docs/packing.md): which uploads share a pack, how large a
    # pack is, and its small blocks (a small read fetches little).
    pack_object_limit: int = 256 * KIB
    pack_size: int = 1 * MIB
    pack_block_size: int = 8 * KIB
    # Idle data: unit size and the cost of the sequential, memory-hard generator.
    idle_unit_size: int = 64 * MIB
    # Measured (bench/bench_idle.py): rebuilding one stored leaf costs ~12x the 2-block
    # challenge deadline; honest generation runs at ~0.4 MB/s per core (once per unit).
    idle_scrypt_n: int = 2048
    idle_scrypt_r: int = 6
    idle_layers: int = 7
    idle_cert_samples: int = 32
    idle_anchor_window: int = 600
    # Time.
    block_time: float = 6.0
    blocks_per_day: int = 14_400
    # Audit.
    challenge_interval: int = 600
    challenge_miners: int = 1
    challenge_fragments: int = 8
    challenge_leaves: int = 4
    challenge_idle_samples: int = 16
    challenge_deadline: int = 2
    penalties: PenaltySchedule = field(default_factory=PenaltySchedule)
    era_length: int = 14_400
    era_reward: int = 1_000 * TOKEN
    idle_power_percent: int = 5
    service_power_percent: int = 95
    # Money.
    collateral_per_tib: int = 4_000 * TOKEN
    territory_unit: int = GIB  # what one "gib" of mint_territory buys; small on test networks
    territory_unit_price: int = 30 * TOKEN
    territory_min_days: int = 30
    faucet_amount: int = 1_000_000 * TOKEN
    dev_endowment: int = 1_000_000_000 * TOKEN
    # Fees (docs/chain.md §2.2): base + per byte of the signed extrinsic + per unit of the
    # call's weight, paid from free balance before the call runs, also when it fails.
    existential_deposit: int = TOKEN // 100
    base_fee: int = TOKEN // 1_000
    byte_fee: int = TOKEN // 1_000_000
    weight_fee: int = TOKEN // 10_000
    # Bonds (docs/chain.md §5): a gateway reserves gateway_bond to serve; a restoral
    # claim it lets lapse costs it restoral_claim_slash, a report the miner disproves
    # false_report_slash.
    gateway_bond: int = 1_000 * TOKEN
    restoral_claim_slash: int = 100 * TOKEN
    false_report_slash: int = 10 * TOKEN
    # Deadlines.
    grace_period: int = 7 * 14_400
    deal_report_timeout: int = 600
    orphan_ttl: int = 14_400
    restoral_order_life: int = 250
    heartbeat_interval: int = 100
    offline_after: int = 300
    offline_restoral_delay: int = 600
    exit_cooldown: int = 14_400
    # Limits.
    max_authorized_gateways: int = 20
    max_files_per_declaration: int = 256
    max_sealed_meta_bytes: int = 64 * KIB
    max_extrinsic_bytes: int = 4 * MIB
    max_block_extrinsics: int = 4096
    max_pool_extrinsics: int = 20_000
    max_pool_bytes: int = 256 * MIB
    max_pool_per_signer: int = 256

    def __post_init__(self) -> None:
        self.validate("genesis")

    def validate(self, source: str) -> None:
        def need(ok: bool, key: str, reason: str) -> None:
            if not ok:
                raise ConfigError(source, key, f"{reason} (got {getattr(self, key)!r})")

        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, int) and not isinstance(value, bool):
                need(value >= 0, item.name, "must not be negative")
        need(
            1 <= self.data_shards <= self.total_shards <= 255,
            "total_shards",
            "need 1 <= k <= n <= 255",
        )
        need(self.leaf_size >= 64 and self.leaf_size % 64 == 0, "leaf_size", "a multiple of 64")
        need(
            self.stripe_block_size % self.leaf_size == 0,
            "stripe_block_size",
            "a multiple of leaf_size",
        )
        need(
            self.fragment_size % self.stripe_block_size == 0,
            "fragment_size",
            "a multiple of stripe_block_size",
        )
        need(
            self.segment_size == self.fragment_size * self.data_shards,
            "segment_size",
            "must equal fragment_size * data_shards",
        )
        leaves = self.pack_block_size // self.leaf_size
        need(
            self.pack_block_size % self.leaf_size == 0
            and leaves > 0
            and leaves & (leaves - 1) == 0,
            "pack_block_size",
            "a multiple of leaf_size, leaves per block a power of two",
        )
        need(
            self.pack_size >= self.data_shards * self.pack_block_size,
            "pack_size",
            f"at least one stripe, k * pack_block_size ({self.data_shards * self.pack_block_size})",
        )
        need(
            self.idle_unit_size % self.leaf_size == 0 and self.idle_unit_size > 0,
            "idle_unit_size",
            "a positive multiple of leaf_size",
        )
        need(
            self.idle_scrypt_n >= 2 and self.idle_scrypt_n & (self.idle_scrypt_n - 1) == 0,
            "idle_scrypt_n",
            "a power of two >= 2",
        )
        need(self.idle_scrypt_r >= 1, "idle_scrypt_r", "at least 1")
        need(1 <= self.idle_layers <= 64, "idle_layers", "1 to 64")
        need(self.block_time >= 0, "block_time", "seconds, 0 for manual blocks")
        need(self.territory_unit >= 1, "territory_unit", "at least 1 byte")
        need(self.blocks_per_day >= 1, "blocks_per_day", "at least 1")
        need(self.challenge_interval >= 1, "challenge_interval", "at least 1")
        need(self.challenge_deadline >= 1, "challenge_deadline", "at least 1")
        need(self.era_length >= 1, "era_length", "at least 1")
        need(self.deal_report_timeout >= 1, "deal_report_timeout", "at least 1")
        need(self.restoral_order_life >= 1, "restoral_order_life", "at least 1")
        need(
            self.orphan_ttl > self.deal_report_timeout,
            "orphan_ttl",
            "must be longer than deal_report_timeout",
        )
        need(
            self.idle_power_percent + self.service_power_percent == 100,
            "service_power_percent",
            "idle and service power percents must add up to 100",
        )
        need(self.max_block_extrinsics >= 1, "max_block_extrinsics", "at least 1")
        need(self.max_pool_per_signer >= 1, "max_pool_per_signer", "at least 1")
        need(
            self.max_pool_bytes >= self.max_extrinsic_bytes,
            "max_pool_bytes",
            "must hold one extrinsic of max_extrinsic_bytes",
        )
        schedule = self.penalties
        if not schedule.miss_fine_percent or any(
            not 0 <= p <= 100 for p in schedule.miss_fine_percent
        ):
            raise ConfigError(source, "penalties.miss_fine_percent", "percents between 0 and 100")
        if schedule.force_exit_misses < 1:
            raise ConfigError(source, "penalties.force_exit_misses", "at least 1")

    @property
    def pack_capacity(self) -> int:
        """A pack's ciphertext: ``pack_size`` in whole stripes, within one segment."""
        stripe = self.data_shards * self.pack_block_size
        return max(stripe, min(self.pack_size, self.segment_size) // stripe * stripe)

    @property
    def pack_limit(self) -> int:
        """The largest object packed: ``pack_object_limit``, or less where a pack could
        not hold it with its tags (16 bytes per chunk of a stripe less 16)."""
        chunk = self.data_shards * self.pack_block_size - 16
        room = self.pack_capacity - 16 * -(-self.pack_capacity // (chunk + 16))
        return max(0, min(self.pack_object_limit, room))

    @property
    def redundancy(self) -> tuple[int, int]:
        return self.data_shards, self.total_shards

    def idle_spec(self) -> IdleSpec:
        return IdleSpec(
            unit_size=self.idle_unit_size,
            leaf_size=self.leaf_size,
            scrypt_n=self.idle_scrypt_n,
            scrypt_r=self.idle_scrypt_r,
            layers=self.idle_layers,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: object, *, source: str = "genesis") -> Self:
        if not isinstance(obj, dict):
            raise ConfigError(source, "params", "must be an object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in obj.items():
            if key not in known:
                raise ConfigError(source, key, "unknown parameter")
            if key == "penalties":
                values[key] = _penalties_from_json(value, source)
                continue
            default = getattr(cls(), key)
            expected = type(default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not expected:
                raise ConfigError(
                    source,
                    key,
                    f"must be {expected.__name__}, got {type(value).__name__} {value!r}",
                )
            values[key] = value
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


def _penalties_from_json(obj: object, source: str) -> PenaltySchedule:
    if not isinstance(obj, dict):
        raise ConfigError(source, "penalties", "must be an object")
    known = {f.name for f in dataclasses.fields(PenaltySchedule)}
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key not in known:
            raise ConfigError(source, f"penalties.{key}", "unknown parameter")
        if key == "miss_fine_percent":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(source, "penalties.miss_fine_percent", "a list of integers")
            values[key] = tuple(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            values[key] = value
        else:
            raise ConfigError(source, f"penalties.{key}", f"must be an integer, got {value!r}")
    return PenaltySchedule(**values)


def dev_params(**changes: Any) -> NetworkParams:
    """Small parameters for tests and the devnet: tiny fragments and idle units, short
    deadlines, cheap territories."""
    base = NetworkParams(
        chain_name="deoss-dev",
        data_shards=2,
        total_shards=4,
        segment_size=128 * KIB,
        fragment_size=64 * KIB,
        stripe_block_size=16 * KIB,
        leaf_size=8 * KIB,
        idle_unit_size=64 * KIB,
        idle_scrypt_n=2,
        idle_scrypt_r=1,
        idle_layers=2,
        idle_cert_samples=4,
        idle_anchor_window=1000,
        block_time=1.0,
        blocks_per_day=20,
        challenge_interval=20,
        challenge_miners=1,
        challenge_fragments=2,
        challenge_leaves=2,
        challenge_idle_samples=2,
        challenge_deadline=10,
        era_length=40,
        era_reward=100 * TOKEN,
        collateral_per_tib=4_000 * TOKEN,
        territory_unit=256 * KIB,
        territory_unit_price=TOKEN,
        territory_min_days=1,
        grace_period=20,
        deal_report_timeout=10,
        orphan_ttl=200,
        restoral_order_life=10,
        heartbeat_interval=5,
        offline_after=30,
        offline_restoral_delay=30,
        exit_cooldown=10,
        penalties=PenaltySchedule(force_exit_misses=5),
    )
    return base.replace(**changes) if changes else base


def devnet_params(**changes: Any) -> NetworkParams:
    """The devnet's network: the real code shape (k = 4, n = 12) at a small scale, with
    days long enough that a devnet left running keeps its territories."""
    base = dev_params(
        data_shards=4,
        total_shards=12,
        fragment_size=256 * KIB,
        segment_size=1024 * KIB,
        stripe_block_size=64 * KIB,
        # Idle space is certified at the pace of its generation, which is CPU-bound: one
        # layer of 1 MiB units fills a 4 GiB territory in minutes, not hours, on 2 cores
        # (a unit's proof is as large whatever its size, so a batch carries more).
        idle_unit_size=1024 * KIB,
        idle_layers=1,
        blocks_per_day=14_400,
        challenge_interval=600,
        challenge_deadline=20,
        offline_after=600,
        heartbeat_interval=200,  # as rare as going offline after 600 blocks allows
        offline_restoral_delay=600,
        deal_report_timeout=60,
        orphan_ttl=14_400,
    )
    return base.replace(**changes) if changes else base


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    """What block 0 is made of. Its hash names the chain, and every signature covers it,
    so an extrinsic for one network is worthless on another."""

    params: NetworkParams = field(default_factory=NetworkParams)
    dev: bool = False
    endowed: tuple[tuple[str, int], ...] = ()
    timestamp: int = 0

    def __post_init__(self) -> None:
        for i, (_, amount) in enumerate(self.endowed):
            if not 0 <= amount < 2**128:
                raise ConfigError("genesis", f"endowed[{i}]", f"amount {amount} is not a u128")

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params.to_json(),
            "dev": self.dev,
            "endowed": [[account, amount] for account, amount in self.endowed],
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, obj: object, *, source: str = "genesis") -> Self:
        if not isinstance(obj, dict):
            raise ConfigError(source, "(top)", "must be a JSON object")
        unknown = set(obj) - {"params", "dev", "endowed", "timestamp"}
        if unknown:
            raise ConfigError(source, sorted(unknown)[0], "unknown key")
        params = NetworkParams.from_json(obj.get("params", {}), source=source)
        dev = obj.get("dev", False)
        if not isinstance(dev, bool):
            raise ConfigError(source, "dev", f"must be true or false, got {dev!r}")
        endowed_raw = obj.get("endowed", [])
        if not isinstance(endowed_raw, list):
            raise ConfigError(source, "endowed", "must be a list of [address, amount]")
        endowed: list[tuple[str, int]] = []
        for i, entry in enumerate(endowed_raw):
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or not isinstance(entry[0], str)
                or not isinstance(entry[1], int)
                or isinstance(entry[1], bool)
                or entry[1] < 0
            ):
                raise ConfigError(
                    source, f"endowed[{i}]", f"must be [address, amount], got {entry!r}"
                )
            endowed.append((entry[0], entry[1]))
        timestamp = obj.get("timestamp", 0)
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise ConfigError(source, "timestamp", f"must be an integer, got {timestamp!r}")
        return cls(params=params, dev=dev, endowed=tuple(endowed), timestamp=timestamp)

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            obj = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(str(path), "(file)", f"not JSON: {exc}") from exc
        return cls.from_json(obj, source=str(path))
