"""A stand-in for the API server behind :func:`kfn.kube.reflect`, for tests of stores.

A :class:`kfn.kube.cache.Store` takes its reflector as a parameter; tests hand it
:meth:`ApiServer.reflect`, which delivers the lists and watch events a test queues, one at a
time, in the store's own thread, and like the real reflector looks at the stop flag only
between two events.
"""

from __future__ import annotations

import queue
import threading

from kfn import kube

#: A complete list (a list of objects) or one watch event (``(kind, object)``).
Event = list[kube.Object] | tuple[str, kube.Object]


class ApiServer:
    """Delivers queued events to whoever reflects from it (see the module doc)."""

    def __init__(self) -> None:
        self.events: queue.Queue[Event | None] = queue.Queue()
        #: (api_version, kind, label_selector, thread name) of each reflector that came.
        self.calls: list[tuple[str, str, str, str]] = []

    def reflect(
        self,
        api_version: str,
        kind: str,
        into: kube.Reflection,
        stop: threading.Event,
        *,
        label_selector: str = "",
    ) -> None:
        self.calls.append((api_version, kind, label_selector, threading.current_thread().name))
        while (event := self.events.get()) is not None:
            try:
                if isinstance(event, list):
                    into.replace(event)
                else:
                    into.change(*event)
            finally:
                self.events.task_done()
            if stop.is_set():
                return
        self.events.task_done()

    def send(self, event: Event) -> None:
        """Queues one event and returns once a reflector handed it to its store."""
        self.events.put(event)
        self.events.join()

    def hang_up(self) -> None:
        """Ends the reflector waiting for an event, stopped or not, without an event."""
        self.events.put(None)
