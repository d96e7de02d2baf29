"""SS58 addresses: how accounts (32-byte public keys) are written for people and wallets.

Byte layout before base58 (Bitcoin alphabet)::

    +----------------+------------------+-------------------+
    | network prefix | public key (32)  | checksum (2)      |
    | 1 or 2 bytes   |                  |                   |
    +----------------+------------------+-------------------+

    checksum = blake2b-512(b"SS58PRE" + prefix bytes + public key)[:2]

A prefix below 64 takes one byte; 64..16383 take two bytes, packed as Substrate does.
CESS uses prefix 11330 (addresses start with "cX"); the generic Substrate prefix 42
("5...") is accepted on input because polkadot.js and subkey print it by default.
"""

import functools
import hashlib
from typing import Final

__all__ = [
    "ACCEPTED_PREFIXES",
    "CESS_SS58_PREFIX",
    "GENERIC_SS58_PREFIX",
    "MAX_ADDRESS_LENGTH",
    "PUBLIC_KEY_LENGTH",
    "InvalidAddress",
    "canonical_address",
    "ss58_decode",
    "ss58_encode",
]

CESS_SS58_PREFIX: Final = 11330
GENERIC_SS58_PREFIX: Final = 42
ACCEPTED_PREFIXES: Final = frozenset({CESS_SS58_PREFIX, GENERIC_SS58_PREFIX})

PUBLIC_KEY_LENGTH: Final = 32
# A 2-byte-prefix address is 36 bytes, at most 50 base58 characters; 64 leaves slack
# while keeping the quadratic base58 decode cheap on hostile input.
MAX_ADDRESS_LENGTH: Final = 64
ADDRESS_CACHE: Final = 8192  # addresses remembered, encoded and canonicalised

_CHECKSUM_LENGTH: Final = 2
_CHECKSUM_CONTEXT: Final = b"SS58PRE"
_MAX_PREFIX: Final = 16383
_BASE58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class InvalidAddress(ValueError):
    """An address that is not a well-formed SS58 address of an accepted network."""

    def __init__(self, address: str, reason: str) -> None:
        # Keep an oversized input out of logs; what is kept is enough to recognise it.
        if len(address) > MAX_ADDRESS_LENGTH:
            address = address[:MAX_ADDRESS_LENGTH] + "..."
        super().__init__(address, reason)
        self.address = address
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid address {self.address!r}: {self.reason}"

    def __repr__(self) -> str:
        return f"InvalidAddress(address={self.address!r}, reason={self.reason!r})"


def ss58_encode(public_key: bytes, prefix: int = CESS_SS58_PREFIX) -> str:
    if len(public_key) != PUBLIC_KEY_LENGTH:
        raise ValueError(f"public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(public_key)}")
    return _encoded(bytes(public_key), prefix)


# Addresses are encoded and checked on every event, call and signed request, by the
# same few accounts: base58 in Python costs tens of microseconds each time.
@functools.lru_cache(maxsize=ADDRESS_CACHE)
def _encoded(public_key: bytes, prefix: int) -> str:
    body = _encode_prefix(prefix) + public_key
    return _base58_encode(body + _checksum(body))


def ss58_decode(address: str) -> tuple[bytes, int]:
    if not isinstance(address, str):
        raise InvalidAddress(repr(address), "not a string")
    if not address:
        raise InvalidAddress(address, "empty")
    if len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(address, f"longer than {MAX_ADDRESS_LENGTH} characters")
    try:
        data = _base58_decode(address)
    except ValueError as exc:
        raise InvalidAddress(address, str(exc)) from None
    if len(data) < 1 + PUBLIC_KEY_LENGTH + _CHECKSUM_LENGTH:
        raise InvalidAddress(address, f"decodes to {len(data)} bytes, too short for a 32-byte key")

    first = data[0]
    if first < 64:
        prefix, prefix_length = first, 1
    elif first < 128:
        second = data[1]
        lower = ((first << 2) | (second >> 6)) & 0xFF
        upper = second & 0b0011_1111
        prefix, prefix_length = lower | (upper << 8), 2
        # SECURITY: one account, one spelling per network. A short prefix packed into two
        # bytes would give a second valid string for the same account.
        if prefix < 64:
            raise InvalidAddress(address, f"prefix {prefix} is not in its canonical 1-byte form")
    else:
        raise InvalidAddress(address, f"first byte 0x{first:02x} is not an SS58 prefix")

    expected_length = prefix_length + PUBLIC_KEY_LENGTH + _CHECKSUM_LENGTH
    if len(data) != expected_length:
        raise InvalidAddress(
            address, f"decodes to {len(data)} bytes, expected {expected_length} for a 32-byte key"
        )
    body, checksum = data[:-_CHECKSUM_LENGTH], data[-_CHECKSUM_LENGTH:]
    if _checksum(body) != checksum:
        raise InvalidAddress(address, "checksum mismatch (mistyped or truncated?)")
    # Checked after the checksum so that a valid address of another network (Polkadot: 0,
    # Kusama: 2) is reported as such rather than as corrupt.
    if prefix not in ACCEPTED_PREFIXES:
        accepted = ", ".join(str(p) for p in sorted(ACCEPTED_PREFIXES))
        raise InvalidAddress(
            address, f"network prefix {prefix} is not accepted (expected one of {accepted})"
        )
    return body[prefix_length:], prefix


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def canonical_address(address: str) -> str:
    public_key, _ = ss58_decode(address)
    return ss58_encode(public_key, CESS_SS58_PREFIX)


def _encode_prefix(prefix: int) -> bytes:
    if 0 <= prefix < 64:
        return bytes([prefix])
    if 64 <= prefix <= _MAX_PREFIX:
        first = ((prefix & 0b1111_1100) >> 2) | 0b0100_0000
        second = (prefix >> 8) | ((prefix & 0b11) << 6)
        return bytes([first, second])
    raise ValueError(f"SS58 prefix must be in 0..{_MAX_PREFIX}, got {prefix}")


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(_CHECKSUM_CONTEXT + body, digest_size=64).digest()[:_CHECKSUM_LENGTH]


def _base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[remainder])
    # Each leading zero byte is written as the zero digit, which the integer drops.
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(digits))


def _base58_decode(text: str) -> bytes:
    number = 0
    for position, character in enumerate(text):
        digit = _BASE58_ALPHABET.find(character)
        if digit < 0:
            raise ValueError(f"character {character!r} at position {position} is not base58")
        number = number * 58 + digit
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * leading_zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")
