"""The log a function's pod leaves behind when it goes (pure).

A pod scaled away takes its log with it: the kubelet deletes a container's log with the
container. So that ``kubectl kfn logs`` still shows what a function printed after it scaled to
zero, the operator reads each function pod's log while the pod terminates (the pod's preStop
pause keeps it there) and keeps its last lines in one ConfigMap per function
(:mod:`kfn.api.kept_logs` says which and how): at most :data:`KEPT_PODS` pods, the oldest
going first, each at most :data:`KEPT_LINES` lines and :data:`KEPT_BYTES` bytes. The
ConfigMap is owned by the Function and goes with it.

This is a tail for the developer loop, not a log store: a cluster that must keep every line
ships pods' logs with its log collector, as for any workload.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kfn.api import function
from kfn.api import kept_logs as api_kept_logs
from kfn.resources import deployment, objects

KEPT_LINES: Final = 200
"""Lines kept of each pod (its last ones)."""
KEPT_BYTES: Final = 32 * 1024
"""Bytes kept of each pod: with :data:`KEPT_PODS`, the ConfigMap stays far below its 1 MiB."""
KEPT_PODS: Final = 10
"""Pods whose last lines one function keeps."""
COMPONENT: Final = "logs"


class Tail:
    """The last lines of a stream, bounded by a count and by bytes (a line alone longer than
    the byte bound keeps its end)."""

    def __init__(self, max_lines: int = KEPT_LINES, max_bytes: int = KEPT_BYTES) -> None:
        self._lines: collections.deque[str] = collections.deque()
        self._bytes = 0
        self.max_lines = max_lines
        self.max_bytes = max_bytes

    def add(self, line: str) -> None:
        line = line.rstrip("\n")
        encoded = len(line.encode())
        if encoded > self.max_bytes:
            line = line.encode()[-self.max_bytes :].decode(errors="ignore")
            encoded = len(line.encode())
        self._lines.append(line)
        self._bytes += encoded + 1
        while len(self._lines) > self.max_lines or self._bytes > self.max_bytes + 1:
            self._bytes -= len(self._lines.popleft().encode()) + 1

    def lines(self) -> list[str]:
        return list(self._lines)

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self._lines)


def kept(
    data: Mapping[str, str], order: Sequence[str], pod: str, text: str, limit: int = KEPT_PODS
) -> tuple[dict[str, str], list[str]]:
    """The ConfigMap's data and order after keeping ``pod``'s ``text``: the pod last, the
    oldest beyond ``limit`` dropped. Keys the order does not name (edited by hand) go first."""
    listed = [name for name in order if name in data and name != pod]
    stray = sorted(name for name in data if name not in listed and name != pod)
    names = [*stray, *listed, pod][-limit:]
    merged = {**data, pod: text}
    return {name: merged[name] for name in names}, names


def order_of(config_map: Mapping[str, Any] | None) -> tuple[dict[str, str], list[str]]:
    """A live ConfigMap's data and order (empty when it does not exist)."""
    if not config_map:
        return {}, []
    data = {str(k): str(v) for k, v in (config_map.get("data") or {}).items()}
    annotations = (config_map.get("metadata") or {}).get("annotations") or {}
    listed = str(annotations.get(api_kept_logs.ORDER_ANNOTATION, ""))
    order = [name for name in listed.split(",") if name]
    return data, order


def config_map(
    fn: function.Function, data: Mapping[str, str], order: Sequence[str]
) -> dict[str, Any]:
    """The ConfigMap keeping ``fn``'s departed pods' last lines."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": api_kept_logs.config_map_name(fn.metadata.name),
            "namespace": fn.metadata.namespace,
            "labels": {**objects.labels_for(fn), objects.LABEL_COMPONENT: COMPONENT},
            "annotations": {api_kept_logs.ORDER_ANNOTATION: ",".join(order)},
            "ownerReferences": [objects.owner_reference(fn)],
        },
        "data": dict(data),
    }


def keeps(pod: Mapping[str, Any]) -> bool:
    """Whether a pod event is one whose log to keep now: a function pod (of ``$LATEST`` or of
    a version) that is terminating and whose function container started."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(objects.LABEL_COMPONENT) not in (
        objects.COMPONENT_FUNCTION,
        objects.COMPONENT_VERSION,
    ):
        return False
    if not meta.get("deletionTimestamp") or not labels.get(objects.LABEL_FUNCTION):
        return False
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == deployment.CONTAINER_NAME:
            state = status.get("state") or {}
            return "running" in state or "terminated" in state
    return False
