"""Fixtures shared by the end-to-end modules, and the check that no request anywhere got
a 500: a test during which any running gateway logged an internal error fails."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.gateway_network import GATEWAY_LOGS, INTERNAL_ERRORS, gateway_network, s3_keys

__all__ = ["gateway_network", "no_internal_errors", "s3_keys"]


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.fixture(autouse=True)
def no_internal_errors() -> Iterator[None]:
    before = {path: _size(path) for path in GATEWAY_LOGS}
    yield
    for path in GATEWAY_LOGS:
        if not path.exists():
            continue
        with path.open("rb") as log:
            log.seek(before.get(path, 0))
            written = log.read().decode(errors="replace")
        failures = [
            line for line in written.splitlines() if any(m in line for m in INTERNAL_ERRORS)
        ]
        assert not failures, f"{path}: the gateway answered 500:\n" + "\n".join(failures)
