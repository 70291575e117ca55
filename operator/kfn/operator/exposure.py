"""Writes the routes from the cluster's edge to the activator, and reads their fate back.

:mod:`kfn.resources.exposure` builds the objects; this module applies them for HTTP Triggers
with a host and Functions with ``spec.url``, removes them when those go or change, and says in
the owner's status what the Gateway (or Ingress controller) made of them:

* an HTTP Trigger's ``Ready`` and ``Exposed`` (written by :mod:`kfn.operator.triggers`, which
  asks :func:`expose_trigger` for the verdict) and its ``status.url``;
* a Function's ``Exposed`` condition and ``status.functionUrl`` (written here, on the
  Function's and its routes' events; the Function's other conditions are the reconciler's,
  which carries these two over).

Like the Trigger status writer, level-based: every event recomputes what should exist from
the owner, compares it with what does, and writes only the difference; handlers of events are
not retried, so a failed write waits for the next event rather than storming.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import kopf
import pydantic

from kfn import clock, kube
from kfn.api import conditions, meta, routes
from kfn.api import function as function_api
from kfn.api import trigger as trigger_api
from kfn.operator import metrics, ownership, settings
from kfn.resources import exposure, objects

ROUTE_LABELS: Final[dict[str, str]] = {objects.LABEL_MANAGED_BY: objects.MANAGER}
EXPOSED: Final = function_api.ConditionType.EXPOSED  # the same word on a Trigger
HTTPROUTE = (exposure.GATEWAY_API_VERSION, "HTTPRoute")
INGRESS = (exposure.INGRESS_API_VERSION, "Ingress")


@kopf.on.startup()
def check_exposure_settings(**_: Any) -> None:
    """A malformed ``exposure`` value stops the operator at its start."""
    try:
        settings.exposure_settings()
    except ValueError as exc:
        raise kopf.PermanentError(f"the chart's exposure values: {exc}") from exc


# --- applying ---------------------------------------------------------------------------------


def _ensure(obj: Mapping[str, Any]) -> kube.Object:
    """The live object, applied only when it lacks something kfn wants in it."""
    md = obj["metadata"]
    live = kube.get(obj["apiVersion"], obj["kind"], md["namespace"], md["name"])
    if live is not None and objects.contains(live, obj):
        return live
    return kube.apply(obj)


def _delete_ours(api_version: str, kind: str, namespace: str, name: str) -> None:
    """Deletes an object kfn wrote (its label says so), never one a user made."""
    try:
        live = kube.get(api_version, kind, namespace, name)
    except kube.ApiError as exc:
        if exc.status == 404:  # the kind is not served (no Gateway API): nothing to delete
            return
        raise
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    if live is not None and labels.get(objects.LABEL_MANAGED_BY) == objects.MANAGER:
        kube.delete(api_version, kind, namespace, name)


def withdraw(kind: str, namespace: str, name: str, s: exposure.Settings | None) -> None:
    """Removes every route kfn wrote for a Trigger or Function URL (when it goes, loses its
    host, or the admin turned exposure off). Without exposure settings (no chart value at all)
    kfn never wrote any."""
    if s is None:
        return
    probe = exposure.Exposed(kind, namespace, name, "", "", "/", None)  # type: ignore[arg-type]
    for route in (probe.route_name, probe.redirect_name):
        _delete_ours(*HTTPROUTE, namespace, route)
    _delete_ours(*INGRESS, s.backend.namespace, exposure.ingress_name(probe))


def _ensure_grant(namespace: str, s: exposure.Settings) -> None:
    if s.grant_routes and namespace != s.backend.namespace:
        _ensure(exposure.build_grant(namespace, s))


def expose(exposed: exposure.Exposed, s: exposure.Settings) -> exposure.Verdict:
    """Applies what ``exposed`` needs at the edge and says what became of it."""
    url = s.url(exposed.host, exposed.prefix)
    if s.mode == "ingress":
        live = _ensure(exposure.build_ingress(exposed, s))
        return exposure.ingress_verdict(live, url)
    refused = exposure.trigger_listener_refused(exposed, s)
    if refused is not None:
        withdraw(exposed.kind, exposed.namespace, exposed.name, s)
        return exposure.Verdict("False", trigger_api.Reason.GATEWAY_NOT_ALLOWED, refused)
    listener = exposure.listener_for(exposed, s)
    if listener is None:
        return exposure.Verdict("False", "GatewayNotConfigured", "no Gateway is configured")
    return _expose_on_gateway(exposed, s, listener, url)


def _expose_on_gateway(
    exposed: exposure.Exposed, s: exposure.Settings, listener: exposure.Listener, url: str
) -> exposure.Verdict:
    try:
        gateway = kube.get(
            exposure.GATEWAY_API_VERSION, "Gateway", listener.namespace, listener.name
        )
        if gateway is None:
            return exposure.route_verdict(None, listener, gateway=None, url=url)
        unmatched = exposure.unmatched_host(gateway, listener, exposed.host)
        if unmatched is not None:
            # No route kfn could write would be accepted: none is written.
            withdraw(exposed.kind, exposed.namespace, exposed.name, s)
            return exposure.Verdict("False", exposure.NO_MATCHING_HOSTNAME, unmatched)
        wanted = exposure.build_routes(exposed, s)
        _ensure_grant(exposed.namespace, s)
        lives = [_ensure(obj) for obj in wanted]
    except kube.ApiError as exc:
        if exc.status == 404:
            return exposure.Verdict(
                "False",
                "GatewayApiMissing",
                "the cluster does not serve Gateway API (HTTPRoute); the cluster admin installs "
                "its CRDs and an implementation, or sets exposure.mode to ingress",
            )
        if exc.status in (400, 422):
            return exposure.Verdict("False", "RouteRejected", exc.message)
        raise
    if len(wanted) == 1:  # no redirect wanted (any more)
        _delete_ours(*HTTPROUTE, exposed.namespace, exposed.redirect_name)
    return exposure.route_verdict(lives[0], listener, gateway=gateway, url=url)


# --- HTTP Triggers (their status is written by kfn.operator.triggers) -------------------------


def expose_trigger(
    trigger: trigger_api.Trigger, *, routed: bool
) -> tuple[exposure.Verdict, str] | None:
    """The exposure verdict and public URL of an HTTP Trigger with a host, after applying or
    removing its routes; None when nothing is exposed (no host, or exposure off). A Trigger
    whose route kfn refused (``routed`` False) gets no route at the edge."""
    s = settings.exposure_settings()
    exposed = exposure.of_trigger(trigger)
    if s is None or s.mode == "none" or exposed is None or not routed:
        # Routes exist only where kfn said so in Exposed: no lookups for the others (cron,
        # stream and bucket Triggers' statuses change every few seconds).
        if _exposed_before(trigger.status.conditions if trigger.status else []):
            withdraw("Trigger", trigger.metadata.namespace, trigger.metadata.name, s)
        return None
    return expose(exposed, s), s.url(exposed.host, exposed.prefix)


# --- Function URLs ----------------------------------------------------------------------------


def desired_function_status(
    fn: function_api.Function, verdict: exposure.Verdict | None, url: str | None, now: Any
) -> dict[str, Any]:
    """The part of a Function's status this module owns: ``functionUrl`` and ``Exposed``
    (pure). Without a Function URL both go."""
    current = fn.status.conditions if fn.status else []
    if verdict is None:
        kept = [c for c in current if c.type != function_api.ConditionType.EXPOSED]
        return {
            "functionUrl": None,
            "conditions": [c.model_dump(mode="json", by_alias=True) for c in kept],
        }
    updated = conditions.set_condition(
        current,
        function_api.ConditionType.EXPOSED,
        verdict.status,
        verdict.reason,
        verdict.message,
        now=now,
        observed_generation=fn.metadata.generation,
    )
    return {
        "functionUrl": url if verdict.status == "True" else None,
        "conditions": [c.model_dump(mode="json", by_alias=True) for c in updated],
    }


def _exposed_before(conds: Sequence[meta.Condition]) -> bool:
    """Whether kfn wrote an ``Exposed`` condition: the only owners that may have routes."""
    return any(c.type == EXPOSED for c in conds)


def _function_verdict(
    fn: function_api.Function, refusal: routes.Refusal | None
) -> tuple[exposure.Verdict, str] | None:
    s = settings.exposure_settings()
    if fn.spec.url is None or s is None or not s.function_urls:
        if _exposed_before(fn.status.conditions if fn.status else []):
            withdraw("Function", fn.metadata.namespace, fn.metadata.name, s)
        if fn.spec.url is None or s is None:
            return None
        return (
            exposure.Verdict(
                "False",
                function_api.Reason.NOT_EXPOSED,
                "this cluster serves no Function URLs: the cluster admin sets "
                "exposure.functionUrls.domain (and a Gateway or Ingress) in the chart",
            ),
            "",
        )
    exposed = exposure.of_function(fn, s)
    if exposed is None:
        withdraw("Function", fn.metadata.namespace, fn.metadata.name, s)
        return (
            exposure.Verdict(
                "False",
                "UrlHostInvalid",
                "the Function URL's host would not be a valid DNS name (each label at most 63 "
                f"characters; template {s.function_url_template!r}): use a shorter name",
            ),
            "",
        )
    url = s.url(exposed.host)
    if refusal is not None:
        withdraw("Function", fn.metadata.namespace, fn.metadata.name, s)
        return exposure.Verdict("False", trigger_api.Reason.ROUTE_CONFLICT, refusal.message), url
    return expose(exposed, s), url


def refresh_function(body: Mapping[str, Any], refusal: routes.Refusal | None, logger: Any) -> None:
    """Applies a Function's URL routes and writes what became of them, if that changed."""
    try:
        fn = function_api.Function.model_validate(dict(body))
    except pydantic.ValidationError:
        return  # the reconciler says why in Ready
    outcome = _function_verdict(fn, refusal)
    verdict, url = outcome if outcome is not None else (None, None)
    new = desired_function_status(fn, verdict, url, clock.utcnow())
    status = body.get("status") or {}
    if (
        _visible(status.get("conditions") or []) == _visible(new["conditions"])
        and status.get("functionUrl") == new["functionUrl"]
    ):
        return
    kube.patch_status(meta.API_VERSION, "Function", fn.metadata.namespace, fn.metadata.name, new)
    logger.debug("Function URL status of %s: %s", fn.metadata.name, new["functionUrl"])


def settled(body: Mapping[str, Any], refusal: routes.Refusal | None) -> bool:
    """A Function whose URL the Gateway serves for its current spec: its other events (its
    pods scaling, its status written) change nothing here, and are passed over; a change at
    the edge arrives as its route's event."""
    if not (body.get("spec") or {}).get("url") or refusal is not None:
        return False
    generation = (body.get("metadata") or {}).get("generation")
    return any(
        c.get("type") == EXPOSED
        and c.get("status") == "True"
        and c.get("observedGeneration") == generation
        for c in (body.get("status") or {}).get("conditions") or []
    )


def _untouched(body: Mapping[str, Any]) -> bool:
    """A Function that asks for no URL and never had one: nothing to write or remove."""
    status = body.get("status") or {}
    return (
        not (body.get("spec") or {}).get("url")
        and not status.get("functionUrl")
        and not any(c.get("type") == EXPOSED for c in status.get("conditions") or [])
    )


def _visible(conds: Any) -> list[tuple[str, str, str, str]]:
    return sorted(
        (str(c.get("type")), str(c.get("status")), str(c.get("reason")), str(c.get("message")))
        for c in conds
    )


def _refresh_quietly(body: Mapping[str, Any], refusal: routes.Refusal | None, logger: Any) -> None:
    try:
        refresh_function(body, refusal, logger)
    except kube.ApiError as exc:
        if exc.status != 404:
            logger.warning("writing the Function URL of %s failed: %s", _name(body), exc)


def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name", ""))


def url_refusal(body: Mapping[str, Any], decided: routes.Ownership) -> routes.Refusal | None:
    """Whether another namespace holds the Function URL's host (the same decision the
    activator routes by)."""
    md = body.get("metadata") or {}
    return decided.refused.get(
        routes.FunctionUrlKey(str(md.get("namespace", "")), str(md.get("name", "")))
    )


@kopf.index(meta.GROUP, meta.VERSION, "functions")
def url_claims(body: kopf.Body, **_: Any) -> dict[routes.Key, routes.Claim] | None:
    """The host each Function URL claims, beside the Triggers' (``route_claims``)."""
    s = settings.exposure_settings()
    if s is None or not s.function_urls or not (body.get("spec") or {}).get("url"):
        return None
    try:
        fn = function_api.Function.model_validate(dict(body))
    except pydantic.ValidationError:
        return None
    created = str((body.get("metadata") or {}).get("creationTimestamp") or "")
    claim = routes.url_claim(fn, created, s.function_url_template, s.function_url_domain)
    return None if claim is None else {claim.key: claim}


@kopf.on.event(meta.GROUP, meta.VERSION, "functions")
@metrics.measured("Function")
def function_url_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A Function came, changed or went: its URL's routes and status."""
    body = event.get("object") or {}
    if _untouched(body):
        return
    if event.get("type") == "DELETED":
        # Routes in its namespace go with it (owner references); an Ingress lives in kfn's.
        md = body.get("metadata") or {}
        try:
            withdraw(
                "Function",
                md.get("namespace", ""),
                md.get("name", ""),
                settings.exposure_settings(),
            )
        except kube.ApiError as exc:
            logger.warning("removing the Function URL of %s failed: %s", _name(body), exc)
        return
    refusal = url_refusal(body, ownership.of(kwargs))
    if event.get("type") == "MODIFIED" and settled(body, refusal):
        return
    _refresh_quietly(body, refusal, logger)


def _function_of_route(event: kopf.RawEvent, kwargs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    route = event.get("object") or {}
    labels = (route.get("metadata") or {}).get("labels") or {}
    if labels.get(exposure.LABEL_ROUTE_OF) != "Function":
        return None
    namespace = labels.get(exposure.LABEL_NAMESPACE) or (route.get("metadata") or {}).get(
        "namespace", ""
    )
    name = labels.get(objects.LABEL_FUNCTION, "")
    found = kwargs["functions_by_name"].get((namespace, name), [])
    return next(iter(found), None)


def _route_changed(event: kopf.RawEvent, logger: Any, kwargs: Mapping[str, Any]) -> None:
    body = _function_of_route(event, kwargs)
    if body is None:
        return
    decided = ownership.of(dict(kwargs))
    _refresh_quietly(body, url_refusal(body, decided), logger)


@kopf.on.event(exposure.GATEWAY_GROUP, "v1", "httproutes", labels=ROUTE_LABELS)
@metrics.measured("Function")
def function_route_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """The Gateway accepted or refused a Function URL's route (or someone changed it)."""
    _route_changed(event, logger, kwargs)


@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels=ROUTE_LABELS)
@metrics.measured("Function")
def function_ingress_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """The Ingress controller published (or lost) an address for a Function URL's Ingress."""
    _route_changed(event, logger, kwargs)


@kopf.on.event(exposure.GATEWAY_GROUP, "v1", "gateways")
@metrics.measured("Function")
def function_gateway_event(event: kopf.RawEvent, logger: Any, **kwargs: Any) -> None:
    """A Gateway came, changed or went: Function URLs waiting for one are looked at again."""
    deleted = event.get("type") == "DELETED"
    index = kwargs["functions_by_name"]
    decided = ownership.of(kwargs)
    for key in list(index):
        for body in index.get(key, []):
            if exposure.gateway_event_concerns(body.get("status"), deleted=deleted):
                _refresh_quietly(body, url_refusal(body, decided), logger)
