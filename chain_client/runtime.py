"""The runtime: how modules declare their calls, queries, hooks and storage, and the
context a call runs in.

A module is a ``ModuleSpec``: its SQL schema, its calls (each with a strict pydantic
argument model), its queries, and optional genesis and per-block hooks. A call either
returns normally, having emitted its events, or raises ``DispatchError``; the node runs
each call inside its own savepoint and rolls it back on that error.
"""

import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from chain_client.errors import InvalidArguments, UnknownCall
from chain_client.params import Genesis, NetworkParams

__all__ = [
    "MAX_U128",
    "CallContext",
    "CallSpec",
    "DispatchError",
    "Event",
    "InvalidArguments",
    "ModuleSpec",
    "QueryContext",
    "QuerySpec",
    "Runtime",
    "UnknownCall",
    "all_rows",
    "checked_add",
    "ensure",
    "one_row",
]

MAX_U128 = 2**128 - 1
A = TypeVar("A", bound=BaseModel)


class DispatchError(Exception):
    """A call was refused by the module's rules; the block goes on without its changes."""

    def __init__(self, module: str, error: str, detail: str = "") -> None:
        self.module = module
        self.error = error
        self.detail = detail
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return f"{self.module}.{self.error}" + (f": {self.detail}" if self.detail else "")

    def __repr__(self) -> str:
        return f"DispatchError({self.reason!r})"


def one_row(cursor: sqlite3.Cursor) -> dict[str, Any] | None:
    """The cursor's next row as ``{column: value}``; None when there is none."""
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([column[0] for column in cursor.description], row, strict=True))


def all_rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Every remaining row of the cursor as ``{column: value}``."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def ensure(condition: bool, module: str, error: str, detail: str = "") -> None:
    if not condition:
        raise DispatchError(module, error, detail)


def checked_add(module: str, *values: int, limit: int = MAX_U128) -> int:
    total = sum(values)
    ensure(0 <= total <= limit, module, "Overflow", f"result {total} outside 0..{limit}")
    return total


@dataclass(frozen=True, slots=True)
class Event:
    module: str
    name: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"module": self.module, "name": self.name, "data": self.data}


@dataclass(slots=True)
class QueryContext:
    db: sqlite3.Connection
    params: NetworkParams
    height: int


@dataclass(slots=True)
class CallContext:
    """Everything a call or hook may touch. ``sender`` is None in hooks."""

    db: sqlite3.Connection
    params: NetworkParams
    height: int
    randomness: bytes
    dev: bool
    sender: str | None
    scheme: str | None = None
    events: list[Event] = field(default_factory=list)

    def emit(self, module: str, event: str, /, **data: Any) -> None:
        self.events.append(Event(module, event, data))

    def rng(self, label: str) -> random.Random:
        """A deterministic generator for one purpose in this block: every node draws the
        same numbers because the seed is the block's randomness (from the parent hash)."""
        seed = hashlib.sha256(self.randomness + label.encode()).digest()
        return random.Random(int.from_bytes(seed, "big"))

    @property
    def caller(self) -> str:
        assert self.sender is not None, "hooks have no caller"
        return self.sender

    def query(self) -> QueryContext:
        return QueryContext(self.db, self.params, self.height)


@dataclass(frozen=True, slots=True)
class CallSpec(Generic[A]):
    name: str
    args: type[A]
    run: Callable[[CallContext, A], None]
    dev_only: bool = False
    # What the call costs the node to run, in units of weight_fee (docs/chain.md §2.2):
    # 1 for a few rows read and written; proofs and batches more.
    weight: int = 1


@dataclass(frozen=True, slots=True)
class QuerySpec(Generic[A]):
    name: str
    args: type[A]
    run: Callable[[QueryContext, A], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleSpec:
    name: str
    schema: str
    calls: tuple[CallSpec[Any], ...] = ()
    queries: tuple[QuerySpec[Any], ...] = ()
    genesis: Callable[[CallContext, Genesis], None] | None = None
    on_finalize: Callable[[CallContext], None] | None = None


class Runtime:
    """The set of modules a node runs, indexed by call and query name."""

    def __init__(self, modules: Sequence[ModuleSpec]) -> None:
        self.modules = tuple(modules)
        self._calls: dict[str, CallSpec[Any]] = {}
        self._queries: dict[str, QuerySpec[Any]] = {}
        for module in self.modules:
            for call in module.calls:
                self._calls[f"{module.name}.{call.name}"] = call
            for query in module.queries:
                self._queries[f"{module.name}.{query.name}"] = query

    def schema(self) -> Iterable[str]:
        return (module.schema for module in self.modules)

    @property
    def call_names(self) -> list[str]:
        return sorted(self._calls)

    @property
    def query_names(self) -> list[str]:
        return sorted(self._queries)

    def call(self, name: str, *, dev: bool) -> CallSpec[Any]:
        spec = self._calls.get(name)
        # SECURITY: dev-only calls (faucet, forced challenges) do not exist outside dev mode.
        if spec is None or (spec.dev_only and not dev):
            raise UnknownCall(name)
        return spec

    def parse_call_args(self, spec: CallSpec[A], args: dict[str, Any]) -> A:
        return _validate(spec.name, spec.args, args, strict=True)

    def query(self, name: str) -> QuerySpec[Any]:
        spec = self._queries.get(name)
        if spec is None:
            raise UnknownCall(name)
        return spec

    def run_query(self, ctx: QueryContext, name: str, args: dict[str, Any], *, strict: bool) -> Any:
        spec = self.query(name)
        return spec.run(ctx, _validate(name, spec.args, args, strict=strict))


def _validate(name: str, model: type[A], args: dict[str, Any], *, strict: bool) -> A:
    try:
        return model.model_validate(args, strict=strict)
    except ValidationError as exc:
        raise InvalidArguments(name, exc) from None
