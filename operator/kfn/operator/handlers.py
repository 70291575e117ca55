"""kopf handlers: when to reconcile. What to do lives in :mod:`kfn.operator.reconcile`.

* A Function is reconciled when it is created, when its spec changes, when
  the operator starts (resume), and every few minutes (a level-based resync).
* A child deleted, or edited so that it lacks what kfn wants, reconciles its
  Function at once; any other Deployment change only refreshes the Function's
  status (replicas, rollout, Active). So does a function pod that gets stuck
  (a pull error, a crash loop) or becomes ready: the Deployment's own status
  does not change for those.
* Children: ServiceAccount, NetworkPolicy (admitting only the activator), Service,
  Deployment.
* Deleting a Function deletes its children before kopf releases the
  ``kfn.dev/finalizer``.
* Errors back off exponentially (1 s doubling to 5 min); input only the user
  can fix ends in a condition, never in retries.
* Warm pools (:mod:`kfn.operator.pools`): a namespace's pools are reconciled when its
  label or size annotation changes, when one of its Functions is created, changed or
  deleted, and on the resync (once per namespace); a claimed pool pod is retired on its own
  events, on its Function's Deployment's, and a minute after its claim.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from kfn import kube
from kfn.api import function, meta, versioning
from kfn.operator import builds, metrics, pools, reconcile, versions
from kfn.operator import settings as kfn_settings
from kfn.resources import build, objects
from kfn.resources import pools as pool_rules

Logger = logging.Logger | logging.LoggerAdapter[Any]

FINALIZER = "kfn.dev/finalizer"
RESYNC_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 300.0
CHILD_LABELS = {objects.LABEL_MANAGED_BY: objects.MANAGER}
PUBLISH = versioning.PUBLISH_ANNOTATION


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # A bad chart value stops the operator here, before any Function is left open or cut off.
    kfn_settings.network_peers()
    kfn_settings.warm_pool_default_size()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kfn.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kfn.dev", key="last-handled-configuration"
    )
    # kopf would post every handler log line as an Event; kfn posts its own
    # events for transitions a user cares about, and warnings.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


def _backoff(retry: int) -> float:
    return float(min(2**retry, MAX_BACKOFF_SECONDS))


def _run(body: kopf.Body, retry: int, logger: Logger) -> None:
    try:
        outcome = reconcile.reconcile(body)
    except kube.ApiError as exc:
        delay = _backoff(retry)
        logger.warning("reconcile failed (%s); retrying in %.0fs", exc, delay)
        raise kopf.TemporaryError(str(exc), delay=delay) from exc
    _announce(body, outcome)
    if outcome.retry_after is not None:
        # Waiting for a build slot or for the registry: look again soon.
        raise kopf.TemporaryError("waiting to build", delay=outcome.retry_after)


def _announce_build(body: kopf.Body, outcome: reconcile.Outcome) -> None:
    """An Event when a build ends: Built, or BuildFailed with the tail of its error."""
    after = outcome.build_after
    if after is None or after == outcome.build_before or after[0] == "Unknown":
        return
    if after[1] not in (
        function.Reason.BUILT,
        function.Reason.BUILD_FAILED,
        function.Reason.CODE_CHECK_FAILED,
    ):
        return
    message = next(
        (
            c.get("message", "")
            for c in outcome.status.get("conditions", [])
            if c.get("type") == function.ConditionType.BUILD_SUCCEEDED
        ),
        "",
    )
    kind = "Normal" if after[0] == "True" else "Warning"
    kopf.event(body, type=kind, reason=after[1], message=message[-1000:] or after[1])


def _announce(body: kopf.Body, outcome: reconcile.Outcome) -> None:
    """An Event on the Function when Ready changes, and when a build ends."""
    _announce_build(body, outcome)
    if outcome.ready_after is None or outcome.ready_before == outcome.ready_after:
        return
    state, reason = outcome.ready_after
    message = next(
        (
            c.get("message", "")
            for c in outcome.status.get("conditions", [])
            if c.get("type") == function.ConditionType.READY
        ),
        "",
    )
    kind = "Normal" if state in ("True", "Unknown") else "Warning"
    kopf.event(body, type=kind, reason=reason, message=message or f"Ready is {state}")


@kopf.index(meta.GROUP, meta.VERSION, "functions")
def functions_by_name(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], kopf.Body]:
    """The latest body of every Function, so child events find their owner without a GET."""
    return {(namespace or "", name): body}


@kopf.on.resume(meta.GROUP, meta.VERSION, "functions")
@kopf.on.create(meta.GROUP, meta.VERSION, "functions")
@kopf.on.update(meta.GROUP, meta.VERSION, "functions", field="spec")
@metrics.measured("Function", retried=True)
def function_changed(body: kopf.Body, retry: int, logger: Logger, **_: Any) -> None:
    if retry == 0:
        _warn_deprecated_runtime(body)
    _run(body, retry, logger)
    _function_pools(body, logger)


def _warn_deprecated_runtime(body: kopf.Body) -> None:
    """A Warning Event on a Function whose runtime Lambda deprecated: at its creation, each
    change of its spec, and each start of the operator."""
    runtime = str((body.get("spec") or {}).get("runtime") or "")
    why = function.deprecation(runtime, datetime.datetime.now(datetime.UTC).date())
    if why is not None:
        kopf.event(body, type="Warning", reason="DeprecatedRuntime", message=f"{runtime}: {why}")


@kopf.timer(
    meta.GROUP, meta.VERSION, "functions", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS
)
@metrics.measured("Function")
def function_resync(body: kopf.Body, logger: Logger, **_: Any) -> None:
    _run(body, 0, logger)
    ns = str(body.get("metadata", {}).get("namespace", ""))
    if pools.resync_due(ns, datetime.datetime.now(datetime.UTC)):
        _reconcile_pools(ns, logger)


@kopf.on.delete(meta.GROUP, meta.VERSION, "functions")
@metrics.measured("Function", retried=True)
def function_deleted(body: kopf.Body, logger: Logger, **_: Any) -> None:
    try:
        gone = reconcile.delete_children(body)
    except kube.ApiError as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc
    reconcile.forget(body)
    logger.info("deleted %s", ", ".join(gone) or "nothing")
    # Still listed while its finalizer holds it, but no longer counted: its pool may go.
    _function_pools(body, logger)


def _owner(
    body: Mapping[str, Any],
    index: kopf.Index[tuple[str, str], kopf.Body],
    *,
    labelled: bool = True,
) -> kopf.Body | None:
    """The Function a child names in its label (or, not ``labelled``, the Function ``body``
    is), as the index holds it; None if it is gone or going."""
    meta_ = body.get("metadata", {})
    labels = meta_.get("labels") or {}
    name = labels.get(objects.LABEL_FUNCTION) if labelled else meta_.get("name")
    if not name:
        return None
    found = index.get((meta_.get("namespace", ""), name))
    owner = next(iter(found), None) if found else None
    if owner is None or owner.get("metadata", {}).get("deletionTimestamp"):
        return None
    return owner


def _child_event(
    event: Mapping[str, Any],
    index: kopf.Index[tuple[str, str], kopf.Body],
    logger: Logger,
) -> None:
    body = event.get("object") or {}
    owner = _owner(body, index)
    if owner is None:
        return
    kind = body.get("kind", "")
    if event.get("type") == "DELETED" or reconcile.drifted(owner, body):
        logger.info(
            "%s/%s was deleted or changed by hand; restoring it", kind, body["metadata"]["name"]
        )
        try:
            _announce(owner, reconcile.reconcile(owner))
        except kube.ApiError as exc:
            raise kopf.TemporaryError(str(exc), delay=2) from exc
    elif kind == "Deployment":
        try:
            outcome = reconcile.refresh_status(owner)
        except kube.ApiError as exc:
            logger.warning("refreshing the status of %s failed: %s", owner["metadata"]["name"], exc)
            return
        if outcome is not None:
            _announce(owner, outcome)


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@metrics.measured("Function")
def deployment_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    _child_event(event, kwargs["functions_by_name"], logger)
    body = event.get("object") or {}
    ready = int((body.get("status") or {}).get("readyReplicas") or 0)
    at_zero = not (body.get("spec") or {}).get("replicas")
    # Its pool pods go once it has a ready pod of its own, or once it went idle.
    if event.get("type") != "DELETED" and (ready >= 1 or at_zero):
        meta_ = body.get("metadata") or {}
        claimed = kwargs["claimed_pool_pods"].get((meta_.get("namespace"), meta_.get("name")))
        if claimed:
            _retire(list(claimed), logger)


@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
@metrics.measured("Function")
def service_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    _child_event(event, kwargs["functions_by_name"], logger)


@kopf.on.event("", "v1", "serviceaccounts", labels=CHILD_LABELS)
@metrics.measured("Function")
def serviceaccount_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    _child_event(event, kwargs["functions_by_name"], logger)


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=CHILD_LABELS)
@metrics.measured("Function")
def networkpolicy_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    # A policy deleted or widened by hand is put back: it is what keeps the pods behind the
    # activator. (The namespace's owner can still add a policy of their own that admits more;
    # policies add up, and opening their own function is theirs to decide.)
    _child_event(event, kwargs["functions_by_name"], logger)
    body = event.get("object") or {}
    labels = (body.get("metadata") or {}).get("labels") or {}
    if labels.get(objects.LABEL_COMPONENT) == pool_rules.COMPONENT_POOL and (
        event.get("type") == "DELETED" or not pools.pool_policy_intact(body)
    ):
        _reconcile_pools(str(body["metadata"].get("namespace", "")), logger)


@kopf.on.event(meta.GROUP, meta.VERSION, "functions")
@metrics.measured("Function")
def versions_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    """A Function changed outside its spec: a publish request (``kfn.dev/publish``, which only
    the annotation carries) reconciles it at once; the autoscaler moving an alias's rollout
    refreshes its ``RolledOut`` condition."""
    body = event.get("object") or {}
    if event.get("type") == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
        versions.forget(body)
        return
    owner = _owner(body, kwargs["functions_by_name"], labelled=False)
    if versions.publish_requested(body) and owner is not None:
        logger.info("publishing a version, as the annotation %s asks", PUBLISH)
        try:
            _announce(owner, reconcile.reconcile(owner))
        except kube.ApiError as exc:  # the resync (or the next change) tries again
            logger.warning("publishing failed: %s", exc)
    if not (body.get("spec") or {}).get("aliases") and not any(
        c.get("type") == function.ConditionType.ROLLED_OUT
        for c in (body.get("status") or {}).get("conditions") or []
    ):
        return
    try:
        versions.refresh_rolled_out(body)
    except kube.ApiError as exc:
        if exc.status != 404:
            logger.warning("writing the rollout condition failed: %s", exc)


POD_LABELS = {**CHILD_LABELS, objects.LABEL_COMPONENT: objects.COMPONENT_FUNCTION}


@kopf.on.event("", "v1", "pods", labels=POD_LABELS)
@metrics.measured("Function")
def pod_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    body = event.get("object") or {}
    owner = _owner(body, kwargs["functions_by_name"])
    if owner is None or not reconcile.pod_news(body):
        return
    name = owner["metadata"]["name"]
    try:
        outcome = reconcile.refresh_status(owner)
    except kube.ApiError as exc:
        logger.warning("refreshing the status of %s failed: %s", name, exc)
        return
    if outcome is not None:
        _announce(owner, outcome)


BUILD_LABELS = {**CHILD_LABELS, objects.LABEL_COMPONENT: build.COMPONENT_BUILD}


@kopf.on.event("batch", "v1", "jobs", labels=BUILD_LABELS)
@metrics.measured("Function")
def build_job_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    """A build Job ended: record it in the build metrics, free its source ConfigMap and
    reconcile its Function at once."""
    body = event.get("object") or {}
    if event.get("type") == "DELETED":
        builds.forget_job(body)
        return
    if not builds.finished_job(body):
        return
    # kopf's first listing at the start has no event type: those Jobs ended before.
    builds.observe_finished(body, listed=event.get("type") is None, logger=logger)
    try:
        builds.release_source(body)
    except kube.ApiError as exc:
        logger.warning("deleting the source of %s failed: %s", body["metadata"]["name"], exc)
    owner = _owner(body, kwargs["functions_by_name"])
    if owner is None:
        return
    try:
        _announce(owner, reconcile.reconcile(owner))
    except kube.ApiError as exc:
        raise kopf.TemporaryError(str(exc), delay=2) from exc


@kopf.index(meta.GROUP, meta.VERSION, "functions")
def functions_by_config_map(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], kopf.Body] | None:
    """Functions whose source is a ConfigMap, by that ConfigMap, for its changes to rebuild them."""
    ref = ((body.get("spec") or {}).get("source") or {}).get("configMapRef") or {}
    if not ref.get("name"):
        return None
    return {(namespace or "", ref["name"]): body}


@kopf.on.event("", "v1", "configmaps")
@metrics.measured("Function")
def source_config_map_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    """A ConfigMap that is a Function's source changed: reconcile (and so rebuild) it."""
    body = event.get("object") or {}
    meta_ = body.get("metadata", {})
    found = kwargs["functions_by_config_map"].get((meta_.get("namespace", ""), meta_.get("name")))
    for owner in found or ():
        if owner.get("metadata", {}).get("deletionTimestamp"):
            continue
        try:
            _announce(owner, reconcile.reconcile(owner))
        except kube.ApiError as exc:
            logger.warning(
                "reconciling after ConfigMap %s changed failed: %s", meta_.get("name"), exc
            )


# --- warm pools -------------------------------------------------------------------------------


def _reconcile_pools(ns: str, logger: Logger) -> None:
    """Reconciles a namespace's warm pools; a failure waits for the next trigger or resync
    (the Function's own reconcile is not held up by its namespace's pools)."""
    if not ns:
        return
    try:
        done = pools.reconcile_namespace(ns)
    except kube.FAILURES as exc:
        logger.warning("reconciling the warm pools of %s failed: %s", ns, exc)
        return
    if done:
        logger.info("warm pools of %s: %s", ns, ", ".join(done))


def _function_pools(body: Mapping[str, Any], logger: Logger) -> None:
    """A Function came, changed or went: its namespace's pools follow, if it keeps any (a
    namespace that opted out was cleaned up by its own event, and the resync finishes that)."""
    ns = str(body.get("metadata", {}).get("namespace", ""))
    asked = pools.namespace(ns)
    if asked is not None and asked.opted_in:
        _reconcile_pools(ns, logger)


@kopf.index(meta.GROUP, meta.VERSION, "functions")
def functions_by_namespace(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[str, kopf.Body]:
    """Every Function by its namespace, for a Namespace's change to reach its Functions."""
    return {namespace or "": body}


@kopf.on.event("", "v1", "namespaces")
@metrics.measured("Function")
def namespace_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    """A Namespace seen or changed: its pools follow its opt-in label and size annotation,
    and its Functions' ``WarmPool`` conditions say so."""
    body = event.get("object") or {}
    name = str((body.get("metadata") or {}).get("name", ""))
    if event.get("type") == "DELETED":
        pools.forget_namespace(name)
        return
    before, after = pools.observe_namespace(body)
    if after.problem is not None and (before is None or before.problem != after.problem):
        logger.warning("namespace %s: %s", name, after.problem)
    if before == after:
        return
    _reconcile_pools(name, logger)
    for owner in kwargs["functions_by_namespace"].get(name, ()):
        if owner.get("metadata", {}).get("deletionTimestamp") or not pools.warm_pool_changed(owner):
            continue
        try:
            outcome = reconcile.refresh_status(owner)
        except kube.ApiError as exc:
            logger.warning("writing the WarmPool condition failed: %s", exc)
            continue
        if outcome is not None:
            _announce(owner, outcome)


POOL_LABELS = pool_rules.labels()


@kopf.on.event("apps", "v1", "replicasets", labels=POOL_LABELS)
@metrics.measured("Function")
def pool_replicaset_event(event: kopf.RawEvent, logger: Logger, **_: Any) -> None:
    """A pool's ReplicaSet deleted by hand is made again (if its pool is still wanted)."""
    if event.get("type") == "DELETED":
        body = event.get("object") or {}
        _reconcile_pools(str((body.get("metadata") or {}).get("namespace", "")), logger)


@kopf.index("", "v1", "pods", labels={**POOL_LABELS, objects.LABEL_FUNCTION: kopf.PRESENT})
def claimed_pool_pods(body: kopf.Body, **_: Any) -> dict[tuple[str, str], kopf.Body] | None:
    """Claimed pool pods by the Deployment that takes over from them, for its events."""
    serving = pool_rules.serving_deployment(body)
    if serving is None:
        return None
    return {(str(body.get("metadata", {}).get("namespace", "")), serving): body}


_recheck_lock = threading.Lock()
_rechecks: dict[str, threading.Timer] = {}


def _retire(pods: list[Mapping[str, Any]], logger: Logger) -> None:
    """Deletes the claimed pool pods that are done; looks again when one may stay claimed
    too long (no event comes for a pod nobody touches)."""
    try:
        gone, again = pools.retire(pods, datetime.datetime.now(datetime.UTC))
    except kube.FAILURES as exc:
        logger.warning("retiring claimed pool pods failed: %s", exc)
        return
    for retirement in gone:
        logger.info("deleted pool pod %s: %s", retirement.pod, retirement.reason)
    if again is None:
        return
    retired = {r.pod for r in gone}
    for pod in pods:
        meta_ = pod.get("metadata") or {}
        state = (meta_.get("labels") or {}).get(pool_rules.LABEL_POOL_STATE)
        waiting = (pool_rules.STATE_CLAIMED, pool_rules.STATE_SPECIALISED)
        if state not in waiting or meta_.get("name") in retired:
            continue
        uid = str(meta_.get("uid", ""))
        with _recheck_lock:
            if uid in _rechecks:
                continue
            timer = threading.Timer(again, _recheck, args=(pod, logger))
            timer.daemon = True
            _rechecks[uid] = timer
        timer.start()


def _recheck(pod: Mapping[str, Any], logger: Logger) -> None:
    meta_ = pod.get("metadata") or {}
    with _recheck_lock:
        _rechecks.pop(str(meta_.get("uid", "")), None)
    try:
        live = kube.get("v1", "Pod", str(meta_.get("namespace", "")), str(meta_.get("name", "")))
    except kube.FAILURES as exc:  # the pod's next event or the Deployment's tries again
        logger.warning("reading pool pod %s failed: %s", meta_.get("name"), exc)
        return
    if live is not None and live.get("metadata", {}).get("uid") == meta_.get("uid"):
        _retire([live], logger)


@kopf.on.event("", "v1", "pods", labels=POOL_LABELS)
@metrics.measured("Function")
def pool_pod_event(event: kopf.RawEvent, logger: Logger, **_: Any) -> None:
    """A pool pod changed: a claimed one's claim is timed, and it goes once it is done."""
    body = event.get("object") or {}
    if event.get("type") == "DELETED":
        pools.forget_pod(body)
        return
    pools.note_claim(body, datetime.datetime.now(datetime.UTC))
    state = ((body.get("metadata") or {}).get("labels") or {}).get(pool_rules.LABEL_POOL_STATE)
    if state in (pool_rules.STATE_CLAIMED, pool_rules.STATE_SPECIALISED):
        _retire([body], logger)
