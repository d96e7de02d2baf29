"""The extrinsic pool (docs/chain.md §2.3): what waits for a block, per signer in nonce
order, bounded in count, bytes and per-signer share.

Admission at a full pool evicts before it refuses: a signer holding at least two fewer
waiting extrinsics than another takes the place of that other's last one (the lowest fee
first), so a flood from many keys cannot lock an honest signer out; otherwise the lowest
fee of a signer holding at least as many goes if the newcomer pays more. Only a signer's
last extrinsic is ever evicted, so every signer's queue stays a run of consecutive nonces.

A block takes one extrinsic per signer per round, least recently served signers first:
an honest signer who waited behind a flood is in the next block.
"""

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from chain_client.errors import Rejected
from chain_client.extrinsic import Extrinsic

__all__ = ["Pending", "Pool"]


@dataclass(slots=True)
class Pending:
    extrinsic: Extrinsic
    hash: str
    signer: str
    size: int
    fee: int
    arrival: int = 0  # the pool's own counter, set on admission


@dataclass(slots=True)
class _Signer:
    waiting: deque[Pending] = field(default_factory=deque)
    in_block: int = 0  # taken for the block being built, not yet applied
    in_block_fees: int = 0
    served: int = -1  # the block count at which a block last took from this signer


class Pool:
    def __init__(self, *, max_extrinsics: int, max_bytes: int, max_per_signer: int) -> None:
        self.max_extrinsics = max_extrinsics
        self.max_bytes = max_bytes
        self.max_per_signer = max_per_signer
        self._signers: dict[str, _Signer] = {}
        self._hashes: set[str] = set()
        self._count = 0
        self._bytes = 0
        self._arrivals = 0
        self._blocks = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, tx_hash: str) -> bool:
        return tx_hash in self._hashes

    def queued(self, signer: str) -> tuple[int, int]:
        """How many of the signer's extrinsics wait or are being applied, and their fees."""
        state = self._signers.get(signer)
        if state is None:
            return 0, 0
        fees = state.in_block_fees + sum(p.fee for p in state.waiting)
        return len(state.waiting) + state.in_block, fees

    def admit(self, pending: Pending) -> list[Pending]:
        """Queues ``pending`` (its nonce already checked to follow the signer's queue) and
        returns what it evicted; ``Rejected`` when it may not enter."""
        state = self._signers.get(pending.signer) or _Signer()
        if len(state.waiting) + state.in_block >= self.max_per_signer:
            raise Rejected(
                "TooManyPending",
                f"{self.max_per_signer} extrinsics of {pending.signer} wait already; "
                "retry once some are in a block",
            )
        if pending.size > self.max_bytes:
            raise Rejected("TooLarge", f"{pending.size} bytes, the pool holds {self.max_bytes}")
        evicted: list[Pending] = []
        while self._count + 1 > self.max_extrinsics or self._bytes + pending.size > self.max_bytes:
            victim = self._victim(pending, len(state.waiting))
            if victim is None:
                self._restore(evicted)
                raise Rejected("PoolFull", f"{self._count} extrinsics waiting; retry later")
            self._remove_last(victim.signer)
            evicted.append(victim)
        self._arrivals += 1
        pending.arrival = self._arrivals
        state.waiting.append(pending)
        self._signers[pending.signer] = state
        self._hashes.add(pending.hash)
        self._count += 1
        self._bytes += pending.size
        return evicted

    def take(self, limit: int) -> list[Pending]:
        """Up to ``limit`` extrinsics for a block, one per signer per round, in nonce order
        within a signer; they count as queued until ``release`` or ``put_back``."""
        self._blocks += 1
        order = sorted(
            (s for s in self._signers.items() if s[1].waiting),
            key=lambda item: (item[1].served, item[1].waiting[0].arrival),
        )
        taken: list[Pending] = []
        while order and len(taken) < limit:
            still: list[tuple[str, _Signer]] = []
            for signer, state in order:
                if len(taken) == limit:
                    break
                pending = state.waiting.popleft()
                self._hashes.discard(pending.hash)
                self._count -= 1
                self._bytes -= pending.size
                state.in_block += 1
                state.in_block_fees += pending.fee
                state.served = self._blocks
                taken.append(pending)
                if state.waiting:
                    still.append((signer, state))
            order = still
        return taken

    def put_back(self, batch: Iterable[Pending]) -> None:
        """A block that failed to commit: its extrinsics wait again, ahead of the rest."""
        for pending in reversed(list(batch)):
            state = self._signers[pending.signer]
            state.in_block -= 1
            state.in_block_fees -= pending.fee
            state.waiting.appendleft(pending)
            self._hashes.add(pending.hash)
            self._count += 1
            self._bytes += pending.size

    def release(self, batch: Iterable[Pending]) -> None:
        """A block committed (or dropped) these: they are no longer queued."""
        for pending in batch:
            state = self._signers[pending.signer]
            state.in_block -= 1
            state.in_block_fees -= pending.fee
            if not state.waiting and not state.in_block:
                del self._signers[pending.signer]

    def _victim(self, newcomer: Pending, newcomer_waiting: int) -> Pending | None:
        tails = [
            (state.waiting[-1], len(state.waiting))
            for signer, state in self._signers.items()
            if state.waiting and signer != newcomer.signer
        ]
        # SECURITY: a signer with fewer waiting takes a heavier signer's place, so a flood
        # from many funded keys does not keep anyone else out (security review #2). Only
        # a signer that would still hold as many as the newcomer gives one up, and no one
        # lighter than the newcomer is ever evicted, whatever the fees.
        heavier = [
            (p.fee, -count, p.arrival, p) for p, count in tails if count >= newcomer_waiting + 2
        ]
        if heavier:
            return min(heavier, key=lambda item: item[:3])[3]
        cheaper = [
            (p.fee, p.arrival, p)
            for p, count in tails
            if count >= newcomer_waiting + 1 and p.fee < newcomer.fee
        ]
        return min(cheaper, key=lambda item: item[:2])[2] if cheaper else None

    def _remove_last(self, signer: str) -> None:
        state = self._signers[signer]
        pending = state.waiting.pop()
        self._hashes.discard(pending.hash)
        self._count -= 1
        self._bytes -= pending.size
        if not state.waiting and not state.in_block:
            del self._signers[signer]

    def _restore(self, evicted: list[Pending]) -> None:
        for pending in reversed(evicted):
            state = self._signers.setdefault(pending.signer, _Signer())
            state.waiting.append(pending)
            self._hashes.add(pending.hash)
            self._count += 1
            self._bytes += pending.size
