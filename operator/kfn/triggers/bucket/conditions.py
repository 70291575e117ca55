"""Writing bucket Triggers' conditions through the shared status writer.

Every replica writes the status of Push Triggers (each receives their notifications); only
the replica that polls writes that of Poll Triggers, so two replicas never disagree about
a listing. What the conditions say is decided in :mod:`~kfn.triggers.bucket.verdicts`;
without a :class:`kfn.triggers.status.StatusWriter` (tests) nothing is written.
"""

from __future__ import annotations

import datetime

from kfn.triggers import delivery, status
from kfn.triggers.bucket import routes, verdicts


class Conditions:
    """The status a replica writes for the bucket Triggers it serves."""

    def __init__(
        self, statuses: status.StatusWriter | None, public_url: str, *, signed: bool = False
    ) -> None:
        self.statuses = statuses
        #: Where stores reach the worker, shown in Push Triggers' SourceReachable.
        self.public_url = public_url
        #: Whether notifications must be signed (the message then names the Secret).
        self.signed = signed
        #: Whether this replica writes the Poll Triggers' status (it holds the poller Lease).
        self.polls_tracked = False

    def route_changed(self, route: routes.Route | None, key: routes.Key) -> None:
        """Starts writing a Trigger's status when it appears, stops when it is gone."""
        if self.statuses is None:
            return
        if route is None:
            self.statuses.forget(key)
        elif route.spec.mode == "Push":
            self.statuses.track(route.obj)
            reachable = verdicts.push_verdict(self.public_url, route, signed=self.signed)
            self.statuses.set(route.key, reachable=reachable)
        elif self.polls_tracked:
            self.statuses.track(route.obj)

    def track_polls(self, leading: bool, polled: list[routes.Route]) -> None:
        """Writes the Poll Triggers' status from now on (``leading``) or leaves it to the
        replica that polls them now."""
        self.polls_tracked = leading
        if self.statuses is None:
            return
        for route in polled:
            if leading:
                self.statuses.track(route.obj)
            else:
                self.statuses.forget(route.key)

    def reachable(self, route: routes.Route, verdict: status.Verdict) -> None:
        """Sets SourceReachable after a listing."""
        if self.statuses is not None:
            self.statuses.set(route.key, reachable=verdict)

    def delivered(
        self, route: routes.Route, result: delivery.Result, now: datetime.datetime
    ) -> None:
        """Sets Delivering and ``lastEventTime`` once an event ended."""
        verdict = verdicts.delivery_verdict(result)
        if self.statuses is not None and verdict is not None:
            self.statuses.set(route.key, delivering=verdict, lastEventTime=now)
