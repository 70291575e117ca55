"""The pushed events a replica holds, and handing them to another replica when it stops.

A store sends a notification once, so from the moment a pushed event is queued until it
ended this replica holds it (:meth:`HeldEvents.hold`). A replica that stops first does not
drop what it holds: it sends each such event to the worker's Service
(:mod:`~kfn.triggers.bucket.handoff` is the signed body), which by then routes only to
replicas that stay, and the taker goes on from the event's progress. An event no replica
takes is told to ``lost``, which takes back its catch-up record, so that the listing
delivers it (:meth:`kfn.triggers.bucket.ledger.Ledger.retract`).
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from kfn.triggers import delivery, metrics
from kfn.triggers.bucket import handoff, routes

#: How long a stopping replica keeps trying to hand one event to another replica.
HANDOFF_PATIENCE: Final = 10.0

logger = logging.getLogger(__name__)

SendHandoff = Callable[[str, bytes, handoff.Handoff], int]
#: Told of each held event that no other replica took (see :class:`HeldEvents`).
Lost = Callable[["Held"], None]


@dataclasses.dataclass
class Held:
    """A pushed event this replica is delivering; ``handed`` once another replica has it,
    ``claimed`` once one thread is handing it over."""

    route: routes.Route
    payload: bytes
    request_id: str
    first_seen: datetime.datetime
    handed: bool = False
    claimed: bool = False
    #: Set once the thread that claimed it is done handing it over, taken or not.
    settled: bool = False


class ClosedError(RuntimeError):
    """The replica is handing over what it holds: it takes nothing more in hand."""


class HeldEvents:
    """The pushed events this replica holds until they end or move to another replica."""

    def __init__(
        self,
        *,
        peer_url: str,
        key: bytes,
        send: SendHandoff = handoff.send,
        lost: Lost = lambda held: None,
    ) -> None:
        """``lost`` is told of each event no other replica took, before :meth:`hand_off`
        returns, so that what was recorded of it can be taken back (the catch-up listing
        then delivers it)."""
        #: The worker's own Service, which hand-offs go to.
        self.peer_url = peer_url.rstrip("/")
        self.key = key
        self.send = send
        self.lost = lost
        self._lock = threading.Lock()
        self._held: dict[int, Held] = {}
        self._tokens = itertools.count()
        self._settled = threading.Condition(self._lock)
        self._closed = False

    def hold(
        self, route: routes.Route, payload: bytes, request_id: str, first_seen: datetime.datetime
    ) -> tuple[int, Held]:
        """Records a pushed event as held by this replica until it ended or was handed on;
        :class:`ClosedError` once :meth:`close` was called."""
        held = Held(route, payload, request_id, first_seen)
        with self._lock:
            if self._closed:
                raise ClosedError("stopping: no event is taken in hand any more")
            token = next(self._tokens)
            self._held[token] = held
        return token, held

    def close(self) -> None:
        """Takes no event in hand from now on, so that what :meth:`hand_off_all` and
        :meth:`wait_settled` see is all this replica holds: a notification or hand-off that
        passed its checks just before is refused (503) rather than queued behind them."""
        with self._lock:
            self._closed = True

    def release(self, token: int) -> None:
        with self._lock:
            del self._held[token]
            self._settled.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """Waits until no pushed event is held; False if ``timeout`` passed first."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._held, timeout)

    def wait_handed(self, timeout: float) -> bool:
        """Waits until no held event is being handed over (each was taken, or told
        ``lost``); False if ``timeout`` passed first. Invocations still running may stay."""
        with self._settled:
            return self._settled.wait_for(
                lambda: not any(h.claimed and not h.settled for h in self._held.values()),
                timeout,
            )

    def _settle(self, held: Held) -> None:
        with self._settled:
            held.settled = True
            self._settled.notify_all()

    def hand_off(
        self, held: Held, progress: delivery.Progress, deadline: float | None = None
    ) -> delivery.Result | None:
        """Gives ``held`` to another replica through the Service, trying until ``deadline``
        (monotonic; :data:`HANDOFF_PATIENCE` from now by default); a handled Result once
        one took it (or the Trigger is gone), None when none would."""
        attempts = progress.failures + progress.throttles
        with self._lock:
            if held.claimed:  # the other thread that holds it hands it over
                return delivery.Result(True, False, attempts, "HandedOff")
            held.claimed = True
        try:
            return self._hand_off(held, progress, attempts, deadline)
        finally:
            self._settle(held)

    def _hand_off(
        self, held: Held, progress: delivery.Progress, attempts: int, deadline: float | None
    ) -> delivery.Result | None:
        route = held.route
        if not self.key:
            logger.error("%s: stopping with event %s unhandled and no hand-off key; the "
                         "catch-up listing is left to deliver it", route.label,
                         held.request_id)  # fmt: skip
            self.lost(held)
            return None
        item = handoff.Handoff(
            namespace=route.namespace,
            trigger=route.name,
            uid=route.uid,
            request_id=held.request_id,
            first_seen=held.first_seen,
            payload=held.payload,
            progress=progress,
        )
        if deadline is None:
            deadline = time.monotonic() + HANDOFF_PATIENCE
        while True:
            code = self.send(self.peer_url, self.key, item)
            if code == 202:
                held.handed = True
                metrics.HANDED_OFF.labels(route.namespace, route.name, routes.KIND).inc()
                logger.info("%s: handed event %s to another replica", route.label,
                            held.request_id)  # fmt: skip
                return delivery.Result(True, False, attempts, "HandedOff")
            if code in (404, 410):
                logger.warning("%s: the Trigger is gone; dropping %s", route.label,
                               held.request_id)  # fmt: skip
                return delivery.Result(True, False, attempts, "TriggerDeleted")
            if code in (400, 401) or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        logger.error("%s: no other replica took event %s (last answer %s); the catch-up "
                     "listing is left to deliver it", route.label, held.request_id,
                     code or "none")  # fmt: skip
        self.lost(held)
        return None

    def hand_off_all(self) -> int:
        """Hands every pushed event still held (its invocation still running) to another
        replica, as the last thing before the process exits; how many stayed unhandled.
        Such an event may run twice: at least once is kept over at most once."""
        with self._lock:
            held = [item for item in self._held.values() if not item.handed]
        lost = 0
        deadline = time.monotonic() + HANDOFF_PATIENCE
        for item in held:
            logger.warning("%s: event %s still running at the end of the grace period",
                           item.route.label, item.request_id)  # fmt: skip
            if self.hand_off(item, delivery.Progress(), deadline) is None:
                lost += 1
        return lost
