"""The pushed changes a replica took in hand, recorded for the catch-up listing.

Every replica notes each (Push Trigger, change) pair it queues (:meth:`Ledger.note`) and
writes them to the Trigger's snapshot ConfigMap in one merge patch per Trigger every
:data:`FLUSH_EVERY` (:meth:`Ledger.flush`), so the replica that lists the bucket knows
which changes a notification already brought (:mod:`~kfn.triggers.bucket.poll`). A change
a replica then lost (no other replica took it when this one stopped) has its record taken
back (:meth:`Ledger.retract`), so the catch-up delivers it after all. A record
that cannot be written costs at worst one duplicate invocation, never a lost event: the
catch-up then delivers the change a second time, with its own request id.

Records of a Trigger whose ConfigMap does not exist yet (no listing took its baseline) are
kept, while younger than :data:`poll.NEW_TRIGGER <kfn.triggers.bucket.poll.NEW_TRIGGER>`,
and written once it does: the first listing leaves what changed since the Trigger was
created to the catch-up (:func:`~kfn.triggers.bucket.poll.baseline`), which must then know
what notifications brought. :func:`kept_until_listed` decides which (pure).
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Final

from kfn import kube
from kfn.clock import Clock, utcnow
from kfn.triggers.bucket import events, poll, routes

logger = logging.getLogger(__name__)

#: How often the records taken in hand are written.
FLUSH_EVERY: Final = 0.5
#: Records kept per Trigger while writing them fails; the oldest beyond go.
MAX_WAITING: Final = 4096
#: How long after a write found no ConfigMap the Trigger's records wait before the next try.
UNLISTED_RETRY: Final = datetime.timedelta(seconds=2)

#: A record waiting to be written: its ``data`` value and when it was noted.
Waiting = tuple[str, datetime.datetime]


def kept_until_listed(
    waiting: dict[str, Waiting],
    now: datetime.datetime,
    young: datetime.timedelta = poll.NEW_TRIGGER,
) -> dict[str, Waiting]:
    """Of the records of a Trigger that has no ConfigMap yet, those to keep until its first
    listing made one: the ones noted less than ``young`` ago (a Trigger listed later than
    that takes them in with its baseline; one never listed must not keep them forever)."""
    return {key: entry for key, entry in waiting.items() if now - entry[1] < young}


class Ledger:
    """Records pushed changes for the catch-up listing (see the module doc)."""

    def __init__(self, snapshots: poll.SnapshotStore, *, clock: Clock = utcnow) -> None:
        self.snapshots = snapshots
        self.clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[routes.Key, dict[str, Waiting]] = {}
        #: Triggers whose records could not be written last time (warned once).
        self._failing: set[routes.Key] = set()
        #: Triggers without a ConfigMap yet, and when a write last found none.
        self._unlisted: dict[routes.Key, datetime.datetime] = {}

    def note(self, route: routes.Route, change: events.ObjectEvent) -> None:
        """Notes a pushed change this replica took in hand."""
        key, value = poll.record_entry(change)
        with self._lock:
            self._waiting.setdefault(route.key, {})[key] = (value, self.clock())

    def retract(self, route: routes.Route, change: events.ObjectEvent) -> None:
        """Takes back the record of a pushed change this replica lost (it could neither
        deliver it nor hand it over), so that the catch-up listing delivers it: dropped if
        not yet written, else taken back by a :func:`~kfn.triggers.bucket.poll.lost_entry`."""
        key, _ = poll.record_entry(change)
        lost, value = poll.lost_entry(change)
        with self._lock:
            waiting = self._waiting.setdefault(route.key, {})
            if waiting.pop(key, None) is None:
                waiting[lost] = (value, self.clock())

    def flush(self, *, last: bool = False) -> None:
        """Writes what was noted; keeps what could not be written for the next flush (the
        ``last`` one, as the replica leaves, tries every Trigger)."""
        now = self.clock()
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for key, entries in waiting.items():
            tried = self._unlisted.get(key)
            if not last and tried is not None and now - tried < UNLISTED_RETRY:
                self._put_back(key, entries)
                continue
            try:
                self.snapshots.record(*key, {k: value for k, (value, _) in entries.items()})
            except kube.ApiError as exc:
                if exc.status == 404:  # no baseline yet: kept for the first listing
                    kept = kept_until_listed(entries, now)
                    if kept:
                        self._unlisted[key] = now
                        self._put_back(key, kept)
                    else:
                        self._unlisted.pop(key, None)
                else:
                    self._keep(key, entries, exc)
                continue
            except OSError as exc:
                self._keep(key, entries, exc)
                continue
            self._failing.discard(key)
            self._unlisted.pop(key, None)

    def _keep(self, key: routes.Key, entries: dict[str, Waiting], exc: Exception) -> None:
        """Keeps records that could not be written (the newest :data:`MAX_WAITING`)."""
        if key not in self._failing:
            logger.warning("%s/%s: recording pushed changes failed (the catch-up may deliver "
                           "them again): %s", *key, exc)  # fmt: skip
            self._failing.add(key)
        self._put_back(key, entries)

    def _put_back(self, key: routes.Key, entries: dict[str, Waiting]) -> None:
        """Puts records back for the next flush, before those noted meanwhile (the newest
        :data:`MAX_WAITING` stay)."""
        if not entries:
            return
        with self._lock:
            merged = entries | self._waiting.get(key, {})
            self._waiting[key] = dict(list(merged.items())[-MAX_WAITING:])

    def run(self, stop: threading.Event) -> None:
        """Flushes every :data:`FLUSH_EVERY` until ``stop``, then once more."""
        while not stop.wait(FLUSH_EVERY):
            self.flush()
        self.flush(last=True)
