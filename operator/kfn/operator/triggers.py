"""Trigger status: what ``kubectl get triggers`` shows, and the URL of an HTTP Trigger.

The activator routes HTTP Triggers itself (it watches them); the operator's part is
to tell the user what happened:

* ``status.type`` for every Trigger (the printer column reads it).
* For ``spec.http``: ``status.url`` — the activator's address with the Trigger's path
  prefix, or ``http://<host><pathPrefix>`` when the Trigger names a host — and a
  ``Ready`` condition: True when the Function exists and the route is the Trigger's
  own, False with ``FunctionNotFound`` or ``RouteConflict`` (an older Trigger already
  routes the same host, path prefix and method to a function; the activator keeps the
  older one, the same rule as here).

Conditions of cron, stream and bucket Triggers belong to their workers; only
``status.type`` is written for them here.

Level-based and cheap: kopf event handlers (no finalizer, no progress annotations)
recompute the whole status from the Trigger, an in-memory index of all Triggers and
one GET of the Function, and patch only when something visible changed. A Function
appearing or going away refreshes the Triggers that name it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
import pydantic

from kfn import clock, kube
from kfn.api import conditions, meta
from kfn.api import trigger as trigger_api

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"

Key = tuple[str, str]


def activator_url() -> str:
    """Where this release's activator serves HTTP routes inside the cluster, its public door
    (``KFN_ACTIVATOR_URL``).

    The chart sets it from the release's own names, namespace and cluster domain, so every
    ``status.url`` names the Service that really answers, whatever the release is called.
    """
    return _url("KFN_ACTIVATOR_URL", "the activator's public Service")


def invoke_url() -> str:
    """Where this release's activator serves the invoke API, its invoke door
    (``KFN_INVOKE_URL``): a Function's ``status.url``."""
    return _url("KFN_INVOKE_URL", "the activator's invoke Service")


def _url(variable: str, what: str) -> str:
    configured = os.environ.get(variable)
    if not configured:
        raise RuntimeError(f"{variable} is not set; the chart sets it to {what}")
    return configured.rstrip("/")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One HTTP Trigger's claim on a route, with what decides who is older."""

    key: Key
    created: str
    host: str
    path_prefix: str
    methods: frozenset[str]

    def overlaps(self, other: Claim) -> bool:
        same_path = self.path_prefix.rstrip("/") == other.path_prefix.rstrip("/")
        methods_meet = not self.methods or not other.methods or bool(self.methods & other.methods)
        return self.host == other.host and same_path and methods_meet


def claim_of(body: Mapping[str, Any]) -> Claim | None:
    """The route an HTTP Trigger asks for; None for other kinds."""
    spec = (body.get("spec") or {}).get("http")
    if not isinstance(spec, dict):
        return None
    meta_ = body.get("metadata") or {}
    return Claim(
        key=(str(meta_.get("namespace", "")), str(meta_.get("name", ""))),
        created=str(meta_.get("creationTimestamp") or ""),
        host=str(spec.get("host") or ""),
        path_prefix=str(spec.get("pathPrefix") or "/"),
        methods=frozenset(spec.get("methods") or ()),
    )


def older_conflict(mine: Claim, others: Iterable[Claim]) -> Claim | None:
    """The oldest other Trigger that already holds an overlapping route, if any."""
    rivals = [
        o
        for o in others
        if o.key != mine.key and mine.overlaps(o) and (o.created, o.key) < (mine.created, mine.key)
    ]
    return min(rivals, key=lambda o: (o.created, o.key), default=None)


def desired_status(
    trigger: trigger_api.Trigger,
    *,
    function_exists: bool,
    conflict: Claim | None,
    base_url: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The whole status the operator writes for one Trigger (pure)."""
    current = trigger.status or trigger_api.TriggerStatus()
    status: dict[str, Any] = {"type": trigger.spec.type.value}
    http = trigger.spec.http
    if http is None:
        return status
    prefix = http.path_prefix
    status["url"] = f"http://{http.host}{prefix}" if http.host else f"{base_url}{prefix}"
    generation = trigger.metadata.generation
    verdict: tuple[meta.ConditionStatus, str, str]
    if not function_exists:
        verdict = (
            "False",
            trigger_api.Reason.FUNCTION_NOT_FOUND,
            f"Function {trigger.spec.function_ref.name} does not exist in this namespace",
        )
    elif conflict is not None:
        verdict = (
            "False",
            trigger_api.Reason.ROUTE_CONFLICT,
            f"Trigger {conflict.key[0]}/{conflict.key[1]} already routes this host, path "
            "prefix and method",
        )
    else:
        verdict = ("True", trigger_api.Reason.READY, "requests are routed to the function")
    updated = conditions.set_condition(
        current.conditions,
        trigger_api.ConditionType.READY,
        verdict[0],
        verdict[1],
        verdict[2],
        now=now,
        observed_generation=generation,
    )
    status["conditions"] = [c.model_dump(mode="json", by_alias=True) for c in updated]
    status["observedGeneration"] = generation
    return status


def _visible(status: Mapping[str, Any] | None, keys: Iterable[str]) -> dict[str, Any]:
    return {k: (status or {}).get(k) for k in keys}


def refresh(body: Mapping[str, Any], claims: Iterable[Claim], logger: Any) -> None:
    """Recompute one Trigger's status and patch it when it changed."""
    try:
        trigger = trigger_api.Trigger.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        logger.warning("cannot read the Trigger: %s", exc.errors()[:1])
        return
    namespace, name = trigger.metadata.namespace, trigger.metadata.name
    exists = (
        kube.get(API_VERSION, "Function", namespace, trigger.spec.function_ref.name) is not None
    )
    mine = claim_of(body)
    conflict = older_conflict(mine, claims) if mine is not None else None
    new = desired_status(
        trigger,
        function_exists=exists,
        conflict=conflict,
        base_url=activator_url(),
        now=clock.utcnow(),
    )
    if _visible(body.get("status"), new) == new:
        return
    kube.patch_status(API_VERSION, "Trigger", namespace, name, new)


@kopf.index(meta.GROUP, meta.VERSION, trigger_api.PLURAL)
def triggers_by_name(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, kopf.Body]:
    """Every Trigger's latest body: conflicts and Function events need them all."""
    return {(namespace or "", name): body}


def _bodies(index: kopf.Index[Key, kopf.Body]) -> list[kopf.Body]:
    return [body for key in index for body in index.get(key, [])]


@kopf.on.event(meta.GROUP, meta.VERSION, trigger_api.PLURAL)
def trigger_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    body = event.get("object") or {}
    if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        # A freed route may end another Trigger's conflict.
        for other in _bodies(kwargs["triggers_by_name"]):
            if other.get("metadata", {}).get("uid") != body.get("metadata", {}).get("uid"):
                _refresh_quietly(other, kwargs["triggers_by_name"], logger)
        return
    _refresh_quietly(body, kwargs["triggers_by_name"], logger)


@kopf.on.event(meta.GROUP, meta.VERSION, "functions")
def function_event_for_triggers(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A Function came or went: its Triggers' Ready may change."""
    if event.get("type") not in ("ADDED", "DELETED", None):
        return
    fn = event.get("object") or {}
    namespace = fn.get("metadata", {}).get("namespace", "")
    name = fn.get("metadata", {}).get("name", "")
    for body in _bodies(kwargs["triggers_by_name"]):
        ref = (body.get("spec") or {}).get("functionRef") or {}
        if body.get("metadata", {}).get("namespace") == namespace and ref.get("name") == name:
            _refresh_quietly(body, kwargs["triggers_by_name"], logger)


def _refresh_quietly(
    body: Mapping[str, Any], index: kopf.Index[Key, kopf.Body], logger: Any
) -> None:
    claims = [c for c in map(claim_of, _bodies(index)) if c is not None]
    try:
        refresh(body, claims, logger)
    except kube.ApiError as exc:
        if exc.status != 404:
            logger.warning("writing the Trigger's status failed: %s", exc)
