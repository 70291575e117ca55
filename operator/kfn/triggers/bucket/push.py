"""Push mode: deliver what a store pushed before answering it, and take over handed events.

The receiver (:mod:`~kfn.triggers.bucket.receiver`) hands each notification to
:meth:`Pusher.handle`, which queues every matching (Trigger, record) pair in the delivery
pool as a held event (:mod:`~kfn.triggers.bucket.holding`) and answers 200 only once all
were handled: nothing is acknowledged before it is handled. Each pair is also noted in the
:class:`~kfn.triggers.bucket.ledger.Ledger`, so the listing that catches up on lost
notifications does not deliver it again. An event that another,
stopping replica hands over (:meth:`Pusher.take_over`) joins the pool the same way and
goes on from where it stood.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import threading

from kfn.clock import Clock, utcnow
from kfn.kube import cache
from kfn.triggers import delivery, metrics
from kfn.triggers.bucket import dispatch, events, handoff, holding, ledger, routes


class Pusher:
    """Handles pushed notifications and hand-offs (see the module doc)."""

    def __init__(
        self,
        routes_: cache.Store[routes.Route],
        dispatcher: dispatch.Dispatcher,
        held: holding.HeldEvents,
        *,
        handoff_key: bytes,
        abort: threading.Event,
        records: ledger.Ledger | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.routes = routes_
        #: Where the changes taken in hand are noted for the catch-up listing.
        self.records = records
        self.dispatcher = dispatcher
        self.held = held
        self.handoff_key = handoff_key
        #: Set when the grace period is over: nothing more is taken on.
        self.abort = abort
        self.clock = clock
        #: Hand-offs taken, so that none is taken twice.
        self.replays = handoff.Replays(started=clock())

    def accepting(self) -> bool:
        """Notifications are taken on until the grace period is over (also after SIGTERM,
        for senders that have not yet seen this replica leave the Service)."""
        return self.routes.synced.is_set() and not self.abort.is_set()

    def handle(self, payload: object, only: routes.Key | None = None) -> tuple[int, str]:
        """Handles one pushed notification; the HTTP status and a short answer.

        200 only once every matching record was handled; 503 when the worker stops before
        (the store may send it again); 400 for a body that is not a notification; 404 for
        an unknown Trigger in ``/events/<namespace>/<trigger>``. ``only`` with an empty name
        limits the routing by bucket to one namespace.
        """
        received = self.clock()
        try:
            changes = events.parse_notification(payload, received)
        except events.NotificationError as exc:
            return 400, str(exc)
        if not changes:
            return 200, "test event"
        candidates = self._push_routes(only)
        if candidates is None:
            assert only is not None
            return 404, f"no Push Trigger {only[0]}/{only[1]}"
        return self._deliver_all(routes.plan_push(candidates, changes), received)

    def _deliver_all(
        self, pairs: list[tuple[routes.Route, events.ObjectEvent]], received: datetime.datetime
    ) -> tuple[int, str]:
        if not pairs:
            return 200, "no Trigger matches"
        if self.abort.is_set():
            return 503, "stopping"
        for route, change in pairs:
            metrics.RECEIVED.labels(route.namespace, route.name, routes.KIND).inc()
            if self.records is not None:
                self.records.note(route, change)
        futures = []
        for route, change in pairs:
            payload = routes.payload_of(route, change)
            request_id = events.request_id(route.uid, change, polled=False)
            try:
                futures.append(self._submit(route, payload, request_id, received, None))
            except RuntimeError:  # the replica hands over what it holds, or is exiting
                for unqueued, lost in pairs[len(futures) :]:
                    if self.records is not None:
                        self.records.retract(unqueued, lost)
                return 503, "stopping"
        results = [dispatch.result_of(future) for future in futures]
        if all(result.handled for result in results):
            return 200, f"{len(results)} events handled"
        return 503, "stopping before every event was handled"

    def _push_routes(self, only: routes.Key | None) -> list[routes.Route] | None:
        """The Push Triggers a notification may go to; None when ``only`` names none."""
        if only is None:
            return routes.pushed(self.routes)
        if not only[1]:
            return [route for route in routes.pushed(self.routes) if route.namespace == only[0]]
        route = self.routes.get(only)
        if route is None or route.spec.mode != "Push":
            return None
        return [route]

    def _submit(
        self, route: routes.Route, payload: bytes, request_id: str,
        first_seen: datetime.datetime, progress: delivery.Progress | None,
    ) -> concurrent.futures.Future[delivery.Result]:  # fmt: skip
        """Queues a pushed event in the pool, held from now on; RuntimeError once the
        replica hands over what it holds (:meth:`holding.HeldEvents.close`) or the pool is
        shut down."""
        token, held = self.held.hold(route, payload, request_id, first_seen)
        try:
            return self.dispatcher.pool.submit(self._deliver_held, token, held, progress)
        except RuntimeError:
            self.held.release(token)
            raise

    def _deliver_held(
        self, token: int, held: holding.Held, progress: delivery.Progress | None
    ) -> delivery.Result:
        """Delivers a held event; hands it to another replica when this one stops first."""
        try:
            if held.handed:  # handed over while it waited in the pool's queue
                return delivery.Result(True, False, 0, "HandedOff")
            try:
                result = self.dispatcher.deliver(held.route, held.payload, held.request_id,
                                                 held.first_seen, progress)  # fmt: skip
            except Exception:
                if not held.handed:  # neither delivered nor handed: leave it to the catch-up
                    self.lose(held)
                raise
            if result.handled or held.handed:
                return result
            resume = result.progress or progress or delivery.Progress()
            return self.held.hand_off(held, resume) or result
        finally:
            self.held.release(token)

    def lose(self, held: holding.Held) -> None:
        """Takes back what was recorded of an event this replica could neither deliver nor
        hand over (the ledger's record keeps the catch-up listing from delivering it), so
        that the catch-up delivers it after all."""
        if self.records is None:
            return
        try:
            changes = events.parse_notification(json.loads(held.payload), self.clock())
        except ValueError:  # not an event this worker wrote; nothing to take back
            return
        for change in changes:
            self.records.retract(held.route, change)

    # -- taking over from another replica --

    def take_over(self, body: bytes, signature: str | None) -> tuple[int, str]:
        """Takes on an event a stopping replica hands over: 202 once it is in the pool."""
        if not handoff.verify(self.handoff_key, body, signature):
            return 401, "not signed with the hand-off key"
        try:
            sealed = handoff.decode(body)
        except handoff.HandoffError as exc:
            return 400, str(exc)
        refused = self.replays.admit(sealed, self.clock())
        if refused is not None:
            return 401, refused
        item = sealed.item
        route = self._handoff_route(item)
        if not isinstance(route, routes.Route):
            return route
        try:
            self._submit(route, item.payload, item.request_id, item.first_seen, item.progress)
        except RuntimeError:
            return 503, "stopping"
        return 202, "taken over"

    def _handoff_route(self, item: handoff.Handoff) -> routes.Route | tuple[int, str]:
        """The Route a hand-off goes to, or the answer that refuses it."""
        if not self.accepting():
            return 503, "stopping"
        route = self.routes.get(item.key)
        if route is None:
            return 404, f"no bucket Trigger {item.namespace}/{item.trigger}"
        if route.uid != item.uid:
            return 410, f"Trigger {item.namespace}/{item.trigger} was replaced"
        return route
