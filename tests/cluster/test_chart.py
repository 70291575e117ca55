"""The kfn Helm chart renders what a cluster admin expects, and refuses what it must not accept.

Most tests render the chart with ``helm template`` and assert on the objects, the way
cert-manager's chart tests do. Two ask the cluster's API server without storing anything:
a server-side dry run proves the objects are valid for the running Kubernetes (and that the
operator's pod passes the restricted Pod Security Standard), and ``helm install
--dry-run=server`` renders NOTES.txt, which ``helm template`` leaves out. Nothing is installed.
"""

from __future__ import annotations

import base64
import json
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kfncluster import config
from tests.cluster import kubeutil

pytestmark = pytest.mark.cluster

CHART = kubeutil.REPO / "charts" / "kfn"
HELM = config.Paths().bin / "helm"
NAMESPACE = "kfn-system"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

# A Helm release name may be 53 characters long; this one is, and it does not contain "kfn",
# so the base name becomes "<release>-kfn" and the operator's "<base>-operator" (70 characters)
# must be cut.
LONG_RELEASE = "payments-platform-production-europe-west-serverless-x"

# What the operator may do, as (API group, resource, verb); the contract of operator-rbac.yaml.
OPERATOR_RULES = {
    *((g, r, v) for g, r in [("kfn.dev", "functions"), ("kfn.dev", "triggers")]
      for v in ["get", "list", "watch", "patch", "update"]),
    *((g, r, v) for g, r in [("kfn.dev", "functions/status"), ("kfn.dev", "triggers/status")]
      for v in ["get", "patch", "update"]),
    *(("apps", "deployments", v)
      for v in ["get", "list", "watch", "create", "patch", "update", "delete"]),
    *(("apps", "deployments/scale", v) for v in ["get", "patch", "update"]),
    *(("", r, v) for r in ["services", "serviceaccounts"]
      for v in ["get", "list", "watch", "create", "patch", "update", "delete"]),
    *(("", r, v) for r in ["configmaps", "pods"] for v in ["get", "list", "watch"]),
    # Builds: the source ConfigMap and the Job of each build.
    *(("", "configmaps", v) for v in ["create", "patch", "delete"]),
    *(("batch", "jobs", v) for v in ["get", "list", "watch", "create", "patch", "delete"]),
    *((g, "events", v) for g in ["", "events.k8s.io"] for v in ["create", "patch"]),
    # Which pull Secret the kubelet could not find, from its Events.
    *(("", "events", v) for v in ["get", "list", "watch"]),
    # Each function namespace's registry credential (read and changed by name only).
    *(("", "secrets", v) for v in ["create", "get", "update", "patch", "delete"]),
    *(("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ["get", "list", "watch"]),
    *(("", "namespaces", v) for v in ["get", "list", "watch"]),
}  # fmt: skip


#: What every install must say (the chart refuses without it): where kfn's images come from,
#: where builds push, and the robot key of the default (managed) credentials.
REQUIRED: dict[str, Any] = {
    "image": {"registry": "registry.example.com"},
    "registry": {
        "host": "registry.example.com",
        "credentials": {"managed": {"robotKeySecret": {"name": "kfn-registry-robot-key"}}},
    },
}


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def helm(cluster: pathlib.Path) -> pathlib.Path:
    """The helm binary the cluster tool built (the ``cluster`` fixture makes sure it exists)."""
    assert HELM.is_file(), f"{HELM} is missing; `make cluster` builds it"
    return HELM


def _run_helm(
    helm: pathlib.Path, *args: str, values: dict[str, Any] | None = None, bare: bool = False
) -> subprocess.CompletedProcess[str]:
    """Runs helm; ``values`` go in as a values file so nested maps and lists keep their types.

    The values every install needs (:data:`REQUIRED`) are merged under them unless ``bare``.
    """
    if not bare:
        values = _merged(REQUIRED, values or {})
    extra = ["--values", "-"] if values is not None else []
    return subprocess.run(
        [str(helm), *args, *extra],
        input=json.dumps(values) if values is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _render(
    helm: pathlib.Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "kfn",
    set_: tuple[str, ...] = (),
    tests: bool = False,
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders, for the Kubernetes version the cluster runs
    (the ``helm test`` hook only with ``tests``)."""
    sets = [arg for s in set_ for arg in ("--set", s)]
    if not tests:
        sets.append("--skip-tests")
    result = _run_helm(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        config.KUBERNETES_VERSION,
        *sets,
        values=values,
    )
    assert result.returncode == 0, f"helm template failed: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _render_error(helm: pathlib.Path, *set_: str) -> str:
    """The message of a ``helm template`` that must fail."""
    sets = [arg for s in set_ for arg in ("--set", s)]
    result = _run_helm(
        helm, "template", "kfn", str(CHART), "--kube-version", config.KUBERNETES_VERSION, *sets
    )
    assert result.returncode != 0, f"helm template accepted {set_}"
    return result.stderr


COMPONENT = "app.kubernetes.io/component"
COMPONENTS = ("operator", "activator", "autoscaler", "cron", "stream", "bucket")


def _of(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    """The objects of one component (operator, activator, autoscaler)."""
    return [o for o in objects if o["metadata"]["labels"][COMPONENT] == component]


def _one(objects: list[dict[str, Any]], kind: str, component: str = "operator") -> dict[str, Any]:
    found = [o for o in _of(objects, component) if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def _operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def _granted(cluster_role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in cluster_role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# --- names and labels -------------------------------------------------------------------------


def test_a_release_named_kfn_names_the_operator_kfn_operator(helm: pathlib.Path) -> None:
    objects = _of(_render(helm), "operator")
    assert _kinds(objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ServiceAccount",
    ]
    assert {o["metadata"]["name"] for o in objects} == {"kfn-operator"}


def test_every_component_is_named_after_the_release_and_labelled_with_its_component(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm)
    assert {o["metadata"]["labels"][COMPONENT] for o in objects} == set(COMPONENTS)
    for component in COMPONENTS:
        assert {o["metadata"]["name"] for o in _of(objects, component)} == {f"kfn-{component}"}
    assert _kinds(_of(objects, "activator")) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert _kinds(_of(objects, "autoscaler")) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]


def test_names_and_labels_are_cut_to_63_characters_for_the_longest_release_name(
    helm: pathlib.Path,
) -> None:
    assert len(LONG_RELEASE) == 53
    objects = _render(helm, release=LONG_RELEASE)
    for obj in objects:
        name = obj["metadata"]["name"]
        suffix = "-" + obj["metadata"]["labels"][COMPONENT]
        assert len(name) <= 63, name
        assert name.endswith(suffix), name
        assert name.startswith(LONG_RELEASE[:40]), name
        assert not name.removesuffix(suffix).endswith("-"), name
        for key, value in obj["metadata"]["labels"].items():
            assert len(value) <= 63, (key, value)
    assert len({o["metadata"]["name"] for o in objects}) == len(COMPONENTS)


def test_a_long_full_name_override_is_cut_to_63_characters(helm: pathlib.Path) -> None:
    objects = _render(helm, {"fullnameOverride": "x" * 70})
    assert {o["metadata"]["name"] for o in objects} == {
        "x" * 54 + "-operator",
        "x" * 53 + "-activator",
        "x" * 52 + "-autoscaler",
        "x" * 58 + "-cron",
        "x" * 56 + "-stream",
        "x" * 56 + "-bucket",
    }


def test_every_object_carries_the_recommended_labels(helm: pathlib.Path) -> None:
    objects = _render(helm, release="fns")
    expected = {
        "app.kubernetes.io/name": "kfn",
        "app.kubernetes.io/instance": "fns",
        "app.kubernetes.io/version": CHART_META["appVersion"],
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"kfn-{CHART_META['version']}",
    }
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels | expected == labels, (obj["kind"], labels)
        assert labels[COMPONENT] in COMPONENTS


def test_the_operator_selector_leaves_out_the_version_so_upgrades_keep_it(
    helm: pathlib.Path,
) -> None:
    deployment = _one(_render(helm), "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "kfn",
        "app.kubernetes.io/instance": "kfn",
        "app.kubernetes.io/component": "operator",
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels | selector == pod_labels


def test_pod_labels_and_annotations_are_added_but_cannot_replace_the_selector_labels(
    helm: pathlib.Path,
) -> None:
    objects = _render(
        helm,
        {
            "operator": {
                "podLabels": {"team": "payments", "app.kubernetes.io/component": "mine"},
                "podAnnotations": {"example.com/scrape": "true"},
            }
        },
    )
    template = _one(objects, "Deployment")["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "payments"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert template["metadata"]["annotations"] == {"example.com/scrape": "true"}


# --- the operator's Deployment ----------------------------------------------------------------


def test_the_operator_runs_one_replica_replaced_rather_than_rolled(helm: pathlib.Path) -> None:
    spec = _one(_render(helm), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_the_builder_values_reach_the_operator_and_builds_run_on_kfns_own_image(
    helm: pathlib.Path,
) -> None:
    values: dict[str, Any] = {
        "image": {"digest": "sha256:" + "a" * 64},
        "registry": {"host": "builds.example.com:5443"},
        "builder": {
            "runtimeImages": {
                "python": "registry.example.com/kfn/runtime-python@sha256:" + "b" * 64,
                "nodejs": "",
            },
            "pypiIndexUrl": "https://pypi.mirror.example.com/simple/",
            "npmRegistry": "https://npm.mirror.example.com/",
            "maxConcurrent": 4,
            "deadlineSeconds": 600,
            "scheduling": {"nodeSelector": {"pool": "builds"}},
        },
    }
    env = {e["name"]: e.get("value") for e in _operator_container(_render(helm, values))["env"]}
    image = f"registry.example.com/{DEFAULTS['image']['repository']}@sha256:{'a' * 64}"
    assert env["KFN_BUILDER_IMAGE"] == image
    assert env["KFN_IMAGE_REGISTRY"] == "builds.example.com:5443"
    assert env["KFN_RUNTIME_IMAGE_PYTHON"] == values["builder"]["runtimeImages"]["python"]
    # An empty runtime image is kfn's own of this release.
    version = CHART_META["appVersion"]
    assert env["KFN_RUNTIME_IMAGE_NODEJS"] == f"registry.example.com/kfn/runtime-nodejs:{version}"
    assert env["KFN_PYPI_INDEX_URL"] == "https://pypi.mirror.example.com/simple/"
    assert env["KFN_NPM_REGISTRY"] == "https://npm.mirror.example.com/"
    assert env["KFN_MAX_CONCURRENT_BUILDS"] == "4"
    assert env["KFN_BUILD_DEADLINE_SECONDS"] == "600"
    assert json.loads(env["KFN_BUILD_SCHEDULING"]) == {"nodeSelector": {"pool": "builds"}}


def test_the_chart_names_no_address_of_the_development_cluster(helm: pathlib.Path) -> None:
    text = (CHART / "values.yaml").read_text()
    assert "10.244." not in text
    assert "10.96." not in text
    rendered = json.dumps(_render(helm))
    assert "10.244." not in rendered


def test_an_install_without_the_image_registry_or_the_registry_host_says_what_to_set(
    helm: pathlib.Path,
) -> None:
    result = _run_helm(helm, "template", "kfn", str(CHART), "--kube-version",
                       config.KUBERNETES_VERSION, bare=True)  # fmt: skip
    assert result.returncode != 0
    assert "image.registry is empty" in result.stderr
    values = {"image": {"registry": "r.example"}}
    result = _run_helm(helm, "template", "kfn", str(CHART), "--kube-version",
                       config.KUBERNETES_VERSION, values=values, bare=True)  # fmt: skip
    assert "registry.host is empty" in result.stderr


def test_the_registry_settings_reach_the_operator_with_the_robot_key_from_its_secret(
    helm: pathlib.Path,
) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    values = {"registry": {"caBundle": ca, "credentials": {"secretName": "pushes"}}}
    env = {e["name"]: e for e in _operator_container(_render(helm, values))["env"]}
    assert env["KFN_REGISTRY_CA_PEM"]["value"] == ca
    assert env["KFN_REGISTRY_PLAIN_HTTP"]["value"] == "false"
    assert env["KFN_REGISTRY_CREDENTIALS"]["value"] == "managed"
    assert env["KFN_REGISTRY_SECRET_NAME"]["value"] == "pushes"
    assert env["KFN_REGISTRY_ROBOT_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "kfn-registry-robot-key", "key": "robot-key"}
    }
    role = _one(_render(helm, values), "ClusterRole")
    named = [r for r in role["rules"] if "secrets" in r["resources"] and r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["pushes"],
            "verbs": ["get", "update", "patch", "delete"],
        }
    ]


def test_shared_credentials_are_read_from_one_secret_of_the_release_namespace_and_warned_of(
    helm: pathlib.Path,
) -> None:
    values = {"registry": {"credentials": {"mode": "shared", "shared": {"secretName": "one"}}}}
    objects = _render(helm, values)
    env = {e["name"]: e.get("value") for e in _operator_container(objects)["env"]}
    assert env["KFN_REGISTRY_SHARED_SECRET"] == "one"
    assert "KFN_REGISTRY_ROBOT_KEY" not in env
    role = _one(objects, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["one"],
         "verbs": ["get", "watch"]}
    ]  # fmt: skip
    assert "every namespace with a Function gets a copy" in _notes(helm, values)


def test_without_credentials_the_operator_gets_no_secret_rights(helm: pathlib.Path) -> None:
    objects = _render(helm, {"registry": {"credentials": {"mode": "none"}}})
    assert not any("secrets" in (g, r)[1] for g, r, _ in _granted(_one(objects, "ClusterRole")))


def test_function_pod_defaults_reach_the_operator(helm: pathlib.Path) -> None:
    functions = {
        "imagePullSecrets": ["cluster-pull"],
        "scheduling": {
            "tolerations": [{"key": "fn", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "functions",
        },
    }
    env = {
        e["name"]: e.get("value")
        for e in _operator_container(_render(helm, {"functions": functions}))["env"]
    }
    assert json.loads(env["KFN_IMAGE_PULL_SECRETS"]) == ["cluster-pull"]
    assert json.loads(env["KFN_FUNCTION_SCHEDULING"]) == functions["scheduling"]


def test_status_urls_and_every_cross_component_url_come_from_the_release_and_cluster_domain(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm, {"clusterDomain": "corp.internal"}, release="faas")
    env = {e["name"]: e.get("value") for e in _operator_container(objects)["env"]}
    assert env["KFN_ACTIVATOR_URL"] == "http://faas-kfn-activator.kfn-system.svc.corp.internal"
    args = _container(objects, "activator")["args"]
    assert (
        "--autoscaler-url=http://faas-kfn-autoscaler.kfn-system.svc.corp.internal:8090/stats"
        in args
    )


def test_a_package_index_that_is_not_a_url_is_refused(helm: pathlib.Path) -> None:
    message = _render_error(helm, "builder.pypiIndexUrl=pypi.org/simple")
    assert "/builder/pypiIndexUrl" in message


def test_the_operator_container_runs_the_operator_module_with_health_probes(
    helm: pathlib.Path,
) -> None:
    container = _operator_container(_render(helm))
    assert container["command"] == ["python3", "-m", "kfn.operator"]
    assert container["env"][0] == {"name": "KFN_LOG_LEVEL", "value": "INFO"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_the_log_level_reaches_the_operator(helm: pathlib.Path) -> None:
    container = _operator_container(_render(helm, {"operator": {"logLevel": "DEBUG"}}))
    assert {"name": "KFN_LOG_LEVEL", "value": "DEBUG"} in container["env"]


def test_the_operator_pod_meets_the_restricted_pod_security_standard(
    helm: pathlib.Path,
) -> None:
    pod = _one(_render(helm), "Deployment")["spec"]["template"]["spec"]
    # No user: the image's numeric non-root one, or any a cluster such as OpenShift assigns.
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "runAsUser" not in context
    # The read-only root needs somewhere to write: an emptyDir at /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    (volume,) = pod["volumes"]
    assert volume["name"] == "tmp"
    assert "emptyDir" in volume
    assert pod["automountServiceAccountToken"] is True


def test_scheduling_settings_are_passed_to_the_pod_unchanged(helm: pathlib.Path) -> None:
    scheduling = {
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "kfn", "effect": "NoSchedule"}
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app": "other"}},
                        },
                    }
                ]
            }
        },
    }
    pod = _one(_render(helm, {"operator": scheduling}), "Deployment")["spec"]["template"]["spec"]
    assert {key: pod[key] for key in scheduling} == scheduling


def test_the_pod_sets_no_scheduling_settings_by_default(helm: pathlib.Path) -> None:
    pod = _one(_render(helm), "Deployment")["spec"]["template"]["spec"]
    assert not {"priorityClassName", "nodeSelector", "tolerations", "affinity"} & pod.keys()


# --- image --------------------------------------------------------------------------------------


def test_the_image_tag_defaults_to_the_app_version(helm: pathlib.Path) -> None:
    container = _operator_container(_render(helm))
    image = f"registry.example.com/{DEFAULTS['image']['repository']}:{CHART_META['appVersion']}"
    assert container["image"] == image
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_an_image_tag_replaces_the_app_version(helm: pathlib.Path) -> None:
    container = _operator_container(
        _render(
            helm, {"image": {"registry": "r.example:5000", "repository": "a/kfn", "tag": "dev-1"}}
        )
    )
    assert container["image"] == "r.example:5000/a/kfn:dev-1"  # fmt: skip


def test_an_image_digest_takes_precedence_over_the_tag(helm: pathlib.Path) -> None:
    digest = "sha256:" + "ab" * 32
    container = _operator_container(
        _render(helm, {"image": {"tag": "dev-1", "digest": digest, "pullPolicy": "Always"}})
    )
    assert container["image"] == f"registry.example.com/{DEFAULTS['image']['repository']}@{digest}"
    assert container["imagePullPolicy"] == "Always"


# --- RBAC and the service account ---------------------------------------------------------------


def test_the_operator_is_granted_exactly_what_it_touches(helm: pathlib.Path) -> None:
    objects = _render(helm)
    role = _one(objects, "ClusterRole")
    assert _granted(role) == OPERATOR_RULES
    # Secrets: any may be created, but only the credential Secrets read or changed.
    assert [r["resourceNames"] for r in role["rules"] if "resourceNames" in r] == [["kfn-registry"]]
    binding = _one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kfn-operator", "namespace": NAMESPACE}
    ]


def test_rbac_can_be_left_to_the_cluster_admin(helm: pathlib.Path) -> None:
    objects = _render(helm, {"rbac": {"create": False}})
    for component in COMPONENTS:
        assert "ClusterRole" not in _kinds(_of(objects, component))
        assert "ClusterRoleBinding" not in _kinds(_of(objects, component))


def test_an_existing_service_account_is_used_and_bound_by_name(helm: pathlib.Path) -> None:
    objects = _render(helm, {"serviceAccount": {"create": False, "name": "platform-operator"}})
    assert "ServiceAccount" not in _kinds(_of(objects, "operator"))
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"
    (subject,) = _one(objects, "ClusterRoleBinding")["subjects"]
    assert subject["name"] == "platform-operator"


def test_service_account_annotations_are_passed_through(helm: pathlib.Path) -> None:
    annotations = {"iam.example/role": "kfn-operator"}
    objects = _render(helm, {"serviceAccount": {"annotations": annotations}})
    account = _one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == annotations
    assert (
        _one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


# --- the activator and the autoscaler ------------------------------------------------------------

ACTIVATOR_RULES = {
    *(("kfn.dev", r, v) for r in ["functions", "triggers"] for v in ["get", "list", "watch"]),
    *(("", "pods", v) for v in ["get", "list", "watch"]),
}
AUTOSCALER_RULES = {
    *(("kfn.dev", "functions", v) for v in ["get", "list", "watch"]),
    *(("apps", "deployments/scale", v) for v in ["get", "patch", "update"]),
}


def _container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (container,) = _one(objects, "Deployment", component)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_two_activators_run_the_activator_module_behind_the_kfn_activator_service(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm)
    deployment = _one(objects, "Deployment", "activator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kfn-activator"
    assert pod["terminationGracePeriodSeconds"] == 30 + 5
    container = _container(objects, "activator")
    assert container["command"] == ["python3", "-m", "kfn.activator"]
    url = "http://kfn-autoscaler.kfn-system.svc.cluster.local:8090/stats"
    assert f"--autoscaler-url={url}" in container["args"]
    assert "--queue-limit=1000" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "metrics": 9090,
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/_kfn/health", "port": "http"}
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}
    service = _one(objects, "Service", "activator")
    assert service["metadata"]["name"] == "kfn-activator"
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (80, "http"),
        "metrics": (9090, "metrics"),
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels | service["spec"]["selector"] == pod_labels


def test_activator_values_reach_the_pod(helm: pathlib.Path) -> None:
    objects = _render(
        helm,
        {"activator": {"replicas": 3, "queueLimit": 50, "drainTimeoutSeconds": 10}},
    )
    deployment = _one(objects, "Deployment", "activator")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15
    args = _container(objects, "activator")["args"]
    assert {"--queue-limit=50", "--drain-timeout=10"} <= set(args)


@pytest.mark.parametrize("component", ["activator", "cron", "bucket", "stream"])
def test_every_component_with_more_than_one_replica_has_a_disruption_budget_of_one(
    helm: pathlib.Path, component: str
) -> None:
    objects = _render(helm, {component: {"replicas": 3}})
    budget = _one(objects, "PodDisruptionBudget", component)
    # maxUnavailable never blocks a node drain outright, even with one node.
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    pod_labels = _one(objects, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert pod_labels | selector == pod_labels


def test_a_single_replica_or_a_disabled_budget_gets_no_disruption_budget(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm, {"stream": {"replicas": 1}})
    assert not [o for o in _of(objects, "stream") if o["kind"] == "PodDisruptionBudget"]
    off = {"activator": {"podDisruptionBudget": {"enabled": False, "maxUnavailable": 1}}}
    assert not [
        o for o in _of(_render(helm, off), "activator") if o["kind"] == "PodDisruptionBudget"
    ]


def test_the_helm_test_creates_a_function_through_a_role_limited_to_functions(
    helm: pathlib.Path,
) -> None:
    objects = [o for o in _render(helm, tests=True) if o["metadata"]["labels"][COMPONENT] == "test"]
    assert _kinds(objects) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    for obj in objects:
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert "hook-succeeded" in obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    role = next(o for o in objects if o["kind"] == "Role")
    assert _granted(role) == {
        ("kfn.dev", "functions", v) for v in ("get", "create", "patch", "delete")
    }
    pod = next(o for o in objects if o["kind"] == "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "kfn.smoketest"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_one_autoscaler_runs_the_autoscaler_module_where_activators_send_stats(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm, {"autoscaler": {"stableWindowSeconds": 30}})
    deployment = _one(objects, "Deployment", "autoscaler")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(objects, "autoscaler")
    assert container["command"] == ["python3", "-m", "kfn.autoscaler"]
    assert {"--port=8090", "--stable-window=30", "--panic-window=6"} <= set(container["args"])
    service = _one(objects, "Service", "autoscaler")
    assert service["metadata"]["name"] == "kfn-autoscaler"
    assert [p["port"] for p in service["spec"]["ports"]] == [8090]


@pytest.mark.parametrize("component", ["activator", "autoscaler"])
def test_activator_and_autoscaler_pods_are_restricted_like_the_operator(
    helm: pathlib.Path, component: str
) -> None:
    objects = _render(helm)
    pod = _one(objects, "Deployment", component)["spec"]["template"]["spec"]
    operator_pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == operator_pod["securityContext"]
    (container,) = pod["containers"]
    (operator_container,) = operator_pod["containers"]
    assert container["securityContext"] == operator_container["securityContext"]
    assert container["image"] == operator_container["image"]
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize(
    ("component", "rules"), [("activator", ACTIVATOR_RULES), ("autoscaler", AUTOSCALER_RULES)]
)
def test_activator_and_autoscaler_are_granted_exactly_what_they_touch(
    helm: pathlib.Path, component: str, rules: set[tuple[str, str, str]]
) -> None:
    objects = _render(helm)
    role = _one(objects, "ClusterRole", component)
    assert _granted(role) == rules
    (subject,) = _one(objects, "ClusterRoleBinding", component)["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": f"kfn-{component}", "namespace": NAMESPACE}


def test_the_schema_rejects_bad_activator_and_autoscaler_values(helm: pathlib.Path) -> None:
    assert "/activator/replicas" in _render_error(helm, "activator.replicas=0")
    assert "'port' not allowed" in _render_error(helm, "activator.port=8080")
    assert "/autoscaler/logLevel" in _render_error(helm, "autoscaler.logLevel=loud")


# --- values schema and lint ---------------------------------------------------------------------


def test_helm_lint_strict_passes(helm: pathlib.Path) -> None:
    result = _run_helm(
        helm, "lint", "--strict", str(CHART), "--kube-version", config.KUBERNETES_VERSION
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_the_schema_rejects_an_unknown_key_naming_it(helm: pathlib.Path) -> None:
    message = _render_error(helm, "operator.replicas=2")
    assert "/operator" in message
    assert "'replicas' not allowed" in message


def test_the_schema_rejects_an_unknown_top_level_key(helm: pathlib.Path) -> None:
    message = _render_error(helm, "imagePullPolicy=Always")
    assert "'imagePullPolicy' not allowed" in message


def test_the_schema_rejects_a_wrong_type_naming_the_key_and_the_type(helm: pathlib.Path) -> None:
    message = _render_error(helm, "rbac.create=yes")
    assert "/rbac/create" in message
    assert "boolean" in message


def test_the_schema_rejects_a_malformed_digest(helm: pathlib.Path) -> None:
    message = _render_error(helm, "image.digest=latest")
    assert "/image/digest" in message


def test_the_schema_rejects_an_unknown_log_level(helm: pathlib.Path) -> None:
    message = _render_error(helm, "operator.logLevel=verbose")
    assert "/operator/logLevel" in message


def _object_schemas(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield path, schema
        for key, value in schema.items():
            yield from _object_schemas(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _object_schemas(value, f"{path}/{index}")


def test_every_object_in_the_schema_closes_its_keys_or_types_its_map_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = dict(_object_schemas(schema))
    # Helm hands a parent chart's globals to every subchart; kfn must not reject them.
    objects.pop("/properties/global")
    for path, obj in objects.items():
        closed = obj.get("additionalProperties")
        assert closed is False or isinstance(closed, dict), path


def test_every_value_is_described_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        for key, value in values.items():
            assert key in node["properties"], f"{path}{key} is not in the schema"
            child = node["properties"][key]
            if isinstance(value, dict) and "properties" in child:
                walk(value, child, f"{path}{key}.")

    walk(DEFAULTS, schema, "")


# --- CRDs -----------------------------------------------------------------------------------------


def test_the_install_docs_list_every_value_and_every_rbac_rule_as_the_chart_has_them(
    helm: pathlib.Path,
) -> None:
    result = subprocess.run(
        [sys.executable, str(kubeutil.REPO / "hack" / "chartdocs.py"), f"--helm={helm}", "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_chart_ships_the_generated_crds_unchanged() -> None:
    generated = {p.name: p.read_bytes() for p in (kubeutil.REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert shipped == generated, "charts/kfn/crds differs from crds/; run `make crds`"


# --- against the cluster, storing nothing -------------------------------------------------------


@pytest.fixture
def restricted_namespace(cluster: pathlib.Path) -> Iterator[str]:
    """A throwaway namespace enforcing (and warning about) the restricted Pod Security Standard."""
    name = f"kfn-chart-{uuid.uuid4().hex[:8]}"
    kubeutil.kubectl("create", "namespace", name)
    try:
        kubeutil.kubectl(
            "label",
            "namespace",
            name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        )
        yield name
    finally:
        kubeutil.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _dry_run(namespace: str, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    body = {"apiVersion": "v1", "kind": "List", "items": objects}
    return subprocess.run(
        [
            str(kubeutil.KUBECTL),
            f"--kubeconfig={kubeutil.KUBECONFIG}",
            "apply",
            "--dry-run=server",
            "--validate=strict",
            f"--namespace={namespace}",
            "-f",
            "-",
        ],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_api_server_accepts_every_object_and_the_restricted_standard_admits_the_pod(
    helm: pathlib.Path, restricted_namespace: str
) -> None:
    objects = _render(helm, release=f"dry-{restricted_namespace}")
    for obj in objects:
        if "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = restricted_namespace
    result = _dry_run(restricted_namespace, objects)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr

    # Pod Security admission only enforces on pods, so submit each Deployment's pod as one.
    # It runs as the namespace's "default" account, which the dry run above did not create.
    kubeutil.wait_for(
        "the namespace's default ServiceAccount",
        lambda: kubeutil.kubectl(
            "get", "serviceaccount", "default", "-n", restricted_namespace, check=False
        ),
    )
    for component in COMPONENTS:
        template = _one(objects, "Deployment", component)["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"kfn-{component}-dry-run",
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"] | {"serviceAccountName": "default"},
        }
        result = _dry_run(restricted_namespace, [pod])
        assert result.returncode == 0, (component, result.stderr)


def _notes(helm: pathlib.Path, values: dict[str, Any] | None = None) -> str:
    """NOTES.txt as ``helm install --dry-run=server`` prints it; nothing is installed."""
    suffix = uuid.uuid4().hex[:8]
    result = _run_helm(
        helm,
        "install",
        f"notes-{suffix}",
        str(CHART),
        "--namespace",
        f"kfn-notes-{suffix}",
        "--kubeconfig",
        str(kubeutil.KUBECONFIG),
        "--dry-run=server",
        values=values,
    )
    assert result.returncode == 0, result.stderr
    _, marker, notes = result.stdout.partition("\nNOTES:\n")
    assert marker, f"no NOTES in: {result.stdout[-2000:]}"
    return notes


def test_the_notes_give_the_next_steps_and_no_warning_by_default(helm: pathlib.Path) -> None:
    notes = _notes(helm)
    assert "WARNING" not in notes
    assert "rollout status deployment/notes-" in notes
    assert "kubectl apply -f examples/hello/function.yaml" in notes
    assert "kubectl get fn" in notes
    assert "docs/install.md" in notes
    assert notes.index("examples/hello/function.yaml") < notes.index("docs/install.md")


def test_the_notes_put_warnings_first(helm: pathlib.Path) -> None:
    notes = _notes(helm, {"rbac": {"create": False}, "operator": {"logLevel": "DEBUG"}})
    assert notes.startswith("WARNING: rbac.create is false")
    assert "WARNING: operator.logLevel is DEBUG" in notes
    assert notes.rindex("WARNING") < notes.index("kubectl apply -f examples/hello/function.yaml")


def test_the_notes_warn_when_the_default_service_account_gets_the_permissions(
    helm: pathlib.Path,
) -> None:
    notes = _notes(helm, {"serviceAccount": {"create": False}})
    assert notes.startswith("WARNING: serviceAccount.create is false")
    assert '"default" ServiceAccount' in notes


# --- the trigger workers -----------------------------------------------------------------------

TRIGGER_RULES = {
    *(("kfn.dev", "triggers", v) for v in ["get", "list", "watch"]),
    ("kfn.dev", "triggers/status", "patch"),
    ("", "secrets", "get"),
}
WORKER_RULES = {
    "cron": TRIGGER_RULES,
    "stream": TRIGGER_RULES,
    "bucket": TRIGGER_RULES | {("", "configmaps", v) for v in ["get", "create", "patch", "update"]},
}
#: Leader election, and reading its own Deployment (to make it the Leases' owner).
LEASE_RULES = {
    *(("coordination.k8s.io", "leases", v) for v in ["get", "create", "update"]),
    ("apps", "deployments", "get"),
}


@pytest.mark.parametrize(("component", "replicas"), [("cron", 2), ("stream", 1), ("bucket", 2)])
def test_each_trigger_worker_runs_its_module_and_invokes_through_the_activator(
    helm: pathlib.Path, component: str, replicas: int
) -> None:
    objects = _render(helm)
    deployment = _one(objects, "Deployment", component)
    assert deployment["metadata"]["name"] == f"kfn-{component}"
    assert deployment["spec"]["replicas"] == replicas
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"kfn-{component}"
    container = _container(objects, component)
    assert container["command"] == ["python3", "-m", f"kfn.triggers.{component}"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KFN_ACTIVATOR_URL"] == f"http://kfn-activator.{NAMESPACE}.svc.cluster.local"
    kinds = ["ClusterRole", "ClusterRoleBinding", "Deployment"]
    kinds += ["PodDisruptionBudget"] if replicas > 1 else []
    kinds += ["Role", "RoleBinding"] if component != "stream" else []
    kinds += ["Secret", "Service"] if component == "bucket" else []
    assert _kinds(_of(objects, component)) == [*kinds, "ServiceAccount"]


def test_async_workers_retry_after_lambdas_delays_unless_told_otherwise(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm, {"bucket": {"asyncRetryDelays": ["1s", "2s"]}})
    bucket = {e["name"]: e.get("value") for e in _container(objects, "bucket")["env"]}
    cron = {e["name"]: e.get("value") for e in _container(objects, "cron")["env"]}
    assert bucket["KFN_ASYNC_RETRY_DELAYS"] == "1s,2s"
    assert cron["KFN_ASYNC_RETRY_DELAYS"] == "60s,120s"
    assert "KFN_ASYNC_RETRY_DELAYS" not in {e["name"] for e in _container(objects, "stream")["env"]}


def test_object_stores_reach_the_bucket_worker_through_its_service(helm: pathlib.Path) -> None:
    objects = _render(helm)
    service = _one(objects, "Service", "bucket")
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, "http")
    container = _container(objects, "bucket")
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    deployment = _one(objects, "Deployment", "bucket")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_bucket_replicas_hand_events_over_through_their_service_with_a_shared_key(
    helm: pathlib.Path,
) -> None:
    objects = _render(helm, {"bucket": {"service": {"port": 8081}}})
    secret = _one(objects, "Secret", "bucket")
    assert secret["metadata"]["name"] == "kfn-bucket"
    assert len(base64.b64decode(secret["data"]["handoff-key"])) == 48
    env = {e["name"]: e for e in _container(objects, "bucket")["env"]}
    assert (
        env["KFN_SERVICE_URL"]["value"] == f"http://kfn-bucket.{NAMESPACE}.svc.cluster.local:8081"
    )
    assert env["KFN_HANDOFF_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfn-bucket",
        "key": "handoff-key",
    }
    pod = _one(objects, "Deployment", "bucket")["spec"]["template"]["spec"]
    # The longest drain (15 s), grace (35 s), last answers and one hand-off fit in.
    assert pod["terminationGracePeriodSeconds"] >= 15 + 35 + 3 + 10


def test_cron_values_reach_the_pod(helm: pathlib.Path) -> None:
    objects = _render(
        helm,
        {"cron": {"replicas": 3, "activatorUrl": "http://gw.example:8080", "logLevel": "DEBUG"}},
    )
    assert _one(objects, "Deployment", "cron")["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in _container(objects, "cron")["env"]}
    assert env["KFN_ACTIVATOR_URL"] == "http://gw.example:8080"
    assert env["KFN_LOG_LEVEL"] == "DEBUG"


@pytest.mark.parametrize("component", ["cron", "stream", "bucket"])
def test_the_trigger_worker_pods_are_restricted_like_the_operator(
    helm: pathlib.Path, component: str
) -> None:
    objects = _render(helm)
    pod = _one(objects, "Deployment", component)["spec"]["template"]["spec"]
    operator_pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == operator_pod["securityContext"]
    (container,) = pod["containers"]
    (operator_container,) = operator_pod["containers"]
    assert container["securityContext"] == operator_container["securityContext"]
    assert container["image"] == operator_container["image"]


@pytest.mark.parametrize("component", ["cron", "stream", "bucket"])
def test_a_trigger_worker_gets_only_the_rights_its_triggers_need(
    helm: pathlib.Path, component: str
) -> None:
    objects = _render(helm)
    assert _granted(_one(objects, "ClusterRole", component)) == WORKER_RULES[component]
    if component != "stream":
        role = _one(objects, "Role", component)
        assert role["metadata"]["namespace"] == NAMESPACE
        assert _granted(role) == LEASE_RULES
        named = [r.get("resourceNames") for r in role["rules"] if "deployments" in r["resources"]]
        assert named == [[f"kfn-{component}"]]
    kinds = (
        ("ClusterRoleBinding", "RoleBinding") if component != "stream" else ("ClusterRoleBinding",)
    )
    for kind in kinds:
        (subject,) = _one(objects, kind, component)["subjects"]
        assert subject == {
            "kind": "ServiceAccount",
            "name": f"kfn-{component}",
            "namespace": NAMESPACE,
        }


def test_the_schema_rejects_bad_cron_values(helm: pathlib.Path) -> None:
    assert "/cron/replicas" in _render_error(helm, "cron.replicas=0")
    assert "/cron/activatorUrl" in _render_error(helm, "cron.activatorUrl=not a url")
    assert "'port' not allowed" in _render_error(helm, "cron.port=8080")
