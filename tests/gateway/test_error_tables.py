"""One error model: every refusal the pipeline, the index and the key store raise has an
entry in each API's table (a missing one would be a 500), and the tables answer the
documented statuses for the ones clients branch on."""

from collections.abc import Mapping

import pytest

from gateway import access_keys, errors, records
from gateway.native.errors import TABLE as NATIVE
from gateway.native.errors import as_native_error
from gateway.s3.errors import TABLE as S3
from gateway.s3.errors import as_s3_error


def _leaves(base: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in base.__subclasses__():
        found |= _leaves(sub) or {sub}
    return found


REFUSALS: set[type[BaseException]] = (
    _leaves(errors.ObjectError) - {errors.RebuildMismatch}  # a bug: the catch-all's 500
) | _leaves(access_keys.AccessKeyError)


@pytest.mark.parametrize("table", [NATIVE, S3], ids=["native", "s3"])
@pytest.mark.parametrize("refusal", sorted(REFUSALS, key=str))
def test_every_refusal_has_an_entry(
    table: Mapping[type[BaseException], object], refusal: type[BaseException]
) -> None:
    assert refusal in table


def test_the_documented_answers() -> None:
    territory = errors.TerritoryNotActive("home", "frozen", 42)
    native = as_native_error(territory)
    assert native is not None and (native.status, native.error) == (403, "TerritoryNotActive")
    assert native.data == {"territory": "home", "state": "frozen", "deadline": 42}
    missing = as_s3_error(records.NoSuchObject("b/k"))
    assert missing is not None and (missing.status, missing.code) == (404, "NoSuchKey")
    too_big = as_s3_error(errors.ObjectTooLarge(10, 5))
    assert too_big is not None and (too_big.status, too_big.code) == (400, "EntityTooLarge")
    assert as_native_error(errors.RebuildMismatch("f" * 64)) is None  # logged as a bug
    assert as_s3_error(ZeroDivisionError()) is None
