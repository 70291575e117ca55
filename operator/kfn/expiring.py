"""One bounded cache of values that expire, with the time passed in.

kfn keeps several answers it must not keep forever: the API server's review of a bearer
token (:mod:`kfn.authn.reviews`), the activator's invoke decisions
(:mod:`kfn.activator.access`) and a registry's pull and push tokens (:mod:`kfn.oci`). Each
value is stored with the instant it stops being good; :meth:`Expiring.get` forgets it from
then on. The cache is bounded in entries: past ``limit`` the least recently used goes, so
values in use stay while a burst of new keys (tokens someone makes up) cannot grow it.

A leaf of the standard library: no clock of its own, no I/O, nothing else of kfn.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

#: Entries a cache keeps unless told otherwise.
LIMIT: Final = 4096

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """Values that expire, at most ``limit`` of them, least recently used first out.

    ``now`` and ``until`` are seconds on one clock of the caller's choosing (the event loop's,
    ``time.monotonic``); a value is good while ``now < until``.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._items: collections.OrderedDict[K, tuple[V, float]] = collections.OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        """The value kept for ``key``, or None when there is none or it expired."""
        found = self._items.get(key)
        if found is None:
            return None
        value, until = found
        if now >= until:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V, until: float) -> None:
        """Keeps ``value`` until ``until``, dropping the least recently used past the limit."""
        self._items[key] = (value, until)
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def drop(self, key: K) -> None:
        """Forgets ``key`` (a token the other side refused after all)."""
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)
