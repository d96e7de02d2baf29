import json
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain_client.keys import (
    DEV_ACCOUNT_NAMES,
    DEV_PHRASE,
    MAX_KEY_FILE_BYTES,
    SCHEMES,
    DevKeyRefused,
    KeyFileError,
    KeyMaterialError,
    Keypair,
    Scheme,
    dev_accounts,
    dev_keypair,
    dev_public_keys,
    is_dev_address,
    key_file_json,
    load_key_file,
    load_signer,
    parse_key_uri,
    save_key_file,
    verify,
)
from chain_client.ss58 import GENERIC_SS58_PREFIX, ss58_encode

ALICE_PUBLIC_KEY = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
ALICE_CESS = "cXjmuHdBk4J3Zyt2oGodwGegNFaTFPcfC48PZ9NMmcUFzF6cc"
BOB_GENERIC = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
# subkey inspect --scheme ed25519 //Alice (and //Bob).
ALICE_ED25519_PUBLIC_KEY = bytes.fromhex(
    "88dc3417d5058ec4b4503e0c12ea1a0a89be200fe98922423d4334014fa6b0ee"
)
BOB_ED25519_PUBLIC_KEY = bytes.fromhex(
    "d17c2d7823ebf260fd138f2d7e27d114c0145d968b5ff5006125f2414fadae69"
)
# The dev phrase itself, underived, as CESS's SDK examples print it.
DEV_PHRASE_ROOT_CESS = "cXgaee2N8E77JJv9gdsGAckv1Qsf3hqWYf7NL4q6ZuQzuAUtB"

seeds = st.binary(min_size=32, max_size=32)
schemes = st.sampled_from(SCHEMES)
messages = st.binary(max_size=256)


def _write_key_file(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


def _valid_document(scheme: Scheme = "sr25519") -> dict[str, str]:
    document: dict[str, str] = json.loads(key_file_json(Keypair.generate(scheme)))
    return document


# --- key pairs and signatures ---


def test_alice_vector() -> None:
    alice = dev_keypair("Alice")
    assert alice.public_key == ALICE_PUBLIC_KEY
    assert alice.address == ALICE_CESS


def test_bob_vector() -> None:
    assert ss58_encode(dev_keypair("Bob").public_key, GENERIC_SS58_PREFIX) == BOB_GENERIC


def test_ed25519_dev_vectors() -> None:
    assert dev_keypair("Alice", "ed25519").public_key == ALICE_ED25519_PUBLIC_KEY
    assert dev_keypair("Bob", "ed25519").public_key == BOB_ED25519_PUBLIC_KEY


def test_ed25519_dev_keypair_signs() -> None:
    alice = dev_keypair("Alice", "ed25519")
    assert alice.scheme == "ed25519"
    assert verify("ed25519", ALICE_ED25519_PUBLIC_KEY, b"m", alice.sign(b"m"))


def test_mnemonic_vector() -> None:
    assert Keypair.from_mnemonic(DEV_PHRASE).address == DEV_PHRASE_ROOT_CESS


def test_invalid_mnemonic_does_not_echo_the_phrase() -> None:
    phrase = "correct horse battery staple"
    with pytest.raises(KeyMaterialError) as caught:
        Keypair.from_mnemonic(phrase)
    assert "horse" not in str(caught.value)


@given(seed=seeds, scheme=schemes, message=messages)
def test_sign_verify_round_trip(seed: bytes, scheme: Scheme, message: bytes) -> None:
    keypair = Keypair.from_seed(seed, scheme)
    signature = keypair.sign(message)
    assert len(signature) == 64
    assert verify(scheme, keypair.public_key, message, signature)


@given(seed=seeds, scheme=schemes, message=messages, bit=st.integers(0, 64 * 8 - 1))
def test_flipped_signature_bit_fails(seed: bytes, scheme: Scheme, message: bytes, bit: int) -> None:
    keypair = Keypair.from_seed(seed, scheme)
    signature = bytearray(keypair.sign(message))
    signature[bit // 8] ^= 1 << (bit % 8)
    assert not verify(scheme, keypair.public_key, message, bytes(signature))


@given(seed=seeds, scheme=schemes, message=messages.filter(bool), data=st.data())
def test_flipped_message_bit_fails(
    seed: bytes, scheme: Scheme, message: bytes, data: st.DataObject
) -> None:
    keypair = Keypair.from_seed(seed, scheme)
    signature = keypair.sign(message)
    bit = data.draw(st.integers(0, len(message) * 8 - 1))
    tampered = bytearray(message)
    tampered[bit // 8] ^= 1 << (bit % 8)
    assert not verify(scheme, keypair.public_key, bytes(tampered), signature)


@given(
    scheme=st.sampled_from([*SCHEMES, "ecdsa", ""]),
    public_key=st.binary(max_size=40),
    message=messages,
    signature=st.binary(max_size=80),
)
def test_verify_never_raises(
    scheme: str, public_key: bytes, message: bytes, signature: bytes
) -> None:
    assert verify(scheme, public_key, message, signature) in (True, False)


def test_verify_rejects_other_scheme_and_wrong_types() -> None:
    keypair = Keypair.generate("sr25519")
    signature = keypair.sign(b"payload")
    assert not verify("ed25519", keypair.public_key, b"payload", signature)
    assert not verify("sr25519", keypair.public_key, "payload", signature)  # type: ignore[arg-type]
    assert not verify("sr25519", None, b"payload", signature)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_secret_stays_out_of_repr(scheme: Scheme) -> None:
    keypair = Keypair.generate(scheme)
    assert keypair.seed is not None
    assert keypair.seed.hex() not in repr(keypair)
    assert repr(keypair.seed) not in repr(keypair)
    assert repr(keypair.secret_key) not in repr(keypair)


def test_equality_is_by_public_key() -> None:
    seed = bytes(range(32))
    assert Keypair.from_seed(seed, "sr25519") == Keypair.from_seed(seed, "sr25519")
    assert Keypair.from_seed(seed, "sr25519") != Keypair.from_seed(seed, "ed25519")


def test_rejects_inconsistent_pair() -> None:
    alice, bob = dev_keypair("Alice"), dev_keypair("Bob")
    with pytest.raises(KeyMaterialError, match="does not match"):
        Keypair(scheme="sr25519", public_key=alice.public_key, secret_key=bob.secret_key)
    with pytest.raises(KeyMaterialError, match="seed must be 32 bytes"):
        Keypair.from_seed(b"short", "sr25519")


def test_rejects_inconsistent_seedless_ed25519_pair() -> None:
    alice, bob = dev_keypair("Alice", "ed25519"), dev_keypair("Bob", "ed25519")
    with pytest.raises(KeyMaterialError, match="does not match"):
        Keypair(scheme="ed25519", public_key=alice.public_key, secret_key=bob.secret_key)
    with pytest.raises(KeyMaterialError, match="ed25519 secret must be 32 bytes"):
        Keypair(scheme="ed25519", public_key=alice.public_key, secret_key=bytes(64))


# --- dev accounts ---


def test_dev_accounts() -> None:
    accounts = dev_accounts()
    assert tuple(accounts) == DEV_ACCOUNT_NAMES
    assert accounts["Alice"] == ALICE_CESS
    assert len(set(accounts.values())) == len(DEV_ACCOUNT_NAMES)
    accounts["Alice"] = "mutated"
    assert dev_accounts()["Alice"] == ALICE_CESS


def test_dev_public_keys_cover_both_schemes() -> None:
    keys = dev_public_keys()
    assert len(keys) == len(DEV_ACCOUNT_NAMES) * len(SCHEMES)
    assert {ALICE_PUBLIC_KEY, ALICE_ED25519_PUBLIC_KEY, BOB_ED25519_PUBLIC_KEY} <= keys


def test_is_dev_address_accepts_either_prefix() -> None:
    assert is_dev_address(ALICE_CESS)
    assert is_dev_address(BOB_GENERIC)
    assert is_dev_address(ss58_encode(BOB_ED25519_PUBLIC_KEY, GENERIC_SS58_PREFIX))
    assert not is_dev_address(Keypair.generate().address)
    assert not is_dev_address("not an address")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dev_keypairs_have_no_seed(scheme: Scheme) -> None:
    assert dev_keypair("Alice", scheme).seed is None
    with pytest.raises(KeyMaterialError, match="no seed"):
        key_file_json(dev_keypair("Alice", scheme))


@pytest.mark.parametrize(
    "uri", ["//alice", "Alice", "//Alice//stash", "//Alice/soft", "//Zed", "//"]
)
def test_parse_key_uri_rejects(uri: str) -> None:
    with pytest.raises(KeyMaterialError, match="unsupported key URI"):
        parse_key_uri(uri)


def test_parse_key_uri() -> None:
    assert parse_key_uri("//Bob") == dev_keypair("Bob")
    assert parse_key_uri("//Bob", "ed25519").public_key == BOB_ED25519_PUBLIC_KEY


def test_unknown_dev_account() -> None:
    with pytest.raises(KeyMaterialError, match="unknown dev account"):
        dev_keypair("Mallory")
    with pytest.raises(KeyMaterialError, match="unknown signature scheme"):
        dev_keypair("Alice", "ecdsa")  # type: ignore[arg-type]


# --- key files ---


@pytest.mark.parametrize("scheme", SCHEMES)
def test_key_file_round_trip(tmp_path: Path, scheme: Scheme) -> None:
    keypair = Keypair.generate(scheme)
    path = tmp_path / "signer.json"
    save_key_file(path, keypair)
    loaded = load_key_file(path)
    assert loaded == keypair
    assert loaded.seed == keypair.seed
    assert verify(scheme, keypair.public_key, b"m", loaded.sign(b"m"))
    document = json.loads(path.read_text())
    assert set(document) == {"scheme", "seed", "public_key", "address"}
    assert document["address"] == keypair.address


def test_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    save_key_file(path, Keypair.generate())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_leaves_no_temporary_files(tmp_path: Path) -> None:
    save_key_file(tmp_path / "signer.json", Keypair.generate())
    with pytest.raises(KeyFileError):
        save_key_file(tmp_path / "signer.json", Keypair.generate())
    assert [p.name for p in tmp_path.iterdir()] == ["signer.json"]


def test_key_file_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    first, second = Keypair.generate(), Keypair.generate()
    save_key_file(path, first)
    with pytest.raises(KeyFileError, match="already exists") as caught:
        save_key_file(path, second)
    assert caught.value.path == path
    assert load_key_file(path) == first
    save_key_file(path, second, overwrite=True)
    assert load_key_file(path) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("scheme", SCHEMES)
def test_save_dev_keypair_is_refused(tmp_path: Path, scheme: Scheme) -> None:
    with pytest.raises(KeyFileError, match="no seed"):
        save_key_file(tmp_path / "alice.json", dev_keypair("Alice", scheme))
    assert not (tmp_path / "alice.json").exists()


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create"):
        save_key_file(tmp_path / "missing" / "signer.json", Keypair.generate())


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("scheme", "ecdsa", "field 'scheme'"),
        ("scheme", 7, "field 'scheme'"),
        ("seed", "0x1234", "field 'seed'"),
        ("seed", "ab" * 32, "field 'seed'"),
        ("seed", "0x" + "zz" * 32, "field 'seed'"),
        ("seed", "0x" + "ab " * 21 + "a", "field 'seed'"),
        ("seed", None, "field 'seed'"),
        ("public_key", "0x" + "00" * 32, "field 'public_key': does not match"),
        ("public_key", "0x00", "field 'public_key'"),
        ("address", ALICE_CESS, "field 'address': does not match"),
        ("address", "cXnope", "field 'address'"),
        ("address", 5, "field 'address'"),
    ],
)
def test_corrupt_key_file_names_the_field(
    tmp_path: Path, field: str, value: object, reason: str
) -> None:
    document: dict[str, object] = {**_valid_document(), field: value}
    path = tmp_path / "signer.json"
    _write_key_file(path, document)
    with pytest.raises(KeyFileError, match=reason) as caught:
        load_key_file(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_corrupt_seed_is_not_echoed(tmp_path: Path) -> None:
    secret_looking = "0x" + "ab" * 31 + "zz"
    path = tmp_path / "signer.json"
    _write_key_file(path, {**_valid_document(), "seed": secret_looking})
    with pytest.raises(KeyFileError) as caught:
        load_key_file(path)
    assert "abab" not in str(caught.value)


def test_seed_from_other_key_is_caught(tmp_path: Path) -> None:
    document = _valid_document()
    document["seed"] = _valid_document()["seed"]
    path = tmp_path / "signer.json"
    _write_key_file(path, document)
    with pytest.raises(KeyFileError, match="field 'public_key': does not match"):
        load_key_file(path)


def test_generic_address_in_key_file_is_accepted(tmp_path: Path) -> None:
    keypair = Keypair.generate()
    document = json.loads(key_file_json(keypair))
    document["address"] = ss58_encode(keypair.public_key, GENERIC_SS58_PREFIX)
    path = tmp_path / "signer.json"
    _write_key_file(path, document)
    assert load_key_file(path) == keypair


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"scheme": "sr25519"}', "missing field"),
        (b" " * (MAX_KEY_FILE_BYTES + 1), "larger than"),
    ],
)
def test_malformed_key_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "signer.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=reason):
        load_key_file(path)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    _write_key_file(path, {**_valid_document(), "password": "x"})
    with pytest.raises(KeyFileError, match=r"unknown field.*password"):
        load_key_file(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "absent.json")


def test_key_file_error_repr_and_pickle(tmp_path: Path) -> None:
    error = KeyFileError(tmp_path / "k.json", "field 'seed': bad")
    assert (
        repr(error)
        == f"KeyFileError(path={str(tmp_path / 'k.json')!r}, reason=\"field 'seed': bad\")"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason) == (error.path, error.reason)


# --- load_signer ---


@pytest.mark.parametrize("scheme", [None, *SCHEMES])
def test_load_signer_refuses_dev_keys_without_dev(scheme: Scheme | None) -> None:
    with pytest.raises(DevKeyRefused, match="--dev") as caught:
        load_signer("//Alice", dev=False, scheme=scheme)
    assert caught.value.spec == "//Alice"
    assert isinstance(caught.value, KeyMaterialError)


def test_load_signer_dev() -> None:
    assert load_signer("//Alice", dev=True).public_key == ALICE_PUBLIC_KEY
    assert load_signer("//Alice", dev=True, scheme="sr25519").public_key == ALICE_PUBLIC_KEY
    ed25519_alice = load_signer("//Alice", dev=True, scheme="ed25519")
    assert (ed25519_alice.scheme, ed25519_alice.public_key) == ("ed25519", ALICE_ED25519_PUBLIC_KEY)


def test_load_signer_refuses_ed25519_dev_key_file_without_dev(tmp_path: Path) -> None:
    # The ed25519 dev secret is a plain seed, so it fits in a key file: the guard still holds.
    dev_seed = dev_keypair("Alice", "ed25519").secret_key
    path = tmp_path / "alice.json"
    save_key_file(path, Keypair.from_seed(dev_seed, "ed25519"))
    with pytest.raises(DevKeyRefused) as caught:
        load_signer(str(path), dev=False)
    assert caught.value.spec == str(path)
    assert load_signer(str(path), dev=True).public_key == ALICE_ED25519_PUBLIC_KEY


def test_load_signer_key_file_scheme_must_match(tmp_path: Path) -> None:
    path = tmp_path / "signer.json"
    save_key_file(path, Keypair.generate("sr25519"))
    with pytest.raises(KeyFileError, match="expected ed25519, got sr25519"):
        load_signer(str(path), dev=False, scheme="ed25519")
    assert load_signer(str(path), dev=False, scheme="sr25519").scheme == "sr25519"


def test_load_signer_key_file(tmp_path: Path) -> None:
    keypair = Keypair.generate("ed25519")
    path = tmp_path / "signer.json"
    save_key_file(path, keypair)
    assert load_signer(str(path), dev=False) == keypair
