"""Ids the gateway hands out: upload and version ids are what S3 clients pass back, often
as a command-line option's value."""

from gateway.records import is_version_id, new_upload_id, new_version_id, opaque_id


def test_ids_never_start_with_a_dash() -> None:
    # A token of A-Za-z0-9_- starts with "-" one time in 64; the aws cli then reads
    # `--upload-id -abc` as a missing value. 4000 draws would show it almost surely.
    ids = [opaque_id(3) for _ in range(4000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) > 3000


def test_version_and_upload_ids_have_their_lengths() -> None:
    version_id = new_version_id()
    assert len(version_id) == 32 and is_version_id(version_id)
    assert len(new_upload_id()) == 43
    assert not is_version_id(new_upload_id())
