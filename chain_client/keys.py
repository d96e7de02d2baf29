"""Key pairs, signatures, the well-known dev accounts and key files.

sr25519 is what Polkadot-style wallets (and CESS) sign with; ed25519 is offered for
tooling that only has it. Signing and verifying are CPU work: async callers run them in
a thread pool.

Key file (UTF-8 JSON, mode 0600)::

    {"scheme": "sr25519", "seed": "0x<64 hex>", "public_key": "0x<64 hex>", "address": "cX..."}

The seed is the 32-byte mini secret (sr25519) or RFC 8032 seed (ed25519); everything else
follows from it and is checked on load, so a hand-edited or mixed-up file fails loudly.

The dev accounts //Alice ... //Ferdie exist in both schemes, derived from ``DEV_PHRASE`` as
Substrate derives them (``subkey inspect --scheme ed25519 //Alice``); they are refused
unless ``dev`` is true, including as key files.
"""

import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Self

import bip39
import nacl.exceptions
import nacl.signing
import sr25519

from chain_client.files import fsync_directory
from chain_client.ss58 import (
    PUBLIC_KEY_LENGTH,
    InvalidAddress,
    ss58_decode,
    ss58_encode,
)

__all__ = [
    "DEV_ACCOUNT_NAMES",
    "DEV_PHRASE",
    "MAX_KEY_FILE_BYTES",
    "SCHEMES",
    "SEED_LENGTH",
    "SIGNATURE_LENGTH",
    "DevKeyRefused",
    "KeyFileError",
    "KeyMaterialError",
    "Keypair",
    "Scheme",
    "dev_accounts",
    "dev_keypair",
    "dev_public_keys",
    "is_dev_address",
    "key_file_json",
    "load_key_file",
    "load_signer",
    "parse_key_uri",
    "save_key_file",
    "verify",
]

Scheme = Literal["sr25519", "ed25519"]
SCHEMES: Final[tuple[Scheme, ...]] = ("sr25519", "ed25519")

SEED_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64
_SR25519_SECRET_LENGTH: Final = 64

# Substrate's well-known development mnemonic: every dev chain funds //Alice and friends.
DEV_PHRASE: Final = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_ACCOUNT_NAMES: Final = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")

# A key file is about 250 bytes; anything much larger is not one, so do not read it all.
MAX_KEY_FILE_BYTES: Final = 4096
# Substrate's ed25519 hard derivation hashes this SCALE-encoded tag with the parent seed.
_ED25519_HDKD_TAG: Final = b"Ed25519HDKD"
_KEY_FILE_FIELDS: Final = frozenset({"scheme", "seed", "public_key", "address"})
_HEX32: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_NO_SEED: Final = (
    "the keypair has no seed (derived keys such as //Alice exist only as derivations); "
    "only keys made by generate, from_seed or from_mnemonic can be written to a key file"
)


class KeyMaterialError(Exception):
    """A key, key file or key URI that cannot be used."""


class KeyFileError(KeyMaterialError):
    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(str(path), reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"key file {self.path}: {self.reason}"

    def __repr__(self) -> str:
        return f"KeyFileError(path={str(self.path)!r}, reason={self.reason!r})"


class DevKeyRefused(KeyMaterialError):
    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.spec = spec

    def __str__(self) -> str:
        return (
            f"refusing dev key {self.spec}: the secrets of dev accounts are public, so only a "
            "--dev network accepts them; use a key file (deoss-chain key new --out FILE)"
        )

    def __repr__(self) -> str:
        return f"DevKeyRefused(spec={self.spec!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Keypair:
    scheme: Scheme
    public_key: bytes
    # SECURITY: secrets stay out of repr (logs, tracebacks) and out of ==, which would
    # compare them in variable time; the public key identifies the pair.
    # sr25519: the 64-byte schnorrkel secret (key + nonce); ed25519: the 32-byte seed.
    secret_key: bytes = field(repr=False, compare=False)
    # The 32-byte seed the pair came from, when known: only such pairs can be saved.
    seed: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise KeyMaterialError(f"unknown signature scheme {self.scheme!r}")
        if len(self.public_key) != PUBLIC_KEY_LENGTH:
            raise KeyMaterialError(f"public key must be {PUBLIC_KEY_LENGTH} bytes")
        # Invariant: the public key belongs to the secret, so every signature verifies
        # under .public_key and .address.
        if self.seed is not None:
            if (self.public_key, self.secret_key) != _pair_from_seed(self.scheme, self.seed):
                raise KeyMaterialError("seed does not match the key pair")
        elif self.scheme == "ed25519":
            # A derived pair (ed25519 //Alice): its secret is an RFC 8032 seed too, but one
            # that must not be saved, so .seed stays None.
            if len(self.secret_key) != SEED_LENGTH:
                raise KeyMaterialError(f"ed25519 secret must be {SEED_LENGTH} bytes")
            if _pair_from_seed("ed25519", self.secret_key)[0] != self.public_key:
                raise KeyMaterialError("public key does not match the secret")
        elif len(self.secret_key) != _SR25519_SECRET_LENGTH:
            raise KeyMaterialError(f"sr25519 secret must be {_SR25519_SECRET_LENGTH} bytes")
        elif bytes(sr25519.public_from_secret_key(self.secret_key)) != self.public_key:
            raise KeyMaterialError("public key does not match the secret")

    @classmethod
    def generate(cls, scheme: Scheme = "sr25519") -> Self:
        return cls.from_seed(secrets.token_bytes(SEED_LENGTH), scheme)

    @classmethod
    def from_seed(cls, seed: bytes, scheme: Scheme) -> Self:
        if scheme not in SCHEMES:
            raise KeyMaterialError(f"unknown signature scheme {scheme!r}")
        public_key, secret_key = _pair_from_seed(scheme, seed)
        return cls(scheme=scheme, public_key=public_key, secret_key=secret_key, seed=bytes(seed))

    @classmethod
    def from_mnemonic(cls, phrase: str, scheme: Scheme = "sr25519") -> Self:
        try:
            mini_secret = bytes(bip39.bip39_to_mini_secret(phrase, ""))
        except ValueError as exc:
            # SECURITY: `from None` and a message without the phrase: it is the secret.
            raise KeyMaterialError(f"mnemonic rejected: {exc}") from None
        return cls.from_seed(mini_secret, scheme)

    @property
    def address(self) -> str:
        return ss58_encode(self.public_key)

    def sign(self, message: bytes) -> bytes:
        if self.scheme == "sr25519":
            # schnorrkel's "substrate" signing context, as polkadot.js signRaw uses.
            return bytes(sr25519.sign((self.public_key, self.secret_key), message))
        return nacl.signing.SigningKey(self.secret_key).sign(message).signature


def verify(scheme: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    # SECURITY: callers pass untrusted wire input straight in; anything malformed is
    # simply "not verified", never an exception that could skip a check upstream.
    if not (
        isinstance(public_key, bytes)
        and isinstance(message, bytes)
        and isinstance(signature, bytes)
    ):
        return False
    if len(public_key) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        return False
    if scheme == "sr25519":
        try:
            return bool(sr25519.verify(signature, message, public_key))
        except (ValueError, TypeError):
            return False
    if scheme == "ed25519":
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return False
        return True
    return False


def dev_keypair(name: str, scheme: Scheme = "sr25519") -> Keypair:
    if name not in DEV_ACCOUNT_NAMES:
        raise KeyMaterialError(
            f"unknown dev account {name!r}; expected one of {', '.join(DEV_ACCOUNT_NAMES)}"
        )
    if scheme not in SCHEMES:
        raise KeyMaterialError(f"unknown signature scheme {scheme!r}")
    return _derive_dev_keypair(name, scheme)


def dev_accounts() -> dict[str, str]:
    # sr25519 only: these are the accounts a dev chain funds, one per name.
    return dict(_dev_addresses())


@functools.cache
def dev_public_keys() -> frozenset[bytes]:
    # Every scheme's: a dev account's secret is public whichever curve it is on.
    return frozenset(
        dev_keypair(name, scheme).public_key for scheme in SCHEMES for name in DEV_ACCOUNT_NAMES
    )


def is_dev_address(address: str) -> bool:
    try:
        public_key, _ = ss58_decode(address)
    except InvalidAddress:
        return False
    return public_key in dev_public_keys()


def parse_key_uri(uri: str, scheme: Scheme = "sr25519") -> Keypair:
    name = uri.removeprefix("//")
    # Only the bare dev names: soft paths, passwords and phrases in URIs are secrets on a
    # command line and have no use here.
    if not uri.startswith("//") or name not in DEV_ACCOUNT_NAMES:
        raise KeyMaterialError(
            f"unsupported key URI {uri!r}; expected //Name with Name one of "
            f"{', '.join(DEV_ACCOUNT_NAMES)}"
        )
    return dev_keypair(name, scheme)


def load_signer(spec: str, *, dev: bool, scheme: Scheme | None = None) -> Keypair:
    """A //Name dev key (in ``scheme``, sr25519 by default) or a key file (which names its
    own scheme; a ``scheme`` given must match it)."""
    if spec.startswith("//"):
        # SECURITY: anyone can sign as //Alice; on a real network that would let anyone
        # spend from (or impersonate) whatever was entrusted to such an account.
        if not dev:
            raise DevKeyRefused(spec)
        return parse_key_uri(spec, scheme or "sr25519")
    keypair = load_key_file(spec)
    if scheme is not None and keypair.scheme != scheme:
        raise KeyFileError(spec, f"field 'scheme': expected {scheme}, got {keypair.scheme}")
    # SECURITY: an ed25519 dev secret is a plain seed, so anyone can write it into a key
    # file; the dev guard must hold for files too.
    if not dev and keypair.public_key in dev_public_keys():
        raise DevKeyRefused(spec)
    return keypair


def key_file_json(keypair: Keypair) -> str:
    if keypair.seed is None:
        raise KeyMaterialError(_NO_SEED)
    document = {
        "scheme": keypair.scheme,
        "seed": "0x" + keypair.seed.hex(),
        "public_key": "0x" + keypair.public_key.hex(),
        "address": keypair.address,
    }
    return json.dumps(document, indent=2) + "\n"


def save_key_file(
    path: str | os.PathLike[str], keypair: Keypair, *, overwrite: bool = False
) -> None:
    key_path = Path(path)
    if keypair.seed is None:
        raise KeyFileError(key_path, _NO_SEED)
    payload = key_file_json(keypair).encode()
    directory = key_path.parent
    try:
        # SECURITY: mkstemp creates the file 0600 from the start, so the seed is never
        # readable by others, not even between create and chmod.
        fd, temporary_name = tempfile.mkstemp(
            prefix=f".{key_path.name}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise KeyFileError(key_path, f"cannot create a file in {directory}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as temporary:
            os.fchmod(temporary.fileno(), 0o600)
            temporary.write(payload)
            temporary.flush()
            os.fsync(temporary.fileno())
        if overwrite:
            os.replace(temporary_name, key_path)
        else:
            # A hard link fails if the name exists, atomically: no check-then-write race
            # can clobber a key file that appeared meanwhile.
            os.link(temporary_name, key_path)
        fsync_directory(directory)
    except FileExistsError:
        raise KeyFileError(
            key_path, "already exists; pass overwrite=True (--overwrite) to replace it"
        ) from None
    except OSError as exc:
        raise KeyFileError(key_path, f"cannot write: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary_name)


def load_key_file(path: str | os.PathLike[str]) -> Keypair:
    key_path = Path(path)
    try:
        with key_path.open("rb") as key_file:
            raw = key_file.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(key_path, f"cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(key_path, f"larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")
    try:
        document = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise KeyFileError(key_path, f"not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise KeyFileError(key_path, "expected a JSON object")
    if missing := _KEY_FILE_FIELDS - document.keys():
        raise KeyFileError(key_path, f"missing field(s) {', '.join(sorted(missing))}")
    if unknown := document.keys() - _KEY_FILE_FIELDS:
        raise KeyFileError(key_path, f"unknown field(s) {', '.join(sorted(unknown))}")

    scheme = _parse_scheme(document["scheme"])
    if scheme is None:
        raise KeyFileError(
            key_path,
            f"field 'scheme': expected one of {', '.join(SCHEMES)}, got {document['scheme']!r}",
        )
    seed = _parse_hex32(document["seed"])
    if seed is None:
        # SECURITY: never echo the seed field's value, even a malformed one.
        raise KeyFileError(key_path, "field 'seed': expected '0x' followed by 64 hex digits")
    public_key = _parse_hex32(document["public_key"])
    if public_key is None:
        raise KeyFileError(key_path, "field 'public_key': expected '0x' followed by 64 hex digits")
    address = document["address"]
    if not isinstance(address, str):
        raise KeyFileError(key_path, "field 'address': expected a string")

    keypair = Keypair.from_seed(seed, scheme)
    if public_key != keypair.public_key:
        raise KeyFileError(key_path, "field 'public_key': does not match the seed")
    try:
        address_key, _ = ss58_decode(address)
    except InvalidAddress as exc:
        raise KeyFileError(key_path, f"field 'address': {exc.reason}") from None
    if address_key != keypair.public_key:
        raise KeyFileError(key_path, "field 'address': does not match the seed")
    return keypair


def _pair_from_seed(scheme: Scheme, seed: bytes) -> tuple[bytes, bytes]:
    if len(seed) != SEED_LENGTH:
        raise KeyMaterialError(f"seed must be {SEED_LENGTH} bytes, got {len(seed)}")
    if scheme == "sr25519":
        public_key, secret_key = sr25519.pair_from_seed(bytes(seed))
        return bytes(public_key), bytes(secret_key)
    signing_key = nacl.signing.SigningKey(bytes(seed))
    return bytes(signing_key.verify_key), bytes(seed)


@functools.lru_cache(maxsize=len(DEV_ACCOUNT_NAMES) * len(SCHEMES))
def _derive_dev_keypair(name: str, scheme: Scheme) -> Keypair:
    # Substrate's "//Name": a hard junction from the dev phrase's root key.
    mini_secret = _dev_mini_secret()
    chain_code = _hard_junction_chain_code(name)
    if scheme == "sr25519":
        root_public, root_secret = sr25519.pair_from_seed(mini_secret)
        _, public_key, secret_key = sr25519.hard_derive_keypair(
            (chain_code, root_public, root_secret), b""
        )
        return Keypair(scheme="sr25519", public_key=bytes(public_key), secret_key=bytes(secret_key))
    # ed25519 (sp_core::ed25519::Pair::derive): the child seed is
    # blake2b-256(SCALE(("Ed25519HDKD", parent seed, chain code))).
    child_seed = hashlib.blake2b(
        _scale_short_bytes(_ED25519_HDKD_TAG) + mini_secret + chain_code,
        digest_size=SEED_LENGTH,
    ).digest()
    public_key, secret_key = _pair_from_seed("ed25519", child_seed)
    # SECURITY: no seed=, so key_file_json and save_key_file refuse to write it out.
    return Keypair(scheme="ed25519", public_key=public_key, secret_key=secret_key)


@functools.cache
def _dev_mini_secret() -> bytes:
    # Cached: the phrase's PBKDF2 (2048 rounds) would otherwise run once per dev key.
    return bytes(bip39.bip39_to_mini_secret(DEV_PHRASE, ""))


def _hard_junction_chain_code(name: str) -> bytes:
    # The SCALE encoding of the name zero-padded to 32 bytes. Dev names are short: their
    # encoding never needs Substrate's blake2b of encodings longer than 32 bytes.
    return _scale_short_bytes(name.encode()).ljust(32, b"\0")


def _scale_short_bytes(data: bytes) -> bytes:
    # SCALE for bytes shorter than 64: a one-byte compact length (len << 2), then the bytes.
    return bytes([len(data) << 2]) + data


@functools.lru_cache(maxsize=1)
def _dev_addresses() -> tuple[tuple[str, str], ...]:
    # A tuple, not the dict callers get: a cached value must not be mutable.
    return tuple((name, dev_keypair(name).address) for name in DEV_ACCOUNT_NAMES)


def _parse_scheme(value: object) -> Scheme | None:
    for scheme in SCHEMES:
        if value == scheme:
            return scheme
    return None


def _parse_hex32(value: object) -> bytes | None:
    # fullmatch, not bytes.fromhex alone: fromhex skips whitespace and needs no prefix.
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        return None
    return bytes.fromhex(value[2:])
