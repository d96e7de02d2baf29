"""The shape the code keeps (issue: chain modules own their tables; no import cycles):
checked by reading the source, so a change that breaks it fails here, not in review."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chain_client", "gateway", "miner_agent")
MODULES_DIR = ROOT / "chain_client" / "modules"
_SQL_TABLE = r"\b(?:FROM|JOIN|INTO|UPDATE|EXISTS)\s+{}\b"


def _sources() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _chain_module(path: Path) -> str | None:
    """The chain module a file belongs to (a module, or a file of a module's package)."""
    if not path.is_relative_to(MODULES_DIR):
        return None
    relative = path.relative_to(MODULES_DIR)
    return None if relative == Path("__init__.py") else relative.parts[0].removesuffix(".py")


def _owned_tables() -> dict[str, str]:
    """Chain table -> the module whose schema creates it."""
    owners = {}
    for path in sorted(MODULES_DIR.rglob("*.py")):
        for table in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", path.read_text()):
            owner = _chain_module(path)
            assert owner is not None, path
            owners[table] = owner
    return owners


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from a import b" imports a, and a.b when b is a module
            targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def test_every_chain_table_is_touched_only_by_its_module() -> None:
    owners = _owned_tables()
    assert {"fb_files", "sminer_miners", "territories", "audit_challenges"} <= set(owners)
    foreign = []
    for name, path in _sources().items():
        text = path.read_text()
        for table, owner in owners.items():
            if _chain_module(path) == owner:
                continue
            if re.search(_SQL_TABLE.format(table), text, re.IGNORECASE):
                foreign.append(f"{name} uses {table} (owned by {owner})")
    assert not foreign, "\n".join(foreign)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    sources = _sources()
    known = set(sources)
    # A package's __init__ importing its own modules is how packages work, not a cycle.
    graph = {
        name: {t for t in _imports(name, path, known) if not name or not t.startswith(name + ".")}
        for name, path in sources.items()
    }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


NODE_SIDE = (
    "chain_client.node",
    "chain_client.runtime",
    "chain_client.local",
    "chain_client.rpc_server",
    "chain_client.cli",
    "chain_client.modules",
)


def test_gateways_and_miners_use_only_the_client_side_of_the_chain() -> None:
    """What a gateway or a miner needs of the chain is the Chain contract and its helpers;
    the ledger node's half can become a package of its own without touching them."""
    sources = _sources()
    known = set(sources)
    client_side = [name for name in sources if not name.startswith(NODE_SIDE)]
    reaching = [
        f"{name} imports {target}"
        for name in client_side
        for target in _imports(name, sources[name], known)
        if target.startswith(NODE_SIDE)
    ]
    assert not reaching, "\n".join(reaching)
