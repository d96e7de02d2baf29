"""What every fuzzed surface shares: sending a request and checking what came of it, the
tally the session prints, the watch on handler crashes, and the time budget.

A request passes when its answer is below 500 (or it was cut short on purpose and the
server closed the connection), no handler logged a crash while it ran, the server still
answers, and, when it was refused (4xx, or no answer), nothing stored changed: the
surface's ``snapshot`` is the same before and after.
"""

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import HealthCheck, settings

from tests.fuzz.wire import Answer, Request, exchange

__all__ = [
    "EVERYTHING",
    "SCALE",
    "Address",
    "CrashWatch",
    "State",
    "Surface",
    "SurfaceTally",
    "Tally",
    "fuzz_settings",
    "needs_no_body",
    "not_implemented",
    "timeout_for",
]

# DEOSS_FUZZ_SCALE=10 runs ten times the examples, and budgets, of the CI run.
SCALE = float(os.environ.get("DEOSS_FUZZ_SCALE", "1"))
# DEOSS_FUZZ_TRACE=<file>: one line per request sent (surface, answer, request), to see
# what the strategies reach.
TRACE = os.environ.get("DEOSS_FUZZ_TRACE")
SETTLE = 0.01


def timeout_for(budget: float) -> int:
    """A fuzz test's pytest timeout: its scaled budget, and time to shrink a failure."""
    return int(budget * SCALE) + 120


def fuzz_settings(max_examples: int) -> settings:
    # No deadline: a request's time is the servers', which a busy CI machine stretches.
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


def not_implemented(answer: Answer) -> bool:
    """A 501 ``NotImplemented``: the documented answer of both APIs to what they do not
    serve (docs/s3.md §4: sub-resources, MFA delete, a write's If-None-Match other than
    ``*``; docs/native-api.md §3: DeOSS routes not served). No server failure."""
    return answer.status == 501 and answer.code == "NotImplemented"


def needs_no_body(answer: Answer | None, request: Request) -> bool:
    """Whether ``request`` went unanswered and may have been carried out without its
    body: the client closed its side, which ends the connection before the answer, but a
    handler that reads no body (a DELETE, a GET, a block on demand) acts regardless."""
    return answer is None and request.method not in ("PUT", "POST")


@dataclass
class SurfaceTally:
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "2xx", "4xx", "dropped"...
    codes: Counter[str] = field(default_factory=Counter)  # error names of refusals
    server_errors: list[str] = field(default_factory=list)

    def record(self, answer: Answer | None) -> None:
        self.sent += 1
        if answer is None:
            self.outcomes["dropped"] += 1
            return
        outcome = f"{answer.status // 100}xx"
        self.outcomes["501 NotImplemented" if not_implemented(answer) else outcome] += 1
        if answer.status >= 400:
            self.codes[answer.code or str(answer.status)] += 1


@dataclass
class Tally:
    """Requests sent per surface over the session, printed at its end."""

    surfaces: dict[str, SurfaceTally] = field(default_factory=dict)

    def of(self, surface: str) -> SurfaceTally:
        return self.surfaces.setdefault(surface, SurfaceTally())

    def lines(self) -> list[str]:
        if not self.surfaces:
            return []
        server_errors = sum(len(s.server_errors) for s in self.surfaces.values())
        counts = ", ".join(f"{name} {s.sent}" for name, s in self.surfaces.items())
        documented = sum(s.outcomes["501 NotImplemented"] for s in self.surfaces.values())
        lines = [
            f"fuzz: {counts} requests; {server_errors} 5xx "
            f"(and {documented} documented 501 NotImplemented)"
        ]
        for name, surface in self.surfaces.items():
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(surface.outcomes.items()))
            codes = ", ".join(f"{k} {v}" for k, v in surface.codes.most_common(8))
            lines.append(f"fuzz {name}: {outcomes}; most refused: {codes}")
        return lines


class CrashWatch(logging.Handler):
    """Error records with a traceback from the servers' loggers: an exception a handler
    did not turn into an answer (aiohttp logs it and answers 500, or cuts a streamed
    answer), or one an API logged as its internal error."""

    LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio", "deoss.s3", "deoss.native")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        # aiohttp logs the requests its parser refuses (and answers 400): no crash.
        if isinstance(error, HttpProcessingError):
            return
        if error is not None or "internal error" in record.getMessage():
            self.records.append(record)

    def take(self) -> list[str]:
        found = [
            f"{r.name}: {r.getMessage()}\n{self.format(r) if r.exc_info else ''}"
            for r in self.records
        ]
        self.records.clear()
        return found

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


State = dict[str, frozenset[Hashable]]  # part of what is stored -> its items
# What ``changeable`` names for a request that may have been carried out unseen.
EVERYTHING = "*"
Snapshot = Callable[[], Awaitable[State]]
Address = tuple[str, int]
Alive = Callable[[Address], Awaitable[bool]]  # whether the server at the address serves


def _changes(before: State, after: State) -> dict[str, tuple[frozenset[Any], frozenset[Any]]]:
    """part -> (items added, items removed), for the parts that changed."""
    changed = {}
    for part in sorted(set(before) | set(after)):
        old, new = before.get(part, frozenset()), after.get(part, frozenset())
        if old != new:
            changed[part] = (new - old, old - new)
    return changed


def _shown(items: frozenset[Any], limit: int = 5) -> str:
    listed = sorted(map(repr, items))
    return ", ".join(listed[:limit]) + (
        f" and {len(listed) - limit} more" if len(listed) > limit else ""
    )


class Surface:
    """One API under fuzz: where it listens, what it stores (``snapshot``), how to tell
    it still serves (``alive``), and how long its examples may take (``budget`` seconds
    of the test's run, after which examples are skipped; once one has failed, never, so
    that Hypothesis can shrink it).

    ``shrinking`` parts of the state lose items on their own (miners drop the fragments
    of deleted files); ``changeable(answer, request)`` names the parts that a refusal may
    change by design: a body that failed after it had streamed to miners leaves fragments
    nobody names, which they drop after ``orphan_ttl`` (docs/native-api.md §5), and an
    interrupted resume chunk may leave a durable prefix (§6). A request cut short that
    went unanswered may have been carried out all the same, when it needed no body:
    ``needs_no_body`` tells most of those; ``changeable`` then names ``EVERYTHING``.
    """

    def __init__(
        self,
        name: str,
        address: Address,
        *,
        tally: SurfaceTally,
        watch: CrashWatch,
        snapshot: Snapshot,
        alive: Alive,
        budget: float,
        shrinking: frozenset[str] = frozenset(),
        changeable: Callable[[Answer | None, Request], frozenset[str]] = lambda a, r: frozenset(),
    ) -> None:
        self.name, (self.host, self.port) = name, address
        self.tally, self.watch, self.snapshot, self.alive = tally, watch, snapshot, alive
        self.budget = budget
        self.shrinking, self.changeable = shrinking, changeable
        self.started = time.monotonic()
        self.failed = False

    def __repr__(self) -> str:
        return f"Surface({self.name!r})"

    def over_budget(self) -> bool:
        return not self.failed and time.monotonic() - self.started > self.budget * SCALE

    async def send(self, request: Request, to: Address | None = None) -> Answer | None:
        """Sends ``request`` (to the surface's address, or to ``to``) and checks it."""
        try:
            return await self._send(request, to or (self.host, self.port))
        except BaseException:
            self.failed = True
            raise

    async def _send(self, request: Request, to: Address) -> Answer | None:
        started = time.monotonic()
        before = await self.snapshot()
        answer = await exchange(*to, request)
        took = time.monotonic() - started
        if answer is None or request.framing.cut_short:
            # The handler may still be reading the body that never comes: let it end
            # (and log what it logs) before this request is judged.
            await asyncio.sleep(SETTLE)
        self.tally.record(answer)
        if TRACE:
            with open(TRACE, "a") as trace:
                status = "-" if answer is None else f"{answer.status} {answer.code}"
                said = "" if answer is None else repr(answer.body[:160])
                line = f"{self.name}\t{status}\t{took * 1000:.0f} ms\t{request.describe(300)}"
                trace.write(f"{line}\t{said}\n")
        crashes = self.watch.take()
        # The request is described only for a failure: a large body's repr costs.
        if answer is not None and answer.status >= 500 and not not_implemented(answer):
            self.tally.server_errors.append(f"{answer.status} {answer.code}")
        assert answer is None or answer.status < 500 or not_implemented(answer), (
            f"{self.name}: {answer.status} {answer.body[:400]!r} for {request.describe()}"
        )
        assert not crashes, (
            f"{self.name}: a handler crashed on {request.describe()}:\n" + "\n".join(crashes)
        )
        assert answer is not None or request.framing.cut_short, (
            f"{self.name}: the connection closed without an answer to {request.describe()}"
        )
        assert await self.alive(to), f"{self.name}: no longer answers after {request.describe()}"
        if answer is None or answer.status >= 400:
            self._check_unchanged(answer, before, await self.snapshot(), request)
        return answer

    def _check_unchanged(
        self, answer: Answer | None, before: State, after: State, request: Request
    ) -> None:
        problems = []
        changeable = self.changeable(answer, request)
        if EVERYTHING in changeable:
            return
        for part, (added, removed) in _changes(before, after).items():
            if part in changeable:
                continue
            if removed and part not in self.shrinking:
                problems.append(f"{part}: lost {_shown(removed)}")
            if added:
                problems.append(f"{part}: gained {_shown(added)}")
        if problems:
            status = "no answer" if answer is None else f"{answer.status} {answer.code}"
            raise AssertionError(
                f"{self.name}: refused ({status}) yet what is stored changed: "
                + "; ".join(problems)
                + f"\nrequest {request.describe()}"
            )
