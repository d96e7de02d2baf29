"""A bounded cache of recently written or read ciphertext stripes (DESIGN.md §5).

Never plaintext: a hit still opens the object's chunks with its own key, so the cache
holds nothing a miner does not. Only small objects' stripes are kept (a packed object's
pack, a file of at most ``object_limit`` bytes): a large download passing through would
otherwise push out every hot small object for stripes read once.
"""

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["StripeCache"]

StripeKey = tuple[str, int, int]  # fid, segment, stripe within the segment


class StripeCache:
    def __init__(self, *, limit: int = 64 * 1024 * 1024, object_limit: int = 1024 * 1024) -> None:
        self.limit = limit
        self.object_limit = object_limit
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._stripes: OrderedDict[StripeKey, bytes] = OrderedDict()

    def get(self, fid: str, segment: int, stripes: Sequence[int]) -> list[bytes] | None:
        """Every one of these stripes, or None when any is missing."""
        found = []
        for stripe in stripes:
            data = self._stripes.get((fid, segment, stripe))
            if data is None:
                self.misses += 1
                return None
            self._stripes.move_to_end((fid, segment, stripe))
            found.append(data)
        self.hits += 1
        return found

    def put(self, fid: str, segment: int, stripe: int, data: bytes) -> None:
        if len(data) > self.limit:
            return
        key = (fid, segment, stripe)
        old = self._stripes.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._stripes[key] = data
        self.size += len(data)
        while self.size > self.limit:
            _, dropped = self._stripes.popitem(last=False)
            self.size -= len(dropped)
