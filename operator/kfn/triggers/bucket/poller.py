"""Listing at work: the replica holding the poller Lease lists buckets and delivers changes.

While this replica holds the ``kfn-bucket-poller`` Lease (the cron worker's election
rules), :meth:`Poller.loop` lists the bucket of each Trigger whose ``pollInterval`` has
passed, one thread per Trigger: for a Poll Trigger to find its changes, for a Push
Trigger to catch up on notifications the store never sent (:mod:`~kfn.triggers.bucket.poll`
explains how pushed changes are told apart). A poll reads the Trigger's Secret, lists the bucket
(:mod:`~kfn.triggers.bucket.s3`), diffs the listing against the snapshot and delivers the
changes batch by batch, writing the snapshot after each (:mod:`~kfn.triggers.bucket.poll`
decides all of that). A replica that loses the Lease forgets what it cached, since the new
leader moves the snapshots on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import threading
from collections.abc import Mapping
from typing import Final

from kfn import kube
from kfn.api import endpoints, meta
from kfn.clock import Clock, utcnow
from kfn.kube import cache
from kfn.triggers import credentials, delivery, metrics
from kfn.triggers import lease as lease_
from kfn.triggers.bucket import conditions, dispatch, events, poll, routes, s3, verdicts

LEASE_NAME: Final = "kfn-bucket-poller"
#: Changes delivered together before the snapshot is written.
POLL_BATCH: Final = 32

logger = logging.getLogger(__name__)


def credentials_of(
    secret: Mapping[str, bytes] | None, route: routes.Route
) -> s3.Credentials | None:
    """The access key pair from the Trigger's Secret (None: unsigned requests)."""
    if secret is None:
        return None
    ref = route.spec.credentials_secret_ref
    name = f"{route.namespace}/{ref.name}" if ref else route.namespace
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not secret.get(k)]
    if missing:
        raise credentials.CredentialsError(f"Secret {name} has no {' or '.join(missing)}")
    token = secret.get("AWS_SESSION_TOKEN")
    return s3.Credentials(
        secret["AWS_ACCESS_KEY_ID"].decode(),
        secret["AWS_SECRET_ACCESS_KEY"].decode(),
        token.decode() if token else None,
    )


@dataclasses.dataclass
class PollState:
    """A Poll Trigger's progress while this replica polls it."""

    source: str
    snapshot: poll.Snapshot | None = None
    due: datetime.datetime | None = None
    #: Push Triggers: changes no notification explained, and when each was first listed.
    sightings: dict[poll.Sighting, datetime.datetime] = dataclasses.field(default_factory=dict)
    #: Push Triggers: the last listing's failure, logged once until it changes.
    problem: str = ""
    #: Whether the Trigger has no snapshot's ConfigMap yet: its baseline is its first.
    first: bool = False


class Poller:
    """Polls the buckets of Poll Triggers while this replica leads (see the module doc)."""

    def __init__(
        self,
        routes_: cache.Store[routes.Route],
        dispatcher: dispatch.Dispatcher,
        conditions_: conditions.Conditions,
        *,
        terminating: threading.Event,
        lease: lease_.LeaseKeeper | None = None,
        snapshots: poll.SnapshotStore | None = None,
        read_secret: credentials.SecretReader = credentials.read_secret,
        clock: Clock = utcnow,
    ) -> None:
        self.routes = routes_
        self.dispatcher = dispatcher
        self.conditions = conditions_
        #: Set on SIGTERM: polling stops after the batch in hand.
        self.terminating = terminating
        self.lease = lease
        self.snapshots = snapshots or poll.SnapshotStore()
        self.read_secret = read_secret
        self.clock = clock
        self.polls: dict[routes.Key, PollState] = {}
        self.leading = False
        self._lock = threading.Lock()

    # -- leadership --

    def may_poll(self) -> bool:
        """Whether this replica polls now: it holds the Lease (or runs without one)."""
        return self.lease is None or self.lease.leading()

    def sync_leadership(self, leading: bool) -> None:
        """Tracks the Poll Triggers' status while leading; forgets what is cached when not,
        since another replica may have moved their snapshots on."""
        if leading == self.leading:
            return
        self.leading = leading
        with self._lock:
            self.polls.clear()
        self.conditions.track_polls(leading, routes.polled(self.routes))

    def forget(self, key: routes.Key) -> None:
        """Drops a deleted Trigger's poll state."""
        with self._lock:
            self.polls.pop(key, None)

    # -- when --

    def due(self, now: datetime.datetime) -> list[routes.Route]:
        """The Triggers whose interval has passed (or that were never listed)."""
        return [
            route
            for route in self.routes.values()
            if (due := self._state(route).due) is None or due <= now
        ]

    def _state(self, route: routes.Route) -> PollState:
        """The Trigger's poll state; started over when its source changed."""
        source = poll.source_of(route.spec)
        with self._lock:
            state = self.polls.get(route.key)
            if state is None or state.source != source:
                state = self.polls[route.key] = PollState(source)
            return state

    def _schedule(self, route: routes.Route, started: datetime.datetime) -> None:
        interval = meta.parse_duration(route.spec.poll_interval)
        with self._lock:
            state = self.polls.get(route.key)
            if state is not None:
                state.due = started + interval

    # -- one poll --

    def poll_once(self, route: routes.Route) -> None:
        """Lists one bucket, delivers its changes batch by batch, persists the snapshot."""
        started = self.clock()
        try:
            self._poll(route)
        except Exception:
            logger.exception("%s: polling failed", route.label)
        finally:
            self._schedule(route, started)

    def _poll(self, route: routes.Route) -> None:
        source = poll.source_of(route.spec)
        state = self._state(route)
        found = self._list(route, state, source)
        if found is None:
            return
        records, listing = found
        if state.snapshot is None:
            # Objects changed since a new Trigger was created are left to the diff: their
            # notifications may have reached no replica that knew the Trigger.
            created = route.created if state.first else None
            baseline = poll.baseline(listing, created=created, now=self.clock())
            if self._save(route, source, baseline) and records:
                self._drop_records(route, records)
            state.snapshot = baseline
            logger.info("%s: baseline of %d objects taken (%d changed since the Trigger was "
                        "created are left to the next listing)", route.label, len(baseline),
                        len(listing) - len(baseline))  # fmt: skip
            return
        loud = self._reconcile(route, state, source, records, listing)
        if loud:
            self._deliver_changes(route, state, source, loud)

    def _list(
        self, route: routes.Route, state: PollState, source: str
    ) -> tuple[dict[str, str], list[s3.ObjectInfo]] | None:
        """The pushed-change records and the listing in scope; None when listing failed
        (a Poll Trigger's SourceReachable says why, a Push Trigger's warning once)."""
        pushed = route.spec.mode == "Push"
        secrets: list[str] = []
        try:
            if state.snapshot is None:
                state.snapshot = self.snapshots.load(
                    route.namespace, route.name, uid=route.uid, source=source
                )
                if state.snapshot is None:
                    state.first = not self.snapshots.kept(
                        route.namespace, route.name, uid=route.uid
                    )
            # Read before listing, so every change a record names happened before the listing.
            records = (
                self.snapshots.records(route.namespace, route.name, uid=route.uid) if pushed else {}
            )
            secret = self.read_secret(
                route.namespace,
                route.spec.credentials_secret_ref,
                endpoints.s3(route.spec.endpoint),
            )
            keys = credentials_of(secret, route)
            if keys is not None:
                secrets = [keys.secret_key, keys.session_token or ""]
            client = s3.Client(route.spec.endpoint, route.spec.region, keys)
            prefix = (route.spec.filter.prefix or "") if route.spec.filter else ""
            listing = [
                item
                for item in client.list_objects(route.spec.bucket, prefix)
                if poll.in_scope(route.spec, item.key)
            ]
        except (credentials.CredentialsError, s3.S3Error, kube.ApiError, OSError) as exc:
            verdict = verdicts.source_verdict(exc, route, secrets=secrets)
            if not pushed:
                logger.warning("%s: %s", route.label, verdict.message)
                self.conditions.reachable(route, verdict)
            elif verdict.message != state.problem:
                # Notifications still arrive; say so once, not on every listing.
                logger.warning("%s: catching up by listing failed: %s", route.label,
                               verdict.message)  # fmt: skip
            state.problem = verdict.message
            return None
        state.problem = ""
        if not pushed:
            self.conditions.reachable(route, verdicts.source_verdict(None, route))
        return records, listing

    def _reconcile(
        self, route: routes.Route, state: PollState, source: str,
        records: dict[str, str], listing: list[s3.ObjectInfo],
    ) -> list[poll.Change]:  # fmt: skip
        """Moves the snapshot on by what needs no delivery (changes the Trigger does not
        report, recorded pushes); the changes to deliver."""
        assert state.snapshot is not None
        if records:
            current = {item.key: item.etag for item in listing}
            state.snapshot = poll.fold(state.snapshot, records, current)
        changes = poll.diff(state.snapshot, listing)
        quiet = [c for c in changes if not poll.reported(route.spec, c)]
        loud = [c for c in changes if poll.reported(route.spec, c)]
        if route.spec.mode == "Push":
            loud, state.sightings = poll.settled(loud, state.sightings, self.clock())
            if loud:
                logger.warning("%s: %d changes no notification brought, delivered from the "
                               "listing", route.label, len(loud))  # fmt: skip
                metrics.CAUGHT_UP.labels(route.namespace, route.name, routes.KIND).inc(len(loud))
        snapshot = poll.advance(state.snapshot, quiet)
        if records or (quiet and not loud):
            if not self._save(route, source, snapshot):
                return []
            if records:
                self._drop_records(route, records)
        state.snapshot = snapshot
        return loud

    def _deliver_changes(
        self, route: routes.Route, state: PollState, source: str, loud: list[poll.Change]
    ) -> None:
        """Delivers changes batch by batch, writing the snapshot after each."""
        assert state.snapshot is not None
        now = self.clock()
        found = [
            (change, events.polled(route.spec.bucket, change.key, change.name, now=now,
                                   index=i, size=change.size, etag=change.etag,
                                   region=route.spec.region))
            for i, change in enumerate(loud)
        ]  # fmt: skip
        metrics.RECEIVED.labels(route.namespace, route.name, routes.KIND).inc(len(found))
        by_change = dict(found)
        for batch in poll.batches(loud, POLL_BATCH):
            if self.terminating.is_set() or not self.may_poll():
                return
            futures = {
                change: self.dispatcher.pool.submit(self._deliver, route, by_change[change], now)
                for change in batch
            }
            handled = [change for change, future in futures.items() if future.result().handled]
            state.snapshot = poll.advance(state.snapshot, handled)
            self._save(route, source, state.snapshot)
            if len(handled) < len(batch):
                return

    def _deliver(
        self, route: routes.Route, change: events.ObjectEvent, first_seen: datetime.datetime
    ) -> delivery.Result:
        """Delivers one polled change. One the worker stops before is not held: the next
        poller lists it again."""
        payload = routes.payload_of(route, change)
        request_id = events.request_id(route.uid, change, polled=True)
        return self.dispatcher.deliver(route, payload, request_id, first_seen, None)

    def _save(self, route: routes.Route, source: str, snapshot: poll.Snapshot) -> bool:
        """Writes the snapshot; False when that failed."""
        try:
            self.snapshots.save(
                route.namespace, route.name, uid=route.uid, source=source, snapshot=snapshot
            )
        except (kube.ApiError, OSError, poll.SnapshotTooLargeError) as exc:
            # Not fatal: the next poll starts from what was last written and resends.
            logger.warning("%s: writing the snapshot failed: %s", route.label, exc)
            return False
        return True

    def _drop_records(self, route: routes.Route, records: Mapping[str, str]) -> None:
        """Removes the records now folded into the written snapshot."""
        try:
            self.snapshots.drop_records(route.namespace, route.name, records)
        except (kube.ApiError, OSError) as exc:
            # Not fatal: folding them again next time changes nothing.
            logger.warning("%s: removing folded records failed: %s", route.label, exc)

    # -- the loop --

    def loop(self, stop: threading.Event) -> None:
        """Polls due Triggers while this replica holds the Lease, one poller thread each."""
        running: dict[routes.Key, concurrent.futures.Future[None]] = {}
        pollers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="poll")
        try:
            while not stop.is_set() and not self.terminating.is_set():
                leading = self.may_poll()
                self.sync_leadership(leading)
                running = {k: f for k, f in running.items() if not f.done()}
                if leading:
                    for route in self.due(self.clock()):
                        if route.key not in running:
                            running[route.key] = pollers.submit(self.poll_once, route)
                self.terminating.wait(0.25)
        finally:
            pollers.shutdown(wait=True)
