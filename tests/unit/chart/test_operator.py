"""The operator's Deployment, image, RBAC and ServiceAccount as the chart renders them."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from kfn.api import function
from kfn.operator import settings as kfn_settings
from kfn.resources import build
from kfncluster import config
from tests.unit.chart import chart

# What the operator may do, as (API group, resource, verb); the contract of operator-rbac.yaml.
OPERATOR_RULES = {
    *((g, r, v) for g, r in [("kfn.dev", "functions"), ("kfn.dev", "triggers")]
      for v in ["get", "list", "watch", "patch", "update"]),
    *((g, r, v) for g, r in [("kfn.dev", "functions/status"), ("kfn.dev", "triggers/status")]
      for v in ["get", "patch", "update"]),
    *(("kfn.dev", "functionversions", v) for v in ["get", "list", "create", "patch", "delete"]),
    ("kfn.dev", "functionversions/status", "patch"),
    *(("apps", "deployments", v)
      for v in ["get", "list", "watch", "create", "patch", "update", "delete"]),
    *(("apps", "deployments/scale", v) for v in ["get", "patch", "update"]),
    *(("", r, v) for r in ["services", "serviceaccounts"]
      for v in ["get", "list", "watch", "create", "patch", "update", "delete"]),
    # The NetworkPolicy that admits only the activator to a function's pods.
    *(("networking.k8s.io", "networkpolicies", v)
      for v in ["get", "list", "watch", "create", "patch", "update", "delete"]),
    *(("", r, v) for r in ["configmaps", "pods"] for v in ["get", "list", "watch"]),
    # Warm pools: their ReplicaSets, and pool pods deleted when claimed and done or stale.
    *(("apps", "replicasets", v) for v in ["get", "list", "watch", "create", "patch", "delete"]),
    ("", "pods", "delete"),
    # A function pod's init error, from the runtime's report in its log.
    ("", "pods/log", "get"),
    # Builds: the source ConfigMap and the Job of each build.
    *(("", "configmaps", v) for v in ["create", "patch", "delete"]),
    *(("batch", "jobs", v) for v in ["get", "list", "watch", "create", "patch", "delete"]),
    *((g, "events", v) for g in ["", "events.k8s.io"] for v in ["create", "patch"]),
    # Which pull Secret the kubelet could not find, from its Events.
    *(("", "events", v) for v in ["get", "list", "watch"]),
    # Each function namespace's registry credential and its bucket stores' tokens (read and
    # changed by name only).
    *(("", "secrets", v) for v in ["create", "get", "update", "patch", "delete"]),
    *(("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ["get", "list", "watch"]),
    *(("", "namespaces", v) for v in ["get", "list", "watch"]),
    # Routes at the cluster's edge: HTTPRoutes in the owners' namespaces, the Gateways'
    # addresses, and Ingresses watched (written only in the release's namespace).
    *(("gateway.networking.k8s.io", "httproutes", v)
      for v in ["get", "list", "watch", "create", "patch", "delete"]),
    ("gateway.networking.k8s.io", "gateways", "get"),
    ("gateway.networking.k8s.io", "gateways", "list"),
    ("gateway.networking.k8s.io", "gateways", "watch"),
    *(("networking.k8s.io", "ingresses", v) for v in ["get", "list", "watch"]),
}  # fmt: skip


# --- the operator's Deployment ----------------------------------------------------------------


def test_the_operator_runs_one_replica_replaced_rather_than_rolled(helm: pathlib.Path) -> None:
    spec = chart.one(chart.render(helm), "Deployment")["spec"]
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
                "python313": "registry.example.com/kfn/runtime-python3.13@sha256:" + "b" * 64,
                "nodejs22": "",
            },
            "pypiIndexUrl": "https://pypi.mirror.example.com/simple/",
            "npmRegistry": "https://npm.mirror.example.com/",
            "maxConcurrent": 4,
            "deadlineSeconds": 600,
            "scheduling": {"nodeSelector": {"pool": "builds"}},
            "resources": {"limits": {"cpu": "2", "ephemeral-storage": "10Gi"}},
            "archives": {"maxUnpackedMiB": 128, "maxFiles": 5000, "allowedCIDRs": ["10.0.0.0/8"]},
        },
    }
    env = {
        e["name"]: e.get("value")
        for e in chart.operator_container(chart.render(helm, values))["env"]
    }
    image = f"registry.example.com/{chart.DEFAULTS['image']['repository']}@sha256:{'a' * 64}"
    assert env["KFN_BUILDER_IMAGE"] == image
    assert env["KFN_IMAGE_REGISTRY"] == "builds.example.com:5443"
    assert env["KFN_RUNTIME_IMAGE_PYTHON3_13"] == values["builder"]["runtimeImages"]["python313"]
    # An empty runtime image is kfn's own of this release.
    version = chart.CHART_META["appVersion"]
    assert (
        env["KFN_RUNTIME_IMAGE_NODEJS22"] == f"registry.example.com/kfn/runtime-nodejs22:{version}"
    )
    assert env["KFN_PYPI_INDEX_URL"] == "https://pypi.mirror.example.com/simple/"
    assert env["KFN_NPM_REGISTRY"] == "https://npm.mirror.example.com/"
    assert env["KFN_MAX_CONCURRENT_BUILDS"] == "4"
    assert env["KFN_BUILD_DEADLINE_SECONDS"] == "600"
    assert json.loads(env["KFN_BUILD_SCHEDULING"]) == {"nodeSelector": {"pool": "builds"}}
    # Given limits replace the defaults key by key; the requests stay the chart's.
    assert json.loads(env["KFN_BUILD_RESOURCES"]) == {
        "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "10Gi"},
    }
    assert env["KFN_BUILD_MAX_UNPACKED_MIB"] == "128"
    assert env["KFN_BUILD_MAX_FILES"] == "5000"
    assert json.loads(env["KFN_BUILD_ALLOWED_CIDRS"]) == ["10.0.0.0/8"]


def test_build_pods_are_limited_in_cpu_and_ephemeral_storage_by_default(
    helm: pathlib.Path,
) -> None:
    env = {e["name"]: e.get("value") for e in chart.operator_container(chart.render(helm))["env"]}
    resources = json.loads(env["KFN_BUILD_RESOURCES"])
    assert set(resources["limits"]) == {"cpu", "memory", "ephemeral-storage"}
    assert set(resources["requests"]) == {"cpu", "memory", "ephemeral-storage"}
    assert env["KFN_BUILD_MAX_UNPACKED_MIB"] == "512"
    assert env["KFN_BUILD_MAX_FILES"] == "20000"
    assert json.loads(env["KFN_BUILD_ALLOWED_CIDRS"]) == []


def test_the_chart_names_no_address_of_the_development_cluster(helm: pathlib.Path) -> None:
    text = (chart.CHART / "values.yaml").read_text()
    assert "10.244." not in text
    assert "10.96." not in text
    rendered = json.dumps(chart.render(helm))
    assert "10.244." not in rendered


def test_an_install_without_the_image_registry_or_the_registry_host_says_what_to_set(
    helm: pathlib.Path,
) -> None:
    result = chart.run_helm(helm, "template", "kfn", str(chart.CHART), "--kube-version",
                       config.KUBERNETES_VERSION, bare=True)  # fmt: skip
    assert result.returncode != 0
    assert "image.registry is empty" in result.stderr
    values = {"image": {"registry": "r.example"}}
    result = chart.run_helm(helm, "template", "kfn", str(chart.CHART), "--kube-version",
                       config.KUBERNETES_VERSION, values=values, bare=True)  # fmt: skip
    assert "registry.host is empty" in result.stderr


def test_the_registry_settings_reach_the_operator_with_the_robot_key_from_its_secret(
    helm: pathlib.Path,
) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    values = {"registry": {"caBundle": ca, "credentials": {"secretName": "pushes"}}}
    env = {e["name"]: e for e in chart.operator_container(chart.render(helm, values))["env"]}
    assert env["KFN_REGISTRY_CA_PEM"]["value"] == ca
    assert env["KFN_REGISTRY_PLAIN_HTTP"]["value"] == "false"
    assert env["KFN_REGISTRY_CREDENTIALS"]["value"] == "managed"
    assert env["KFN_REGISTRY_SECRET_NAME"]["value"] == "pushes"
    assert env["KFN_REGISTRY_ROBOT_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "kfn-registry-robot-key", "key": "robot-key"}
    }
    role = chart.one(chart.render(helm, values), "ClusterRole")
    named = [r for r in role["rules"] if "secrets" in r["resources"] and r.get("resourceNames")]
    assert named[0] == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["pushes"],
        "verbs": ["get", "update", "patch", "delete"],
    }
    assert [r["resourceNames"] for r in named[1:]] == [["kfn-bucket-events"]]


def test_shared_credentials_are_read_from_one_secret_of_the_release_namespace(
    helm: pathlib.Path,
) -> None:
    """NOTES.txt warns about them too (tests/cluster/test_chart.py: only a dry run renders it)."""
    values = {"registry": {"credentials": {"mode": "shared", "shared": {"secretName": "one"}}}}
    objects = chart.render(helm, values)
    env = {e["name"]: e.get("value") for e in chart.operator_container(objects)["env"]}
    assert env["KFN_REGISTRY_SHARED_SECRET"] == "one"
    assert "KFN_REGISTRY_ROBOT_KEY" not in env
    role = chart.one(objects, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["one"],
         "verbs": ["get", "watch"]}
    ]  # fmt: skip


def test_without_credentials_the_operator_may_change_no_secret_but_the_bucket_tokens(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"registry": {"credentials": {"mode": "none"}}})
    rules = [r for r in chart.one(objects, "ClusterRole")["rules"] if "secrets" in r["resources"]]
    assert rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kfn-bucket-events"],
         "verbs": ["get", "patch", "update"]},
    ]  # fmt: skip


def test_the_operator_writes_each_namespaces_bucket_tokens_from_the_bucket_workers_key(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"bucket": {"service": {"port": 8081}}})
    env = {e["name"]: e for e in chart.operator_container(objects)["env"]}
    assert env["KFN_BUCKET_EVENTS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfn-bucket",
        "key": "events-key",
    }
    assert env["KFN_BUCKET_URL"]["value"] == "http://kfn-bucket.kfn-system.svc.cluster.local:8081"
    role = chart.one(objects, "ClusterRole")
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["kfn-bucket-events"],
        "verbs": ["get", "patch", "update"],
    } in role["rules"]


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
        for e in chart.operator_container(chart.render(helm, {"functions": functions}))["env"]
    }
    assert json.loads(env["KFN_IMAGE_PULL_SECRETS"]) == ["cluster-pull"]
    assert json.loads(env["KFN_FUNCTION_SCHEDULING"]) == functions["scheduling"]


@pytest.mark.parametrize(("value", "kept"), [(None, True), (False, False)])
def test_keeping_departed_pods_last_lines_is_on_unless_the_admin_turns_it_off(
    helm: pathlib.Path, value: bool | None, kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {} if value is None else {"functions": {"keepLogs": value}}
    env = {
        e["name"]: e.get("value")
        for e in chart.operator_container(chart.render(helm, values))["env"]
    }
    monkeypatch.setenv("KFN_KEEP_LOGS", env["KFN_KEEP_LOGS"])
    kfn_settings.keep_logs.cache_clear()
    try:
        assert kfn_settings.keep_logs() is kept
    finally:
        kfn_settings.keep_logs.cache_clear()


@pytest.mark.parametrize(("value", "size"), [(None, 1), (0, 0), (20, 20)])
def test_the_warm_pools_default_size_reaches_the_operator_from_the_chart(
    helm: pathlib.Path, value: int | None, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {} if value is None else {"warmPools": {"defaultSize": value}}
    env = {
        e["name"]: e.get("value")
        for e in chart.operator_container(chart.render(helm, values))["env"]
    }
    monkeypatch.setenv("KFN_WARM_POOL_DEFAULT_SIZE", env["KFN_WARM_POOL_DEFAULT_SIZE"])
    kfn_settings.warm_pool_default_size.cache_clear()
    try:
        assert kfn_settings.warm_pool_default_size() == size
    finally:
        kfn_settings.warm_pool_default_size.cache_clear()


@pytest.mark.parametrize("value", ["21", "-1", "one"])
def test_the_schema_refuses_a_warm_pools_default_size_outside_0_to_20(
    helm: pathlib.Path, value: str
) -> None:
    assert "defaultSize" in chart.render_error(helm, f"warmPools.defaultSize={value}")


def test_status_urls_and_every_cross_component_url_come_from_the_release_and_cluster_domain(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"clusterDomain": "corp.internal"}, release="faas")
    env = {e["name"]: e.get("value") for e in chart.operator_container(objects)["env"]}
    assert env["KFN_ACTIVATOR_URL"] == "http://faas-kfn-activator.kfn-system.svc.corp.internal"
    assert env["KFN_INVOKE_URL"] == "http://faas-kfn-invoke.kfn-system.svc.corp.internal"
    args = chart.container(objects, "activator")["args"]
    assert (
        "--autoscaler-url=http://faas-kfn-autoscaler.kfn-system.svc.corp.internal:8090/stats"
        in args
    )


def test_the_operator_container_runs_the_operator_module_with_health_probes(
    helm: pathlib.Path,
) -> None:
    container = chart.operator_container(chart.render(helm))
    assert container["command"] == ["python3", "-m", "kfn.operator"]
    assert container["env"][0] == {"name": "KFN_LOG_LEVEL", "value": "INFO"}
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert {"name": "KFN_METRICS_PORT", "value": "9090"} in container["env"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_the_log_level_reaches_the_operator(helm: pathlib.Path) -> None:
    container = chart.operator_container(chart.render(helm, {"operator": {"logLevel": "DEBUG"}}))
    assert {"name": "KFN_LOG_LEVEL", "value": "DEBUG"} in container["env"]


def test_the_operator_pod_meets_the_restricted_pod_security_standard(
    helm: pathlib.Path,
) -> None:
    pod = chart.one(chart.render(helm), "Deployment")["spec"]["template"]["spec"]
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


@pytest.mark.parametrize("component", ["activator", "autoscaler", "cron", "stream", "bucket"])
def test_every_other_component_runs_the_kfn_image_as_restricted_as_the_operator(
    helm: pathlib.Path, component: str
) -> None:
    objects = chart.render(helm)
    pod = chart.one(objects, "Deployment", component)["spec"]["template"]["spec"]
    operator_pod = chart.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == operator_pod["securityContext"]
    (container,) = pod["containers"]
    (operator_container,) = operator_pod["containers"]
    assert container["securityContext"] == operator_container["securityContext"]
    assert container["image"] == operator_container["image"]
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
    pod = chart.one(chart.render(helm, {"operator": scheduling}), "Deployment")["spec"]["template"][
        "spec"
    ]
    assert {key: pod[key] for key in scheduling} == scheduling


def test_the_pod_sets_no_scheduling_settings_by_default(helm: pathlib.Path) -> None:
    pod = chart.one(chart.render(helm), "Deployment")["spec"]["template"]["spec"]
    assert not {"priorityClassName", "nodeSelector", "tolerations", "affinity"} & pod.keys()


# --- image ------------------------------------------------------------------------------------


def test_the_image_tag_defaults_to_the_app_version(helm: pathlib.Path) -> None:
    container = chart.operator_container(chart.render(helm))
    repository, version = chart.DEFAULTS["image"]["repository"], chart.CHART_META["appVersion"]
    image = f"registry.example.com/{repository}:{version}"
    assert container["image"] == image
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_an_image_tag_replaces_the_app_version(helm: pathlib.Path) -> None:
    container = chart.operator_container(
        chart.render(
            helm, {"image": {"registry": "r.example:5000", "repository": "a/kfn", "tag": "dev-1"}}
        )
    )
    assert container["image"] == "r.example:5000/a/kfn:dev-1"  # fmt: skip


def test_an_image_digest_takes_precedence_over_the_tag(helm: pathlib.Path) -> None:
    digest = "sha256:" + "ab" * 32
    container = chart.operator_container(
        chart.render(helm, {"image": {"tag": "dev-1", "digest": digest, "pullPolicy": "Always"}})
    )
    assert (
        container["image"]
        == f"registry.example.com/{chart.DEFAULTS['image']['repository']}@{digest}"
    )
    assert container["imagePullPolicy"] == "Always"


# --- RBAC and the service account -------------------------------------------------------------


def test_the_operator_is_granted_exactly_what_it_touches(helm: pathlib.Path) -> None:
    objects = chart.render(helm)
    role = chart.one(objects, "ClusterRole")
    assert chart.granted(role) == OPERATOR_RULES
    # Secrets: any may be created, but only the credential and the bucket events Secrets read
    # or changed.
    assert [r["resourceNames"] for r in role["rules"] if "resourceNames" in r] == [
        ["kfn-registry"],
        ["kfn-bucket-events"],
    ]
    binding = chart.one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kfn-operator", "namespace": chart.NAMESPACE}
    ]


def test_rbac_can_be_left_to_the_cluster_admin(helm: pathlib.Path) -> None:
    objects = chart.render(helm, {"rbac": {"create": False}})
    for component in chart.COMPONENTS:
        assert "ClusterRole" not in chart.kinds(chart.of(objects, component))
        assert "ClusterRoleBinding" not in chart.kinds(chart.of(objects, component))


def test_an_existing_service_account_is_used_and_bound_by_name(helm: pathlib.Path) -> None:
    objects = chart.render(helm, {"serviceAccount": {"create": False, "name": "platform-operator"}})
    assert "ServiceAccount" not in chart.kinds(chart.of(objects, "operator"))
    pod = chart.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"
    (subject,) = chart.one(objects, "ClusterRoleBinding")["subjects"]
    assert subject["name"] == "platform-operator"


def test_service_account_annotations_are_passed_through(helm: pathlib.Path) -> None:
    annotations = {"iam.example/role": "kfn-operator"}
    objects = chart.render(helm, {"serviceAccount": {"annotations": annotations}})
    account = chart.one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == annotations
    assert (
        chart.one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


def test_every_runtime_has_its_image_value_and_the_older_names_still_count(
    helm: pathlib.Path,
) -> None:
    python = "registry.example.com/mine/python@sha256:" + "c" * 64
    node = "registry.example.com/mine/node@sha256:" + "d" * 64
    values = {"builder": {"runtimeImages": {"python": python, "nodejs": node}}}
    env = {
        e["name"]: e.get("value")
        for e in chart.operator_container(chart.render(helm, values))["env"]
    }
    images = {name: value for name, value in env.items() if name.startswith("KFN_RUNTIME_IMAGE_")}
    assert set(images) == {build.runtime_image_env(r) for r in function.RUNTIMES}
    assert images["KFN_RUNTIME_IMAGE_PYTHON3_11"] == python
    assert images["KFN_RUNTIME_IMAGE_NODEJS18"] == node
    # The new name wins over the older one.
    values["builder"]["runtimeImages"]["python311"] = node
    env = {
        e["name"]: e.get("value")
        for e in chart.operator_container(chart.render(helm, values))["env"]
    }
    assert env["KFN_RUNTIME_IMAGE_PYTHON3_11"] == node
