"""The bucket Triggers a replica knows, and which of them a pushed change goes to.

The reflector (:func:`kfn.kube.reflect`) keeps every Trigger with ``spec.bucket`` in one
:class:`Routes` table; the receiver routes by it, the poller lists the buckets of its Poll
Triggers. :func:`plan_push` and :func:`payload_of` are pure.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Final

from kfn import kube, triggers
from kfn.api import trigger as trigger_api
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

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def target(self) -> failure.Target:
        return failure.Target(self.namespace, self.function, self.name, KIND)


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
    )


def _key(obj: kube.Object) -> Key:
    meta_ = obj.get("metadata") or {}
    return str(meta_.get("namespace", "")), str(meta_.get("name", ""))


class Routes:
    """The bucket Triggers, fed by the reflector; ``synced`` is set after the first list,
    before which no notification can be routed (the receiver answers 503).

    ``on_change`` hears of every Trigger listed, changed (with its Route) or gone (None).
    """

    def __init__(self, on_change: Callable[[Route | None, Key], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.routes: dict[Key, Route] = {}
        self.synced = threading.Event()
        self.on_change = on_change

    def replace(self, objects: list[kube.Object]) -> None:
        fresh = {route.key: route for route in map(route_of, objects) if route is not None}
        with self.lock:
            gone = [key for key in self.routes if key not in fresh]
            self.routes = fresh
        for key in gone:
            self._notify(None, key)
        for key, route in fresh.items():
            self._notify(route, key)
        self.synced.set()

    def change(self, kind: str, obj: kube.Object) -> None:
        key = _key(obj)
        route = None if kind == "DELETED" else route_of(obj)
        with self.lock:
            if route is None:
                self.routes.pop(key, None)
            else:
                self.routes[key] = route
        self._notify(route, key)

    def _notify(self, route: Route | None, key: Key) -> None:
        if self.on_change is not None:
            self.on_change(route, key)

    def get(self, key: Key) -> Route | None:
        with self.lock:
            return self.routes.get(key)

    def pushed(self) -> list[Route]:
        with self.lock:
            return [r for r in self.routes.values() if r.spec.mode == "Push"]

    def polled(self) -> list[Route]:
        with self.lock:
            return [r for r in self.routes.values() if r.spec.mode == "Poll"]


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
