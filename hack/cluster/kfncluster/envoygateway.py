"""Envoy Gateway on the local cluster: the Gateway API implementation, as kfn's own manifests.

Envoy Gateway (``github.com/envoyproxy/gateway``, built from ``hack/cluster/gomod/envoy-gateway``)
watches Gateways and routes and runs one Envoy Deployment per Gateway, which it programs over
xDS. It was chosen over Contour and Traefik (docs/local-cluster.md says why): it passes the
Gateway API's HTTP, TLS and GRPC core conformance against the v1.6 types kfn installs, and it
builds from the module proxy with no replacement.

Its Helm chart cannot be used as published (its values file is generated at release time, and
the chart would install the Gateway API CRDs of its own channel), so the objects here are kfn's,
derived from the chart's templates in the module zip (``charts/gateway-helm/templates``) with
less: no topology injector (its webhook and the RBAC on pods it needs), no leader election (one
replica, replaced by Recreate), no rate-limit service, and only the CRD kinds it can use.

The EnvoyGateway configuration names every image it may run: the Envoy image (the default
EnvoyProxy) and the shutdown-manager (this same binary), both in the local registry, so nothing
is ever pulled from off the machine, and the Kubernetes provider never runs func-e (which would
look Envoy up online: only the host provider does).
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from kfncluster import config, podsecurity

NAMESPACE = "envoy-gateway-system"
NAME = "envoy-gateway"
CONFIG_MAP = "envoy-gateway-config"
CERTGEN = "envoy-gateway-certgen"
#: The Secret certgen writes with the xDS server's certificate (also ``envoy``, the client's).
XDS_SECRET = "envoy-gateway"  # noqa: S105 - a Secret's name
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
ROLE = "kfn:envoy-gateway"
LABELS = {"app.kubernetes.io/name": "envoy-gateway", "app.kubernetes.io/part-of": "kfn-gateway"}
SELECTOR = {"control-plane": "envoy-gateway"}
#: Where the Envoy Gateway module zip keeps its own CRDs (and only those: the Gateway API
#: bundle beside them is experimental-channel and is never installed).
CRD_DIR = "charts/gateway-helm/charts/crds/crds/generated"
#: xDS (the Envoy pods connect here) and the Wasm cache server, as in the chart.
PORTS = (("grpc", 18000), ("wasm", 18002), ("metrics", 19001))

_READ = ["get", "list", "watch"]
_MANAGE = ["create", "get", "list", "delete", "deletecollection", "patch", "watch"]


def crd_files(module_dir: pathlib.Path) -> list[pathlib.Path]:
    """Envoy Gateway's own CRDs (group ``gateway.envoyproxy.io``) in its module's source."""
    files = sorted((module_dir / CRD_DIR).glob("gateway.envoyproxy.io_*.yaml"))
    if not files:
        raise RuntimeError(f"no Envoy Gateway CRDs under {module_dir / CRD_DIR}")
    return files


def _meta(name: str, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def cluster_rules() -> list[dict[str, Any]]:
    """What the controller reads everywhere, and the status it writes: the chart's
    ``eg.rbac.cluster`` and ``eg.rbac.namespaced`` less the topology injector's pods and the
    multi-cluster ServiceImports (no such CRD here)."""
    return [
        {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": _READ},
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["gatewayclasses"],
            "verbs": ["get", "list", "watch", "patch", "update"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["gatewayclasses/status"],
            "verbs": ["update"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps", "secrets", "services"],
            "verbs": _READ,
        },
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": _READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
        {
            "apiGroups": ["gateway.envoyproxy.io"],
            "resources": [
                "envoyproxies",
                "envoypatchpolicies",
                "clienttrafficpolicies",
                "backendtrafficpolicies",
                "securitypolicies",
                "envoyextensionpolicies",
                "backends",
                "httproutefilters",
            ],
            "verbs": _READ,
        },
        {
            "apiGroups": ["gateway.envoyproxy.io"],
            "resources": [
                "envoyproxies/status",
                "envoypatchpolicies/status",
                "clienttrafficpolicies/status",
                "backendtrafficpolicies/status",
                "securitypolicies/status",
                "envoyextensionpolicies/status",
                "backends/status",
            ],
            "verbs": ["update"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": [
                "gateways",
                "listenersets",
                "grpcroutes",
                "httproutes",
                "referencegrants",
                "tcproutes",
                "tlsroutes",
                "udproutes",
                "backendtlspolicies",
            ],
            "verbs": _READ,
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": [
                "gateways/status",
                "listenersets/status",
                "grpcroutes/status",
                "httproutes/status",
                "tcproutes/status",
                "tlsroutes/status",
                "udproutes/status",
                "backendtlspolicies/status",
            ],
            "verbs": ["update"],
        },
    ]


def infra_rules() -> list[dict[str, Any]]:
    """What it makes for each Gateway (the Envoy Deployment, Service, ServiceAccount and
    ConfigMap, and the autoscaler and disruption budget it deletes when none is asked for),
    in its own namespace only: the chart's ``eg.rbac.infra.basic``. Events record what it did."""
    return [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts", "services", "configmaps"],
            "verbs": _MANAGE,
        },
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": _MANAGE},
        {
            "apiGroups": ["autoscaling"],
            "resources": ["horizontalpodautoscalers"],
            "verbs": _MANAGE,
        },
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _MANAGE},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]


def rbac_objects() -> list[dict[str, Any]]:
    """The controller's and certgen's ServiceAccounts and roles."""
    rbac = "rbac.authorization.k8s.io/v1"
    sa = {"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}
    certgen_sa = {"kind": "ServiceAccount", "name": CERTGEN, "namespace": NAMESPACE}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(NAME),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(CERTGEN),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _meta(ROLE, namespaced=False),
            "rules": cluster_rules(),
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": _meta(ROLE, namespaced=False),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ROLE,
            },
            "subjects": [sa],
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(f"{NAME}-infra-manager"),
            "rules": infra_rules(),
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": _meta(f"{NAME}-infra-manager"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": f"{NAME}-infra-manager",
            },
            "subjects": [sa],
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(CERTGEN),
            # The chart's certgen Role: it writes the xDS certificates' Secrets, nothing else.
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]}
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": _meta(CERTGEN),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CERTGEN},
            "subjects": [certgen_sa],
        },
    ]


def _env() -> list[dict[str, Any]]:
    return [
        {
            "name": "ENVOY_GATEWAY_NAMESPACE",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        },
        {"name": "KUBERNETES_CLUSTER_DOMAIN", "value": config.CLUSTER_DOMAIN},
    ]


def certgen_job(image: str) -> dict[str, Any]:
    """Makes the xDS CA and certificates (Secrets ``envoy-gateway`` and ``envoy``) once."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(CERTGEN),
        "spec": {
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": 300,
            "template": {
                "metadata": {"labels": {"app": "certgen", **LABELS}},
                "spec": {
                    "serviceAccountName": CERTGEN,
                    "automountServiceAccountToken": True,
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "envoy-gateway-certgen",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["envoy-gateway", "certgen"],
                            "args": ["--disable-topology-injector"],
                            "env": _env(),
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "32Mi"},
                                "limits": {"memory": "128Mi"},
                            },
                            "securityContext": podsecurity.restricted_container(),
                        }
                    ],
                },
            },
        },
    }


def gateway_config(*, envoy_image: str, gateway_image: str) -> dict[str, Any]:
    """The EnvoyGateway configuration: Kubernetes provider, local images only, no extras."""
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyGateway",
        "gateway": {"controllerName": CONTROLLER_NAME},
        "provider": {
            "type": "Kubernetes",
            "kubernetes": {
                # Its webhook would set zone labels on Envoy pods: one node, nothing to spread.
                "proxyTopologyInjector": {"disabled": True},
                # The Envoy pods' sidecar is this binary too, from the local registry.
                "shutdownManager": {"image": gateway_image},
                # One replica, rolled out with Recreate: no lease to hold.
                "leaderElection": {"disable": True},
            },
        },
        # The default for every Envoy it runs, whatever the GatewayClass says: the local image.
        "envoyProxy": {
            "provider": {
                "type": "Kubernetes",
                "kubernetes": {"envoyDeployment": {"container": {"image": envoy_image}}},
            }
        },
        "logging": {"level": {"default": "info"}},
    }


def config_map(*, envoy_image: str, gateway_image: str) -> dict[str, Any]:
    text = yaml.safe_dump(
        gateway_config(envoy_image=envoy_image, gateway_image=gateway_image), sort_keys=False
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(CONFIG_MAP),
        "data": {"envoy-gateway.yaml": text},
    }


def deployment(image: str, config_hash: str) -> dict[str, Any]:
    """The controller; ``config_hash`` in the pod template restarts it when its config changes."""
    labels = {**SELECTOR, **LABELS}
    probe = {"httpGet": {"path": "/healthz", "port": 8081}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_meta(NAME), "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": SELECTOR},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"kfn.dev/config-hash": config_hash},
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": True,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": NAME,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["server", "--config-path=/config/envoy-gateway.yaml"],
                            "env": _env(),
                            "ports": [{"name": n, "containerPort": p} for n, p in PORTS],
                            "startupProbe": {
                                **probe,
                                "failureThreshold": 60,
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {**probe, "periodSeconds": 20},
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": 8081},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": podsecurity.restricted_container(),
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/config", "readOnly": True},
                                {"name": "certs", "mountPath": "/certs", "readOnly": True},
                                {"name": "wasm-cache", "mountPath": "/var/lib/eg/wasm"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": CONFIG_MAP}},
                        {"name": "certs", "secret": {"secretName": XDS_SECRET}},
                        {"name": "wasm-cache", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    """Where the Envoy pods reach the controller's xDS server (``envoy-gateway:18000``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_meta(NAME), "labels": {**SELECTOR, **LABELS}},
        "spec": {
            "type": "ClusterIP",
            "selector": SELECTOR,
            "ports": [{"name": n, "port": p, "targetPort": p} for n, p in PORTS],
        },
    }


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
