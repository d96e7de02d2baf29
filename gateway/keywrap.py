"""Wrapping of data keys (DEKs): a DEK is never stored in the clear (DESIGN.md §3).

Three schemes, all XChaCha20-Poly1305 IETF with a random 24-byte nonce and the unit id
as associated data (so a wrapped key cannot be moved to another unit):

- ``master``: the gateway's 32-byte master key. The default.
- ``sse-c``: an S3 SSE-C key the customer sends with every request. Only a salted check
  value is stored, never the key, so a wrong key is refused before any decryption.
- ``cipher``: a DeOSS ``Cipher`` password, stretched by Argon2id with a per-object
  16-byte salt. The Argon2id limits are stored with the wrapped key, so raising the
  defaults later keeps old objects readable.

A wrong key or password raises ``WrongKey``; the AEAD tag guarantees that unwrapping
never returns a garbage DEK.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import nacl.exceptions
from nacl import bindings
from nacl.pwhash import argon2id

__all__ = [
    "KEY_SIZE",
    "SCHEMES",
    "KeyRequired",
    "Scheme",
    "Secret",
    "WrappedKey",
    "WrongKey",
    "check_customer_key",
    "unwrap",
    "wrap_master",
    "wrap_with_customer_key",
    "wrap_with_password",
]

Scheme: TypeAlias = Literal["master", "sse-c", "cipher"]
SCHEMES: Final[tuple[Scheme, ...]] = ("master", "sse-c", "cipher")
KEY_SIZE: Final = 32
# What opens an object's data keys beyond the master key: a native Cipher password (str)
# or an S3 SSE-C customer key (bytes).
Secret: TypeAlias = str | bytes | None
_NONCE_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_TAG_SIZE: Final = bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
_SALT_SIZE: Final = argon2id.SALTBYTES
_CHECK_SIZE: Final = 32
_CHECK_PERSON: Final = b"deoss/sse-c"


class WrongKey(Exception):
    """The key or password does not open this wrapped DEK."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"wrong {scheme} key: it does not unwrap this object's data key")
        self.scheme = scheme


class KeyRequired(Exception):
    """The DEK is wrapped by a customer secret that the request did not supply."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"this object is encrypted with a {scheme} key; supply it to read it")
        self.scheme = scheme


@dataclass(frozen=True, slots=True, kw_only=True)
class WrappedKey:
    scheme: Scheme
    nonce: bytes
    ciphertext: bytes
    salt: bytes = b""  # cipher: Argon2id salt; sse-c: salt of key_check
    key_check: bytes = b""  # sse-c only
    opslimit: int = 0  # cipher only
    memlimit: int = 0  # cipher only

    def __post_init__(self) -> None:
        def need(ok: bool, key: str) -> None:
            if not ok:
                raise ValueError(f"wrapped key ({self.scheme}): bad {key}: {getattr(self, key)!r}")

        need(self.scheme in SCHEMES, "scheme")
        need(len(self.nonce) == _NONCE_SIZE, "nonce")
        need(len(self.ciphertext) == KEY_SIZE + _TAG_SIZE, "ciphertext")
        customer = self.scheme != "master"
        need(len(self.salt) == (_SALT_SIZE if customer else 0), "salt")
        need(len(self.key_check) == (_CHECK_SIZE if self.scheme == "sse-c" else 0), "key_check")
        if self.scheme == "cipher":
            need(argon2id.OPSLIMIT_MIN <= self.opslimit <= argon2id.OPSLIMIT_MAX, "opslimit")
            need(argon2id.MEMLIMIT_MIN <= self.memlimit <= argon2id.MEMLIMIT_MAX, "memlimit")
        else:
            need(self.opslimit == 0, "opslimit")
            need(self.memlimit == 0, "memlimit")

    def to_json(self) -> dict[str, Any]:
        encoded: dict[str, Any] = {
            "scheme": self.scheme,
            "nonce": _b64(self.nonce),
            "ciphertext": _b64(self.ciphertext),
        }
        if self.salt:
            encoded["salt"] = _b64(self.salt)
        if self.key_check:
            encoded["key_check"] = _b64(self.key_check)
        if self.scheme == "cipher":
            encoded["opslimit"] = self.opslimit
            encoded["memlimit"] = self.memlimit
        return encoded

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, obj: object) -> WrappedKey:
        """From ``to_json()``'s dict or its JSON text; anything malformed is a ValueError."""
        if isinstance(obj, str | bytes):
            obj = json.loads(obj)  # JSONDecodeError is a ValueError
        if not isinstance(obj, dict):
            raise ValueError(f"wrapped key: expected a JSON object, got {type(obj).__name__}")
        known = {"scheme", "nonce", "ciphertext", "salt", "key_check", "opslimit", "memlimit"}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"wrapped key: unknown field {sorted(unknown)[0]!r}")
        scheme = obj.get("scheme")
        if scheme not in SCHEMES:
            raise ValueError(f"wrapped key: unknown scheme {scheme!r}")
        return cls(
            scheme=scheme,
            nonce=_unb64(obj, "nonce"),
            ciphertext=_unb64(obj, "ciphertext"),
            salt=_unb64(obj, "salt", b""),
            key_check=_unb64(obj, "key_check", b""),
            opslimit=_int(obj, "opslimit"),
            memlimit=_int(obj, "memlimit"),
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(obj: dict[str, Any], key: str, default: bytes | None = None) -> bytes:
    value = obj.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"wrapped key: {key} must be a base64 string, got {value!r}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"wrapped key: {key} is not base64: {exc}") from exc


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if type(value) is not int:
        raise ValueError(f"wrapped key: {key} must be an integer, got {value!r}")
    return value


def _check_sizes(dek: bytes, unit_id: bytes, key: bytes | None, key_name: str) -> None:
    if len(dek) != KEY_SIZE:
        raise ValueError(f"dek must be {KEY_SIZE} bytes, got {len(dek)}")
    if not unit_id:
        raise ValueError("unit_id must not be empty: it binds the wrapped key to its unit")
    if key is not None and len(key) != KEY_SIZE:
        raise ValueError(f"{key_name} must be {KEY_SIZE} bytes, got {len(key)}")


def _seal(dek: bytes, unit_id: bytes, key: bytes) -> tuple[bytes, bytes]:
    # A random 24-byte nonce: with XChaCha20 the chance of a repeat under one master key
    # is negligible even across billions of wraps.
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return nonce, bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(dek, unit_id, nonce, key)


def _open(wrapped: WrappedKey, unit_id: bytes, key: bytes) -> bytes:
    try:
        return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            wrapped.ciphertext, unit_id, wrapped.nonce, key
        )
    except nacl.exceptions.CryptoError as exc:
        raise WrongKey(wrapped.scheme) from exc


def _customer_key_check(customer_key: bytes, salt: bytes) -> bytes:
    # Keyed BLAKE2b with the customer key as the key: the stored value reveals nothing
    # usable about it, and the salt keeps equal keys from having equal check values.
    return hashlib.blake2b(
        salt, key=customer_key, digest_size=_CHECK_SIZE, person=_CHECK_PERSON
    ).digest()


def _password_key(password: str | bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    secret = password.encode("utf-8") if isinstance(password, str) else password
    return argon2id.kdf(KEY_SIZE, secret, salt, opslimit=opslimit, memlimit=memlimit)


def wrap_master(dek: bytes, unit_id: bytes, master_key: bytes) -> WrappedKey:
    _check_sizes(dek, unit_id, master_key, "master key")
    nonce, ciphertext = _seal(dek, unit_id, master_key)
    return WrappedKey(scheme="master", nonce=nonce, ciphertext=ciphertext)


def wrap_with_customer_key(dek: bytes, unit_id: bytes, customer_key: bytes) -> WrappedKey:
    _check_sizes(dek, unit_id, customer_key, "SSE-C key")
    salt = secrets.token_bytes(_SALT_SIZE)
    nonce, ciphertext = _seal(dek, unit_id, customer_key)
    return WrappedKey(
        scheme="sse-c",
        nonce=nonce,
        ciphertext=ciphertext,
        salt=salt,
        key_check=_customer_key_check(customer_key, salt),
    )


def wrap_with_password(
    dek: bytes,
    unit_id: bytes,
    password: str | bytes,
    *,
    opslimit: int = argon2id.OPSLIMIT_INTERACTIVE,
    memlimit: int = argon2id.MEMLIMIT_INTERACTIVE,
) -> WrappedKey:
    _check_sizes(dek, unit_id, None, "password")
    salt = secrets.token_bytes(_SALT_SIZE)
    key = _password_key(password, salt, opslimit, memlimit)
    nonce, ciphertext = _seal(dek, unit_id, key)
    return WrappedKey(
        scheme="cipher",
        nonce=nonce,
        ciphertext=ciphertext,
        salt=salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )


def check_customer_key(wrapped: WrappedKey, customer_key: bytes) -> bool:
    """Whether an SSE-C key matches, without touching the DEK (for HEAD, for example)."""
    if wrapped.scheme != "sse-c" or len(customer_key) != KEY_SIZE:
        return False
    # SECURITY: constant-time compare.
    return hmac.compare_digest(_customer_key_check(customer_key, wrapped.salt), wrapped.key_check)


def unwrap(
    wrapped: WrappedKey,
    unit_id: bytes,
    *,
    master_key: bytes | None = None,
    customer_key: bytes | None = None,
    password: str | bytes | None = None,
) -> bytes:
    """The DEK, using the one secret ``wrapped.scheme`` needs; the others are ignored."""
    if wrapped.scheme == "master":
        if master_key is None or len(master_key) != KEY_SIZE:
            raise ValueError(f"the master key must be {KEY_SIZE} bytes")
        return _open(wrapped, unit_id, master_key)
    if wrapped.scheme == "sse-c":
        if customer_key is None:
            raise KeyRequired("sse-c")
        if not check_customer_key(wrapped, customer_key):
            raise WrongKey("sse-c")
        return _open(wrapped, unit_id, customer_key)
    if password is None:
        raise KeyRequired("cipher")
    key = _password_key(password, wrapped.salt, wrapped.opslimit, wrapped.memlimit)
    return _open(wrapped, unit_id, key)
