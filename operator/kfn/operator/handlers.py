"""kopf handlers: when to reconcile. What to do lives in :mod:`kfn.operator.reconcile`.

* A Function is reconciled when it is created, when its spec changes, when
  the operator starts (resume), and every few minutes (a level-based resync).
* A child deleted, or edited so that it lacks what kfn wants, reconciles its
  Function at once; any other Deployment change only refreshes the Function's
  status (replicas, rollout, Active). So does a function pod that gets stuck
  (a pull error, a crash loop) or becomes ready: the Deployment's own status
  does not change for those.
* Deleting a Function deletes its children before kopf releases the
  ``kfn.dev/finalizer``.
* Errors back off exponentially (1 s doubling to 5 min); input only the user
  can fix ends in a condition, never in retries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kfn import kube
from kfn.api import function, meta
from kfn.operator import reconcile
from kfn.resources import objects

Logger = logging.Logger | logging.LoggerAdapter[Any]

FINALIZER = "kfn.dev/finalizer"
RESYNC_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 300.0
CHILD_LABELS = {objects.LABEL_MANAGED_BY: objects.MANAGER}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
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


def _announce(body: kopf.Body, outcome: reconcile.Outcome) -> None:
    """An Event on the Function when Ready changes."""
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
def function_changed(body: kopf.Body, retry: int, logger: Logger, **_: Any) -> None:
    _run(body, retry, logger)


@kopf.timer(
    meta.GROUP, meta.VERSION, "functions", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS
)
def function_resync(body: kopf.Body, logger: Logger, **_: Any) -> None:
    _run(body, 0, logger)


@kopf.on.delete(meta.GROUP, meta.VERSION, "functions")
def function_deleted(body: kopf.Body, logger: Logger, **_: Any) -> None:
    try:
        gone = reconcile.delete_children(body)
    except kube.ApiError as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc
    logger.info("deleted %s", ", ".join(gone) or "nothing")


def _owner(
    body: Mapping[str, Any], index: kopf.Index[tuple[str, str], kopf.Body]
) -> kopf.Body | None:
    meta_ = body.get("metadata", {})
    name = (meta_.get("labels") or {}).get(objects.LABEL_FUNCTION)
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
        outcome = reconcile.refresh_status(owner, body)
        if outcome is not None:
            _announce(owner, outcome)


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
def deployment_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    _child_event(event, kwargs["functions_by_name"], logger)


@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
def service_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    _child_event(event, kwargs["functions_by_name"], logger)


@kopf.on.event("", "v1", "serviceaccounts", labels=CHILD_LABELS)
def serviceaccount_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    _child_event(event, kwargs["functions_by_name"], logger)


POD_LABELS = {**CHILD_LABELS, objects.LABEL_COMPONENT: objects.COMPONENT_FUNCTION}


@kopf.on.event("", "v1", "pods", labels=POD_LABELS)
def pod_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    body = event.get("object") or {}
    owner = _owner(body, kwargs["functions_by_name"])
    if owner is None or not reconcile.pod_news(body):
        return
    name = owner["metadata"]["name"]
    try:
        outcome = reconcile.refresh_from_cluster(owner)
    except kube.ApiError as exc:
        logger.warning("refreshing the status of %s failed: %s", name, exc)
        return
    if outcome is not None:
        _announce(owner, outcome)
