"""The one bounded pool that runs the deliveries of both modes.

Each delivery goes through :class:`kfn.triggers.delivery.AsyncDeliverer` (the Trigger's
``delivery`` policy: Lambda's asynchronous retries, then onFailure), which returns only
once the event was delivered or sent to onFailure, or the worker stopped first. The
dispatcher counts the events in flight per Trigger (the lag metric) and records each
outcome in the Trigger's conditions.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
from typing import Final, Protocol

from kfn.api import trigger as trigger_api
from kfn.clock import Clock, utcnow
from kfn.triggers import delivery, failure, metrics
from kfn.triggers.bucket import conditions, routes

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
    ) -> None:
        self.deliver_fn = deliver
        self.conditions = conditions_
        self.clock = clock
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="deliver")
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def deliver(
        self, route: routes.Route, payload: bytes, request_id: str,
        first_seen: datetime.datetime, progress: delivery.Progress | None,
    ) -> delivery.Result:  # fmt: skip
        """Delivers one event to one Trigger's function (blocking) and records the outcome."""
        self._lag(route.label, 1)
        try:
            result = self.deliver_fn(route.target, route.spec.delivery, payload,
                                     request_id=request_id, first_seen=first_seen,
                                     progress=progress)  # fmt: skip
        finally:
            self._lag(route.label, -1)
        self.conditions.delivered(route, result, self.clock())
        return result

    def _lag(self, label: str, delta: int) -> None:
        with self._lock:
            value = self._in_flight.get(label, 0) + delta
            self._in_flight[label] = value
        metrics.LAG.labels(label, routes.KIND).set(max(value, 0))
