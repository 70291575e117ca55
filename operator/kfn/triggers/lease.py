"""Keeping a Lease: the I/O around :mod:`kfn.triggers.leader`'s pure decisions.

Workers that must act from one replica at a time (the cron worker firing ticks, the bucket
worker polling) run :meth:`LeaseKeeper.run` in a thread and ask :meth:`LeaseKeeper.leading`
before acting. Leadership ends by itself when renewals stop succeeding in time, and is
given up on a clean shutdown (:meth:`LeaseKeeper.release`) so a follower takes over at once.

Two clocks are read: the monotonic one (``time.monotonic``) judges every duration — whether
the holder's Lease expired, whether this replica renewed in time — and the wall clock only
stamps ``renewTime`` and ``acquireTime`` for people reading the Lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kfn import kube
from kfn.clock import Clock, Seconds, utcnow
from kfn.triggers import leader

logger = logging.getLogger(__name__)


class LeaseApi(Protocol):
    """The Lease calls of :mod:`kfn.kube`, which is the one used outside tests."""

    def get_lease(self, namespace: str, name: str) -> kube.Object | None: ...

    def create_lease(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        owners: Sequence[Mapping[str, Any]] | None = None,
    ) -> kube.Object: ...

    def update_lease(
        self,
        lease: Mapping[str, Any],
        spec: Mapping[str, Any],
        owners: Sequence[Mapping[str, Any]] | None = None,
    ) -> kube.Object: ...


class LeaseKeeper:
    """Holds (or waits for) one Lease in ``namespace``.

    ``on_change(leading)`` is called when this replica gains or loses the Lease (for a
    metric, or to wake a loop that should act at once). ``owner`` names the worker's
    Deployment: the Lease is owned by it, so uninstalling kfn deletes the Lease with it.
    ``clock`` stamps the Lease; ``monotonic`` measures durations; ``api`` reaches the
    Lease (the last two are parameters for tests).
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        identity: str,
        *,
        clock: Clock = utcnow,
        monotonic: Seconds = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
        owner: str | None = None,
        api: LeaseApi = kube,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.clock = clock
        self.monotonic = monotonic
        self.on_change = on_change
        self.owner = owner
        self.owners: list[dict[str, Any]] | None = None
        #: When (monotonic) the last successful renewal started; None while following.
        self.last_renewal: float | None = None
        #: The Lease's record as last seen changing, and when (:func:`leader.observe`).
        self.observed: leader.Observation | None = None

    def _owners(self) -> list[dict[str, Any]]:
        """The owner reference to the worker's Deployment, looked up once."""
        if self.owner is None:
            return []
        if self.owners is None:
            found = kube.get("apps/v1", "Deployment", self.namespace, self.owner)
            if found is None:
                return []
            uid = found["metadata"]["uid"]
            self.owners = [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.owner, "uid": uid}
            ]
        return self.owners

    def leading(self) -> bool:
        return leader.still_leading(self.last_renewal, self.monotonic())

    def try_once(self) -> None:
        # Read before the request: a renewal counts from before it could have been written,
        # so this replica steps down no later than a follower may take over.
        now = self.monotonic()
        was_leading = self.leading()
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            decision = leader.decide(
                lease, self.identity, observed=self.observed, now=now, wall=self.clock()
            )
            self.observed = decision.observed
            if decision.spec is None:
                self.last_renewal = None
            elif lease is None:
                self.api.create_lease(self.namespace, self.name, decision.spec, self._owners())
            else:
                self.api.update_lease(lease, decision.spec, self._owners())
        except kube.ApiError as exc:
            if exc.status != 409:
                logger.warning("keeping the Lease %s failed: %s", self.name, exc)
            return
        except OSError as exc:
            logger.warning("keeping the Lease %s failed: %s", self.name, exc)
            return
        if decision.spec is not None:
            self.last_renewal = now
            if not was_leading:
                logger.info(
                    "holding the Lease %s as %s (%s)", self.name, self.identity, decision.action
                )
        if was_leading != self.leading() and self.on_change is not None:
            self.on_change(self.leading())

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.try_once()
            stop.wait(leader.RETRY.total_seconds())

    def release(self) -> None:
        """Gives the Lease up so a follower takes over at once."""
        was_leading = self.leading()
        self.last_renewal = None
        if was_leading and self.on_change is not None:
            self.on_change(False)
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            spec = leader.released(lease, self.identity) if lease else None
            if lease is not None and spec is not None:
                self.api.update_lease(lease, spec)
                logger.info("released the Lease %s", self.name)
        except (kube.ApiError, OSError) as exc:
            logger.warning("releasing the Lease %s failed: %s", self.name, exc)
