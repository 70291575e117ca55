"""The pushed changes a replica took in hand, recorded for the catch-up listing.

Every replica notes each (Push Trigger, change) pair it queues (:meth:`Ledger.note`) and
writes them to the Trigger's snapshot ConfigMap in one merge patch per Trigger every
:data:`FLUSH_EVERY` (:meth:`Ledger.flush`), so the replica that lists the bucket knows
which changes a notification already brought (:mod:`~kfn.triggers.bucket.poll`). A record
that cannot be written costs at worst one duplicate invocation, never a lost event: the
catch-up then delivers the change a second time, with its own request id.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from kfn import kube
from kfn.triggers.bucket import events, poll, routes

#: How often the records taken in hand are written.
FLUSH_EVERY: Final = 0.5
#: Records kept per Trigger while writing them fails; the oldest beyond go.
MAX_WAITING: Final = 4096

logger = logging.getLogger(__name__)


class Ledger:
    """Records pushed changes for the catch-up listing (see the module doc)."""

    def __init__(self, snapshots: poll.SnapshotStore) -> None:
        self.snapshots = snapshots
        self._lock = threading.Lock()
        self._waiting: dict[routes.Key, dict[str, str]] = {}
        #: Triggers whose records could not be written last time (warned once).
        self._failing: set[routes.Key] = set()

    def note(self, route: routes.Route, change: events.ObjectEvent) -> None:
        """Notes a pushed change this replica took in hand."""
        key, value = poll.record_entry(change)
        with self._lock:
            self._waiting.setdefault(route.key, {})[key] = value

    def flush(self) -> None:
        """Writes what was noted; keeps what could not be written for the next flush."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for key, entries in waiting.items():
            try:
                self.snapshots.record(*key, entries)
            except kube.ApiError as exc:
                if exc.status != 404:  # 404: no baseline yet, the first listing takes these in
                    self._keep(key, entries, exc)
                continue
            except OSError as exc:
                self._keep(key, entries, exc)
                continue
            self._failing.discard(key)

    def _keep(self, key: routes.Key, entries: dict[str, str], exc: Exception) -> None:
        """Keeps records that could not be written (the newest :data:`MAX_WAITING`)."""
        if key not in self._failing:
            logger.warning("%s/%s: recording pushed changes failed (the catch-up may deliver "
                           "them again): %s", *key, exc)  # fmt: skip
            self._failing.add(key)
        with self._lock:
            merged = entries | self._waiting.get(key, {})
            self._waiting[key] = dict(list(merged.items())[-MAX_WAITING:])

    def run(self, stop: threading.Event) -> None:
        """Flushes every :data:`FLUSH_EVERY` until ``stop``, then once more."""
        while not stop.wait(FLUSH_EVERY):
            self.flush()
        self.flush()
