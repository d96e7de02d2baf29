"""The ciphertext stripe cache (gateway/stripe_cache.py): bounded by bytes, least
recently used out first, and all of a read's stripes or none."""

from gateway.stripe_cache import StripeCache


def test_stripes_come_back_all_or_none() -> None:
    cache = StripeCache(limit=100)
    cache.put("f", 0, 0, b"a" * 10)
    cache.put("f", 0, 1, b"b" * 10)
    assert cache.get("f", 0, [0, 1]) == [b"a" * 10, b"b" * 10]
    assert cache.get("f", 0, [0, 2]) is None  # one missing: fetch them all
    assert cache.get("g", 0, [0]) is None  # another file's stripe 0 is not this one's
    assert (cache.hits, cache.misses) == (1, 2)


def test_the_least_recently_used_go_first_and_the_size_holds() -> None:
    cache = StripeCache(limit=30)
    for stripe in range(3):
        cache.put("f", 0, stripe, bytes(10))
    assert cache.get("f", 0, [0]) is not None  # 0 is now the most recent
    cache.put("f", 0, 3, bytes(10))
    assert cache.get("f", 0, [1]) is None  # 1 was the least recent
    assert cache.get("f", 0, [0, 2, 3]) is not None
    assert cache.size == 30
    cache.put("f", 0, 3, bytes(5))  # replaced, not added
    assert cache.size == 25
    cache.put("big", 0, 0, bytes(31))  # beyond the whole cache: not kept
    assert cache.get("big", 0, [0]) is None and cache.size == 25
