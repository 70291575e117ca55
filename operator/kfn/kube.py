"""The one place in kfn that talks to the Kubernetes API.

Everything else decides with plain data; this module reads, applies and
patches. Writes of desired state are server-side applies under one field
manager (:data:`FIELD_MANAGER`) with ``force``, so a hand edit of a field kfn
owns is taken back on the next reconcile while fields other managers own
(the replica count the autoscaler sets, annotations users add) are left alone.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Any, Final, cast

from kubernetes import client, config
from kubernetes.client import exceptions

FIELD_MANAGER: Final = "kfn-operator"
#: Owns ``spec.replicas`` from a Deployment's creation on, so that the operator's
#: applies (which never carry ``replicas`` after creation) do not reset it.
REPLICAS_MANAGER: Final = "kfn-initial-scale"

Object = dict[str, Any]

#: The kinds kfn writes, with their API paths.
_PATHS: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("kfn.dev/v1alpha1", "Function"): ("/apis/kfn.dev/v1alpha1", "functions"),
    ("kfn.dev/v1alpha1", "Trigger"): ("/apis/kfn.dev/v1alpha1", "triggers"),
}


class ApiError(RuntimeError):
    """A request the API server refused; ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


_lock = threading.Lock()
_api: client.ApiClient | None = None


def api() -> client.ApiClient:
    """The process's API client: in-cluster config when in a pod, else the kubeconfig."""
    global _api  # noqa: PLW0603 - one client per process, made on first use
    with _lock:
        if _api is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            configuration = client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = 32
            _api = client.ApiClient(configuration)
        return _api


def _path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _PATHS[(api_version, kind)]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _call(
    method: str,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Object:
    client_ = api()
    _, url, headers, _, _ = client_.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    try:
        response = client_.call_api(method, url, header_params=headers, body=body)
        response.read()  # type: ignore[no-untyped-call]
    except exceptions.ApiException as exc:
        raise ApiError(int(exc.status or 0), str(exc.reason), str(exc.reason)) from None
    data = response.data or b""
    if not 200 <= response.status < 300:
        message = response.reason or ""
        with contextlib.suppress(ValueError):
            message = json.loads(data).get("message", message)
        raise ApiError(response.status, str(response.reason), str(message))
    return cast(Object, json.loads(data)) if data else {}


def get(api_version: str, kind: str, namespace: str, name: str) -> Object | None:
    """The object, or None if it does not exist."""
    try:
        return _call("GET", _path(api_version, kind, namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def apply(obj: Mapping[str, Any], *, manager: str = FIELD_MANAGER) -> Object:
    """Server-side applies ``obj`` (forcing conflicts) and returns the live object."""
    meta = obj["metadata"]
    return _call(
        "PATCH",
        _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
        body=dict(obj),
        query=[("fieldManager", manager), ("force", "true")],
        content_type="application/apply-patch+yaml",
    )


def apply_deployment(obj: Mapping[str, Any]) -> Object:
    """Applies a Deployment whose ``spec.replicas`` is set only at creation.

    When ``obj`` carries ``spec.replicas`` (the builder adds it only for a
    Deployment that does not exist yet) the replica count is applied a second
    time by :data:`REPLICAS_MANAGER`, which then co-owns it. Later applies
    without ``replicas`` drop only the operator's claim, so the count the
    autoscaler sets stays.
    """
    live = apply(obj)
    replicas = obj["spec"].get("replicas")
    if replicas is not None:
        meta = obj["metadata"]
        live = apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {"replicas": replicas},
            },
            manager=REPLICAS_MANAGER,
        )
    return live


def delete(api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Deletes the object with background propagation; False if it was not there."""
    try:
        _call(
            "DELETE",
            _path(api_version, kind, namespace, name),
            body={"propagationPolicy": "Background"},
        )
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def list_objects(
    api_version: str, kind: str, namespace: str, label_selector: str = ""
) -> list[Object]:
    query = [("labelSelector", label_selector)] if label_selector else []
    result = _call("GET", _path(api_version, kind, namespace), query=query)
    return cast(list[Object], result.get("items", []))


def patch_status(
    api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
) -> Object:
    """Merge-patches ``status`` (the status subresource)."""
    return _call(
        "PATCH",
        _path(api_version, kind, namespace, name) + "/status",
        body={"status": dict(status)},
        content_type="application/merge-patch+json",
    )
