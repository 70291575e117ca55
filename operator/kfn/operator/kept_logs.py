"""Keeping the last lines of a function pod that goes (scaled to zero, scaled down, replaced).

When a function pod starts terminating, its log is read from the first line, following until
its container ends (the pod's preStop pause holds it long enough to start reading), and the
last lines go into the Function's ``kfn-logs.<function>`` ConfigMap (the format and bounds are
:mod:`kfn.resources.kept_logs`'). One reader per pod, each in a thread of its own bounded by the
pod's termination grace; writes of one Function are serialised, so two pods ending together
both stay. A pod whose log cannot be read is logged and left: keeping a log never holds a pod.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import kopf
import pydantic

from kfn import kube
from kfn.api import function
from kfn.api import kept_logs as api_kept_logs
from kfn.operator import metrics
from kfn.operator import settings as kfn_settings
from kfn.resources import deployment, kept_logs, objects

Logger = logging.Logger | logging.LoggerAdapter[Any]

_logger = logging.getLogger(__name__)

READ_MARGIN_SECONDS: Final = 30.0
"""How much longer than its termination grace a pod's log is followed."""

_reading: set[str] = set()
_reading_lock = threading.Lock()
_writing: dict[tuple[str, str], threading.Lock] = {}


@kopf.on.event(
    "",
    "v1",
    "pods",
    labels={objects.LABEL_MANAGED_BY: objects.MANAGER, objects.LABEL_FUNCTION: kopf.PRESENT},
)
@metrics.measured("Function")
def terminating_pod_event(event: kopf.RawEvent, logger: Logger, **kwargs: Any) -> None:
    body = event.get("object") or {}
    meta = body.get("metadata") or {}
    uid = str(meta.get("uid", ""))
    if event.get("type") == "DELETED":
        with _reading_lock:
            _reading.discard(uid)
        return
    if not kfn_settings.keep_logs() or not uid or not kept_logs.keeps(body):
        return
    found = kwargs["functions_by_name"].get(
        (meta.get("namespace", ""), (meta.get("labels") or {}).get(objects.LABEL_FUNCTION))
    )
    owner = next(iter(found), None) if found else None
    if owner is None or (owner.get("metadata") or {}).get("deletionTimestamp"):
        return
    with _reading_lock:
        if uid in _reading:
            return
        _reading.add(uid)
    try:
        fn = function.Function.model_validate(dict(owner))
    except pydantic.ValidationError:
        return
    grace = float((body.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)
    threading.Thread(
        target=_keep,
        args=(fn, str(meta["name"]), grace + READ_MARGIN_SECONDS),
        name=f"kept-log-{meta['name']}",
        daemon=True,
    ).start()


def _keep(fn: function.Function, pod: str, timeout: float) -> None:
    namespace = fn.metadata.namespace
    tail = kept_logs.Tail()
    try:
        for line in kube.follow_pod_log(
            namespace, pod, deployment.CONTAINER_NAME, timeout_seconds=timeout
        ):
            tail.add(line)
    except Exception as exc:  # a reader must never take the operator down
        _logger.warning("reading the log of %s/%s to keep it failed: %s", namespace, pod, exc)
    if not tail.lines():
        return
    key = (namespace, fn.metadata.name)
    with _reading_lock:
        lock = _writing.setdefault(key, threading.Lock())
    with lock:
        try:
            _store(fn, pod, tail.text())
        except kube.ApiError as exc:
            _logger.warning("keeping the log of %s/%s failed: %s", namespace, pod, exc)


def _store(fn: function.Function, pod: str, text: str) -> None:
    name = api_kept_logs.config_map_name(fn.metadata.name)
    live = kube.get("v1", "ConfigMap", fn.metadata.namespace, name)
    data, order = kept_logs.order_of(live)
    data, order = kept_logs.kept(data, order, pod, text)
    kube.apply(kept_logs.config_map(fn, data, order))
