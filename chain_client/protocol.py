"""The contract between the chain and everyone who uses it.

``Chain`` is served in-process (``LocalChain``, over a real ledger node) and over HTTP
(``HttpChain``, talking to ``deoss-chain run``); one contract test suite runs against
both. Signing is not part of it: ``ChainAccount`` signs with a key and submits through
any ``Chain``.
"""

from dataclasses import dataclass
from typing import Any, Protocol, Self

from chain_client.extrinsic import Extrinsic
from chain_client.params import Genesis

__all__ = ["Chain", "EventPage", "ExtrinsicResult", "Head"]


@dataclass(frozen=True, slots=True)
class Head:
    best_block: int
    best_hash: str


@dataclass(frozen=True, slots=True)
class ExtrinsicResult:
    """What happened to an included extrinsic: its block, its position, and the events it
    emitted (an ``ExtrinsicFailed`` event with the reason when it failed)."""

    hash: str
    height: int
    index: int
    success: bool
    error: str | None
    events: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "block": self.height,
            "index": self.index,
            "success": self.success,
            "error": self.error,
            "events": list(self.events),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        return cls(
            hash=str(obj["hash"]),
            height=int(obj["block"]),
            index=int(obj["index"]),
            success=bool(obj["success"]),
            error=obj["error"],
            events=tuple(obj["events"]),
        )

    def events_named(self, module: str, name: str) -> list[dict[str, Any]]:
        return [
            event["data"]
            for event in self.events
            if event["module"] == module and event["name"] == name
        ]


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events of whole blocks from the asked height; ``next`` is the height to ask next."""

    events: tuple[dict[str, Any], ...]
    next: int


class Chain(Protocol):
    async def genesis(self) -> tuple[bytes, Genesis]:
        """The genesis hash (which every signature covers) and the genesis config."""
        ...

    async def head(self) -> Head: ...

    async def next_nonce(self, account: str) -> int:
        """The nonce the account's next extrinsic must carry (counting the mempool)."""
        ...

    async def submit(self, extrinsic: Extrinsic) -> str:
        """Queues an extrinsic; returns its hash. Raises ``Rejected``."""
        ...

    async def submit_and_wait(
        self, extrinsic: Extrinsic, *, timeout: float = 60.0
    ) -> ExtrinsicResult:
        """Queues an extrinsic and waits until a block includes it. Raises ``Rejected``,
        or ``TimeoutError`` when no block included it in time (it may still be)."""
        ...

    async def receipt(self, tx_hash: str) -> ExtrinsicResult | None: ...

    async def query(self, name: str, /, **args: Any) -> Any:
        """Runs a module query (``"module.name"``) on the last committed block."""
        ...

    async def block(self, height: int, *, header_only: bool = False) -> dict[str, Any] | None:
        """The block, or None before it exists; ``header_only`` leaves out its extrinsics
        and events (what a caller wanting its hash or randomness needs)."""
        ...

    async def events(
        self, from_height: int, *, timeout: float = 0.0, max_blocks: int = 100
    ) -> EventPage:
        """Events from ``from_height`` on; waits up to ``timeout`` seconds for a block
        when there is none yet (a long poll)."""
        ...

    async def produce_block(self) -> int:
        """Dev networks in manual mode only: make the next block now; returns its height."""
        ...

    async def close(self) -> None: ...
