"""kfn.expiring: the one bounded cache of values that expire, time passed in."""

from __future__ import annotations

from kfn import expiring


def test_a_value_is_kept_until_its_instant_and_forgotten_from_then_on() -> None:
    cache: expiring.Expiring[str, int] = expiring.Expiring()
    cache.put("a", 1, until=10.0)
    assert cache.get("a", now=9.99) == 1
    assert cache.get("a", now=10.0) is None
    assert len(cache) == 0, "an expired value is dropped when it is asked for"


def test_the_cache_keeps_at_most_its_limit_least_recently_used_first_out() -> None:
    cache: expiring.Expiring[str, int] = expiring.Expiring(limit=2)
    cache.put("a", 1, until=10)
    cache.put("b", 2, until=10)
    assert cache.get("a", now=0) == 1  # "b" is now the least recently used
    cache.put("c", 3, until=10)
    assert len(cache) == 2
    assert cache.get("b", now=0) is None
    assert cache.get("a", now=0) == 1
    assert cache.get("c", now=10) is None  # expired


def test_a_value_put_again_takes_the_new_instant() -> None:
    cache: expiring.Expiring[str, int] = expiring.Expiring()
    cache.put("a", 1, until=10)
    cache.put("a", 2, until=5)
    assert cache.get("a", now=4) == 2
    assert cache.get("a", now=5) is None


def test_a_dropped_value_is_gone_and_dropping_a_missing_one_is_harmless() -> None:
    cache: expiring.Expiring[str, int] = expiring.Expiring()
    cache.put("a", 1, until=10)
    cache.drop("a")
    cache.drop("never")
    assert cache.get("a", now=0) is None
