"""Storage receipts: a miner's signed statement that it holds a fragment.

The gateway gets one from every fragment PUT; a repairer hands one to the chain when it
completes a restoral order, so the chain knows the new miner really took the fragment.
"""

from chain_client.keys import Keypair, verify
from chain_client.ss58 import canonical_address, ss58_decode

__all__ = ["receipt_message", "sign_receipt", "verify_receipt"]

_DOMAIN = b"deoss/receipt\x00"


def receipt_message(fragment_id: str, miner: str) -> bytes:
    return _DOMAIN + fragment_id.encode() + b"\x00" + canonical_address(miner).encode()


def sign_receipt(keypair: Keypair, fragment_id: str) -> bytes:
    return keypair.sign(receipt_message(fragment_id, keypair.address))


def verify_receipt(scheme: str, miner: str, fragment_id: str, signature: bytes) -> bool:
    public_key, _ = ss58_decode(miner)
    return verify(scheme, public_key, receipt_message(fragment_id, miner), signature)
