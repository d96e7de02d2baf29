"""The signed extrinsic envelope.

Wire form (JSON)::

    {"call": "module.function", "args": {...}, "signer": "cX...", "nonce": 7,
     "scheme": "sr25519", "signature": "0x<128 hex>"}

The signature covers ``b"deoss/extrinsic\\x00" + genesis_hash + canonical_json(body)``
where body is the envelope without the signature and canonical JSON sorts keys, uses no
whitespace and escapes non-ASCII. Binding the genesis hash makes an extrinsic worthless on
any other network; the per-account nonce makes it worthless a second time on this one.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Self

from chain_client.keys import SCHEMES, Keypair, verify
from chain_client.ss58 import InvalidAddress, canonical_address, ss58_decode

__all__ = [
    "MAX_NONCE",
    "Extrinsic",
    "MalformedExtrinsic",
    "canonical_json",
    "signing_payload",
]

MAX_NONCE = 2**64 - 1
_CALL_NAME = re.compile(r"^[a-z][a-z_]{0,31}\.[a-z][a-z_0-9]{0,63}$")
_SIGNATURE = re.compile(r"^0x[0-9a-f]{128}$")
_DOMAIN = b"deoss/extrinsic\x00"


class MalformedExtrinsic(ValueError):
    """The envelope cannot be parsed; ``field`` names the part that is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: the form that is hashed and signed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def signing_payload(
    genesis_hash: bytes, call: str, args: dict[str, Any], signer: str, nonce: int, scheme: str
) -> bytes:
    body = {"call": call, "args": args, "signer": signer, "nonce": nonce, "scheme": scheme}
    return _DOMAIN + genesis_hash + canonical_json(body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Extrinsic:
    call: str
    args: dict[str, Any]
    signer: str
    nonce: int
    scheme: str
    signature: bytes

    @classmethod
    def sign(
        cls, keypair: Keypair, genesis_hash: bytes, call: str, args: dict[str, Any], nonce: int
    ) -> Self:
        payload = signing_payload(genesis_hash, call, args, keypair.address, nonce, keypair.scheme)
        return cls(
            call=call,
            args=args,
            signer=keypair.address,
            nonce=nonce,
            scheme=keypair.scheme,
            signature=keypair.sign(payload),
        )

    @property
    def module(self) -> str:
        return self.call.split(".", 1)[0]

    def payload(self, genesis_hash: bytes) -> bytes:
        return signing_payload(
            genesis_hash, self.call, self.args, self.signer, self.nonce, self.scheme
        )

    def hash(self, genesis_hash: bytes) -> str:
        digest = hashlib.sha256(self.payload(genesis_hash) + self.signature).hexdigest()
        return "0x" + digest

    def signature_valid(self, genesis_hash: bytes) -> bool:
        public_key, _ = ss58_decode(self.signer)
        return verify(self.scheme, public_key, self.payload(genesis_hash), self.signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "args": self.args,
            "signer": self.signer,
            "nonce": self.nonce,
            "scheme": self.scheme,
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        if not isinstance(obj, dict):
            raise MalformedExtrinsic("(body)", "an extrinsic is a JSON object")
        expected = {"call", "args", "signer", "nonce", "scheme", "signature"}
        missing = expected - set(obj)
        if missing:
            raise MalformedExtrinsic(sorted(missing)[0], "missing")
        extra = set(obj) - expected
        if extra:
            raise MalformedExtrinsic(sorted(extra)[0], "unknown field")
        call, args, signer = obj["call"], obj["args"], obj["signer"]
        nonce, scheme, signature = obj["nonce"], obj["scheme"], obj["signature"]
        if not isinstance(call, str) or not _CALL_NAME.match(call):
            raise MalformedExtrinsic("call", f"expected 'module.function', got {call!r:.80}")
        if not isinstance(args, dict):
            raise MalformedExtrinsic("args", "must be an object")
        if not isinstance(signer, str):
            raise MalformedExtrinsic("signer", "must be an SS58 address")
        try:
            # The signer is signed exactly as sent; state is keyed by the canonical form.
            canonical_address(signer)
        except InvalidAddress as exc:
            raise MalformedExtrinsic("signer", str(exc)) from exc
        if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce <= MAX_NONCE:
            raise MalformedExtrinsic("nonce", "an integer from 0 to 2**64-1")
        if scheme not in SCHEMES:
            raise MalformedExtrinsic("scheme", f"one of {', '.join(SCHEMES)}")
        if not isinstance(signature, str) or not _SIGNATURE.match(signature):
            raise MalformedExtrinsic("signature", "0x followed by 128 lowercase hex digits")
        return cls(
            call=call,
            args=args,
            signer=signer,
            nonce=nonce,
            scheme=scheme,
            signature=bytes.fromhex(signature[2:]),
        )
