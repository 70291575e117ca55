"""The bucket worker process: its parts wired together, its run, and its leaving.

:class:`Worker` joins the parts that share one store of bucket Triggers
(:func:`kfn.triggers.bucket.routes.table`), which watches them in its own thread:

* the HTTP receiver (:mod:`~kfn.triggers.bucket.receiver`) answers readiness here and hands
  notifications and hand-offs to the :class:`~kfn.triggers.bucket.push.Pusher`;
* the lease keeper holds the ``kfn-bucket-poller`` Lease; while it leads, the
  :class:`~kfn.triggers.bucket.poller.Poller` lists the buckets of Poll Triggers when due,
  and those of Push Triggers to catch up on notifications never sent;
* the :class:`~kfn.triggers.bucket.ledger.Ledger` records the pushed changes taken in hand,
  so that catch-up does not deliver them twice;
* deliveries of both modes run in one bounded pool
  (:class:`~kfn.triggers.bucket.dispatch.Dispatcher`);
* the status writer (:mod:`kfn.triggers.status`) writes conditions in the background
  (:mod:`~kfn.triggers.bucket.conditions` says which).

:func:`run` starts every thread and, after SIGTERM, leaves without losing a notification
in hand: a pushed event still held when the replica stops is handed to another replica
(:mod:`~kfn.triggers.bucket.holding`) rather than dropped, since the store will not send
it again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from kfn.clock import Clock, utcnow
from kfn.kube import cache
from kfn.triggers import credentials, metrics, status
from kfn.triggers import lease as lease_
from kfn.triggers.bucket import (
    conditions,
    dispatch,
    handoff,
    holding,
    ledger,
    poll,
    poller,
    push,
    receiver,
    routes,
)

logger = logging.getLogger(__name__)


class Worker:
    """Wires routing, delivery, polling and status together (see the module doc)."""

    def __init__(
        self,
        *,
        deliver: dispatch.Deliver,
        public_url: str,
        lease: lease_.LeaseKeeper | None = None,
        statuses: status.StatusWriter | None = None,
        snapshots: poll.SnapshotStore | None = None,
        read_secret: credentials.SecretReader = credentials.read_secret,
        clock: Clock = utcnow,
        threads: int = dispatch.DELIVERY_THREADS,
        abort: threading.Event | None = None,
        peer_url: str | None = None,
        handoff_key: bytes = b"",
        send_handoff: holding.SendHandoff = handoff.send,
        signing: receiver.Signing | None = None,
    ) -> None:  # fmt: skip
        self.lease = lease
        #: What notifications must be signed with (None: nothing).
        self.signing = signing
        self.statuses = statuses
        #: Set on SIGTERM: readiness fails, polling stops after the batch in hand.
        self.terminating = threading.Event()
        #: Set when the grace period is over: deliveries still retrying give up unhandled.
        self.abort = abort or threading.Event()
        self.routes = routes.table(self._routes_changed)
        self.conditions = conditions.Conditions(
            statuses, public_url.rstrip("/"), signed=signing is not None
        )
        self.dispatcher = dispatch.Dispatcher(
            deliver, self.conditions, clock=clock, threads=threads,
            known=lambda key: self.routes.get(key) is not None,
        )  # fmt: skip
        self.held = holding.HeldEvents(
            peer_url=peer_url or public_url, key=handoff_key, send=send_handoff,
            lost=self._lost,
        )  # fmt: skip
        snapshots = snapshots or poll.SnapshotStore()
        self.records = ledger.Ledger(snapshots, clock=clock)
        self.pusher = push.Pusher(
            self.routes, self.dispatcher, self.held, handoff_key=handoff_key,
            abort=self.abort, records=self.records, clock=clock,
        )  # fmt: skip
        self.poller = poller.Poller(
            self.routes, self.dispatcher, self.conditions, terminating=self.terminating,
            lease=lease, snapshots=snapshots, read_secret=read_secret, clock=clock,
        )  # fmt: skip

    # -- what the receiver asks (receiver.App) --

    def ready(self) -> bool:
        """Ready for notifications: the Triggers are known and no SIGTERM came."""
        return self.routes.synced.is_set() and not self.terminating.is_set()

    def accepting(self) -> bool:
        return self.pusher.accepting()

    def handle_push(self, payload: object, only: routes.Key | None = None) -> tuple[int, str]:
        return self.pusher.handle(payload, only)

    def take_over(self, body: bytes, signature: str | None) -> tuple[int, str]:
        return self.pusher.take_over(body, signature)

    def _lost(self, held: holding.Held) -> None:
        """An event no other replica took: its record is taken back for the catch-up."""
        self.pusher.lose(held)

    def _routes_changed(self, changes: list[cache.Change[routes.Route]]) -> None:
        for change in changes:
            key = change.key
            if change.value is None:
                self.poller.forget(key)
                metrics.forget_metrics(key[0], key[1], routes.KIND)
            self.conditions.route_changed(change.value, key)


# --- the process -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shutdown:
    """How a replica leaves after SIGTERM, in seconds.

    It keeps receiving for at least ``drain`` and until no notification came for ``quiet``
    (the Service has stopped sending here), never longer than ``drain_max``. Then events in
    hand get ``patience`` to end on their own; those still waiting for a retry are handed to
    another replica, and invocations still running get until ``grace`` (counted from the
    end of the drain) before they are handed over too.
    """

    drain: float = 5.0
    quiet: float = 2.0
    drain_max: float = 15.0
    patience: float = 15.0
    grace: float = 35.0
    last_answers: float = 3.0


def drained(shutdown: Shutdown, *, stopped_at: float, last_post: float, now: float) -> bool:
    """Whether a stopping replica may close its listener (monotonic seconds)."""
    if now - stopped_at >= shutdown.drain_max:
        return True
    return now - stopped_at >= shutdown.drain and now - last_post >= shutdown.quiet


@dataclasses.dataclass
class _Background:
    """The threads a worker runs beside its receiver, and the events that stop them."""

    polling: threading.Thread
    recording: threading.Thread
    keeping: threading.Thread | None
    stop_polling: threading.Event
    stop_records: threading.Event
    stop_lease: threading.Event
    stop_status: threading.Event

    @classmethod
    def start(cls, worker: Worker) -> _Background:
        """Starts the Triggers' watch and every background thread."""
        stops = [threading.Event() for _ in range(4)]
        polling = threading.Thread(
            target=worker.poller.loop, args=(stops[0],), name="poll", daemon=True
        )
        worker.routes.start()
        recording = threading.Thread(
            target=worker.records.run, args=(stops[1],), name="records", daemon=True
        )
        threads = [polling, recording]
        keeping: threading.Thread | None = None
        if worker.lease is not None:
            keeping = threading.Thread(
                target=worker.lease.run, args=(stops[2],), name="lease", daemon=True
            )
            threads.append(keeping)
        if worker.statuses is not None:
            threads.append(
                threading.Thread(
                    target=worker.statuses.run, args=(stops[3],), name="status", daemon=True
                )
            )
        for thread in threads:
            thread.start()
        return cls(polling, recording, keeping, *stops)


def run(
    worker: Worker,
    address: tuple[str, int],
    *,
    shutdown: Shutdown = Shutdown(),
) -> None:
    """Runs every thread until ``worker.terminating`` is set, then leaves without losing
    a notification in hand (blocking)."""
    threads = _Background.start(worker)
    server, _ = receiver.serve(address, worker, signing=worker.signing)
    logger.info("receiving notifications on %s:%d", *address)
    worker.terminating.wait()
    stopped_at = time.monotonic()
    if worker.lease is not None and threads.keeping is not None:
        threading.Thread(
            target=_let_go,
            args=(worker.lease, threads.polling, threads.keeping, threads.stop_lease),
            name="lease-release", daemon=True,
        ).start()  # fmt: skip
    # From now on every answer closes its connection: the store dials the Service again
    # for its next notification and reaches a replica that stays.
    server.closing.set()
    logger.info("stopping: not ready; receiving until no notification came for %.0fs",
                shutdown.quiet)  # fmt: skip
    while not drained(shutdown, stopped_at=stopped_at, last_post=server.last_post,
                      now=time.monotonic()):  # fmt: skip
        time.sleep(0.1)
    idle = server.stop_receiving()
    logger.info("stopped receiving after %.1fs (closed %d idle connections)",
                time.monotonic() - stopped_at, idle)  # fmt: skip
    deadline = time.monotonic() + shutdown.grace
    worker.held.wait_settled(shutdown.patience)
    threads.polling.join(max(0.0, deadline - time.monotonic()))
    # Retries still waiting end now; each is handed to another replica by its own thread.
    worker.held.close()
    worker.abort.set()
    if not worker.held.wait_settled(max(0.0, deadline - time.monotonic())):
        lost = worker.held.hand_off_all()
        if lost:
            logger.error("%d events still in hand could not be handed over", lost)
    # Hand-offs of retries that ended at the abort may still be under way: what they lose
    # is taken back from the records (for the catch-up) before the last flush below.
    worker.held.wait_handed(holding.HANDOFF_PATIENCE + handoff.SEND_TIMEOUT)
    server.wait_idle(shutdown.last_answers)
    threads.polling.join(shutdown.last_answers)
    threads.stop_polling.set()
    threads.stop_records.set()
    threads.recording.join(5.0)
    worker.routes.stop()
    worker.dispatcher.pool.shutdown(wait=False, cancel_futures=True)
    threads.stop_lease.set()
    if worker.lease is not None:  # _let_go did it unless the poller is still delivering
        worker.lease.release()
    threads.stop_status.set()
    if worker.statuses is not None:
        worker.statuses.flush()
    server.server_close()
    logger.info("stopped")


def _let_go(
    lease: lease_.LeaseKeeper,
    polling: threading.Thread,
    keeping: threading.Thread,
    stop_lease: threading.Event,
) -> None:
    """Gives the poller Lease up as soon as a stopping replica's poller has stopped: another
    replica's catch-up listing then starts at once, not after this one's whole leaving (up
    to a minute and more, during which a terminating replica would also keep, or even take,
    the Lease that lets no other replica list)."""
    polling.join()
    stop_lease.set()
    keeping.join(5.0)
    lease.release()
