"""The chain's modules, one each (file_bank a package of its concerns), in the order
their hooks run every block; a module touches only its own tables (tests/test_structure.py)."""

from chain_client.modules import audit, balances, file_bank, oss, sminer, storage_handler
from chain_client.runtime import ModuleSpec

__all__ = ["MODULES"]

MODULES: tuple[ModuleSpec, ...] = (
    balances.MODULE,
    oss.MODULE,
    sminer.MODULE,
    storage_handler.MODULE,
    file_bank.MODULE,
    audit.MODULE,
)
