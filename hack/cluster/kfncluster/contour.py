"""Contour on the local cluster: the Ingress controller kfn's ``exposure.mode: ingress`` is
tried against, as kfn's own manifests.

kfn writes an ``Ingress`` per exposed route when a cluster has no Gateway API. Envoy Gateway,
this cluster's Gateway, implements no Ingress, so Contour (``github.com/projectcontour/contour``,
built from ``hack/cluster/gomod/contour``) serves them. Contour was chosen for it because it
serves a plain TLS Ingress with no controller-specific annotation (Traefik needs its own before
it serves TLS, and shares one certificate store between Ingresses and Gateway listeners),
because it builds from the module proxy with no replacement (ingress-nginx needs its own
OpenResty build, and most others are not served at all), and because its data plane is Envoy:
the same ``envoy`` image the Gateway runs.

It runs in Ingress-only mode: no Gateway API configuration (Envoy Gateway owns that), and only
the two CRDs ``contour serve`` refuses to start without (``HTTPProxy`` and
``TLSCertificateDelegation``, whose informers it always makes; read from the module zip's
``examples/contour/01-crds.yaml``). The ``ExtensionService`` informer is switched off.

**Least privilege.** Contour watches one namespace, kfn's (``--watch-namespaces``), since every
Ingress kfn writes is there; so its rights are a Role there and no ClusterRole: it reads
Ingresses, Services, EndpointSlices, Secrets and its two kinds, and writes Ingress status.
It publishes a fixed address (``--ingress-status-address``, the node address where the node
ports are) rather than copying its Envoy Service's ``status.loadBalancer``, which a NodePort
Service never has; so it needs no access to its own namespace either. No leader election (one
replica, ``Recreate``).

**xDS over mutual TLS.** Envoy gets its listeners, routes, clusters and the Ingresses' private
keys (SDS) from ``contour serve`` on port 8001. Plaintext would hand every TLS key to any pod
that connects, so the xDS server and Envoy present certificates from one CA that
``contour certgen`` makes once (a Job, Secrets ``contourcert`` and ``envoycert``), and a
NetworkPolicy also admits only the Envoy pods to that port.

Envoy runs as a Deployment (one replica) whose bootstrap ``contour bootstrap`` writes in an init
container from the contour image; it listens on 8080/8443 in its pod (no capability), published
on the node ports of :mod:`kfncluster.ingress`. Contour's shutdown-manager sidecar (which drains
connections before Envoy stops) is left out: nothing here depends on a graceful drain.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from kfncluster import ingress, podsecurity

NAMESPACE = ingress.NAMESPACE
NAME = "contour"
ENVOY = "envoy"
CERTGEN = "contour-certgen"
#: The Secrets certgen writes (``--secrets-format=compact``: ``tls.crt``, ``tls.key``,
#: ``ca.crt``); Envoy's bootstrap checks the server's name is ``contour``, the Service's.
CONTOUR_SECRET = "contourcert"  # noqa: S105 - a Secret's name
ENVOY_SECRET = "envoycert"  # noqa: S105 - a Secret's name
XDS_PORT = 8001
HEALTH_PORT = 8000
ENVOY_STATS_PORT = 8002
ROLE = "kfn:contour"
LABELS = {"app.kubernetes.io/part-of": "kfn-ingress"}
CONTOUR_SELECTOR = {"app.kubernetes.io/name": "contour"}
ENVOY_SELECTOR = {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "ingress-proxy"}
#: Where the module zip keeps Contour's CRDs, all in one file.
CRD_FILE = "examples/contour/01-crds.yaml"
#: The CRDs ``contour serve`` cannot start without (it always informs on them).
CRDS = ("httpproxies.projectcontour.io", "tlscertificatedelegations.projectcontour.io")

_READ = ["get", "list", "watch"]


def crds(module_dir: pathlib.Path) -> list[dict[str, Any]]:
    """Contour's CRDs that Ingress-only mode needs, from its module's source."""
    path = module_dir / CRD_FILE
    found = [d for d in yaml.safe_load_all(path.read_text()) if d]
    wanted = [d for d in found if d.get("metadata", {}).get("name") in CRDS]
    if len(wanted) != len(CRDS):
        raise RuntimeError(f"{path} lacks some of {', '.join(CRDS)}")
    return wanted


def _meta(name: str, namespace: str | None = NAMESPACE, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**LABELS, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def watched_rules() -> list[dict[str, Any]]:
    """What ``contour serve`` uses in the namespace it watches (Ingress-only mode): its
    ClusterRole in ``examples/contour/02-role-contour.yaml`` less Gateway API, ConfigMaps and
    Namespaces (Gateway API's), ExtensionServices (switched off), the status of its own kinds
    (none exist) and the lease and events of leader election (off)."""
    return [
        {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": _READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _READ},
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["ingresses/status"],
            "verbs": ["update"],
        },
        {
            "apiGroups": ["projectcontour.io"],
            "resources": ["httpproxies", "tlscertificatedelegations"],
            "verbs": _READ,
        },
    ]


def _binding(name: str, namespace: str, role_kind: str, role: str, sa: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}],
    }


def _service_account(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name),
        "automountServiceAccountToken": False,
    }


def rbac_objects(watched: str = ingress.WATCHED_NAMESPACE) -> list[dict[str, Any]]:
    """ServiceAccounts, and the Roles of Contour (in ``watched``) and certgen (its Secrets)."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        _service_account(NAME),
        _service_account(ENVOY),
        _service_account(CERTGEN),
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(ROLE, watched),
            "rules": watched_rules(),
        },
        _binding(ROLE, watched, "Role", ROLE, NAME),
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(CERTGEN),
            # Upstream's certgen Role: it writes the two xDS Secrets, nothing else.
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update"]}],
        },
        _binding(CERTGEN, NAMESPACE, "Role", CERTGEN, CERTGEN),
    ]


def ingress_class() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": _meta(ingress.CLASS_NAME, None),
        "spec": {"controller": ingress.CONTROLLER},
    }


_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}

_NAMESPACE_ENV = {
    "name": "CONTOUR_NAMESPACE",
    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
}


def certgen_job(image: str) -> dict[str, Any]:
    """Makes the xDS CA and the two certificates' Secrets once."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(CERTGEN),
        "spec": {
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": 300,
            "template": {
                "metadata": {"labels": {**LABELS, "app.kubernetes.io/name": CERTGEN}},
                "spec": {
                    "serviceAccountName": CERTGEN,
                    "automountServiceAccountToken": True,
                    "restartPolicy": "Never",
                    "securityContext": _POD_SECURITY,
                    "containers": [
                        {
                            "name": "certgen",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["contour", "certgen"],
                            "args": [
                                "--kube",
                                "--incluster",
                                "--overwrite",
                                "--secrets-format=compact",
                                f"--namespace={NAMESPACE}",
                            ],
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


def serve_args(watched: str = ingress.WATCHED_NAMESPACE) -> list[str]:
    """``contour serve``: in the cluster, xDS over TLS, Ingress only, one namespace."""
    return [
        "serve",
        "--incluster",
        "--xds-address=0.0.0.0",
        f"--xds-port={XDS_PORT}",
        "--contour-cafile=/certs/ca.crt",
        "--contour-cert-file=/certs/tls.crt",
        "--contour-key-file=/certs/tls.key",
        "--disable-leader-election",
        "--disable-feature=extensionservices",
        f"--watch-namespaces={watched}",
        f"--ingress-class-name={ingress.CLASS_NAME}",
        f"--ingress-status-address={ingress.HOST_ADDRESS}",
        f"--envoy-service-http-port={ingress.ENVOY_HTTP_PORT}",
        f"--envoy-service-https-port={ingress.ENVOY_HTTPS_PORT}",
        "--health-address=0.0.0.0",
        f"--health-port={HEALTH_PORT}",
        "--http-address=0.0.0.0",
        f"--http-port={HEALTH_PORT}",
        "--debug-http-address=127.0.0.1",
    ]


def deployment(image: str) -> dict[str, Any]:
    """``contour serve``, one replica."""
    labels = {**LABELS, **CONTOUR_SELECTOR}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, **CONTOUR_SELECTOR),
        "spec": {
            "replicas": 1,
            # No leader election: never two at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": CONTOUR_SELECTOR},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": True,
                    "securityContext": _POD_SECURITY,
                    "containers": [
                        {
                            "name": NAME,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["contour"],
                            "args": serve_args(),
                            "env": [_NAMESPACE_ENV],
                            "ports": [
                                {"name": "xds", "containerPort": XDS_PORT},
                                {"name": "health", "containerPort": HEALTH_PORT},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": HEALTH_PORT},
                                "periodSeconds": 20,
                            },
                            "readinessProbe": {
                                "tcpSocket": {"port": XDS_PORT},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "20m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": podsecurity.restricted_container(),
                            "volumeMounts": [
                                {"name": "certs", "mountPath": "/certs", "readOnly": True}
                            ],
                        }
                    ],
                    "volumes": [{"name": "certs", "secret": {"secretName": CONTOUR_SECRET}}],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    """Where Envoy reaches the xDS server: ``contour:8001``, the name its certificate bears."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME, **CONTOUR_SELECTOR),
        "spec": {
            "type": "ClusterIP",
            "selector": CONTOUR_SELECTOR,
            "ports": [{"name": "xds", "port": XDS_PORT, "targetPort": XDS_PORT}],
        },
    }


def xds_policy() -> dict[str, Any]:
    """Only the Envoy pods may connect to Contour, and only to xDS (the kubelet's probes come
    from the node address, which the cluster always admits)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(f"{NAME}-xds"),
        "spec": {
            "podSelector": {"matchLabels": CONTOUR_SELECTOR},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": ENVOY_SELECTOR}}],
                    "ports": [{"protocol": "TCP", "port": XDS_PORT}],
                }
            ],
        },
    }


#: Envoy's command line: the bootstrap the init container wrote, named after its pod.
ENVOY_ARGS = [
    "-c", "/config/envoy.json",
    "--service-cluster", "$(CONTOUR_NAMESPACE)",
    "--service-node", "$(ENVOY_POD_NAME)",
    "--log-level", "info",
    "--disable-hot-restart",
    "--concurrency", "2",
]  # fmt: skip


def envoy_deployment(contour_image: str, envoy_image: str) -> dict[str, Any]:
    """Envoy, bootstrapped by ``contour bootstrap`` to fetch everything from ``contour:8001``
    over mutual TLS."""
    labels = {**LABELS, **ingress.ENVOY_POD_LABELS}
    pod_name_env = {
        "name": "ENVOY_POD_NAME",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ENVOY, **ENVOY_SELECTOR),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": ENVOY_SELECTOR},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": ENVOY,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": _POD_SECURITY,
                    "initContainers": [
                        {
                            "name": "bootstrap",
                            "image": contour_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["contour"],
                            "args": [
                                "bootstrap",
                                "/config/envoy.json",
                                f"--xds-address={NAME}",
                                f"--xds-port={XDS_PORT}",
                                "--xds-resource-version=v3",
                                "--resources-dir=/config/resources",
                                "--envoy-cafile=/certs/ca.crt",
                                "--envoy-cert-file=/certs/tls.crt",
                                "--envoy-key-file=/certs/tls.key",
                                "--admin-address=/admin/admin.sock",
                            ],
                            "env": [_NAMESPACE_ENV],
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "16Mi"},
                                "limits": {"memory": "64Mi"},
                            },
                            "securityContext": podsecurity.restricted_container(),
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/config"},
                                {"name": "certs", "mountPath": "/certs", "readOnly": True},
                            ],
                        }
                    ],
                    "containers": [
                        {
                            "name": ENVOY,
                            "image": envoy_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["envoy"],
                            "args": ENVOY_ARGS,
                            "env": [_NAMESPACE_ENV, pod_name_env],
                            "ports": [
                                {"name": "http", "containerPort": ingress.ENVOY_HTTP_PORT},
                                {"name": "https", "containerPort": ingress.ENVOY_HTTPS_PORT},
                                {"name": "stats", "containerPort": ENVOY_STATS_PORT},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": ENVOY_STATS_PORT},
                                "periodSeconds": 4,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": podsecurity.restricted_container(),
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/config", "readOnly": True},
                                {"name": "certs", "mountPath": "/certs", "readOnly": True},
                                {"name": "admin", "mountPath": "/admin"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "emptyDir": {}},
                        {"name": "admin", "emptyDir": {}},
                        {"name": "certs", "secret": {"secretName": ENVOY_SECRET}},
                    ],
                },
            },
        },
    }


def envoy_service() -> dict[str, Any]:
    """Envoy's NodePort Service on the fixed node ports."""
    ports = [
        ("http", 80, ingress.ENVOY_HTTP_PORT, ingress.HOST_HTTP_PORT),
        ("https", 443, ingress.ENVOY_HTTPS_PORT, ingress.HOST_HTTPS_PORT),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ENVOY, **ENVOY_SELECTOR),
        "spec": {
            "type": "NodePort",
            "selector": ENVOY_SELECTOR,
            "ports": [
                {"name": n, "port": p, "targetPort": t, "nodePort": node, "protocol": "TCP"}
                for n, p, t, node in ports
            ],
        },
    }


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NAMESPACE, None)}
