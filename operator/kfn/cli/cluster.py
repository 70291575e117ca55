"""The plugin's connection to the cluster: the kubeconfig read as kubectl reads it, and the
few calls the commands make (read, list, apply, logs, tokens, a port-forward).

The official ``kubernetes`` client does the talking: it knows every way a kubeconfig
authenticates (certificates, tokens, exec plugins). Objects are plain dicts, as the API
sends them; requests go by path (:data:`PATHS`), so kfn's own kinds need no generated code.
Every refusal of the API server becomes :class:`ApiError` (its status and message), and a
cluster that cannot be reached a :class:`~kfn.cli.errors.CliError` saying which and what to
check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, cast

import urllib3
from kubernetes import client, config
from kubernetes.client import exceptions

from kfn.cli import errors

FIELD_MANAGER: Final = "kubectl-kfn"
"""The field manager of every server-side apply the plugin makes."""

Object = dict[str, Any]

PATHS: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    ("kfn.dev/v1alpha1", "Function"): ("/apis/kfn.dev/v1alpha1", "functions"),
    ("kfn.dev/v1alpha1", "Trigger"): ("/apis/kfn.dev/v1alpha1", "triggers"),
    ("kfn.dev/v1alpha1", "FunctionVersion"): ("/apis/kfn.dev/v1alpha1", "functionversions"),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "Event"): ("/api/v1", "events"),
    ("v1", "Namespace"): ("/api/v1", "namespaces"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterroles",
    ),
}
"""The kinds the plugin reads or writes, with their API paths."""

APPLIED_KINDS: Final = (
    ("kfn.dev/v1alpha1", "Function"),
    ("kfn.dev/v1alpha1", "Trigger"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
)
"""What deploy applies from function.yaml."""

_IN_CLUSTER_NAMESPACE: Final = pathlib.Path(
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)


class ApiError(errors.CliError):
    """A request the API server refused: its status and its own message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The API path of a kind's collection (all namespaces when ``namespace`` is None, or a
    cluster-scoped kind), or of one object."""
    prefix, plural = PATHS[(api_version, kind)]
    where = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{where}/{name}" if name else where


def _kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str:
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        return "default"
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), active)
    found = (chosen or {}).get("context", {}).get("namespace")
    return str(found) if found else "default"


class Cluster:
    """One cluster, as the global options chose it, and the namespace to work in."""

    def __init__(self, api: client.ApiClient, namespace: str, *, in_cluster: bool = False) -> None:
        self.api = api
        self.namespace = namespace
        self.in_cluster = in_cluster

    @classmethod
    def connect(cls, args: argparse.Namespace) -> Cluster:
        """The cluster of ``--kubeconfig`` and ``--context`` (else ``$KUBECONFIG``, else
        ``~/.kube/config``; inside a pod without one, the pod's own account), and the
        namespace of ``-n`` (else the context's, else ``default``)."""
        # $KUBECONFIG as it is now (the client reads it once, when it is imported).
        kubeconfig: str | None = getattr(args, "kubeconfig", None) or os.environ.get("KUBECONFIG")
        given = getattr(args, "kubeconfig", None) is not None or "KUBECONFIG" in os.environ
        context: str | None = getattr(args, "context", None)
        namespace: str | None = getattr(args, "namespace", None)
        configuration = client.Configuration()
        in_cluster = False
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        except (config.ConfigException, FileNotFoundError, OSError) as exc:
            if not given and context is None and "KUBERNETES_SERVICE_HOST" in os.environ:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                in_cluster = True
            else:
                raise errors.CliError(
                    f"cannot read the kubeconfig ({exc}): pass --kubeconfig FILE or set "
                    "KUBECONFIG, and --context to choose a context"
                ) from None
        if namespace is None:
            if in_cluster:
                namespace = _IN_CLUSTER_NAMESPACE.read_text().strip()
            else:
                namespace = _kubeconfig_namespace(kubeconfig, context)
        return cls(client.ApiClient(configuration), namespace, in_cluster=in_cluster)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def bearer_token(self) -> str | None:
        """The kubeconfig's own bearer token (a ``token`` or an exec plugin's), if any."""
        cfg = self.api.configuration
        if cfg.refresh_api_key_hook is not None:
            cfg.refresh_api_key_hook(cfg)
        for key in ("BearerToken", "authorization"):
            value = str(cfg.api_key.get(key) or "")
            if value.startswith("Bearer ") and value.removeprefix("Bearer ").strip():
                return value.removeprefix("Bearer ").strip()
        return None

    # --- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        api_path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float | tuple[float, float] | None = 30,
    ) -> Any:
        """The raw response (a urllib3 response, not yet read) of a request the API server
        took (2xx), else :class:`ApiError`."""
        _, url, headers, _, _ = self.api.param_serialize(
            method=method,
            resource_path=api_path,
            query_params=list(query),
            header_params={"Content-Type": content_type, "Accept": accept},
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=timeout
            )
        except exceptions.ApiException as exc:
            raise ApiError(int(exc.status or 0), str(exc.reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.CliError(
                f"the cluster at {self.host} cannot be reached ({exc.__class__.__name__}: "
                f"{exc}): check the kubeconfig's context (--context, --kubeconfig)"
            ) from None
        raw = response.response
        if not 200 <= response.status < 300:
            data = raw.data or b""
            message = str(response.reason or response.status)
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(data).get("message", message)
            raise ApiError(int(response.status), message)
        return raw

    def call(self, method: str, api_path: str, **kwargs: Any) -> Object:
        raw = self.request(method, api_path, **kwargs)
        data = raw.data
        return cast(Object, json.loads(data)) if data else {}

    def get(self, api_path: str) -> Object | None:
        """The object, or None when it does not exist."""
        try:
            return self.call("GET", api_path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, api_path: str, *, labels: str = "", fields: str = "", timeout: float = 30
    ) -> list[Object]:
        query = [("labelSelector", labels)] if labels else []
        if fields:
            query.append(("fieldSelector", fields))
        found = self.call("GET", api_path, query=query, timeout=timeout).get("items")
        return cast(list[Object], found or [])

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Object:
        """Server-side applies ``obj`` as :data:`FIELD_MANAGER` (taking over fields another
        manager set, as ``kubectl apply --server-side --force-conflicts``); ``dry_run`` asks
        what the object would become, changing nothing."""
        meta = obj["metadata"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self.call(
            "PATCH",
            path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]),
            body=dict(obj),
            query=query,
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(self, api_path: str, patch: Mapping[str, Any]) -> Object:
        """Applies a JSON merge patch (RFC 7386) as :data:`FIELD_MANAGER`; one carrying
        ``metadata.resourceVersion`` is refused with 409 when the object changed since."""
        return self.call(
            "PATCH",
            api_path,
            body=dict(patch),
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )

    def log_lines(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since_seconds: int | None = None,
        timestamps: bool = False,
        limit_bytes: int | None = None,
    ) -> Iterator[str]:
        """A container's log, line by line (without the newline); with ``follow``, until the
        container stops or its pod goes."""
        query = [("container", container)]
        if follow:
            query.append(("follow", "true"))
        if tail is not None:
            query.append(("tailLines", str(tail)))
        if since_seconds is not None:
            query.append(("sinceSeconds", str(since_seconds)))
        if timestamps:
            query.append(("timestamps", "true"))
        if limit_bytes is not None:
            query.append(("limitBytes", str(limit_bytes)))
        raw = self.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
            query=query,
            accept="*/*",
            timeout=None if follow else 30,
        )
        pending = b""
        try:
            for chunk in raw.stream(8192, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
        except (urllib3.exceptions.HTTPError, OSError):
            pass  # the pod went while we read: what came is what there is
        finally:
            raw.release_conn()
        if pending:
            yield pending.decode("utf-8", "replace")

    def service_account_token(
        self, namespace: str, service_account: str, audience: str, seconds: int
    ) -> str:
        """A token for the ServiceAccount (TokenRequest), for ``audience``, good ``seconds``."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": seconds},
        }
        answer = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            body=body,
        )
        return str(answer["status"]["token"])

    def port_forward(self, namespace: str, pod: str, port: int) -> socket.socket:
        """A socket connected to ``port`` of the pod, through the API server (what
        ``kubectl port-forward`` does)."""
        from kubernetes.stream import portforward  # noqa: PLC0415 - websocket only when needed

        core = client.CoreV1Api(self.api)
        try:
            forward = portforward(
                core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
            )
        except exceptions.ApiException as exc:
            raise ApiError(
                int(exc.status or 0), f"port-forward to {namespace}/{pod}: {exc}"
            ) from None
        return cast(socket.socket, forward.socket(port))

    def function(self, name: str) -> Object:
        """The Function ``name`` of the namespace; CliError saying so when there is none."""
        try:
            found = self.get(path("kfn.dev/v1alpha1", "Function", self.namespace, name))
        except ApiError as exc:
            if exc.status == 404:  # no such resource: the CRD is missing
                raise errors.CliError(
                    f"the cluster at {self.host} has no Functions (the CRD functions.kfn.dev): "
                    "is kfn installed? (docs/install.md)"
                ) from None
            raise
        if found is None:
            raise errors.CliError(
                f'function "{name}" not found in namespace "{self.namespace}" '
                f"(kubectl get functions -n {self.namespace}; -n to choose another namespace)"
            )
        return found
