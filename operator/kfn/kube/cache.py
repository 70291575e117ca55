"""A kind's objects kept in memory: the one informer kfn's components watch a kind through.

A :class:`Store` lists a kind, then watches it, in its own thread (:func:`kfn.kube.reflect`),
and holds each object parsed into the caller's type, keyed by namespace and name. Callers
read it from any thread (:meth:`Store.get`, :meth:`Store.values`, :meth:`Store.snapshot`),
wait for :attr:`Store.synced` (set after the first complete list), and hear of changes
through one listener, called after every list and every watch event with what changed:
an object added or changed (:class:`Change` with its value) or gone (value None). A re-list
replaces the table, so an object deleted while the watch was down is reported gone too.

What does not parse is not in the store: ``parse`` returns None for an object the caller
does not want (another kind of Trigger, an invalid spec: the caller decides whether to log
it), and the key it had is reported gone. ``parse`` also sees the value it replaces, so a
caller can carry its own bookkeeping from one version of an object to the next.

Components on an asyncio loop wrap their listener in :func:`on_loop`: the table is kept
in the watching thread, and the listener runs on the loop, in order, by then possibly behind
the table (read the table for the newest state, the changes for what happened). There it
cannot go by :attr:`Store.synced`, which the thread sets after merely scheduling the call;
nor need it: the reflector lists before it watches, so the first call is the first list.

This module is generic over the parsed type, so it needs none of kfn's models.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from kfn import kube

T = TypeVar("T")

Key = tuple[str, str]
"""Where an object is kept: its namespace and name, unless the store is given another key."""


def key_of(obj: kube.Object) -> Key:
    """An object's namespace and name ("" for either that is missing)."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


@dataclasses.dataclass(frozen=True)
class Change(Generic[T]):
    """One object the store took in (``value``) or let go (``value`` is None)."""

    key: Key
    value: T | None


Listener = Callable[[list[Change[T]]], None]
"""Hears what one list or one watch event changed (possibly nothing)."""


class Reflect(Protocol):
    """The source of a store's objects: :func:`kfn.kube.reflect`'s signature."""

    def __call__(
        self,
        api_version: str,
        kind: str,
        into: kube.Reflection,
        stop: threading.Event,
        *,
        label_selector: str = "",
    ) -> None: ...


class Store(Generic[T]):
    """The objects of one kind, parsed, kept current by a reflector thread of their own.

    ``parse(obj, previous)`` turns an API object into the stored value, given the value
    it replaces (None when the key is new); None keeps the object out. It runs under
    :attr:`lock`, in the thread that calls :meth:`replace` or :meth:`change`.
    ``listener`` is called after each of those, outside the lock, in the same thread
    (wrap it in :func:`on_loop` to have it run on an event loop).
    """

    def __init__(
        self,
        api_version: str,
        kind: str,
        parse: Callable[[kube.Object, T | None], T | None],
        *,
        listener: Listener[T] | None = None,
        key: Callable[[kube.Object], Key] = key_of,
        label_selector: str = "",
        reflect: Reflect = kube.reflect,  # tests pass a fake source of events
    ) -> None:
        self.api_version = api_version
        self.kind = kind
        self.parse = parse
        self.listener = listener
        self.key = key
        self.label_selector = label_selector
        self.reflect = reflect
        #: Guards the table and is held while ``parse`` runs: a caller that changes stored
        #: values in place (the cron worker) holds it too, so no event parses a value it is
        #: halfway through changing.
        self.lock = threading.RLock()
        #: Set once the first complete list is in the table and the listener heard of it.
        self.synced = threading.Event()
        self._table: dict[Key, T] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading, from any thread ------------------------------------------------------------

    def get(self, key: Key) -> T | None:
        with self.lock:
            return self._table.get(key)

    def values(self) -> list[T]:
        with self.lock:
            return list(self._table.values())

    def snapshot(self) -> dict[Key, T]:
        with self.lock:
            return dict(self._table)

    # --- what the reflector delivers (kube.Reflection) ---------------------------------------

    def replace(self, objects: list[kube.Object]) -> None:
        """A complete list: the table becomes what parses of it; what is not in it is gone."""
        with self.lock:
            old, fresh = self._table, {}
            for obj in objects:
                key = self.key(obj)
                value = self.parse(obj, old.get(key))
                if value is not None:
                    fresh[key] = value
            self._table = fresh
        gone = [Change[T](key, None) for key in old if key not in fresh]
        self._tell(gone + [Change(key, value) for key, value in fresh.items()])
        self.synced.set()

    def change(self, kind: str, obj: kube.Object) -> None:
        """One watch event: DELETED lets the object go, any other kind parses it anew."""
        key = self.key(obj)
        with self.lock:
            previous = self._table.get(key)
            value = None if kind == "DELETED" else self.parse(obj, previous)
            if value is None:
                self._table.pop(key, None)
            else:
                self._table[key] = value
        self._tell([Change(key, value)] if value is not None or previous is not None else [])

    def _tell(self, changes: list[Change[T]]) -> None:
        if self.listener is not None:
            self.listener(changes)

    # --- the reflector thread ----------------------------------------------------------------

    def start(self) -> None:
        """Lists and watches the kind in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError(f"the {self.kind} store is running already")
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.reflect,
            args=(self.api_version, self.kind, _Until(self, self._stop), self._stop),
            kwargs={"label_selector": self.label_selector},
            name=f"{self.kind.lower()}-watch",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> bool:
        """Stops taking in events at once; waits up to ``timeout`` seconds for the thread,
        which leaves between two events (a quiet watch holds it until the server ends the
        watch). True when the thread has ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


class _Until:
    """Hands events to the store until ``stop`` is set, so none lands after :meth:`Store.stop`
    (or in a store started again meanwhile)."""

    def __init__(self, store: Store[Any], stop: threading.Event) -> None:
        self.store = store
        self.stop = stop

    def replace(self, objects: list[kube.Object]) -> None:
        if not self.stop.is_set():
            self.store.replace(objects)

    def change(self, kind: str, obj: kube.Object) -> None:
        if not self.stop.is_set():
            self.store.change(kind, obj)


class Loop(Protocol):
    """What :func:`on_loop` needs of an asyncio event loop."""

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> object: ...


def on_loop(loop: Loop, listener: Listener[T]) -> Listener[T]:
    """A listener that runs ``listener`` on ``loop``, in the order the changes came."""

    def later(changes: list[Change[T]]) -> None:
        loop.call_soon_threadsafe(listener, changes)

    return later
