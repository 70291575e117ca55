"""Reaching the activator's invoke door from where the plugin runs.

The chart's invoke Service (``<release>-kfn-invoke``, labelled
``app.kubernetes.io/part-of=kfn`` and ``app.kubernetes.io/component=invoke``) is in-cluster
only (docs/security.md). The plugin finds it by those labels in every namespace it may list
(else by the chart's default name, ``kfn-system/kfn-invoke``), or as ``--invoke-service``
names it. Inside a pod it connects to the Service's DNS name; outside, it port-forwards to
one ready activator pod through the API server (as ``kubectl port-forward`` would, with the
kubernetes client's port-forward, so no kubectl is needed).
"""

from __future__ import annotations

import dataclasses
import http.client
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kfn.cli import cluster, errors, invoking

SERVICE_LABELS: Final = "app.kubernetes.io/part-of=kfn,app.kubernetes.io/component=invoke"
DEFAULT_SERVICE: Final = ("kfn-system", "kfn-invoke")
INVOKER_LABELS: Final = "app.kubernetes.io/part-of=kfn,app.kubernetes.io/component=invoker"
METRICS_PORT: Final = "metrics"
"""The activator container's port of its Prometheus metrics."""


@dataclasses.dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: dict[str, str]
    target_port: int | str
    port: int
    instance: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Service:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        ports = spec.get("ports") or [{}]
        first = ports[0]
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            selector=dict(spec.get("selector") or {}),
            target_port=first.get("targetPort", first.get("port", 80)),
            port=int(first.get("port", 80)),
            instance=str((meta.get("labels") or {}).get("app.kubernetes.io/instance", "")),
        )


def chosen_service(found: Sequence[Mapping[str, Any]], given: str | None) -> Service:
    """The invoke Service among those listed: the one ``--invoke-service`` names, else the
    only one; CliError when there are none or several."""
    services = [Service.of(s) for s in found]
    if given:
        ns, _, name = given.rpartition("/")
        for s in services:
            if s.name == name and (not ns or s.namespace == ns):
                return s
        raise errors.CliError(
            f"there is no invoke Service {given} (kfn's, with labels {SERVICE_LABELS})"
        )
    if not services:
        raise errors.CliError(
            "kfn's invoke Service was not found (no Service labelled "
            f"{SERVICE_LABELS}): is kfn installed in this cluster? Name it with "
            "--invoke-service NAMESPACE/NAME"
        )
    if len(services) > 1:
        names = ", ".join(f"{s.namespace}/{s.name}" for s in services)
        raise errors.CliError(
            f"there are several kfn invoke Services ({names}): choose one with "
            "--invoke-service NAMESPACE/NAME"
        )
    return services[0]


def _ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def ready_pods(pods: Sequence[Mapping[str, Any]], target_port: int | str) -> list[tuple[str, int]]:
    """The ready pods of a Service, by name, with the container port ``target_port`` names."""
    found = []
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        if not _ready(pod):
            continue
        name = str(pod["metadata"]["name"])
        if isinstance(target_port, int):
            found.append((name, target_port))
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") == target_port:
                    found.append((name, int(port["containerPort"])))
    return found


def pick_pod(pods: Sequence[Mapping[str, Any]], target_port: int | str) -> tuple[str, int]:
    """A ready pod of the Service and the container port its target port names; CliError
    when none is ready."""
    found = ready_pods(pods, target_port)
    if found:
        return found[0]
    raise errors.CliError(
        "no activator pod of kfn's invoke Service is ready (kubectl get pods -n <kfn's "
        "namespace> -l app.kubernetes.io/component=activator)"
    )


def _service(kube: cluster.Cluster, given: str | None) -> Service:
    """kfn's invoke Service: by its labels in every namespace, or by name when listing them
    all is not allowed."""
    try:
        found = kube.list(cluster.path("v1", "Service", None), labels=SERVICE_LABELS)
    except cluster.ApiError as exc:
        if exc.status != 403:
            raise
        ns, name = given.rpartition("/")[::2] if given else DEFAULT_SERVICE
        one = kube.get(cluster.path("v1", "Service", ns or kube.namespace, name))
        found = [one] if one is not None else []
    return chosen_service(found, given)


def _pods(kube: cluster.Cluster, service: Service) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in sorted(service.selector.items()))
    return kube.list(cluster.path("v1", "Pod", service.namespace), labels=selector)


@dataclasses.dataclass
class Door:
    """A way to the invoke door: a port-forward to one activator pod, or the Service."""

    service: Service
    kube: cluster.Cluster
    pod: str = ""
    port: int = 0
    connect_seconds: float = 0.0
    """How long the last connection (the port-forward) took to open."""

    @classmethod
    def find(cls, kube: cluster.Cluster, given: str | None) -> Door:
        """The door of the invoke Service ``given`` (``NAMESPACE/NAME``), else kfn's one."""
        service = _service(kube, given)
        door = cls(service, kube)
        if not kube.in_cluster:
            door.pod, door.port = pick_pod(_pods(kube, service), service.target_port)
        return door

    def metrics(self, timeout: float = 10) -> list[str]:
        """The ``/metrics`` page of every ready activator pod behind the door (port
        ``metrics``), through a port-forward to each (from inside a pod: its address)."""
        pages = []
        for pod in _pods(self.kube, self.service):
            for name, port in ready_pods([pod], METRICS_PORT):
                if self.kube.in_cluster:
                    address = str((pod.get("status") or {}).get("podIP", ""))
                    conn = http.client.HTTPConnection(address, port, timeout=timeout)
                else:
                    sock = self.kube.port_forward(self.service.namespace, name, port)
                    sock.settimeout(timeout)
                    conn = http.client.HTTPConnection("localhost", port, timeout=timeout)
                    conn.sock = sock
                try:
                    conn.request("GET", "/metrics")
                    answer = conn.getresponse()
                    if answer.status == 200:
                        pages.append(answer.read().decode("utf-8", "replace"))
                finally:
                    conn.close()
        return pages

    def where(self) -> str:
        if self.pod:
            return f"pod {self.service.namespace}/{self.pod} port {self.port} (port-forward)"
        return f"Service {self.service.namespace}/{self.service.name}"

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        host = f"{self.service.name}.{self.service.namespace}.svc"
        if not self.pod:
            return http.client.HTTPConnection(host, self.service.port, timeout=timeout)
        sock = self.kube.port_forward(self.service.namespace, self.pod, self.port)
        sock.settimeout(timeout)
        conn = http.client.HTTPConnection(host, self.service.port, timeout=timeout)
        conn.sock = sock
        return conn

    def send(
        self, req: invoking.Request, timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Sends one request; the status, headers and body of the answer."""
        began = time.monotonic()
        try:
            conn = self._connection(timeout)
        except OSError as exc:
            raise errors.CliError(f"cannot reach the invoke door ({self.where()}): {exc}") from None
        self.connect_seconds = time.monotonic() - began
        try:
            conn.request(req.method, req.path, body=req.body, headers=req.headers)
            answer = conn.getresponse()
            body = answer.read()
            return answer.status, {k: v for k, v in answer.getheaders()}, body
        except (OSError, http.client.HTTPException) as exc:
            raise errors.CliError(
                f"the invoke door ({self.where()}) did not answer: {exc.__class__.__name__}: {exc}"
            ) from None
        finally:
            conn.close()

    def invoker_role(self) -> str:
        """The name of the release's invoker ClusterRole (``<release>-kfn-invoker``)."""
        labels = INVOKER_LABELS
        if self.service.instance:
            labels += f",app.kubernetes.io/instance={self.service.instance}"
        try:
            roles = self.kube.list(
                cluster.path("rbac.authorization.k8s.io/v1", "ClusterRole", None), labels=labels
            )
        except errors.CliError:
            return invoking.INVOKER_ROLE
        if len(roles) == 1:
            return str(roles[0]["metadata"]["name"])
        return invoking.INVOKER_ROLE
