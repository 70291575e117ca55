"""The bucket Triggers a replica knows, and which of them a pushed change goes to.

One store (:class:`kfn.kube.cache.Store`, made by :func:`table`) keeps every Trigger with
``spec.bucket`` as a :class:`Route`; the receiver routes by it, the poller lists the buckets
of its Poll Triggers. :func:`plan_push` and :func:`payload_of` are pure.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Final

from kfn import kube, triggers
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.kube import cache
from kfn.triggers import failure
from kfn.triggers.bucket import events

#: The trigger kind in metrics and delivery targets.
KIND: Final = "bucket"

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Route:
    """One bucket Trigger as the worker uses it."""

    namespace: str
    name: str
    uid: str
    function: str
    spec: trigger_api.BucketTrigger
    obj: kube.Object
    #: The function's version or alias it invokes; "" for ``$LATEST``.
    qualifier: str = ""
    #: When the Trigger was created (its ``creationTimestamp``), None if unknown.
    created: datetime.datetime | None = None

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def target(self) -> failure.Target:
        return failure.Target(self.namespace, self.function, self.name, KIND, self.qualifier)


def route_of(obj: kube.Object) -> Route | None:
    """The Route of a Trigger object, or None when it is not a valid bucket Trigger."""
    trigger = triggers.valid_trigger(obj)
    if trigger is None:
        return None
    if trigger.spec.bucket is None:
        return None
    return Route(
        namespace=trigger.metadata.namespace or "",
        name=trigger.metadata.name,
        uid=str(trigger.metadata.uid or ""),
        function=trigger.spec.function_ref.name,
        spec=trigger.spec.bucket,
        obj=obj,
        qualifier=trigger.spec.function_ref.target_qualifier,
        created=events.parse_time(trigger.metadata.creation_timestamp),
    )


def table(listener: cache.Listener[Route] | None = None) -> cache.Store[Route]:
    """The store of bucket Triggers. Its ``synced`` is set after the first list, before which
    no notification can be routed (the receiver answers 503); ``listener`` hears of every
    Trigger listed, changed (with its Route) or gone (None)."""
    return cache.Store(
        meta.API_VERSION,
        trigger_api.KIND,
        lambda obj, _: route_of(obj),
        listener=listener,
    )


def pushed(table_: cache.Store[Route]) -> list[Route]:
    """The Push Triggers."""
    return [route for route in table_.values() if route.spec.mode == "Push"]


def polled(table_: cache.Store[Route]) -> list[Route]:
    """The Poll Triggers."""
    return [route for route in table_.values() if route.spec.mode == "Poll"]


def plan_push(
    routes: list[Route], changes: list[events.ObjectEvent]
) -> list[tuple[Route, events.ObjectEvent]]:
    """Every (Trigger, change) pair to deliver: a change goes to each Push Trigger whose
    bucket, event types and filter match it."""
    return [
        (route, change)
        for change in changes
        for route in routes
        if route.spec.mode == "Push" and events.matches(route.spec, change)
    ]


def payload_of(route: Route, change: events.ObjectEvent) -> bytes:
    """The S3 event the function receives for one change: one record, AWS's shape."""
    record = events.record(change, configuration_id=route.name, region=route.spec.region)
    return json.dumps({"Records": [record]}, separators=(",", ":")).encode()
