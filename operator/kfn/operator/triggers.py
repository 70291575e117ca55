"""Trigger status: what ``kubectl get triggers`` shows, and the URL of an HTTP Trigger.

The activator routes HTTP Triggers itself (it watches them); the operator's part is
to tell the user what happened:

* ``status.type`` for every Trigger (the printer column reads it).
* For ``spec.http``: ``status.url`` — the activator's address with the Trigger's path
  prefix, or ``http://<host><pathPrefix>`` when the Trigger names a host — and a
  ``Ready`` condition: True when the Function exists and the route is the Trigger's
  own, False with ``FunctionNotFound`` or ``RouteConflict``. Routes belong to
  namespaces, and :func:`kfn.api.routes.decide` says which Trigger owns which route
  (the activator routes by the same decision, so a refused Trigger gets no traffic);
  the message names the Trigger or the admin's rule holding the route, and what to do.

Conditions of cron, stream and bucket Triggers belong to their workers; only
``status.type`` is written for them here.

Level-based and cheap: kopf event handlers (no finalizer, no progress annotations)
recompute the whole status from the Trigger, two in-memory indexes of all Triggers (their
bodies, and the route each HTTP Trigger claims, parsed on its own events) and one GET of the
Function, and patch only when something visible changed. Whether a Trigger owns its route
depends on the others, so any Trigger's event also refreshes every other HTTP Trigger whose
``Ready``, as last written, disagrees with the decision now: a conflict appears or clears
(the next claimant takes over a deleted owner's route) without touching the Triggers it
does not concern. A Function appearing or going away refreshes the Triggers that name it.
Handlers of events are not retried, so a failed write waits for the next event rather than
turning into a storm of retries.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
import pydantic

from kfn import clock, kube
from kfn.api import conditions, meta, routes
from kfn.api import trigger as trigger_api
from kfn.operator import exposure, metrics, ownership, settings
from kfn.resources import exposure as resources_exposure

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"

Key = routes.Key


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


def desired_status(
    trigger: trigger_api.Trigger,
    *,
    function_exists: bool,
    refusal: routes.Refusal | None,
    base_url: str,
    now: datetime.datetime,
    exposed: tuple[resources_exposure.Verdict, str] | None = None,
) -> dict[str, Any]:
    """The whole status the operator writes for one Trigger (pure). ``exposed`` is what the
    cluster's edge made of the Trigger's host, and its public URL, when kfn exposes it."""
    current = trigger.status or trigger_api.TriggerStatus()
    status: dict[str, Any] = {"type": trigger.spec.type.value}
    http = trigger.spec.http
    if http is None:
        return status
    prefix = http.path_prefix
    status["url"] = f"http://{http.host}{prefix}" if http.host else f"{base_url}{prefix}"
    if exposed is not None and exposed[0].reason != resources_exposure.NO_MATCHING_HOSTNAME:
        status["url"] = exposed[1]
    generation = trigger.metadata.generation
    verdict: tuple[meta.ConditionStatus, str, str]
    if not function_exists:
        verdict = (
            "False",
            trigger_api.Reason.FUNCTION_NOT_FOUND,
            f"Function {trigger.spec.function_ref.name} does not exist in this namespace",
        )
    elif refusal is not None:
        verdict = ("False", trigger_api.Reason.ROUTE_CONFLICT, refusal.message)
    elif exposed is not None and exposed[0].status != "True" and http.gateway is not None:
        # A Trigger that names its Gateway listener asks to be reached there: Ready says so.
        # Otherwise Exposed alone tells the edge's story; the activator serves it either way.
        verdict = (exposed[0].status, exposed[0].reason, exposed[0].message)
    else:
        verdict = ("True", trigger_api.Reason.READY, "requests are routed to the function")
    kept = current.conditions
    if exposed is not None:
        kept = conditions.set_condition(
            kept,
            trigger_api.ConditionType.EXPOSED,
            exposed[0].status,
            exposed[0].reason,
            exposed[0].message,
            now=now,
            observed_generation=generation,
        )
    else:
        kept = [c for c in kept if c.type != trigger_api.ConditionType.EXPOSED]
    updated = conditions.set_condition(
        kept,
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


def refresh(body: Mapping[str, Any], decided: routes.Ownership, logger: Any) -> None:
    """Recompute one Trigger's status and patch it when it changed."""
    try:
        trigger = trigger_api.Trigger.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        logger.warning("cannot read the Trigger: %s", exc.errors()[:1])
        return
    namespace, name = trigger.metadata.namespace, trigger.metadata.name
    refusal = decided.refused.get((namespace, name))
    exists = (
        kube.get(API_VERSION, "Function", namespace, trigger.spec.function_ref.name) is not None
    )
    new = desired_status(
        trigger,
        function_exists=exists,
        refusal=refusal,
        exposed=exposure.expose_trigger(trigger, routed=exists and refusal is None),
        base_url=activator_url(),
        now=clock.utcnow(),
    )
    if _visible(body.get("status"), new) == new:
        return
    kube.patch_status(API_VERSION, "Trigger", namespace, name, new)


@kopf.on.startup()
def check_host_policy(**_: Any) -> None:
    """A malformed ``routes`` value stops the operator at its start, as it stops the activator,
    rather than failing every Trigger event."""
    try:
        settings.host_policy()
    except ValueError as exc:
        raise kopf.PermanentError(f"the chart's routes values: {exc}") from exc


def route_outdated(body: Mapping[str, Any], decided: routes.Ownership) -> bool:
    """Whether an HTTP Trigger's ``Ready``, as last written, disagrees with who owns its route
    now (no API call). A Trigger whose Ready was never written is left to its own event, and one
    whose Function is missing says so whatever its route."""
    if not _is_http(body):
        return False
    metadata = body.get("metadata") or {}
    refusal = decided.refused.get((metadata.get("namespace", ""), metadata.get("name", "")))
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == trigger_api.ConditionType.READY), None)
    if ready is None:
        return False
    reason = str(ready.get("reason"))
    if refusal is None:
        return reason == trigger_api.Reason.ROUTE_CONFLICT
    if reason == trigger_api.Reason.FUNCTION_NOT_FOUND:
        return False
    return (reason, ready.get("message")) != (trigger_api.Reason.ROUTE_CONFLICT, refusal.message)


def _is_http(body: Mapping[str, Any]) -> bool:
    return isinstance((body.get("spec") or {}).get("http"), Mapping)


def _created(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("creationTimestamp") or "")


@kopf.index(meta.GROUP, meta.VERSION, trigger_api.PLURAL)
def triggers_by_name(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, kopf.Body]:
    """Every Trigger's latest body: route changes and Function events refresh them."""
    return {(namespace or "", name): body}


@kopf.index(meta.GROUP, meta.VERSION, trigger_api.PLURAL)
def route_claims(body: kopf.Body, **_: Any) -> dict[Key, routes.Claim] | None:
    """The route each HTTP Trigger claims, parsed on that Trigger's own events rather than on
    every other's; the activator routes only Triggers that parse, so only they claim a route."""
    if not _is_http(body):
        return None
    try:
        trigger = trigger_api.Trigger.model_validate(dict(body))
    except pydantic.ValidationError:
        return None  # refresh() says why on the Trigger's own event
    claim = routes.claim(trigger, _created(body))
    return None if claim is None else {claim.key: claim}


def _bodies(index: kopf.Index[Key, kopf.Body]) -> list[kopf.Body]:
    return [body for key in index for body in index.get(key, [])]


@kopf.on.event(meta.GROUP, meta.VERSION, trigger_api.PLURAL)
@metrics.measured("Trigger")
def trigger_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A Trigger came, changed or went: its own status, and any other HTTP Trigger's whose
    route that gave or took."""
    body = event.get("object") or {}
    decided = ownership.of(kwargs)
    if event.get("type") != "DELETED":
        _refresh_quietly(body, decided, logger)
    elif _is_http(body):
        # Its HTTPRoutes go with it (owner references); an Ingress lives in kfn's namespace.
        md = body.get("metadata") or {}
        try:
            exposure.withdraw(
                "Trigger", md.get("namespace", ""), md.get("name", ""), settings.exposure_settings()
            )
        except kube.ApiError as exc:
            logger.warning("removing the routes of Trigger %s failed: %s", md.get("name"), exc)
    uid = (body.get("metadata") or {}).get("uid")
    for other in _bodies(kwargs["triggers_by_name"]):
        if other.get("metadata", {}).get("uid") != uid and route_outdated(other, decided):
            _refresh_quietly(other, decided, logger)


@kopf.on.event(meta.GROUP, meta.VERSION, "functions")
@metrics.measured("Trigger")
def function_event_for_triggers(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A Function came or went: its Triggers' Ready may change."""
    if event.get("type") not in ("ADDED", "DELETED", None):
        return
    fn = event.get("object") or {}
    namespace = fn.get("metadata", {}).get("namespace", "")
    name = fn.get("metadata", {}).get("name", "")
    decided = ownership.of(kwargs)
    for body in _bodies(kwargs["triggers_by_name"]):
        ref = (body.get("spec") or {}).get("functionRef") or {}
        if body.get("metadata", {}).get("namespace") == namespace and ref.get("name") == name:
            _refresh_quietly(body, decided, logger)


def _refresh_quietly(body: Mapping[str, Any], decided: routes.Ownership, logger: Any) -> None:
    try:
        refresh(body, decided, logger)
    except kube.ApiError as exc:
        if exc.status != 404:
            logger.warning("writing the Trigger's status failed: %s", exc)


def _route_changed(event: kopf.RawEvent, logger: Any, kwargs: Mapping[str, Any]) -> None:
    route = event.get("object") or {}
    md = route.get("metadata") or {}
    labels = md.get("labels") or {}
    if labels.get(resources_exposure.LABEL_ROUTE_OF) != "Trigger":
        return
    namespace = labels.get(resources_exposure.LABEL_NAMESPACE) or md.get("namespace", "")
    key = (namespace, labels.get(resources_exposure.LABEL_TRIGGER, ""))
    for body in kwargs["triggers_by_name"].get(key, []):
        _refresh_quietly(body, ownership.of(dict(kwargs)), logger)


@kopf.on.event(resources_exposure.GATEWAY_GROUP, "v1", "httproutes", labels=exposure.ROUTE_LABELS)
@metrics.measured("Trigger")
def trigger_route_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """The Gateway accepted or refused a Trigger's route (or someone changed it)."""
    _route_changed(event, logger, kwargs)


@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels=exposure.ROUTE_LABELS)
@metrics.measured("Trigger")
def trigger_ingress_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """The Ingress controller published (or lost) an address for a Trigger's Ingress."""
    _route_changed(event, logger, kwargs)


@kopf.on.event(resources_exposure.GATEWAY_GROUP, "v1", "gateways")
@metrics.measured("Trigger")
def trigger_gateway_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A Gateway came, changed or went: HTTP Triggers waiting for one are looked at again."""
    deleted = event.get("type") == "DELETED"
    decided = ownership.of(kwargs)
    for body in _bodies(kwargs["triggers_by_name"]):
        if resources_exposure.gateway_event_concerns(body.get("status"), deleted=deleted):
            _refresh_quietly(body, decided, logger)
