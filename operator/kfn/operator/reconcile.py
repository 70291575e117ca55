"""Reconciling one Function: gather facts, apply children, write status.

The kopf handlers in :mod:`kfn.operator.handlers` are thin; this module is
the glue between the pure builders (:mod:`kfn.resources`) and the API layer
(:mod:`kfn.kube`). It is level-based: every call computes the whole desired
state from the Function as it is now and applies it, so it does not matter
which event caused the call or how many calls were missed.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import pydantic

from kfn import kube
from kfn.api import function, meta
from kfn.resources import deployment as deployment_builder
from kfn.resources import objects, service, source, status

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"

#: Built sources wait for the in-cluster builder; until it exists they say so
#: honestly rather than pretending with some image.
BUILD_NOT_AVAILABLE = (
    "building from inline, configMapRef and archive sources is not available in this version "
    "of kfn; set source.image to a prebuilt image that speaks the kfn runtime contract"
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a reconcile wrote: the new status and whether Ready changed."""

    status: dict[str, Any]
    changed: bool
    ready_before: tuple[str, str] | None
    ready_after: tuple[str, str] | None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse(body: Mapping[str, Any]) -> function.Function | str:
    """The Function, or a message saying why its spec cannot be used."""
    try:
        return function.Function.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        return f"the spec cannot be used: {problems}"


def url_for(fn: function.Function) -> str:
    return f"http://{fn.metadata.name}.{fn.metadata.namespace}.svc.cluster.local"


def _ready(status_body: Mapping[str, Any] | None) -> tuple[str, str] | None:
    for cond in (status_body or {}).get("conditions", []) or []:
        if cond.get("type") == function.ConditionType.READY:
            return cond.get("status", ""), cond.get("reason", "")
    return None


def resolve_source(fn: function.Function) -> tuple[status.Verdict, status.Verdict, str | None]:
    """SourceReady, BuildSucceeded and the image to run, if there is one."""
    if fn.spec.source.image is not None:
        return (
            status.Verdict("True", function.Reason.IMAGE_PROVIDED, "prebuilt image"),
            status.Verdict("True", function.Reason.IMAGE_PROVIDED, "nothing to build"),
            fn.spec.source.image,
        )
    verdict = status.Verdict("False", function.Reason.BUILD_NOT_AVAILABLE, BUILD_NOT_AVAILABLE)
    return verdict, verdict, None


def desired_children(
    fn: function.Function, image: str, source_hash: str, *, initial_replicas: int | None
) -> list[Mapping[str, Any]]:
    """ServiceAccount (unless the user names one), Service, Deployment — in apply order."""
    children: list[Mapping[str, Any]] = []
    account = service.build_service_account(fn)
    if account is not None:
        children.append(account)
    children.append(service.build_service(fn))
    children.append(
        deployment_builder.build_deployment(
            fn, image=image, source_hash=source_hash, initial_replicas=initial_replicas
        )
    )
    return children


def reconcile(body: Mapping[str, Any]) -> Outcome:
    """Brings one Function's children and status in line with its spec."""
    parsed = parse(body)
    current = body.get("status")
    if isinstance(parsed, str):
        return _write_invalid(body, parsed)
    fn = parsed
    ns = fn.metadata.namespace
    source_verdict, build_verdict, image = resolve_source(fn)
    source_hash = source.source_hash(fn)
    live_deployment = None
    problems: list[str] = []
    if image is not None:
        existing = kube.get("apps/v1", "Deployment", ns, fn.metadata.name)
        initial = fn.spec.scale.min_replicas if existing is None else None
        try:
            for child in desired_children(fn, image, source_hash, initial_replicas=initial):
                if child["kind"] == "Deployment":
                    live_deployment = kube.apply_deployment(child)
                else:
                    kube.apply(child)
        except kube.ApiError as exc:
            if exc.status not in (400, 403, 422):
                raise
            rejected = status.Verdict("False", function.Reason.DEPLOYMENT_REJECTED, exc.message)
            return _write(
                fn, current, status.Facts(source_verdict, rejected, image, source_hash, None)
            )
        problems = _pod_problems(fn, live_deployment)
    facts = status.Facts(
        source_verdict, build_verdict, image, source_hash, live_deployment, problems
    )
    return _write(fn, current, facts)


def refresh_status(
    fn_body: Mapping[str, Any], live_deployment: Mapping[str, Any]
) -> Outcome | None:
    """Recomputes status from a Deployment event without applying anything."""
    parsed = parse(fn_body)
    if isinstance(parsed, str):
        return None
    fn = parsed
    source_verdict, build_verdict, image = resolve_source(fn)
    facts = status.Facts(
        source_verdict,
        build_verdict,
        image,
        source.source_hash(fn),
        live_deployment,
        _pod_problems(fn, live_deployment),
    )
    return _write(fn, fn_body.get("status"), facts)


def refresh_from_cluster(fn_body: Mapping[str, Any]) -> Outcome | None:
    """Like :func:`refresh_status`, reading the Deployment first (for pod events)."""
    meta_ = fn_body.get("metadata", {})
    live = kube.get("apps/v1", "Deployment", meta_.get("namespace", ""), meta_.get("name", ""))
    return refresh_status(fn_body, live) if live is not None else None


def pod_news(pod: Mapping[str, Any]) -> bool:
    """Whether a pod event can change the Function's status: stuck, or ready."""
    if status.pod_problems([pod]):
        return True
    conditions_ = (pod.get("status", {}) or {}).get("conditions", []) or []
    return any(c.get("type") == "Ready" for c in conditions_)


def drifted(fn_body: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when a child no longer carries every field kfn wants it to have."""
    parsed = parse(fn_body)
    if isinstance(parsed, str):
        return False
    _, _, image = resolve_source(parsed)
    if image is None:
        return False
    for child in desired_children(parsed, image, source.source_hash(parsed), initial_replicas=None):
        if child["kind"] == live.get("kind"):
            return not contains(live, child)
    return False


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of ``desired`` is in ``live`` with the same value.

    Lists must have the same length, element by element (the server keeps the
    order kfn applied); the server's defaults beyond what kfn set are ignored.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def delete_children(fn_body: Mapping[str, Any]) -> list[str]:
    """Deletes what the Function owns, so the finalizer is released only when it is gone."""
    meta_ = fn_body.get("metadata", {})
    ns, name = meta_.get("namespace", "default"), meta_.get("name", "")
    gone = []
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
    ):
        live = kube.get(api_version, kind, ns, name)
        labels = (live or {}).get("metadata", {}).get("labels", {})
        if live is not None and labels.get(objects.LABEL_FUNCTION) == name:
            kube.delete(api_version, kind, ns, name)
            gone.append(f"{kind}/{name}")
    return gone


def _pod_problems(fn: function.Function, live_deployment: Mapping[str, Any] | None) -> list[str]:
    if live_deployment is None:
        return []
    dep_status = live_deployment.get("status", {}) or {}
    wanted = live_deployment.get("spec", {}).get("replicas", 0) or 0
    if wanted == 0 or (dep_status.get("readyReplicas", 0) or 0) >= wanted:
        return []
    selector = ",".join(f"{k}={v}" for k, v in objects.selector_for(fn).items())
    pods = kube.list_objects("v1", "Pod", fn.metadata.namespace, selector)
    return status.pod_problems(pods)


def _write(
    fn: function.Function, current: Mapping[str, Any] | None, facts: status.Facts
) -> Outcome:
    new = status.compute(fn, facts, now=now(), url=url_for(fn))
    changed = not status.same(current, new)
    if changed:
        kube.patch_status(API_VERSION, function.KIND, fn.metadata.namespace, fn.metadata.name, new)
    return Outcome(new, changed, _ready(current), _ready(new))


def _write_invalid(body: Mapping[str, Any], message: str) -> Outcome:
    meta_ = body.get("metadata", {})
    current = body.get("status")
    generation = meta_.get("generation")
    cond = meta.Condition(
        type=function.ConditionType.READY,
        status="False",
        reason=function.Reason.INVALID_SPEC,
        message=message[:2000],
        last_transition_time=now(),
        observed_generation=generation,
    )
    previous = _ready(current)
    if previous == ("False", function.Reason.INVALID_SPEC.value):
        return Outcome(dict(current or {}), False, previous, previous)
    new = {"conditions": [cond.model_dump(mode="json", by_alias=True, exclude_none=True)]}
    if generation is not None:
        new["observedGeneration"] = generation
    kube.patch_status(API_VERSION, function.KIND, meta_["namespace"], meta_["name"], new)
    return Outcome(new, True, previous, ("False", function.Reason.INVALID_SPEC.value))
