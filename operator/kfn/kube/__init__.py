"""The one place in kfn that talks to the Kubernetes API.

Everything else decides with plain data; this module reads, applies and
patches. Writes of desired state are server-side applies under one field
manager (:data:`FIELD_MANAGER`) with ``force``, so a hand edit of a field kfn
owns is taken back on the next reconcile while fields other managers own
(the replica count the autoscaler sets, annotations users add) are left alone.

Components that follow a kind as it changes keep it in a :class:`kfn.kube.cache.Store`,
fed by :func:`reflect`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, cast

import urllib3
from kubernetes import client, config
from kubernetes.client import exceptions

FIELD_MANAGER: Final = "kfn-operator"
#: Owns ``spec.replicas`` from a Deployment's creation on, so that the operator's
#: applies (which never carry ``replicas`` after creation) do not reset it.
REPLICAS_MANAGER: Final = "kfn-initial-scale"

Object = dict[str, Any]

_logger = logging.getLogger(__name__)

#: The kinds kfn writes, with their API paths.
_PATHS: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("apps/v1", "ReplicaSet"): ("/apis/apps/v1", "replicasets"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies"),
    ("kfn.dev/v1alpha1", "Function"): ("/apis/kfn.dev/v1alpha1", "functions"),
    ("kfn.dev/v1alpha1", "Trigger"): ("/apis/kfn.dev/v1alpha1", "triggers"),
    ("kfn.dev/v1alpha1", "FunctionVersion"): ("/apis/kfn.dev/v1alpha1", "functionversions"),
    ("networking.k8s.io/v1", "Ingress"): ("/apis/networking.k8s.io/v1", "ingresses"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (
        "/apis/gateway.networking.k8s.io/v1",
        "httproutes",
    ),
    ("gateway.networking.k8s.io/v1", "Gateway"): ("/apis/gateway.networking.k8s.io/v1", "gateways"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): (
        "/apis/gateway.networking.k8s.io/v1beta1",
        "referencegrants",
    ),
}


class ApiError(RuntimeError):
    """A request the API server refused; ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


#: What a call raises when the API server did not answer it: refused (:class:`ApiError`),
#: unreachable or timed out. A caller that must answer at once (a review) catches these.
FAILURES: Final = (ApiError, urllib3.exceptions.HTTPError, OSError, TimeoutError)

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
    timeout: float | None = None,
) -> Object:
    data = _request(
        method, path, body=body, query=query, content_type=content_type, timeout=timeout
    )
    return cast(Object, json.loads(data)) if data else {}


def _request(
    method: str,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    timeout: float | None = None,
) -> bytes:
    client_ = api()
    _, url, headers, _, _ = client_.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": accept},
        auth_settings=["BearerToken"],
    )
    try:
        response = client_.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )
        response.read()  # type: ignore[no-untyped-call]
    except exceptions.ApiException as exc:
        raise ApiError(int(exc.status or 0), str(exc.reason), str(exc.reason)) from None
    data = response.data or b""
    if not 200 <= response.status < 300:
        message = response.reason or ""
        with contextlib.suppress(ValueError):
            message = json.loads(data).get("message", message)
        raise ApiError(response.status, str(response.reason), str(message))
    return bytes(data)


def get(api_version: str, kind: str, namespace: str, name: str) -> Object | None:
    """The object, or None if it does not exist."""
    try:
        return _call("GET", _path(api_version, kind, namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


@dataclasses.dataclass(frozen=True)
class Secret:
    """A Secret's decoded data, and its annotations (where its owner says it may go)."""

    data: dict[str, bytes]
    annotations: dict[str, str]


def get_secret(namespace: str, name: str) -> Secret | None:
    """A Secret, or None if it does not exist.

    Callers hold the values only in memory: they are never logged, put in a status or in an
    Event.
    """
    secret = get("v1", "Secret", namespace, name)
    if secret is None:
        return None
    data = secret.get("data") or {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    return Secret(
        data={str(key): base64.b64decode(value) for key, value in data.items()},
        annotations={str(key): str(value) for key, value in annotations.items()},
    )


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


def patch(
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    *,
    strategic: bool = False,
) -> Object:
    """Patches an object: a JSON merge patch, or a strategic merge patch (lists of built-in
    kinds merge by their keys, e.g. ownerReferences by uid)."""
    kind_ = "strategic-merge-patch" if strategic else "merge-patch"
    return _call(
        "PATCH",
        _path(api_version, kind, namespace, name),
        body=dict(body),
        query=[("fieldManager", FIELD_MANAGER)],
        content_type=f"application/{kind_}+json",
    )


def list_events(namespace: str, involved_name: str, reason: str) -> list[Object]:
    """Events of ``reason`` about the object named ``involved_name`` in ``namespace``."""
    selector = f"involvedObject.name={involved_name},reason={reason}"
    result = _call(
        "GET", f"/api/v1/namespaces/{namespace}/events", query=[("fieldSelector", selector)]
    )
    return cast(list[Object], result.get("items", []))


def pod_log(namespace: str, name: str, container: str, *, tail_lines: int, limit_bytes: int) -> str:
    """The last ``tail_lines`` lines (at most ``limit_bytes``) of a pod container's log, or ""
    when the pod or its log is gone."""
    query = [
        ("container", container),
        ("tailLines", str(tail_lines)),
        ("limitBytes", str(limit_bytes)),
    ]
    try:
        data = _request(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log", query=query, accept="*/*"
        )
    except ApiError as exc:
        if exc.status in (400, 404):  # the pod or its container is gone, or not started
            return ""
        raise
    return data.decode("utf-8", errors="replace")


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
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    *,
    manager: str | None = None,
) -> Object:
    """Merge-patches ``status`` (the status subresource), as ``manager`` when given."""
    return _call(
        "PATCH",
        _path(api_version, kind, namespace, name) + "/status",
        body={"status": dict(status)},
        query=[("fieldManager", manager)] if manager else None,
        content_type="application/merge-patch+json",
    )


#: The longest message an Event keeps (the API server refuses longer ones).
EVENT_MESSAGE_LIMIT: Final = 1024


def create_event(
    involved: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    warning: bool = False,
    component: str,
    now: datetime.datetime | None = None,
) -> Object:
    """Records a ``v1`` Event about ``involved`` (an object with ``apiVersion``, ``kind`` and
    ``metadata``: its namespace, name and uid), as ``kubectl describe`` shows them: ``reason``,
    ``message`` (cut to :data:`EVENT_MESSAGE_LIMIT` characters) and ``Normal`` or ``Warning``
    type, from ``component``, at ``now`` (the present when None)."""
    meta = involved.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reference = {
        "apiVersion": involved.get("apiVersion", ""),
        "kind": involved.get("kind", ""),
        "namespace": namespace,
        "name": meta.get("name", ""),
    }
    if meta.get("uid"):
        reference["uid"] = meta["uid"]
    if meta.get("resourceVersion"):
        reference["resourceVersion"] = meta["resourceVersion"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'kfn')}.", "namespace": namespace},
        "involvedObject": reference,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }
    return _call("POST", f"/api/v1/namespaces/{namespace}/events", body=event)


# --- reading collections, watching, and the scale subresource ------------------------------
#
# The activator and the autoscaler are asyncio programs; these calls block. They run the
# blocking ``kubernetes`` client in a thread (see :func:`reflect`) rather than a second,
# asynchronous HTTP client: the client already knows every way a kubeconfig or an
# in-cluster account authenticates, and a watch is one long-lived request per kind, so
# one thread per watched kind costs nothing worth saving.

SCALE_MANAGER: Final = "kfn-autoscaler"
"""The field manager of every replica count the autoscaler writes."""


def _collection(api_version: str, kind: str, namespace: str | None) -> str:
    prefix, plural = _PATHS[(api_version, kind)]
    if namespace is None:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def list_all(
    api_version: str,
    kind: str,
    *,
    namespace: str | None = None,
    label_selector: str = "",
    field_selector: str = "",
) -> tuple[list[Object], str]:
    """Every object of a kind (all namespaces when ``namespace`` is None) and the list's
    resourceVersion, the point a following :func:`watch` starts from. A ``field_selector``
    of ``metadata.name=<name>`` is what lets RBAC that names resources allow a list."""
    query = [("labelSelector", label_selector)] if label_selector else []
    if field_selector:
        query.append(("fieldSelector", field_selector))
    result = _call("GET", _collection(api_version, kind, namespace), query=query)
    version = str(result.get("metadata", {}).get("resourceVersion", ""))
    return cast(list[Object], result.get("items", [])), version


class WatchExpiredError(ApiError):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def watch(
    api_version: str,
    kind: str,
    resource_version: str,
    *,
    namespace: str | None = None,
    label_selector: str = "",
    field_selector: str = "",
    timeout_seconds: int = 300,
) -> Iterator[tuple[str, Object]]:
    """Yields ``(type, object)`` for each change after ``resource_version``.

    Types are ADDED, MODIFIED and DELETED; bookmarks are consumed here and only move the
    position. Ends when the server closes the watch (after ``timeout_seconds``); raises
    :class:`WatchExpiredError` when the position is gone, :class:`ApiError` otherwise.
    """
    query = [
        ("watch", "true"),
        ("resourceVersion", resource_version),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(timeout_seconds)),
    ]
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    for line in _stream_lines(
        _collection(api_version, kind, namespace),
        query,
        accept="application/json",
        read_timeout=timeout_seconds + 30,
    ):
        if line.strip():
            yield _watch_event(line)


def follow_pod_log(
    namespace: str, name: str, container: str, *, timeout_seconds: float
) -> Iterator[str]:
    """Yields a pod container's log lines, each stamped by the API server (``<RFC 3339 time>
    <line>``), from its first line, following until the container ends (or the server closes
    the stream after ``timeout_seconds``). Nothing when the pod or its log is gone."""
    query = [("container", container), ("follow", "true"), ("timestamps", "true")]
    try:
        for line in _stream_lines(
            f"/api/v1/namespaces/{namespace}/pods/{name}/log",
            query,
            accept="*/*",
            read_timeout=timeout_seconds,
            unterminated=True,
        ):
            yield line.decode("utf-8", errors="replace")
    except ApiError as exc:
        if exc.status not in (400, 404):  # the pod or its container is gone, or not started
            raise


def _stream_lines(
    path: str,
    query: list[tuple[str, str]],
    *,
    accept: str,
    read_timeout: float,
    unterminated: bool = False,
) -> Iterator[bytes]:
    """The lines of a streamed GET (a watch, a followed log), without their newlines; a last
    line without one only if ``unterminated`` (a log's last line may lack it; a watch's is
    cut off)."""
    client_ = api()
    _, url, headers, _, _ = client_.param_serialize(
        method="GET",
        resource_path=path,
        query_params=query,
        header_params={"Accept": accept},
        auth_settings=["BearerToken"],
    )
    try:
        response = client_.call_api(
            "GET", url, header_params=headers, _request_timeout=(10, read_timeout)
        )
    except exceptions.ApiException as exc:
        raise ApiError(int(exc.status or 0), str(exc.reason), str(exc.reason)) from None
    raw = response.response
    finished = False
    try:
        if not 200 <= response.status < 300:
            raise ApiError(
                response.status, str(response.reason), raw.read().decode(errors="replace")
            )
        pending = b""
        for chunk in raw.stream(65536, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines
        if pending and unterminated:
            yield pending
        finished = True
    finally:
        if not finished:
            # Left mid-stream: the connection holds unread bytes and cannot be reused.
            raw.close()
        raw.release_conn()


def _watch_event(line: bytes) -> tuple[str, Object]:
    event = json.loads(line)
    kind = str(event.get("type", ""))
    obj = cast(Object, event.get("object") or {})
    if kind == "ERROR":
        status = int(obj.get("code", 0))
        error = WatchExpiredError if status == 410 else ApiError
        raise error(status, str(obj.get("reason", "")), str(obj.get("message", "")))
    return kind, obj


class Reflection(Protocol):
    """Receives a kind's objects from :func:`reflect`, in the reflecting thread."""

    def replace(self, objects: list[Object]) -> None:
        """The complete current set (after the first list and after every relist)."""

    def change(self, kind: str, obj: Object) -> None:
        """One ADDED, MODIFIED or DELETED object."""


def reflect(
    api_version: str,
    kind: str,
    into: Reflection,
    stop: threading.Event,
    *,
    label_selector: str = "",
    retry_delay: float = 1.0,
    namespace: str | None = None,
    field_selector: str = "",
) -> None:
    """List, then watch, a kind across all namespaces (or in ``namespace``) until ``stop``
    is set (blocking).

    The classic reflector loop: a list gives the full state and a position, the watch
    continues from there, a closed watch resumes from the last position seen (bookmarks
    included), an expired position means a fresh list. Errors are logged and retried
    after ``retry_delay``. Run it in a thread; ``into`` is called from that thread.
    """
    version = ""
    while not stop.is_set():
        try:
            if not version:
                items, version = list_all(
                    api_version,
                    kind,
                    namespace=namespace,
                    label_selector=label_selector,
                    field_selector=field_selector,
                )
                into.replace(items)
            for event, obj in watch(
                api_version,
                kind,
                version,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                timeout_seconds=240,
            ):
                version = str(obj.get("metadata", {}).get("resourceVersion", version))
                if event != "BOOKMARK":
                    into.change(event, obj)
                if stop.is_set():
                    return
        except WatchExpiredError:
            version = ""
        except (ApiError, OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
            _logger.warning("watching %s failed (%s); retrying", kind, exc)
            version = ""
            stop.wait(retry_delay)


def get_scale(namespace: str, name: str) -> int | None:
    """A Deployment's desired replicas (its ``scale`` subresource), or None if it is gone."""
    try:
        scale = _call("GET", _path("apps/v1", "Deployment", namespace, name) + "/scale")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return int(scale.get("spec", {}).get("replicas") or 0)


def set_scale(namespace: str, name: str, replicas: int, *, manager: str = SCALE_MANAGER) -> None:
    """Sets a Deployment's replicas through its ``scale`` subresource, as ``manager``.

    Only the scale subresource is written, so no other field of the Deployment can be
    touched by accident, and the field manager shows who set the count.
    """
    _call(
        "PATCH",
        _path("apps/v1", "Deployment", namespace, name) + "/scale",
        body={"spec": {"replicas": replicas}},
        query=[("fieldManager", manager)],
        content_type="application/merge-patch+json",
    )


# --- reviews (who a token names, and what it may do) ------------------------------------


def review_token(token: str, audiences: Sequence[str], *, timeout: float) -> Object:
    """The API server's TokenReview of a bearer token for ``audiences``: its ``status``
    (``authenticated``, ``user``, ``audiences``, ``error``)."""
    review = _call(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(audiences)},
        },
        timeout=timeout,
    )
    return cast(Object, review.get("status") or {})


def review_access(
    user: Mapping[str, Any], attributes: Mapping[str, str], *, timeout: float
) -> Object:
    """The API server's SubjectAccessReview of ``user`` (a TokenReview's ``user``:
    username, uid, groups, extra) for ``attributes`` (namespace, verb, group, resource,
    name): its ``status`` (``allowed``, ``denied``, ``reason``)."""
    spec: dict[str, Any] = {"resourceAttributes": dict(attributes)}
    for field in ("uid", "groups", "extra"):
        if user.get(field):
            spec[field] = user[field]
    spec["user"] = user.get("username", "")
    review = _call(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        },
        timeout=timeout,
    )
    return cast(Object, review.get("status") or {})


# --- leases (leader election) ------------------------------------------------------------


def _lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


def get_lease(namespace: str, name: str) -> Object | None:
    """The ``coordination.k8s.io/v1`` Lease, or None if it does not exist."""
    try:
        return _call("GET", _lease_path(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _lease(metadata: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": dict(metadata),
        "spec": dict(spec),
    }


def create_lease(
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    owners: Sequence[Mapping[str, Any]] | None = None,
) -> Object:
    """Creates the Lease; raises :class:`ApiError` 409 when another replica was first."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if owners:
        metadata["ownerReferences"] = [dict(owner) for owner in owners]
    return _call("POST", _lease_path(namespace), body=_lease(metadata, spec))


def update_lease(
    lease: Mapping[str, Any],
    spec: Mapping[str, Any],
    owners: Sequence[Mapping[str, Any]] | None = None,
) -> Object:
    """Replaces the Lease's spec, guarded by its resourceVersion (409 if it changed since).

    ``owners`` replace its owner references when given; otherwise they are kept.
    """
    meta = lease["metadata"]
    metadata: dict[str, Any] = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "resourceVersion": meta["resourceVersion"],
    }
    kept = owners if owners else meta.get("ownerReferences")
    if kept:
        metadata["ownerReferences"] = [dict(owner) for owner in kept]
    return _call("PUT", _lease_path(meta["namespace"], meta["name"]), body=_lease(metadata, spec))
