"""Monitoring on the local cluster: the Prometheus Operator and one Prometheus, in
``kfn-monitoring``.

Both are built here from their Go modules (``hack/cluster/gomod/prometheus`` and
``hack/cluster/gomod/prometheus-operator``) into static binary images in the local registry.
The operator reconciles ServiceMonitors, PodMonitors and PrometheusRules into the
configuration of Prometheus ``kfn``, which selects them in every namespace: kfn's chart creates
its ServiceMonitors when the cluster serves ``monitoring.coreos.com/v1``, and a test or a
developer can add their own anywhere.

Prometheus keeps two hours of data in an emptyDir, sends nothing anywhere (no Alertmanager, no
remote write) and discovers its targets through the Kubernetes API only: the binary is built
with no other service discovery, and the pod's egress is held to the pod network like every
pod's (:mod:`kfncluster.network`). Alerts, if a PrometheusRule defines any, are read from its
``/api/v1/alerts``.

The operator runs without its admission webhook (nothing here needs the validation of rules
at admission: Prometheus reports a rule it cannot load) and without the kubelet endpoints it
can keep for node metrics.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import yaml

from kfncluster import build, config, images, procs, serverside

NAMESPACE = "kfn-monitoring"
OPERATOR = "prometheus-operator"
OPERATOR_ROLE = "kfn:prometheus-operator"
#: The Prometheus object; its pods are ``prometheus-kfn-0`` and its headless Service, made by
#: the operator, ``prometheus-operated``.
PROMETHEUS = "kfn"
PROMETHEUS_SA = "prometheus"
PROMETHEUS_ROLE = "kfn:prometheus"
PROMETHEUS_SERVICE = "prometheus-operated"
PROMETHEUS_PORT = 9090
#: The labels the operator gives Prometheus's pods: kfn's chart admits pods with them in this
#: namespace to its metrics ports (hack/cluster/values-local.yaml, networkPolicy.metricsFrom).
PROMETHEUS_POD_LABELS = {
    "app.kubernetes.io/name": "prometheus",
    "app.kubernetes.io/instance": PROMETHEUS,
}
RETENTION = "2h"
LABELS = {
    "app.kubernetes.io/name": "prometheus-operator",
    "app.kubernetes.io/part-of": "kfn-monitoring",
}
#: Where the operator's module zip keeps its CRDs and the operator's ClusterRole.
CRD_DIR = "example/prometheus-operator-crd"
OPERATOR_ROLE_FILE = "example/rbac/prometheus-operator/prometheus-operator-cluster-role.yaml"

_READ = ["get", "list", "watch"]
_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": images.NONROOT,
    "runAsGroup": images.NONROOT,
    "seccompProfile": {"type": "RuntimeDefault"},
}


Kubectl = serverside.Kubectl


# --- objects ---------------------------------------------------------------------------------


def crd_files(module_dir: pathlib.Path) -> list[pathlib.Path]:
    """The operator's CRDs (group ``monitoring.coreos.com``) in its module's source."""
    files = sorted((module_dir / CRD_DIR).glob("monitoring.coreos.com_*.yaml"))
    if not files:
        raise RuntimeError(f"no Prometheus Operator CRDs under {module_dir / CRD_DIR}")
    return files


def operator_rules(module_dir: pathlib.Path) -> list[dict[str, Any]]:
    """The operator's ClusterRole rules, as its release publishes them for this version."""
    role = yaml.safe_load((module_dir / OPERATOR_ROLE_FILE).read_text())
    rules = role.get("rules") if isinstance(role, dict) else None
    if not rules:
        raise RuntimeError(f"no rules in {module_dir / OPERATOR_ROLE_FILE}")
    return list(rules)


def prometheus_rules() -> list[dict[str, Any]]:
    """What Prometheus reads to find its targets: Services, their endpoints and Pods (read
    everywhere, since the monitors select in every namespace) and the operator-made ConfigMaps
    it mounts. No nodes, no Ingresses: nothing here scrapes them."""
    return [
        {"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": _READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    ]


def _binding(name: str, role: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": LABELS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
    }


def objects(
    operator_image: str, reloader_image: str, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The namespace, the operator (ServiceAccount, RBAC, Deployment) and Prometheus's RBAC."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR, **meta},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": OPERATOR_ROLE, "labels": LABELS},
            "rules": rules,
        },
        _binding(OPERATOR_ROLE, OPERATOR_ROLE, OPERATOR),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": PROMETHEUS_SA, **meta},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": PROMETHEUS_ROLE, "labels": LABELS},
            "rules": prometheus_rules(),
        },
        _binding(PROMETHEUS_ROLE, PROMETHEUS_ROLE, PROMETHEUS_SA),
        operator_deployment(operator_image, reloader_image),
    ]


def operator_deployment(image: str, reloader_image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": OPERATOR, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "replicas": 1,
            # No leader election: never two at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": OPERATOR,
                    "automountServiceAccountToken": True,
                    "securityContext": _POD_SECURITY,
                    "containers": [
                        {
                            "name": "operator",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": [
                                f"--prometheus-config-reloader={reloader_image}",
                                # Only kfn-monitoring's Prometheus objects; the monitors it
                                # reads are selected by the Prometheus object itself.
                                f"--prometheus-instance-namespaces={NAMESPACE}",
                                f"--alertmanager-instance-namespaces={NAMESPACE}",
                                f"--thanos-ruler-instance-namespaces={NAMESPACE}",
                                "--log-format=logfmt",
                            ],
                            "env": [{"name": "GOGC", "value": "30"}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": {
                                "requests": {"cpu": "20m", "memory": "48Mi"},
                                "limits": {"memory": "200Mi"},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "securityContext": _SECURITY,
                        }
                    ],
                },
            },
        },
    }


def prometheus(image: str) -> dict[str, Any]:
    """Prometheus ``kfn``: every ServiceMonitor, PodMonitor and PrometheusRule in the cluster,
    two hours kept, small."""
    everything: dict[str, Any] = {}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": PROMETHEUS, "namespace": NAMESPACE},
        "spec": {
            "version": config.PROMETHEUS_VERSION,
            "image": image,
            "replicas": 1,
            "serviceAccountName": PROMETHEUS_SA,
            "automountServiceAccountToken": True,
            "serviceMonitorSelector": everything,
            "serviceMonitorNamespaceSelector": everything,
            "podMonitorSelector": everything,
            "podMonitorNamespaceSelector": everything,
            "ruleSelector": everything,
            "ruleNamespaceSelector": everything,
            "scrapeInterval": "15s",
            "evaluationInterval": "15s",
            "retention": RETENTION,
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"memory": "512Mi"},
            },
            "securityContext": {**_POD_SECURITY, "fsGroup": images.NONROOT},
        },
    }


# --- install ---------------------------------------------------------------------------------


def _binary(
    paths: config.Paths, name: str, output: str, note: Callable[[str], None]
) -> pathlib.Path:
    component = build.component(name)
    if not build.is_built(paths, component):
        print(f"        building {component.describe()} ({component.expect})", flush=True)
        t0 = time.monotonic()
        build.build(paths, component, paths.logs / f"build-{name}.log")
        note(f"{name} built in {time.monotonic() - t0:.0f}s")
    return build.output_dir(paths, component) / output


def _pushed(paths: config.Paths, image: Any, ref: str) -> str:
    """Pushes ``image`` as ``ref``; returns ``repository@digest``, the name pods run."""
    return f"{ref.rsplit(':', 1)[0]}@{images.push(image, ref, paths)}"


def make_images(paths: config.Paths, note: Callable[[str], None]) -> dict[str, str]:
    """Prometheus, the operator and its config reloader, built and pushed."""
    prom = _binary(paths, "prometheus", "prometheus", note)
    op = _binary(paths, "prometheus-operator", "operator", note)
    reloader = _binary(paths, "prometheus-operator", "prometheus-config-reloader", note)
    return {
        config.PROMETHEUS_IMAGE: _pushed(
            paths, images.prometheus(paths, prom), config.PROMETHEUS_IMAGE
        ),
        config.PROMETHEUS_OPERATOR_IMAGE: _pushed(
            paths, images.prometheus_operator(paths, op), config.PROMETHEUS_OPERATOR_IMAGE
        ),
        config.PROMETHEUS_CONFIG_RELOADER_IMAGE: _pushed(
            paths,
            images.prometheus_config_reloader(paths, reloader),
            config.PROMETHEUS_CONFIG_RELOADER_IMAGE,
        ),
    }


def module_dir() -> pathlib.Path:
    source = build.module_source(
        build.component("prometheus-operator"),
        "github.com/prometheus-operator/prometheus-operator",
    )
    if f"@{config.PROMETHEUS_OPERATOR_VERSION}" not in source.name:
        raise RuntimeError(
            f"the prometheus-operator wrapper pins {source.name}, "
            f"not {config.PROMETHEUS_OPERATOR_VERSION}"
        )
    return source


def _fail(what: str, detail: str) -> procs.ComponentError:
    return procs.ComponentError(what, None, detail)


_OPERATOR_LOGS = f"`kubectl -n {NAMESPACE} logs deploy/{OPERATOR}`"
_PROMETHEUS_LOGS = (
    f"`kubectl -n {NAMESPACE} logs prometheus-{PROMETHEUS}-0 -c prometheus` and {_OPERATOR_LOGS}"
)


def install(paths: config.Paths, kubectl: Kubectl, note: Callable[[str], None]) -> str:
    """Builds, pushes and applies everything, waits for Prometheus to be Available; returns a
    line saying how to reach it."""
    refs = make_images(paths, note)
    source = module_dir()
    crds = crd_files(source)
    serverside.apply_files(kubectl, crds)
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *(a for f in crds for a in ("-f", str(f))))  # fmt: skip
    # kubectl's discovery cache learns the new kinds when it lists the API's resources.
    kubectl("api-resources", "-o", "name")
    note(f"{len(crds)} CRDs")
    serverside.apply(
        kubectl,
        objects(
            refs[config.PROMETHEUS_OPERATOR_IMAGE],
            refs[config.PROMETHEUS_CONFIG_RELOADER_IMAGE],
            operator_rules(source),
        ),
    )
    result = kubectl(
        "-n", NAMESPACE, "rollout", "status", f"deployment/{OPERATOR}", "--timeout=180s",
        check=False,
    )  # fmt: skip
    if "successfully rolled out" not in result:
        raise _fail(
            "prometheus-operator",
            f"did not become ready in 180s; read {_OPERATOR_LOGS} and "
            f"`kubectl -n {NAMESPACE} describe pods`",
        )
    serverside.apply(kubectl, [prometheus(refs[config.PROMETHEUS_IMAGE])])
    result = kubectl(
        "-n", NAMESPACE, "wait", "--for=condition=Available", "--timeout=240s",
        f"prometheus/{PROMETHEUS}", check=False,
    )  # fmt: skip
    if "condition met" not in result:
        raise _fail("prometheus", f"{NAMESPACE}/prometheus/{PROMETHEUS} not Available in 240s; "
                    f"read {_PROMETHEUS_LOGS}")  # fmt: skip
    note(f"Prometheus {NAMESPACE}/{PROMETHEUS} Available")
    return (
        f"kubectl -n {NAMESPACE} port-forward svc/{PROMETHEUS_SERVICE} "
        f"{PROMETHEUS_PORT}:{PROMETHEUS_PORT}, then http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/targets"
    )
