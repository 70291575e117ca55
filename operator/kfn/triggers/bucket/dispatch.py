"""The one bounded pool that runs the deliveries of both modes.

Each delivery goes through :class:`kfn.triggers.delivery.AsyncDeliverer` (the Trigger's
``delivery`` policy: Lambda's asynchronous retries, then onFailure), which returns only
once the event was delivered or sent to onFailure, or the worker stopped first. The
dispatcher counts the events in flight per Trigger (the lag metric), the age of each event
it hands on (its ``eventTime`` to now: the iterator age) and records each outcome in the
Trigger's conditions.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
from collections.abc import Callable
from typing import Final, Protocol

from kfn.api import trigger as trigger_api
from kfn.clock import Clock, utcnow
from kfn.triggers import delivery, failure, metrics
from kfn.triggers.bucket import conditions, events, routes

#: Deliveries in flight at once, over all Triggers and both modes.
DELIVERY_THREADS: Final = 64


class Deliver(Protocol):
    """Delivers one event under a Trigger's policy, blocking (an AsyncDeliverer's method)."""

    def __call__(
        self, target: failure.Target, spec: trigger_api.AsyncDelivery, payload: bytes, *,
        request_id: str, first_seen: datetime.datetime, progress: delivery.Progress | None,
    ) -> delivery.Result: ...  # fmt: skip


def result_of(future: concurrent.futures.Future[delivery.Result]) -> delivery.Result:
    """A queued delivery's Result; unhandled when the pool dropped it at exit (it was
    handed over just before)."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        return delivery.Result(False, False, 0)


class Dispatcher:
    """Runs deliveries in :attr:`pool` and records what became of them."""

    def __init__(
        self,
        deliver: Deliver,
        conditions_: conditions.Conditions,
        *,
        clock: Clock = utcnow,
        threads: int = DELIVERY_THREADS,
        known: Callable[[routes.Key], bool] = lambda key: True,
    ) -> None:
        """``known`` says whether a Trigger is still there: the series of one deleted while
        its event was in hand are dropped again once that event ends."""
        self.deliver_fn = deliver
        self.conditions = conditions_
        self.clock = clock
        self.known = known
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="deliver")
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def deliver(
        self, route: routes.Route, payload: bytes, request_id: str,
        first_seen: datetime.datetime, progress: delivery.Progress | None,
    ) -> delivery.Result:  # fmt: skip
        """Delivers one event to one Trigger's function (blocking) and records the outcome."""
        written = events.event_time_of(payload)
        if written is not None:
            now = self.clock().timestamp()
            metrics.iterator_age(
                route.namespace, route.name, routes.KIND, now=now, written=written.timestamp()
            )
        self._lag(route, 1)
        try:
            result = self.deliver_fn(route.target, route.spec.delivery, payload,
                                     request_id=request_id, first_seen=first_seen,
                                     progress=progress)  # fmt: skip
        finally:
            self._lag(route, -1)
        self.conditions.delivered(route, result, self.clock())
        if not self.known(route.key):
            metrics.forget_metrics(route.namespace, route.name, routes.KIND)
        return result

    def _lag(self, route: routes.Route, delta: int) -> None:
        with self._lock:
            value = self._in_flight.get(route.label, 0) + delta
            if value > 0:
                self._in_flight[route.label] = value
            else:
                self._in_flight.pop(route.label, None)
        metrics.LAG.labels(route.namespace, route.name, routes.KIND).set(max(value, 0))
