"""Reconciling one Function: gather facts, apply children, write status.

The kopf handlers in :mod:`kfn.operator.handlers` are thin; this module is
the glue between the pure builders (:mod:`kfn.resources`) and the API layer
(:mod:`kfn.kube`). It is level-based: every call computes the whole desired
state from the Function as it is now and applies it, so it does not matter
which event caused the call or how many calls were missed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import pydantic

from kfn import clock, kube
from kfn.api import function, meta
from kfn.operator import builds, credentials, pools, settings, triggers
from kfn.operator import versions as versions_
from kfn.resources import deployment as deployment_builder
from kfn.resources import network, objects, provenance, service, source, status

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a reconcile wrote: the new status and whether Ready changed."""

    status: dict[str, Any]
    changed: bool
    ready_before: tuple[str, str] | None
    ready_after: tuple[str, str] | None
    build_before: tuple[str, str] | None = None
    build_after: tuple[str, str] | None = None
    retry_after: float | None = None
    """Seconds after which to reconcile again (waiting for a build slot or the registry)."""


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
    """The activator's invoke URL: unlike the Service, it answers at zero replicas too. It
    is the invoke door's, which asks for a bearer token RBAC allows to invoke."""
    ns, name = fn.metadata.namespace, fn.metadata.name
    return f"{triggers.invoke_url()}/_kfn/functions/{ns}/{name}/invoke"


def _ready(status_body: Mapping[str, Any] | None) -> tuple[str, str] | None:
    for cond in (status_body or {}).get("conditions", []) or []:
        if cond.get("type") == function.ConditionType.READY:
            return cond.get("status", ""), cond.get("reason", "")
    return None


def _condition(status_body: Mapping[str, Any] | None, type_: str) -> tuple[str, str] | None:
    for cond in (status_body or {}).get("conditions", []) or []:
        if cond.get("type") == type_:
            return cond.get("status", ""), cond.get("reason", "")
    return None


def resolve_source(fn: function.Function) -> tuple[status.Verdict, status.Verdict, str | None]:
    """SourceReady, BuildSucceeded and the image to run, without I/O.

    For a prebuilt image that is the spec itself. For a built source it is what the last
    reconcile found out (the status this process wrote, or the Function's): only
    :func:`reconcile` looks at the registry and the build Job, never a status refresh.
    """
    if fn.spec.source.image is not None:
        return (
            status.Verdict("True", function.Reason.IMAGE_PROVIDED, "prebuilt image"),
            status.Verdict("True", function.Reason.IMAGE_PROVIDED, "nothing to build"),
            fn.spec.source.image,
        )
    return _built_verdicts(_known_status(fn))


def _built_verdicts(
    known: function.FunctionStatus,
) -> tuple[status.Verdict, status.Verdict, str | None]:
    """SourceReady, BuildSucceeded and the image of a built source, as last recorded."""
    verdicts = []
    for type_ in (function.ConditionType.SOURCE_READY, function.ConditionType.BUILD_SUCCEEDED):
        cond = next((c for c in known.conditions if c.type == type_), None)
        verdicts.append(
            status.Verdict(cond.status, cond.reason, cond.message)
            if cond is not None
            else status.Verdict("Unknown", function.Reason.BUILDING, "not built yet")
        )
    return verdicts[0], verdicts[1], known.image


def _known_status(fn: function.Function) -> function.FunctionStatus:
    written = _written.statuses.get((fn.metadata.namespace, fn.metadata.name))
    if written is not None:
        return function.FunctionStatus.model_validate(written)
    return fn.status or function.FunctionStatus()


def _known_hash(fn: function.Function) -> str:
    """The source hash without I/O: computed when it can be, else the one last recorded."""
    if fn.spec.source.config_map_ref is None:
        return source.source_hash(fn)
    return _known_status(fn).source_hash or ""


def _deployed_hash(fn: function.Function, live: Mapping[str, Any] | None) -> str:
    """The source hash a Deployment of ``fn`` carries: a built one keeps what it was built
    from (possibly an earlier version, still serving while the next one builds)."""
    if fn.spec.source.image is None and live is not None:
        annotations = live.get("metadata", {}).get("annotations") or {}
        found = annotations.get(objects.ANNOTATION_SOURCE_HASH)
        if found:
            return str(found)
    return _known_hash(fn)


def _resolve(fn: function.Function) -> builds.Resolution:
    """Like :func:`resolve_source`, finding or building the image of a built source."""
    if fn.spec.source.image is None:
        return builds.resolve(fn, _known_status(fn))
    # A prebuilt image may live in the namespace's own repositories: its pods pull with the
    # namespace's credential like built ones (a missing one only matters to builds).
    credentials.ensure(fn)
    source_verdict, build_verdict, image = resolve_source(fn)
    return builds.Resolution(source_verdict, build_verdict, image, source.source_hash(fn), True)


def desired_children(
    fn: function.Function, image: str, source_hash: str, *, initial_replicas: int | None
) -> list[Mapping[str, Any]]:
    """ServiceAccount (unless the user names one), NetworkPolicy (when the chart turns them on),
    Service, Deployment — in apply order: the pods start behind their policy."""
    children: list[Mapping[str, Any]] = []
    account = service.build_service_account(fn)
    if account is not None:
        children.append(account)
    peers = settings.network_peers()
    if peers is not None:
        children.append(network.build_network_policy(fn, peers))
    children.append(service.build_service(fn))
    children.append(
        deployment_builder.build_deployment(
            fn,
            image=image,
            source_hash=source_hash,
            initial_replicas=initial_replicas,
            platform=settings.builds().platform,
        )
    )
    return children


def reconcile(body: Mapping[str, Any]) -> Outcome:
    """Brings one Function's children and status in line with its spec."""
    parsed = parse(body)
    if isinstance(parsed, str):
        return _write_invalid(body, parsed)
    fn = parsed
    ns = fn.metadata.namespace
    if status.timeout_refused(fn, settings.max_function_timeout()) is not None:
        # Neither built nor applied: _write says why; an earlier spec's pods keep serving.
        source_verdict, build_verdict, image = resolve_source(fn)
        return _write(fn, body, (source_verdict, build_verdict), image, _known_hash(fn))
    resolution = _resolve(fn)
    source_verdict, build_verdict, image = resolution.source, resolution.build, resolution.image
    source_hash = resolution.source_hash
    published: versions_.Published | None = None
    if image is not None:
        existing = kube.get("apps/v1", "Deployment", ns, fn.metadata.name)
        initial = fn.spec.scale.replicas_at_creation if existing is None else None
        # The previous image keeps serving while the next one builds, under its own hash.
        deploy_hash = source_hash if resolution.current else _deployed_hash(fn, existing)
        try:
            for child in desired_children(fn, image, deploy_hash, initial_replicas=initial):
                if child["kind"] == "Deployment":
                    kube.apply_deployment(child)
                else:
                    kube.apply(child)
            if settings.network_peers() is None:
                # Turned off in the chart: a policy an earlier setting made would keep
                # admitting only the activator, which is no longer what the admin asked.
                _delete_owned(ns, fn.metadata.name, ("networking.k8s.io/v1", "NetworkPolicy"))
            if resolution.current:
                # Only an image built from the current source is a version: while the next one
                # builds, the previous image runs under the new configuration for a while.
                published = versions_.reconcile(fn, image, deploy_hash)
        except kube.ApiError as exc:
            if exc.status not in (400, 403, 422):
                raise
            rejected = status.Verdict("False", function.Reason.DEPLOYMENT_REJECTED, exc.message)
            return _write(
                fn,
                body,
                (source_verdict, rejected),
                image,
                source_hash,
                read=False,
                records=resolution.records,
            )
    outcome = _write(
        fn,
        body,
        (source_verdict, build_verdict),
        image,
        source_hash,
        records=resolution.records,
        published=published,
    )
    return dataclasses.replace(outcome, retry_after=resolution.retry_after)


def refresh_status(fn_body: Mapping[str, Any]) -> Outcome | None:
    """Recomputes status from the cluster as it is now, applying nothing (for child events)."""
    parsed = parse(fn_body)
    if isinstance(parsed, str):
        return None
    source_verdict, build_verdict, image = resolve_source(parsed)
    verdicts = (source_verdict, build_verdict)
    return _write(parsed, fn_body, verdicts, image, _known_hash(parsed), refresh=True)


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
    hash_ = _deployed_hash(parsed, live if live.get("kind") == "Deployment" else None)
    for child in desired_children(parsed, image, hash_, initial_replicas=None):
        if child["kind"] == live.get("kind"):
            return not contains(live, child)
    return False


contains = objects.contains
"""Kept here too: tests and callers of the reconciler's drift check name it so."""


def delete_children(fn_body: Mapping[str, Any]) -> list[str]:
    """Deletes what the Function owns, so the finalizer is released only when it is gone."""
    meta_ = fn_body.get("metadata", {})
    ns, name = meta_.get("namespace", "default"), meta_.get("name", "")
    # The policy goes last: the pods it guards are gone by then.
    return _delete_owned(
        ns,
        name,
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    )


def _delete_owned(ns: str, name: str, *kinds: tuple[str, str]) -> list[str]:
    """Deletes the objects of ``kinds`` named ``name`` that carry the function's label
    (never a same-named object the user made); returns ``Kind/name`` of each deleted."""
    gone = []
    for api_version, kind in kinds:
        live = kube.get(api_version, kind, ns, name)
        labels = (live or {}).get("metadata", {}).get("labels", {})
        if live is not None and labels.get(objects.LABEL_FUNCTION) == name:
            kube.delete(api_version, kind, ns, name)
            gone.append(f"{kind}/{name}")
    return gone


#: How much of a suspect pod's log is read for the runtime's init error report: the report is
#: written at start and a runtime that failed to load logs nothing per invocation.
INIT_ERROR_LOG_LINES = 200
INIT_ERROR_LOG_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class _PodFacts:
    problems: list[str] = dataclasses.field(default_factory=list)
    missing_secrets: list[str] = dataclasses.field(default_factory=list)
    init_errors: list[status.InitError] = dataclasses.field(default_factory=list)


def _pod_facts(fn: function.Function, live_deployment: Mapping[str, Any] | None) -> _PodFacts:
    """What the pods' containers are stuck on, the pull Secrets the kubelet misses, and the
    init errors runtimes reported. Asked only while a rollout is not complete and ready."""
    if live_deployment is None:
        return _PodFacts()
    dep_status = live_deployment.get("status", {}) or {}
    wanted = live_deployment.get("spec", {}).get("replicas", 0) or 0
    complete = (
        (dep_status.get("readyReplicas", 0) or 0) >= wanted
        and (dep_status.get("updatedReplicas", 0) or 0) >= wanted
        and (dep_status.get("replicas", 0) or 0) <= wanted
    )
    if wanted == 0 or complete:
        return _PodFacts()
    ns = fn.metadata.namespace
    selector = ",".join(f"{k}={v}" for k, v in objects.selector_for(fn).items())
    pods = kube.list_objects("v1", "Pod", ns, selector)
    events = [
        event
        for pod in status.pulling_pods(pods)
        for event in kube.list_events(ns, pod, status.MISSING_PULL_SECRET_EVENT)
    ]
    init_errors = []
    for pod in status.init_error_suspects(pods):
        log = kube.pod_log(
            ns,
            pod,
            deployment_builder.CONTAINER_NAME,
            tail_lines=INIT_ERROR_LOG_LINES,
            limit_bytes=INIT_ERROR_LOG_BYTES,
        )
        found = status.init_error_in_log(pod, log)
        if found is not None:
            init_errors.append(found)
    return _PodFacts(
        status.pod_problems(pods), status.missing_pull_secrets(events), sorted(init_errors)
    )


class _Written:
    """Per Function: a lock that serialises status writes, and the status last written.

    Status is written from several places (a reconcile, Deployment and pod
    events) running in different workers. Each write reads the Deployment
    afresh under the Function's lock and compares with what this process
    last wrote, so an older view can never overwrite a newer one.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}

    def lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, key: tuple[str, str]) -> None:
        with self._guard:
            self._locks.pop(key, None)
            self.statuses.pop(key, None)


_written = _Written()


def _write(
    fn: function.Function,
    body: Mapping[str, Any],
    verdicts: tuple[status.Verdict, status.Verdict],
    image: str | None,
    source_hash: str,
    *,
    read: bool = True,
    refresh: bool = False,
    records: provenance.Records | None = None,
    published: versions_.Published | None = None,
) -> Outcome:
    """Writes status for ``fn`` from (SourceReady, BuildSucceeded) and the live Deployment.

    A ``refresh`` of a built source takes the build's verdicts and image from the status as it
    is under the lock: only a reconcile decides them, and a refresh that read them earlier
    must not write back an older build state over a newer one. The build ``records`` are kept
    as the status has them unless a reconcile brings new ones.
    """
    source_verdict, build_verdict = verdicts
    key = (fn.metadata.namespace, fn.metadata.name)
    with _written.lock(key):
        if refresh and fn.spec.source.image is None:
            latest = _written.statuses.get(key, body.get("status"))
            known = function.FunctionStatus.model_validate(latest or {})
            source_verdict, build_verdict, image = _built_verdicts(known)
        live = None
        if image is not None and read:
            live = kube.get("apps/v1", "Deployment", fn.metadata.namespace, fn.metadata.name)
        pods = _pod_facts(fn, live)
        current = _written.statuses.get(key, body.get("status"))
        if records is None:
            known = function.FunctionStatus.model_validate(current or {})
            records = provenance.Records.of(known)
        facts = status.Facts(
            source_verdict,
            build_verdict,
            image,
            source_hash,
            live,
            pods.problems,
            pods.missing_secrets,
            pods.init_errors,
            last_image=(current or {}).get("image"),
            refused=status.timeout_refused(fn, settings.max_function_timeout()),
            records=records,
            warm_pool=pools.warm_pool(fn),
        )
        previous = function.FunctionStatus.model_validate(current or {}).conditions
        new = status.compute(fn, facts, now=clock.utcnow(), url=url_for(fn), previous=previous)
        new.update(
            published.status_fields()
            if published is not None
            else {k: v for k, v in (current or {}).items() if k in status.VERSION_KEYS}
        )
        changed = not status.same(current, new)
        if changed:
            kube.patch_status(
                API_VERSION, function.KIND, fn.metadata.namespace, fn.metadata.name, new
            )
            _written.statuses[key] = new
        build_type = function.ConditionType.BUILD_SUCCEEDED
        return Outcome(
            new,
            changed,
            _ready(current),
            _ready(new),
            _condition(current, build_type),
            _condition(new, build_type),
        )


def forget(fn_body: Mapping[str, Any]) -> None:
    """Drops what this process remembers of a deleted Function."""
    meta_ = fn_body.get("metadata", {})
    _written.forget((meta_.get("namespace", ""), meta_.get("name", "")))


def _write_invalid(body: Mapping[str, Any], message: str) -> Outcome:
    meta_ = body.get("metadata", {})
    current = body.get("status")
    generation = meta_.get("generation")
    cond = meta.Condition(
        type=function.ConditionType.READY,
        status="False",
        reason=function.Reason.INVALID_SPEC,
        message=message[:2000],
        last_transition_time=clock.utcnow(),
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
